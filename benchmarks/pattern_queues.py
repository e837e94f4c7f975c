"""The 50-queue pattern workload: 50 producers × 50 queues × 50 consumers, from `count: 50` entries.

PerfTest's equivalent:

    perftest --queue-pattern 'q-%d' --queue-pattern-from 1 --queue-pattern-to 50 \\
             --producers 50 --consumers 50 --time SECONDS --size 100 --auto-delete false

(PerfTest's --rate is per producer too.) Each round creates a throwaway vhost, runs `mqspec apply` on the
scenario below for --seconds (each producer at --rate msg/s; 0: unthrottled), reads from the JSON report the
published rate summed over the 50 producers, the received rate summed over the 50 consumers and the messages
published, and deletes the vhost. Client CPU is getrusage(RUSAGE_CHILDREN) around the `mqspec` process (it and
its reaped worker processes: start-up and drain included), divided by the messages published (each is
published once and consumed once). Prints one line per round and the medians, min and max.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from mgmt import DEFAULT_AMQP, DEFAULT_MGMT, Management, amqp_url
from run_workload import run_bounded

SCENARIO = """\
version: 1
name: pattern-50
broker: {{url: "{url}"}}
topology:
  queues: [{{name: "q-{{i}}", count: 50, durable: false}}]
workload:
  duration: {seconds}s
  producers: [{{name: "p-{{i}}", queue: "q-{{i}}", size: {size}, count: 50{rate}}}]
  consumers: [{{name: "c-{{i}}", queue: "q-{{i}}", ack: auto, count: 50}}]
expect:
  - {{no_loss: true}}
"""


class Round(NamedTuple):
    published_rate: float
    received_rate: float
    cpu_us_per_message: float
    published: int
    passed: bool


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_round(cmd: str, mgmt: Management, base_url: str, seconds: float, size: int, rate: float, tmp: Path) -> Round:
    vhost = mgmt.create_vhost("bench-pattern")
    try:
        scenario, report = tmp / f"{vhost}.yaml", tmp / f"{vhost}.json"
        scenario.write_text(SCENARIO.format(url=amqp_url(base_url, vhost), seconds=seconds, size=size,
                                            rate=f", rate: {rate:g}/s" if rate else ""))
        before = _children_cpu()
        done = run_bounded([cmd, "apply", str(scenario), "--report", str(report)], timeout=seconds + 180)
        cpu = _children_cpu() - before
        if not report.exists():
            raise SystemExit(f"mqspec apply wrote no report (exit {done.returncode}): {done.stderr.strip()[-500:]}")
        data = json.loads(report.read_text())
        if data.get("error"):
            raise SystemExit(f"the run failed: {data['error']}")
        published = sum(p["published"] for p in data["producers"].values())
        return Round(sum(p["rate"] for p in data["producers"].values()), sum(c["rate"] for c in data["consumers"].values()),
                     cpu / published * 1e6 if published else float("nan"), published, bool(data["passed"]))
    finally:
        mgmt.delete_vhost(vhost)


def _spread(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):,.1f} {unit} (min {min(values):,.1f}, max {max(values):,.1f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--rate", type=float, default=200.0, help="msg/s of each of the 50 producers; 0: unthrottled")
    p.add_argument("--url", default=DEFAULT_AMQP, help="AMQP URL without vhost")
    p.add_argument("--mgmt", default=DEFAULT_MGMT)
    args = p.parse_args()
    cmd = shutil.which("mqspec") or str(Path(sys.executable).with_name("mqspec"))
    mgmt = Management(args.mgmt, "guest", "guest")
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            found = run_round(cmd, mgmt, args.url, args.seconds, args.size, args.rate, Path(tmp))
            rounds.append(found)
            print(f"round {rnd + 1}: published {found.published_rate:,.0f} msg/s, received {found.received_rate:,.0f} "
                  f"msg/s, client CPU {found.cpu_us_per_message:,.1f} µs/message ({found.published:,} messages), "
                  f"no_loss {'passed' if found.passed else 'FAILED'}", flush=True)
    print("median published", _spread([r.published_rate for r in rounds], "msg/s"))
    print("median received", _spread([r.received_rate for r in rounds], "msg/s"))
    print("median client CPU", _spread([r.cpu_us_per_message for r in rounds], "µs/message"))


if __name__ == "__main__":
    main()
