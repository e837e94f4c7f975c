"""The 50-queue pattern workload: 50 producers × 50 queues × 50 consumers, from `count: 50` entries.

PerfTest's equivalent:

    perftest --queue-pattern 'q-%d' --queue-pattern-from 1 --queue-pattern-to 50 \\
             --producers 50 --consumers 50 --time SECONDS --size 100 --auto-delete false

Each round creates a throwaway vhost, runs `mqspec apply` on the scenario below for --seconds, reads the
received rate summed over the 50 consumers and the published rate summed over the producers from the JSON
report, and deletes the vhost. Prints one line per round and the median, min and max.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mgmt import DEFAULT_AMQP, DEFAULT_MGMT, Management, amqp_url

SCENARIO = """\
version: 1
name: pattern-50
broker: {{url: "{url}"}}
topology:
  queues: [{{name: "q-{{i}}", count: 50, durable: false}}]
workload:
  duration: {seconds}s
  producers: [{{name: "p-{{i}}", queue: "q-{{i}}", size: {size}, count: 50}}]
  consumers: [{{name: "c-{{i}}", queue: "q-{{i}}", ack: auto, count: 50}}]
expect:
  - {{no_loss: true}}
"""


def run_round(cmd: str, mgmt: Management, base_url: str, seconds: float, size: int, tmp: Path) -> tuple[float, float, bool]:
    vhost = mgmt.create_vhost("bench-pattern")
    try:
        scenario, report = tmp / f"{vhost}.yaml", tmp / f"{vhost}.json"
        scenario.write_text(SCENARIO.format(url=amqp_url(base_url, vhost), seconds=seconds, size=size))
        subprocess.run([cmd, "apply", str(scenario), "--report", str(report)], capture_output=True, text=True,
                       timeout=seconds + 180)
        data = json.loads(report.read_text())
        received = sum(c["rate"] for c in data["consumers"].values())
        published = sum(p["rate"] for p in data["producers"].values())
        return received, published, bool(data["passed"])
    finally:
        mgmt.delete_vhost(vhost)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--url", default=DEFAULT_AMQP, help="AMQP URL without vhost")
    p.add_argument("--mgmt", default=DEFAULT_MGMT)
    args = p.parse_args()
    cmd = shutil.which("mqspec") or str(Path(sys.executable).with_name("mqspec"))
    mgmt = Management(args.mgmt, "guest", "guest")
    rates: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            received, published, passed = run_round(cmd, mgmt, args.url, args.seconds, args.size, Path(tmp))
            rates.append(received)
            print(f"round {rnd + 1}: received {received:,.0f} msg/s, published {published:,.0f} msg/s, "
                  f"no_loss {'passed' if passed else 'FAILED'}", flush=True)
    print(f"median {statistics.median(rates):,.0f} msg/s (min {min(rates):,.0f}, max {max(rates):,.0f})")


if __name__ == "__main__":
    main()
