"""Throughput runner: blocking vs select baselines vs `mqspec apply`.

For every round, every workload (a: no confirms / auto-ack, b: confirms 100 /
prefetch 200 / multi-ack 100) and every contender, in interleaved order, it
creates a fresh queue in a throwaway vhost, runs the contender, reads the
consumer's received rate, and deletes the queue. Prints a Markdown table of
medians.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import json
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from mgmt import DEFAULT_AMQP, DEFAULT_MGMT, Management, amqp_url, connect, describe, q

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONTENDERS = ("blocking", "select", "mqspec", "mqspec-dask", "previous", "perftest")
WORKLOADS = ("a", "b")
BAR = 0.9  # mqspec must reach this fraction of the select baseline
PERFTEST_EXCHANGE = "perftest-direct"
BUSY_LIMIT = 0.15  # CPU busy fraction between runs that suggests other load


class Ctx(NamedTuple):
    url: str  # amqp URL including the vhost
    queue: str
    workload: str
    seconds: float
    size: int
    measure: str  # baseline consumers: "drain" (like mqspec) or "window"
    tmp: Path


class Run(NamedTuple):
    contender: str
    workload: str
    round: int
    rate: float | None  # consumer received msg/s; None = n/a
    producer_rate: float | None
    note: str
    busy_before: float  # CPU busy fraction (all cores) in the second before
    other_connections: int  # broker connections open before the run started


class Unavailable(Exception):
    """The contender cannot run here (missing command, failure)."""


# --- contenders -----------------------------------------------------------

def _wait_ready(proc: subprocess.Popen[str], timeout: float) -> None:
    """Wait for the consumer's 'ready' line on stderr (best effort)."""
    assert proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if sel.select(0.1) and "ready" in proc.stderr.readline():
            break
    sel.close()


def _last_json(out: str) -> dict[str, Any]:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise Unavailable("no JSON result line")


