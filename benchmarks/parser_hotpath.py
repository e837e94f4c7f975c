"""CPU per delivery in the inbound frame parser (mqspec/workload/frames.py), no broker.

A stream of Basic.Deliver + header + body frames, marshalled by pika as the broker sends them (100-byte
bodies), is fed to `InboundParser` in 64 KiB chunks, as the consumer's recv() hands it over; the deliver
callback only counts. Prints nanoseconds of CPU time (process_time) per delivery, median and best of the rounds.

    .venv/bin/python benchmarks/parser_hotpath.py [--messages 200000] [--rounds 7] [--size 100]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from pika import frame, spec

from mqspec.workload.frames import InboundParser

CHUNK = 65536


class _Connection:
    _frame_buffer = b""
    bytes_received = 0

    def _on_data_available(self, data: bytes) -> None:
        raise AssertionError("a frame the parser should have taken went to pika")


def stream(messages: int, size: int) -> bytes:
    out = bytearray()
    properties, body = spec.BasicProperties(delivery_mode=1), b"x" * size
    for tag in range(1, messages + 1):
        out += frame.Method(1, spec.Basic.Deliver(consumer_tag="ctag1.0123456789abcdef", delivery_tag=tag,
                                                  redelivered=False, exchange="", routing_key="q0")).marshal()
        out += frame.Header(1, len(body), properties).marshal()
        out += frame.Body(1, body).marshal()
    return bytes(out)


def one_round(chunks: list[bytes], messages: int) -> float:
    seen = [0]

    def deliver(tag: int, redelivered: bool, headers: Any, body: bytes) -> None:
        seen[0] += 1

    parser = InboundParser(_Connection(), 1, deliver)
    started = time.process_time()
    for chunk in chunks:
        parser(chunk)
    spent = time.process_time() - started
    assert seen[0] == messages, seen[0]
    return spent / messages * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    data = stream(args.messages, args.size)
    chunks = [data[at:at + CHUNK] for at in range(0, len(data), CHUNK)]
    found = [one_round(chunks, args.messages) for _ in range(args.rounds)]
    print(f"ns per delivery: median {statistics.median(found):.0f}, best {min(found):.0f} "
          f"({args.rounds} rounds of {args.messages:,}, {args.size}-byte bodies)")


if __name__ == "__main__":
    main()
