"""Accounting marks: which producer instance sent a message, its sequence number and when.

Generated bodies (`size`) start with a fixed 24-byte binary prefix written in place into a
preallocated buffer; user bodies (`body`, `body_file`) keep their bytes and carry the same mark
in the `x-mqspec` header instead (`run:stream:seq:ns`). A stream id packs the producer's index in
the workload and the instance number: `index << 16 | instance`.

Every mark carries the run id, a random 32-bit number drawn once per run: messages left over from
another run (or forged by another program) do not carry it and are counted as foreign, never as
duplicates of this run's messages. Sequence numbers are 32-bit.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from typing import Any

MAGIC = b"MQs\x02"
PREFIX = struct.Struct("!4sIIIQ")  # magic, run id, stream id, sequence number, publish time (ns since the epoch)
MARK = struct.Struct("!IIIQ")      # the same without the magic, read at offset 4
SEQ_LIMIT = 1 << 32                # sequence numbers are 32-bit
PREFIX_SIZE = PREFIX.size
HEADER = "x-mqspec"
PROBE_HEADER = "x-mqspec-probe"


def stream_id(producer_index: int, instance: int) -> int:
    return (producer_index << 16) | instance


def split_stream(sid: int) -> tuple[int, int]:
    return sid >> 16, sid & 0xFFFF


def body_buffer(size: int) -> bytearray:
    """A body of `size` bytes with room for the prefix; the filler is printable and constant."""
    filler = b"mqspec-" * (size // 7 + 1)
    buffer = bytearray(filler[:size])
    buffer[:4] = MAGIC
    return buffer


def fits_prefix(size: int) -> bool:
    return size >= PREFIX_SIZE


def new_run_id() -> int:
    return int.from_bytes(os.urandom(4), "big")   # not secrets.randbits: its import (hmac, hashlib) costs 6 ms a run


def header_mark(run: int, sid: int, seq: int, ts_ns: int) -> str:
    return f"{run}:{sid}:{seq}:{ts_ns}"


Mark = tuple[int, int, int, int]  # run id, stream id, seq, publish ns


def read_header_mark(headers: Mapping[str, Any] | None) -> Mark | None:
    """(run id, stream id, seq, publish ns) from the x-mqspec header, or None for foreign messages."""
    if not headers:
        return None
    value = headers.get(HEADER)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    parts = value.split(":")
    if len(parts) != 4 or any(len(p) > 20 for p in parts):
        return None
    try:
        run, sid, seq, ts = (int(p) for p in parts)
    except ValueError:
        return None
    if run < 0 or sid < 0 or seq < 0 or ts < 0 or seq >= SEQ_LIMIT:
        return None
    return run, sid, seq, ts


def read_body_mark(body: bytes) -> Mark | None:
    """(run id, stream id, seq, publish ns) from a generated body's prefix, or None."""
    if len(body) < PREFIX_SIZE or not body.startswith(MAGIC):
        return None
    run, sid, seq, ts = MARK.unpack_from(body, 4)
    return int(run), int(sid), int(seq), int(ts)


def read_mark(body: bytes, headers: Mapping[str, Any] | None) -> Mark | None:
    return read_body_mark(body) or read_header_mark(headers)