def _finish(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise Unavailable("timed out") from None
    if proc.returncode != 0:
        tail = (err.strip().splitlines() or ["?"])[-1]
        raise Unavailable(f"exit {proc.returncode}: {tail[:120]}")
    return _last_json(out)


def _spawn(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def run_baseline(script: str, ctx: Ctx) -> tuple[float, float]:
    """Start the consumer, then the producer; return (consumer, producer) rates."""
    base = [sys.executable, str(HERE / script), "--url", ctx.url,
            "--queue", ctx.queue, "--seconds", str(ctx.seconds),
            "--size", str(ctx.size), "--workload", ctx.workload,
            "--measure", ctx.measure]
    consumer = _spawn([*base, "--role", "consumer"])
    _wait_ready(consumer, timeout=15)
    producer = _spawn([*base, "--role", "producer"])
    limit = ctx.seconds + 60
    prod = _finish(producer, limit)
    cons = _finish(consumer, limit)
    return float(cons["rate"]), float(prod["rate"])


def mqspec_command() -> str | None:
    """$MQSPEC_CMD, else the project's .venv/bin/mqspec, else PATH."""
    if override := os.environ.get("MQSPEC_CMD"):
        return shutil.which(override)
    local = ROOT / ".venv" / "bin" / "mqspec"
    return str(local) if local.exists() else shutil.which("mqspec")


def run_bounded(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a command in a process group of its own; past the timeout the whole group gets SIGTERM (mqspec then
    stops its workers and writes a partial report), and SIGKILL 10 s later. Raises TimeoutExpired after that."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.communicate(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run_command(argv: list[str], timeout: float) -> str:
    """Run an external contender; its stdout, or Unavailable on any failure."""
    try:
        proc = run_bounded(argv, timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(str(exc)) from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise Unavailable(f"exit {proc.returncode}: {tail[:120]}")
    return proc.stdout


@functools.cache
def _apply_takes_url(cmd: str) -> bool:
    return "--url" in run_command([cmd, "apply", "--help"], timeout=60)


def mqspec_apply_argv(cmd: str, args: list[str], url: str) -> list[str]:
    """`mqspec apply ARGS --url URL`, or `mqspec --url URL apply ARGS` when the
    CLI only has --url as a global option."""
    if _apply_takes_url(cmd):
        return [cmd, "apply", *args, "--url", url]
    return [cmd, "--url", url, "apply", *args]


def scenario_yaml(ctx: Ctx) -> str:
    producer = f"{{name: p, queue: {ctx.queue}, size: {ctx.size}"
    consumer = f"{{name: c, queue: {ctx.queue}"
    if ctx.workload == "b":
        producer += ", confirm: 100}"
        consumer += ", prefetch: 200, ack: manual, multi_ack: 100}"
    else:
        producer += "}"
        consumer += ", ack: auto}"
    return "\n".join([
        "version: 1",
        f"name: bench-{ctx.workload}",
        "topology:",
        "  queues:",
        f"    - {{name: {ctx.queue}, durable: false}}",
        "workload:",
        f"  duration: {ctx.seconds:g}s",
        "  producers:",
        f"    - {producer}",
        "  consumers:",
        f"    - {consumer}",
        "",
    ])


def previous_command() -> str | None:
    """$MQSPEC_PREVIOUS_CMD: the mqspec of another checkout (e.g. the previous main), run interleaved."""
    override = os.environ.get("MQSPEC_PREVIOUS_CMD")
    return shutil.which(override) if override else None


def dask_command() -> str | None:
    local = ROOT / ".venv" / "bin" / "dask"
    return str(local) if local.exists() else shutil.which("dask")


@functools.cache
def dask_engine() -> str:
    """$MQSPEC_DASK (dask://HOST:PORT), else a cluster started here on first use and stopped at exit:
    one `dask scheduler` and two `dask worker --nthreads 1 --no-nanny` on loopback, two jobs as the
    local engine runs two worker processes on this 2-core machine."""
    if given := os.environ.get("MQSPEC_DASK"):
        return given
    dask = dask_command()
    if dask is None:
        raise Unavailable("the dask command is not installed (pip install 'mqspec[distributed]')")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet)]
    atexit.register(_stop_all, procs)
    time.sleep(3)
    procs += [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                "--host", "127.0.0.1"], **quiet) for _ in range(2)]
    time.sleep(6)
    if any(p.poll() is not None for p in procs):
        raise Unavailable("the local Dask cluster did not start")
    return f"dask://127.0.0.1:{port}"


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def run_mqspec(ctx: Ctx, cmd: str | None = None, engine: str | None = None) -> tuple[float, float]:
    cmd = cmd or mqspec_command()
    if cmd is None:
        raise Unavailable("mqspec command not found")
    scenario = ctx.tmp / f"{ctx.queue}.yaml"
    report = ctx.tmp / f"{ctx.queue}.report.json"
    scenario.write_text(scenario_yaml(ctx))
    extra = ["--engine", engine] if engine else []
    argv = mqspec_apply_argv(cmd, [str(scenario), "--report", str(report), *extra],
                             ctx.url)
    run_command(argv, timeout=ctx.seconds + 120)
    try:
        data = json.loads(report.read_text())
        return (float(data["consumers"]["c"]["rate"]),
                float(data["producers"]["p"]["rate"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Unavailable(f"unreadable report: {exc!r}") from None


def perftest_command() -> list[str] | None:
    """RabbitMQ PerfTest, if installed (``perf-test`` script or a jar)."""
    if script := shutil.which("perf-test") or shutil.which("rabbitmq-perf-test"):
        return [script]
    jar = os.environ.get("PERFTEST_JAR")
    candidates = [Path(jar)] if jar else []
    for folder in (ROOT, Path.home(), Path("/opt"), Path("/usr/share/java")):
        candidates += sorted(folder.glob("perf-test*.jar"))
    found = [c for c in candidates if c.is_file()]
    java = shutil.which("java")
    return [java, "-jar", str(found[0])] if found and java else None


def run_perftest(ctx: Ctx) -> tuple[float, float]:
    """Untested here (PerfTest is not installed on the reference machine)."""
    cmd = perftest_command()
    if cmd is None:
        raise Unavailable("PerfTest not found (set PERFTEST_JAR)")
    args = ["--uri", ctx.url, "--producers", "1", "--consumers", "1",
            "--queue", ctx.queue, "--predeclared", "--exchange", PERFTEST_EXCHANGE,
            "--routing-key", ctx.queue, "--size", str(ctx.size),
            "--time", str(int(ctx.seconds))]
    args += ["--autoack"] if ctx.workload == "a" else [
        "--confirm", "100", "--qos", "200", "--multi-ack-every", "100"]
    out = run_command([*cmd, *args], timeout=ctx.seconds + 120)
    return _perftest_rate(out, "receiving"), _perftest_rate(out, "sending")


def _perftest_rate(out: str, kind: str) -> float:
    for line in out.splitlines():
        if f"{kind} rate avg" in line:
            part = line.split(f"{kind} rate avg:")[1].split()[0]
            return float(part.replace(",", ""))
    raise Unavailable(f"no '{kind} rate avg' in PerfTest output")


RUNNERS: dict[str, Callable[[Ctx], tuple[float, float]]] = {
    "blocking": lambda ctx: run_baseline("baseline_blocking.py", ctx),
    "select": lambda ctx: run_baseline("baseline_select.py", ctx),
    "mqspec": run_mqspec,
    "mqspec-dask": lambda ctx: run_mqspec(ctx, engine=dask_engine()),
    "previous": lambda ctx: run_mqspec(ctx, previous_command()),
    "perftest": run_perftest,
}


# --- orchestration --------------------------------------------------------

def _missing(contender: str) -> str:
    """Why an external contender cannot run here ('' when it can)."""
    if contender == "mqspec" and mqspec_command() is None:
        return "mqspec command not found"
    if contender == "mqspec-dask" and not os.environ.get("MQSPEC_DASK") and dask_command() is None:
        return "the dask command is not installed (pip install 'mqspec[distributed]')"
    if contender == "previous" and previous_command() is None:
        return "set MQSPEC_PREVIOUS_CMD to another checkout's mqspec"
    if contender == "perftest" and perftest_command() is None:
        return "PerfTest not found (set PERFTEST_JAR)"
    return ""


def _prepare(mgmt: Management, vhost: str, ctx: Ctx, contender: str) -> None:
    mgmt.create_queue(vhost, ctx.queue)
    if contender == "perftest" and perftest_command():
        mgmt.put(f"/api/exchanges/{q(vhost)}/{PERFTEST_EXCHANGE}",
                 {"type": "direct", "durable": False})
        mgmt.post(f"/api/bindings/{q(vhost)}/e/{PERFTEST_EXCHANGE}"
                  f"/q/{q(ctx.queue)}", {"routing_key": ctx.queue})


def run_one(mgmt: Management, vhost: str, ctx: Ctx, contender: str,
            rnd: int, max_wait: float) -> Run:
    if missing := _missing(contender):
        return Run(contender, ctx.workload, rnd, None, None, missing, 0.0, 0)
    busy = 0.0
    try:
        quiet = wait_for_quiet(mgmt, max_wait)
        busy = quiet[0]
        _prepare(mgmt, vhost, ctx, contender)
        rate, prod = RUNNERS[contender](ctx)
        mgmt.delete_queue(vhost, ctx.queue)
    except (Unavailable, subprocess.TimeoutExpired, httpx.HTTPError) as exc:
        best_effort(mgmt.delete_queue, vhost, ctx.queue)
        return Run(contender, ctx.workload, rnd, None, None, str(exc), busy, -1)
    return Run(contender, ctx.workload, rnd, rate, prod, "", *quiet)


def best_effort(fn: Callable[..., None], *args: str) -> None:
    """Best-effort cleanup: the broker may have gone away (restart, reset)."""
    try:
        fn(*args)
    except httpx.HTTPError as exc:
        print(f"cleanup failed: {exc}", file=sys.stderr)


def wait_for_quiet(mgmt: Management, max_wait: float) -> tuple[float, int]:
    """Wait (up to max_wait s) for idle CPUs and no other broker connections;
    return the last readings (busy fraction, connection count)."""
    deadline = time.monotonic() + max_wait
    while True:
        quiet = (cpu_busy(1.0), len(mgmt.get("/api/connections")))
        if (quiet[0] <= BUSY_LIMIT and not quiet[1]) or time.monotonic() > deadline:
            return quiet


def cpu_busy(interval: float) -> float:
    """Fraction of all CPUs busy during ``interval`` (Linux /proc/stat)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except OSError:
        time.sleep(interval)
        return 0.0
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def _order(contenders: list[str], rnd: int) -> list[str]:
    """Rotate the start each round so no contender always goes first."""
    k = rnd % len(contenders)
    return contenders[k:] + contenders[:k]


def run_all(args: argparse.Namespace, mgmt: Management, vhost: str,
            tmp: Path) -> list[Run]:
    url = amqp_url(args.url, vhost)
    runs: list[Run] = []
    for rnd in range(args.rounds):
        for workload in WORKLOADS:
            for contender in _order(args.only, rnd):
                queue = f"bench-{contender}-{workload}-{rnd}"
                ctx = Ctx(url, queue, workload, args.seconds, args.size,
                          args.measure, tmp)
                run = run_one(mgmt, vhost, ctx, contender, rnd, args.max_wait)
                if run.rate is None and _broker_trouble(run.note):
                    _progress(run, "retrying once the broker is back")
                    _await_broker(mgmt, vhost)
                    run = run_one(mgmt, vhost, ctx, contender, rnd, args.max_wait)
                runs.append(run)
                _progress(run, "")
    return runs


BROKER_TROUBLE = ("Connection refused", "CONNECTION_FORCED", "StreamLost",
                  "Connection reset", "ConnectionReset", "NOT_ALLOWED", "Not Found")


def _broker_trouble(note: str) -> bool:
    """Did the run fail because the broker went away (restart, reset)?"""
    return any(marker in note for marker in BROKER_TROUBLE)


def _await_broker(mgmt: Management, vhost: str, timeout: float = 180) -> None:
    """Wait for the management API, and re-create the vhost if a reset lost it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            names = {v["name"] for v in mgmt.get("/api/vhosts")}
            if vhost not in names:
                mgmt.create_vhost(vhost, exact=True)
            return
        except httpx.HTTPError:
            time.sleep(2)


def _progress(run: Run, extra: str) -> None:
    shown = f"{run.rate:,.0f} msg/s" if run.rate else f"n/a ({run.note})"
    print(f"round {run.round + 1} workload {run.workload} {run.contender:9} "
          f"{shown}  [cpu busy before {run.busy_before:.0%}, "
          f"{run.other_connections} other connections] {extra}",
          file=sys.stderr, flush=True)


# --- report ---------------------------------------------------------------

def medians(runs: list[Run], field: str = "rate"
            ) -> dict[tuple[str, str], float | None]:
    out: dict[tuple[str, str], float | None] = {}
    for run in runs:
        out.setdefault((run.contender, run.workload), None)
    for key in out:
        rates = [v for r in runs if (r.contender, r.workload) == key
                 and (v := getattr(r, field)) is not None]
        out[key] = statistics.median(rates) if rates else None
    return out


def producer_line(runs: list[Run], contenders: list[str]) -> str:
    """Publish rates: in workload a a producer faster than its consumer
    grows a backlog and competes with the consumer for the queue."""
    med = medians(runs, "producer_rate")
    parts = [f"{c} {' / '.join(_num(med.get((c, w))) for w in WORKLOADS)}"
             for c in contenders]
    return "Producer publish rate, median msg/s (a / b): " + "; ".join(parts) + "."


def _num(x: float | None) -> str:
    return f"{x:,.0f}" if x else "n/a"


def _cell(runs: list[Run], contender: str, workload: str,
          med: float | None) -> str:
    if med is None:
        notes = {r.note for r in runs
                 if (r.contender, r.workload) == (contender, workload) and r.note}
        return "n/a" + (f" ({min(notes)})" if notes else "")
    rates = [r.rate for r in runs if r.contender == contender
             and r.workload == workload and r.rate is not None]
    spread = f" ({min(rates):,.0f}–{max(rates):,.0f})" if len(rates) > 1 else ""
    return f"{med:,.0f}{spread}"


def _ratio(num: float | None, den: float | None) -> str:
    return f"{num / den:.2f}" if num and den else "n/a"


def table(runs: list[Run], contenders: list[str]) -> str:
    med = medians(runs)
    head = ("| contender | workload a msg/s | workload b msg/s "
            "| ÷ select (a / b) | ÷ blocking (a / b) |")
    lines = [head, "|---|---:|---:|---:|---:|"]
    for c in contenders:
        a, b = med.get((c, "a")), med.get((c, "b"))
        ratios = [" / ".join(_ratio(x, med.get((base, w)))
                             for x, w in ((a, "a"), (b, "b")))
                  for base in ("select", "blocking")]
        lines.append(f"| {c} | {_cell(runs, c, 'a', a)} | "
                     f"{_cell(runs, c, 'b', b)} | {ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


def disturbances(runs: list[Run]) -> str:
    """Warn when runs shared the machine or the broker with something else."""
    busy = [r for r in runs if r.rate is not None and
            (r.other_connections or r.busy_before > BUSY_LIMIT)]
    if not busy:
        return ""
    return (f"Warning: {len(busy)} of {len(runs)} runs started with other broker "
            f"connections open or the CPUs over {BUSY_LIMIT:.0%} busy while idle; "
            "numbers may be disturbed (see --json for per-run detail).")


def verdict(runs: list[Run]) -> str:
    med = medians(runs)
    parts = []
    for w in WORKLOADS:
        m, s = med.get(("mqspec", w)), med.get(("select", w))
        if m and s:
            mark = "meets" if m / s >= BAR else "misses"
            parts.append(f"workload {w}: mqspec/select = {m / s:.2f} "
                         f"({mark} the {BAR:.1f} bar)")
        d = med.get(("mqspec-dask", w))
        if m and d:
            mark = "within" if d / m >= BAR else "beyond"
            parts.append(f"workload {w}: mqspec-dask/mqspec = {d / m:.2f} ({mark} 10%)")
    return "; ".join(parts)


# --- main -----------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--only", default=",".join(CONTENDERS),
                   help="comma separated subset of " + ",".join(CONTENDERS))
    p.add_argument("--url", default=DEFAULT_AMQP, help="AMQP URL without vhost")
    p.add_argument("--mgmt", default=DEFAULT_MGMT)
    p.add_argument("--user", default="guest")
    p.add_argument("--password", default="guest")
    p.add_argument("--measure", choices=["drain", "window"], default="drain",
                   help="baseline consumers: drain the queue and rate over first.."
                        "last delivery, as mqspec reports (default), or count "
                        "for --seconds from the first delivery")
    p.add_argument("--json", type=Path, help="save raw results here")
    p.add_argument("--max-wait", type=float, default=60.0,
                   help="seconds to wait for idle CPUs and no other broker "
                        "connections before each run")
    args = p.parse_args()
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(args.only) - set(CONTENDERS)
    if unknown:
        p.error(f"unknown contender(s): {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    args = parse_args()
    mgmt, info = connect(args.mgmt, args.user, args.password)
    vhost = mgmt.create_vhost("bench-workload")
    try:
        with tempfile.TemporaryDirectory(prefix="mqspec-bench-") as tmp:
            runs = run_all(args, mgmt, vhost, Path(tmp))
    finally:
        best_effort(mgmt.delete_vhost, vhost)
    print(f"## Throughput, consumer msg/s ({args.measure}), median of "
          f"{args.rounds} round(s), {args.seconds:g}s each, {args.size}-byte "
          "bodies\n")
    print(table(runs, args.only))
    for line in (producer_line(runs, args.only), verdict(runs),
                 disturbances(runs)):
        if line:
            print(f"\n{line}")
    print(f"\n{describe(info)}")
    if args.json:
        raw = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
               "runs": [r._asdict() for r in runs]}
        args.json.write_text(json.dumps(raw, indent=2) + "\n")


if __name__ == "__main__":
    main()
