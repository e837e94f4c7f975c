"""Client CPU per message of `mqspec apply`, local engine, against other builds, interleaved.

Each round runs every contender once on the same workload (dask_overhead.py's scenarios: a 100 B, no confirms,
auto-ack; b confirms 100, prefetch 200, multi-ack 100; c 1 KiB persistent, 4 consumers; d 4 x 4 x 4 queues),
rotating the order; client CPU is getrusage(RUSAGE_CHILDREN) around the mqspec process (it and its reaped
workers, start-up included), divided by the messages published (each is consumed once). The last table is
the first contender's cost over each other's, paired within each round.

    .venv/bin/python benchmarks/cpu_per_message.py --workload a --rounds 4 \\
        new=.venv/bin/mqspec previous=/path/to/previous/checkout/.venv/bin/mqspec
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
from dask_overhead import scenario


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(binary: str, url: str, path: Path, report: Path) -> dict[str, Any]:
    before = cpu_seconds()
    done = subprocess.run([binary, "--url", url, "apply", str(path), "--report", str(report), "--allow-replace", "--force"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    cpu = cpu_seconds() - before
    data = json.loads(report.read_text())
    published = sum(p["published"] for p in data["producers"].values())
    return {"exit": done.returncode, "cpu_us": cpu / max(published, 1) * 1e6, "published": published,
            "rate": sum(c["rate"] or 0 for c in data["consumers"].values()), "lost": data["messages"]["lost"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("contenders", nargs="+", help="NAME=PATH/TO/mqspec")
    parser.add_argument("--workload", default="a", choices="abcd")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672")
    parser.add_argument("--mgmt", default="http://127.0.0.1:15672")
    args = parser.parse_args()
    contenders = [entry.split("=", 1) for entry in args.contenders]
    vhost, auth = f"cpu-bench-{uuid.uuid4().hex[:6]}", ("guest", "guest")
    httpx.put(f"{args.mgmt}/api/vhosts/{vhost}", auth=auth).raise_for_status()
    httpx.put(f"{args.mgmt}/api/permissions/{vhost}/guest", auth=auth,
              json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    found: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in contenders}
    try:
        with tempfile.TemporaryDirectory(prefix="cpu-bench-") as work:
            path, report = Path(work) / "scenario.yaml", Path(work) / "report.json"
            path.write_text(scenario(args.workload, args.seconds))
            for rnd in range(args.rounds):
                shift = rnd % len(contenders)
                for name, binary in contenders[shift:] + contenders[:shift]:
                    run = run_once(binary, f"{args.amqp}/{vhost}", path, report)
                    found[name].append(run)
                    print(f"round {rnd + 1} {name}: {run['cpu_us']:.2f} us/msg, {run['rate']:,.0f} msg/s, "
                          f"{run['published']:,} msgs, lost {run['lost']}, exit {run['exit']}", flush=True)
    finally:
        httpx.delete(f"{args.mgmt}/api/vhosts/{vhost}", auth=auth)
    print(f"\n| workload {args.workload} | µs CPU per message, median (range) | msg/s, median |\n|---|---:|---:|")
    for name, runs in found.items():
        costs = [r["cpu_us"] for r in runs]
        print(f"| {name} | {statistics.median(costs):.2f} ({min(costs):.2f}–{max(costs):.2f}) | "
              f"{statistics.median(r['rate'] for r in runs):,.0f} |")
    first, *others = found
    if others:   # paired within each round, so a machine that drifts between rounds moves both sides
        print(f"\n| {first} ÷ contender, CPU per message, per round | median (range) |\n|---|---:|")
    for name in others:
        ratios = [a["cpu_us"] / b["cpu_us"] for a, b in zip(found[first], found[name], strict=True)]
        print(f"| {first} ÷ {name} | {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
