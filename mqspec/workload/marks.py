"""Accounting marks: which producer instance sent a message, its sequence number and when.

Generated bodies (`size`) start with a fixed 24-byte binary prefix written in place into a
preallocated buffer; user bodies (`body`, `body_file`) keep their bytes and carry the same mark
in the `x-mqspec` header instead. A stream id packs the producer's index in the workload and the
instance number: `index << 16 | instance`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

MAGIC = b"MQs\x01"
PREFIX = struct.Struct("!4sIQQ")  # magic, stream id, sequence number, publish time (ns since the epoch)
MARK = struct.Struct("!IQQ")      # the same without the magic, read at offset 4
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


def header_mark(sid: int, seq: int, ts_ns: int) -> str:
    return f"{sid}:{seq}:{ts_ns}"


def read_header_mark(headers: Mapping[str, Any] | None) -> tuple[int, int, int] | None:
    """(stream id, seq, publish ns) from the x-mqspec header, or None for foreign messages."""
    if not headers:
        return None
    value = headers.get(HEADER)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    parts = value.split(":")
    if len(parts) != 3:
        return None
    try:
        sid, seq, ts = (int(p) for p in parts)
    except ValueError:
        return None
    if sid < 0 or seq < 0 or ts < 0:
        return None
    return sid, seq, ts


def read_body_mark(body: bytes) -> tuple[int, int, int] | None:
    """(stream id, seq, publish ns) from a generated body's prefix, or None."""
    if len(body) < PREFIX_SIZE or not body.startswith(MAGIC):
        return None
    sid, seq, ts = MARK.unpack_from(body, 4)
    return int(sid), int(seq), int(ts)


def read_mark(body: bytes, headers: Mapping[str, Any] | None) -> tuple[int, int, int] | None:
    return read_body_mark(body) or read_header_mark(headers)
