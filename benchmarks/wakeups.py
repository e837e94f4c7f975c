"""Where a run's client CPU goes, by process, and how often each process woke: one `mqspec apply` per build.

Runs dask_overhead.py's scenario for the workload with each given build, one after another, and samples every
process of the run's tree from /proc every 50 ms: CPU (utime + stime) and voluntary context switches (each a
sleep in epoll_wait and a wake-up) as last seen before it exited. Prints, per process and in all, µs of CPU
and wake-ups per 1000 messages published, with the run's latency. A wake-up costs a context switch that a
virtual machine makes dear, so wake-ups per message are as telling as CPU per message.

    .venv/bin/python benchmarks/wakeups.py --workload b new=.venv/bin/mqspec old=/path/to/old/.venv/bin/mqspec
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from dask_overhead import scenario

TICKS = os.sysconf("SC_CLK_TCK")


def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def sample(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, voluntary context switches) of one process, or None once it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    switches = int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
    return (int(fields[11]) + int(fields[12])) / TICKS, switches


def run(name: str, binary: str, url: str, work: Path, workload: str, seconds: float) -> None:
    path, report = work / "scenario.yaml", work / "report.json"
    path.write_text(scenario(workload, seconds))
    process = subprocess.Popen([binary, "--url", url, "apply", str(path), "--report", str(report), "--allow-replace",
                                "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, tuple[float, int]] = {}
    while process.poll() is None:
        for pid in tree(process.pid):
            found = sample(pid)
            if found is not None:
                seen[pid] = found
        time.sleep(0.05)
    data = json.loads(report.read_text())
    published = max(sum(p["published"] for p in data["producers"].values()), 1)
    print(f"{name}, workload {workload}: {published:,} messages, latency ms {data['latency_ms']}")
    for pid, (cpu, switches) in sorted(seen.items()):
        role = "parent" if pid == process.pid else "worker"
        print(f"  {role} {pid}: {cpu / published * 1e6:.2f} µs a message, {switches / published * 1000:.1f} wake-ups "
              "per 1000 messages")
    cpu, switches = sum(c for c, _ in seen.values()), sum(s for _, s in seen.values())
    print(f"  all: {cpu / published * 1e6:.2f} µs a message, {switches / published * 1000:.1f} wake-ups per 1000")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("builds", nargs="+", help="NAME=PATH/TO/mqspec")
    parser.add_argument("--workload", default="a", choices="abcd")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672")
    parser.add_argument("--mgmt", default="http://127.0.0.1:15672")
    args = parser.parse_args()
    vhost, auth = f"cpu-bench-{uuid.uuid4().hex[:6]}", ("guest", "guest")
    httpx.put(f"{args.mgmt}/api/vhosts/{vhost}", auth=auth).raise_for_status()
    httpx.put(f"{args.mgmt}/api/permissions/{vhost}/guest", auth=auth,
              json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    try:
        with tempfile.TemporaryDirectory(prefix="wakeups-") as work:
            for entry in args.builds:
                name, binary = entry.split("=", 1)
                run(name, binary, f"{args.amqp}/{vhost}", Path(work), args.workload, args.seconds)
    finally:
        httpx.delete(f"{args.mgmt}/api/vhosts/{vhost}", auth=auth)


if __name__ == "__main__":
    main()
