"""The Dask engine against the local engine, interleaved, with the client's CPU per message.

Starts a `dask scheduler` and two `dask worker --nthreads 1 --no-nanny` processes on loopback (two
processes, as the local engine forks two on this 2-core machine), then for every round and every
workload runs `mqspec apply` once locally and once with `--engine dask://...`, alternating which
goes first. For each run it reports the consumers' msg/s and the client CPU seconds per million
messages (each message published once and consumed once):

  local: resource.getrusage(RUSAGE_CHILDREN) around the mqspec process (it and its reaped workers);
  dask:  the same for the mqspec process, plus utime+stime+cutime+cstime (/proc/PID/stat) of the Dask
         worker processes and their descendants (the fork server and the jobs' processes it reaps).

Workloads: a 100 B no confirms, auto-ack; b 100 B confirms 100, prefetch 200, multi-ack 100;
c 1 KiB persistent on a durable queue, confirms 100, 4 consumers; d 4 producers x 4 consumers x 4 queues.

    .venv/bin/python benchmarks/dask_overhead.py --rounds 3 --seconds 8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
TICKS = os.sysconf("SC_CLK_TCK")


def scenario(workload: str, seconds: float) -> str:
    confirmed = "confirm: 100"
    acked = "prefetch: 200, ack: manual, multi_ack: 100"
    if workload == "a":
        queues, producers, consumers = ["q0"], ["{name: p, queue: q0, size: 100}"], ["{name: c, queue: q0, ack: auto}"]
    elif workload == "b":
        queues, producers, consumers = ["q0"], [f"{{name: p, queue: q0, size: 100, {confirmed}}}"], [f"{{name: c, queue: q0, {acked}}}"]
    elif workload == "c":
        queues = ["q0"]
        producers = [f"{{name: p, queue: q0, size: 1024, persistent: true, {confirmed}}}"]
        consumers = [f"{{name: c, queue: q0, instances: 4, {acked}}}"]
    else:
        queues = [f"q{i}" for i in range(4)]
        producers = [f"{{name: p{i}, queue: q{i}, size: 100, {confirmed}}}" for i in range(4)]
        consumers = [f"{{name: c{i}, queue: q{i}, {acked}}}" for i in range(4)]
    durable = "true" if workload == "c" else "false"
    lines = ["version: 1", f"name: dask-bench-{workload}", "topology:", "  queues:",
             *[f"    - {{name: {q}, durable: {durable}}}" for q in queues],
             "workload:", f"  duration: {seconds:g}s", "  workers: 2", "  producers:",
             *[f"    - {p}" for p in producers], "  consumers:", *[f"    - {c}" for c in consumers], ""]
    return "\n".join(lines)


def cpu_of(pids: list[int]) -> float:
    """utime + stime + cutime + cstime of each process and of its live descendants: the Dask worker,
    its multiprocessing fork server and the jobs' processes that server forked and reaped."""
    return sum(cpu_split(pids))


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(utime + stime of the processes themselves, the rest: their reaped children's and their live descendants')."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    found, level = set(pids), set(pids)
    while level:
        level = {pid for pid, fields in stats.items() if int(fields[1]) in level and pid not in found}
        found |= level
    total = sum(sum(int(f) for f in stats[pid][11:15]) for pid in found if pid in stats) / TICKS
    own = sum(sum(int(f) for f in stats[pid][11:13]) for pid in pids if pid in stats) / TICKS
    return own, total - own


