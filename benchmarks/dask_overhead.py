"""The Dask engine against the local engine, interleaved, with the client's CPU per message.

Starts a `dask scheduler` and two `dask worker --nthreads 1 --no-nanny` processes on loopback (two
processes, as the local engine forks two on this 2-core machine), then for every round and every
workload runs `mqspec apply` once locally and once with `--engine dask://...`, rotating which
goes first; `--baseline CHECKOUT` adds a third contender, 'dask-base': that checkout's mqspec (its
.venv/bin) on a Dask cluster of its own started from the same venv, so an older engine is measured in
the same rounds. For each run it reports the consumers' msg/s and the client CPU seconds per million
messages (each message published once and consumed once), and the CPU by process (the mqspec process
alone, sampled from /proc every 0.1 s; the Dask workers themselves; their fork servers and jobs; the
scheduler, reported but never counted):

  local: resource.getrusage(RUSAGE_CHILDREN) around the mqspec process (it and its reaped workers);
  dask:  the same for the mqspec process, plus utime+stime+cutime+cstime (/proc/PID/stat) of the Dask
         worker processes and their descendants (the fork server and the jobs' processes it reaps).

Workloads: a 100 B no confirms, auto-ack; b 100 B confirms 100, prefetch 200, multi-ack 100;
c 1 KiB persistent on a durable queue, confirms 100, 4 consumers; d 4 producers x 4 consumers x 4 queues.

    .venv/bin/python benchmarks/dask_overhead.py --rounds 3 --seconds 8
    .venv/bin/python benchmarks/dask_overhead.py --rounds 3 --seconds 5 --workloads a,b --baseline /path/to/old
    .venv/bin/python benchmarks/dask_overhead.py --rounds 1 --workloads a --profile /tmp/prof   # cProfile, CPU clock
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
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

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


def run_once(args: argparse.Namespace, url: str, workload: str, contender: Contender, tmp: Path,
             label: str) -> dict[str, Any]:
    engine, workers, scheduler = contender.engine, contender.workers, contender.scheduler
    path = tmp / f"{workload}.yaml"
    path.write_text(scenario(workload, args.seconds))
    report = tmp / f"{workload}.json"
    argv = [str(contender.bin / "mqspec"), "--url", url, "apply", str(path), "--report", str(report), "--allow-replace", "--force"]
    if engine:
        argv += ["--engine", engine]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        argv = [str(contender.bin / "python"), str(ROOT / "benchmarks" / "cprofile_cpu.py"), str(args.profile / f"{label}.prof"),
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
    return {"workload": workload, "engine": contender.name, "exit": done.returncode, "error": error,
            "rate": rate, "published": published, "consumed": consumed,
            "cpu_s_per_million": cpu / max(published, 1) * 1e6, "wall_s": wall, "mqspec_cpu_s": mqspec_cpu,
            "parent_cpu_s": parent_cpu,
            "dask_worker_cpu_s": own, "jobs_cpu_s": jobs, "scheduler_cpu_s": cpu_of([scheduler]) - sched_before,
            "load": os.getloadavg()[0]}


class Contender(NamedTuple):
    name: str
    bin: Path                 # the venv's bin: its mqspec (and, for Dask, its dask)
    engine: str | None        # None: the local engine
    workers: list[int]        # the Dask worker processes' pids
    scheduler: int


def start_cluster(bin_dir: Path, logs: Path, tag: str, procs: list[subprocess.Popen[bytes]]) -> tuple[str, list[int], int]:
    """A scheduler and two `--nthreads 1 --no-nanny` workers from bin_dir on loopback: (engine, worker pids, scheduler pid)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (logs / f"{tag}-scheduler.log").open("wb") as log:
        scheduler = subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                      "--no-dashboard"], stdout=log, stderr=log)
    procs.append(scheduler)
    time.sleep(3)
    workers = []
    for i in range(2):
        with (logs / f"{tag}-w{i}.log").open("wb") as log:
            worker = subprocess.Popen([str(bin_dir / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                                       "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"], stdout=log, stderr=log)
        procs.append(worker)
        workers.append(worker.pid)
    return f"dask://127.0.0.1:{port}", workers, scheduler.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workloads", default="a,b,c,d")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672")
    parser.add_argument("--mgmt", default="http://127.0.0.1:15672")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="run each mqspec process under cProfile (CPU time, cprofile_cpu.py), its stats here")
    parser.add_argument("--baseline", type=Path, help="another checkout with its own .venv (an older commit): its Dask "
                        "engine runs as a third contender, 'dask-base', on a Dask cluster of its own")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="dask-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    vhost = f"dask-bench-{uuid.uuid4().hex[:6]}"
    auth = ("guest", "guest")
    httpx.put(f"{args.mgmt}/api/vhosts/{vhost}", auth=auth).raise_for_status()
    httpx.put(f"{args.mgmt}/api/permissions/{vhost}/guest", auth=auth,
              json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    try:
        engine, workers, scheduler = start_cluster(BIN, logs, "dask", procs)
        contenders = [Contender("local", BIN, None, workers, scheduler), Contender("dask", BIN, engine, workers, scheduler)]
        if args.baseline:
            base_bin = args.baseline.resolve() / ".venv" / "bin"
            base_engine, base_workers, base_scheduler = start_cluster(base_bin, logs, "base", procs)
            contenders.append(Contender("dask-base", base_bin, base_engine, base_workers, base_scheduler))
        time.sleep(6)
        url = f"{args.amqp}/{vhost}"
        runs: list[dict[str, Any]] = []
        for rnd in range(args.rounds):
            for workload in args.workloads.split(","):
                shift = rnd % len(contenders)
                for contender in contenders[shift:] + contenders[:shift]:
                    found = run_once(args, url, workload, contender, logs, f"{workload}-{contender.name}-{rnd + 1}")
                    runs.append(found)
                    print(f"round {rnd + 1} {workload} {found['engine']:9} exit {found['exit']} {found['rate']:>9,.0f} msg/s "
                          f"{found['published']:>9,} msgs {found['cpu_s_per_million']:6.2f} CPU s per million "
                          f"(mqspec {found['mqspec_cpu_s']:.2f} s, its own {found['parent_cpu_s']:.2f} s, "
                          f"dask workers {found['dask_worker_cpu_s']:.2f} s, "
                          f"jobs {found['jobs_cpu_s']:.2f} s, scheduler {found['scheduler_cpu_s']:.2f} s, "
                          f"wall {found['wall_s']:.1f} s, load {found['load']:.1f}) {found['error']}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(runs, indent=2))
        summary(runs, args.workloads.split(","), [c.name for c in contenders])
    finally:
        try:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:   # a Dask worker whose scheduler went first can hang in its close
                    p.kill()
                    p.wait(10)
        finally:
            httpx.delete(f"{args.mgmt}/api/vhosts/{vhost}", auth=auth)


def summary(runs: list[dict[str, Any]], workloads: list[str], engines: list[str]) -> None:
    failed = [r for r in runs if r["exit"]]
    print(f"\n{len(failed)} of {len(runs)} runs failed and are left out" if failed else "")
    print("| workload | engine | msg/s | /local msg/s (range) | CPU s/M msgs | /local CPU (range) |")
    print("|---|---|---|---|---|---|")
    for workload in workloads:
        for eng in engines:
            chosen = [r for r in runs if r["workload"] == workload and r["engine"] == eng and not r["exit"]]
            if not chosen:
                continue
            cells = [f"{statistics.median(r['rate'] for r in chosen):,.0f}", "",
                     f"{statistics.median(r['cpu_s_per_million'] for r in chosen):.1f}", ""]
            pairs = [(loc, other) for loc, other in _pairs(runs, workload, eng) if not loc["exit"] + other["exit"]]
            if eng != "local" and pairs:
                rates = [o["rate"] / loc["rate"] for loc, o in pairs if loc["rate"]]
                cpu = [o["cpu_s_per_million"] / loc["cpu_s_per_million"] for loc, o in pairs]
                cells[1] = f"{statistics.median(rates):.2f} ({min(rates):.2f}-{max(rates):.2f})"
                cells[3] = f"{statistics.median(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f})"
            print(f"| {workload} | {eng} | {' | '.join(cells)} |")
    print("\nCPU s per run by process (medians; in a local run the Dask processes are idle and not counted):")
    print("| workload | engine | mqspec process and its children | the mqspec process alone | Dask worker processes "
          "| fork server + jobs | scheduler | wall s | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for workload in workloads:
        for eng in engines:
            chosen = [r for r in runs if r["workload"] == workload and r["engine"] == eng and not r["exit"]]
            if chosen:
                row = " | ".join(f"{statistics.median(r[k] for r in chosen):.2f}" for k in
                                 ("mqspec_cpu_s", "parent_cpu_s", "dask_worker_cpu_s", "jobs_cpu_s", "scheduler_cpu_s",
                                  "wall_s", "load"))
                print(f"| {workload} | {eng} | {row} |")


def _pairs(runs: list[dict[str, Any]], workload: str, engine: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each round's local run with the same round's run of `engine` (the runs of a round are back to back)."""
    local = [r for r in runs if r["workload"] == workload and r["engine"] == "local"]
    other = [r for r in runs if r["workload"] == workload and r["engine"] == engine]
    return list(zip(local, other, strict=False))


if __name__ == "__main__":
    main()
