"""CPU per delivery through the consumer's own code: Consumer._deliver -> accounting -> settle -> ack.

No broker: the channel and connection are stand-ins that swallow the ack frames, so what is timed
is mqspec's Python per delivery (mark parsing, bitmaps, latency, multi_ack batching, the prebuilt
ack frame). Each round delivers --messages marked bodies; the median and best round are printed
in nanoseconds of CPU time (process_time) per delivery, so a busy machine inflates them less.

    .venv/bin/python benchmarks/consumer_hotpath.py                  # multi_ack 100, prebuilt acks
    .venv/bin/python benchmarks/consumer_hotpath.py --multi-ack 1 --plain
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace
from typing import Any

from mqspec.core import marks, model
from mqspec.workload.consumer import Consumer


class _Channel:
    channel_number = 1
    is_open = True

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        pass


class _Connection:
    is_open = True

    def _adapter_emit_data(self, data: bytes) -> None:
        pass


def _consumer(multi_ack: int, plain: bool) -> Consumer:
    ctx: Any = SimpleNamespace(started_ns=time.time_ns(), run_id=7, stream_caps={1: 1 << 30}, fast=not plain,
                               topology=model.Topology(), ioloop=SimpleNamespace(call_later=lambda *_a: None))
    consumer = Consumer(ctx, model.Consumer(name="c", queue="q", prefetch=multi_ack * 2, multi_ack=multi_ack), 0)
    channel: Any = _Channel()
    consumer.channel, consumer.connection = channel, _Connection()  # type: ignore[assignment]
    consumer.raw_acks = None if plain else channel
    return consumer


def _bodies(count: int) -> list[bytes]:
    now = time.time_ns()
    return [bytes(marks.PREFIX.pack(marks.MAGIC, 7, 1, seq, now)) + b"x" * 76 for seq in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--multi-ack", type=int, default=100)
    parser.add_argument("--plain", action="store_true", help="acks through pika's basic_ack (MQSPEC_PLAIN_PIKA=1)")
    args = parser.parse_args()
    bodies = _bodies(args.messages)
    results = []
    for _ in range(args.rounds):
        consumer = _consumer(args.multi_ack, args.plain)
        deliver = consumer._deliver
        start = time.process_time_ns()
        for tag, body in enumerate(bodies, 1):
            deliver(tag, False, None, body)
        results.append((time.process_time_ns() - start) / args.messages)
        assert consumer.tally.received == args.messages
    print(f"ns per delivery: median {statistics.median(results):.0f}, best {min(results):.0f} "
          f"({args.rounds} rounds of {args.messages:,}, multi_ack {args.multi_ack}, "
          f"{'pika basic_ack' if args.plain else 'prebuilt ack frames'})")


if __name__ == "__main__":
    main()