def _watched(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run argv; also its own utime + stime (not its children's), read from /proc every 0.1 s until it exits."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        own = 0.0
        while process.poll() is None:
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                own = (int(fields[11]) + int(fields[12])) / TICKS
            time.sleep(0.1)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, process.returncode, out.read(), err.read()), own


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(args: argparse.Namespace, url: str, workload: str, engine: str | None, workers: list[int],
             scheduler: int, tmp: Path, label: str) -> dict[str, Any]:
    path = tmp / f"{workload}.yaml"
    path.write_text(scenario(workload, args.seconds))
    report = tmp / f"{workload}.json"
    argv = [str(BIN / "mqspec"), "--url", url, "apply", str(path), "--report", str(report), "--allow-replace", "--force"]
    if engine:
        argv += ["--engine", engine]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        argv = [str(BIN / "python"), str(ROOT / "benchmarks" / "cprofile_cpu.py"), str(args.profile / f"{label}.prof"),
                *argv[1:]]
    before, remote_before, sched_before = children_cpu(), cpu_split(workers), cpu_of([scheduler])
    started = time.monotonic()
    done, parent_cpu = _watched(argv)
    wall = time.monotonic() - started
    mqspec_cpu = children_cpu() - before
    remote = cpu_split(workers)
    own, jobs = remote[0] - remote_before[0], remote[1] - remote_before[1]   # idle Dask workers in a local run
    cpu = mqspec_cpu + (own + jobs if engine else 0.0)
    data = json.loads(report.read_text())
    published = sum(p["published"] for p in data["producers"].values())
    consumed = sum(c["received"] for c in data["consumers"].values())
    rate = sum(c["rate"] or 0 for c in data["consumers"].values())
    error = next((line for line in done.stderr.splitlines() if line.startswith("error")), "") if done.returncode else ""
    return {"workload": workload, "engine": "dask" if engine else "local", "exit": done.returncode, "error": error,
            "rate": rate, "published": published, "consumed": consumed,
            "cpu_s_per_million": cpu / max(published, 1) * 1e6, "wall_s": wall, "mqspec_cpu_s": mqspec_cpu,
            "parent_cpu_s": parent_cpu,
            "dask_worker_cpu_s": own, "jobs_cpu_s": jobs, "scheduler_cpu_s": cpu_of([scheduler]) - sched_before,
            "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workloads", default="a,b,c,d")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672")
    parser.add_argument("--mgmt", default="http://127.0.0.1:15672")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="run each mqspec process under cProfile (CPU time, cprofile_cpu.py), its stats here")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logs = Path(tempfile.mkdtemp(prefix="dask-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    vhost = f"dask-bench-{uuid.uuid4().hex[:6]}"
    auth = ("guest", "guest")
    httpx.put(f"{args.mgmt}/api/vhosts/{vhost}", auth=auth).raise_for_status()
    httpx.put(f"{args.mgmt}/api/permissions/{vhost}/guest", auth=auth,
              json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    try:
        with (logs / "scheduler.log").open("wb") as log:
            procs.append(subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                           "--no-dashboard"], stdout=log, stderr=log))
        time.sleep(3)
        for i in range(2):
            with (logs / f"w{i}.log").open("wb") as log:
                procs.append(subprocess.Popen([str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                                               "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"], stdout=log, stderr=log))
        time.sleep(6)
        workers = [p.pid for p in procs[1:]]
        engine = f"dask://127.0.0.1:{port}"
        url = f"{args.amqp}/{vhost}"
        runs: list[dict[str, Any]] = []
        for rnd in range(args.rounds):
            for workload in args.workloads.split(","):
                order = [None, engine] if rnd % 2 == 0 else [engine, None]
                for chosen in order:
                    label = f"{workload}-{'dask' if chosen else 'local'}-{rnd + 1}"
                    found = run_once(args, url, workload, chosen, workers, procs[0].pid, logs, label)
                    runs.append(found)
                    print(f"round {rnd + 1} {workload} {found['engine']:5} exit {found['exit']} {found['rate']:>9,.0f} msg/s "
                          f"{found['published']:>9,} msgs {found['cpu_s_per_million']:6.2f} CPU s per million "
                          f"(mqspec {found['mqspec_cpu_s']:.2f} s, its own {found['parent_cpu_s']:.2f} s, "
                          f"dask workers {found['dask_worker_cpu_s']:.2f} s, "
                          f"jobs {found['jobs_cpu_s']:.2f} s, scheduler {found['scheduler_cpu_s']:.2f} s, "
                          f"wall {found['wall_s']:.1f} s, load {found['load']:.1f}) {found['error']}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(runs, indent=2))
        failed = [r for r in runs if r["exit"]]
        print(f"\n{len(failed)} of {len(runs)} runs failed and are left out" if failed else "")
        print("| workload | local msg/s | dask msg/s | dask/local msg/s (range) | local CPU s/M msgs | dask CPU s/M msgs "
              "| dask/local CPU |")
        print("|---|---|---|---|---|---|---|")
        for workload in args.workloads.split(","):
            def med(eng: str, key: str, w: str = workload) -> float:
                return statistics.median(r[key] for r in runs if r["workload"] == w and r["engine"] == eng and not r["exit"])
            ratios = [d["rate"] / loc["rate"] for loc, d in _pairs(runs, workload) if loc["rate"] and not loc["exit"] + d["exit"]]
            cpu = [d["cpu_s_per_million"] / loc["cpu_s_per_million"] for loc, d in _pairs(runs, workload)
                   if not loc["exit"] + d["exit"]]
            print(f"| {workload} | {med('local', 'rate'):,.0f} | {med('dask', 'rate'):,.0f} | "
                  f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
                  f"{med('local', 'cpu_s_per_million'):.1f} | {med('dask', 'cpu_s_per_million'):.1f} | "
                  f"{statistics.median(cpu):.2f} |")
        print("\nCPU s per run by process (medians; in a local run the Dask processes are idle and not counted):")
        print("| workload | engine | mqspec process and its children | the mqspec process alone | Dask worker processes "
              "| fork server + jobs | scheduler | load |")
        print("|---|---|---|---|---|---|---|---|")
        for workload in args.workloads.split(","):
            for eng in ("local", "dask"):
                chosen = [r for r in runs if r["workload"] == workload and r["engine"] == eng and not r["exit"]]
                if chosen:
                    cells = " | ".join(f"{statistics.median(r[k] for r in chosen):.2f}" for k in
                                       ("mqspec_cpu_s", "parent_cpu_s", "dask_worker_cpu_s", "jobs_cpu_s", "scheduler_cpu_s", "load"))
                    print(f"| {workload} | {eng} | {cells} |")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(10)
        httpx.delete(f"{args.mgmt}/api/vhosts/{vhost}", auth=auth)


def _pairs(runs: list[dict[str, Any]], workload: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    local = [r for r in runs if r["workload"] == workload and r["engine"] == "local"]
    dask = [r for r in runs if r["workload"] == workload and r["engine"] == "dask"]
    return list(zip(local, dask, strict=False))


if __name__ == "__main__":
    sys.exit(main())
