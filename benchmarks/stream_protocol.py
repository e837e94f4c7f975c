"""Streams over AMQP 0-9-1 (pika) against the stream protocol (rstream): msg/s and client CPU, interleaved rounds.

One producer and one consumer (offset: first) on one stream, N messages of 100 bytes, confirms on. Each round
runs the AMQP and the stream-protocol variant back to back in fresh vhosts; client CPU is the user+system
time of the mqspec process and its workers (RUSAGE_CHILDREN of this script). Rate = messages / elapsed_s.

    .venv/bin/python benchmarks/stream_protocol.py [--messages 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx

SCENARIO = """version: 1
name: stream-bench-{protocol}
topology:
  queues: [{{name: events, type: stream}}]
workload:
  producers: [{{name: writer, queue: events, messages: {messages}, size: 100, {producer}}}]
  consumers: [{{name: reader, queue: events, offset: first, idle_timeout: 5s, {consumer}}}]
expect:
  - {{consumer: reader, received: {messages}}}
"""
VARIANTS = {"amqp": ("confirm: 500", "prefetch: 1000"), "stream": ("protocol: stream", "protocol: stream")}
MGMT = "http://127.0.0.1:15672/api"


def one(protocol: str, messages: int) -> tuple[float, float]:
    vhost = f"bench-stream-{uuid.uuid4().hex[:8]}"
    auth = ("guest", "guest")
    httpx.put(f"{MGMT}/vhosts/{vhost}", auth=auth).raise_for_status()
    httpx.put(f"{MGMT}/permissions/{vhost}/guest", auth=auth, json={"configure": ".*", "write": ".*", "read": ".*"})
    try:
        with tempfile.TemporaryDirectory() as folder:
            producer, consumer = VARIANTS[protocol]
            path = Path(folder) / "s.yaml"
            path.write_text(SCENARIO.format(protocol=protocol, messages=messages, producer=producer, consumer=consumer))
            report = Path(folder) / "r.json"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([sys.executable, "-m", "mqspec.cli", "--url", f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                            "apply", str(path), "--report", str(report)],
                           check=True, capture_output=True, text=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            data = json.loads(report.read_text())
            assert data["consumers"]["reader"]["received"] == messages, data["consumers"]["reader"]
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            return messages / data["elapsed_s"], cpu
    finally:
        httpx.delete(f"{MGMT}/vhosts/{vhost}", auth=auth)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"amqp": [], "stream": []}
    for round_ in range(args.rounds):
        for protocol in (("amqp", "stream") if round_ % 2 == 0 else ("stream", "amqp")):
            rate, cpu = one(protocol, args.messages)
            results[protocol].append((rate, cpu))
            print(f"round {round_ + 1} {protocol:6} {rate:10,.0f} msg/s  client CPU {cpu:5.2f} s", flush=True)
    for protocol, rows in results.items():
        print(f"{protocol:6} median {statistics.median(r for r, _ in rows):10,.0f} msg/s  "
              f"client CPU {statistics.median(c for _, c in rows):5.2f} s  ({args.messages:,} messages, {args.rounds} rounds)")


if __name__ == "__main__":
    main()
