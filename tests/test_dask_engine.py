"""The workload on a real Dask cluster (a `dask scheduler` and `dask worker` processes on loopback)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from distributed import Client

from mqspec.broker.management import Management, q
from mqspec.core import model
from mqspec.core.result import Latency
from mqspec.workload import dask_engine
from mqspec.workload.engine import assign
from mqspec.workload.messages import Fatal, Final, Progress, Snapshot, Tallies
from tests.conftest import ROOT, mqspec, until

pytestmark = pytest.mark.slow

BIN = ROOT / ".venv" / "bin"


class Cluster(NamedTuple):
    engine: str           # dask://127.0.0.1:PORT
    address: str          # tcp://127.0.0.1:PORT
    logs: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_worker(cluster: Cluster, name: str) -> subprocess.Popen[bytes]:
    with (cluster.logs / f"{name}.log").open("wb") as log:
        return subprocess.Popen([str(BIN / "dask"), "worker", cluster.address, "--nthreads", "2", "--no-nanny",
                                 "--no-dashboard", "--name", name, "--host", "127.0.0.1"], stdout=log, stderr=log)


def workers_of(address: str) -> dict[str, Any]:
    with Client(address, timeout=10, set_as_default=False) as client:
        return dict(client.scheduler_info(n_workers=-1)["workers"])


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    port = _free_port()
    logs = tmp_path_factory.mktemp("dask")
    found = Cluster(f"dask://127.0.0.1:{port}", f"tcp://127.0.0.1:{port}", logs)
    with (logs / "scheduler.log").open("wb") as log:
        scheduler = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                      "--no-dashboard"], stdout=log, stderr=log)
    workers = [start_worker(found, f"w{i}") for i in range(2)]
    try:
        until(lambda: _count(found.address) >= 2, 60, "two Dask workers", interval=0.5)
        yield found
    finally:
        for process in [*workers, scheduler]:
            process.terminate()
        for process in [*workers, scheduler]:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:   # a Dask worker whose scheduler went first can hang in its close
                process.kill()
                process.wait()


def _count(address: str) -> int:
    try:
        return len(workers_of(address))
    except OSError:
        return 0


def descendants_of(pid: int) -> dict[int, str]:
    """pid -> name (/proc/PID/comm) of every live descendant process of `pid`."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), stat.split("(", 1)[1].rsplit(")", 1)[0])
    found: dict[int, str] = {}
    level = {pid}
    while level:
        level = {child for child, (parent, _) in parents.items() if parent in level and child not in found}
        found.update({child: parents[child][1] for child in level})
    return found


def apply(tmp_path: Path, url: str, text: str, *extra: str) -> tuple[Any, dict[str, Any]]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("version: 1\n" + text)
    report = tmp_path / "report.json"
    report.unlink(missing_ok=True)
    result = mqspec("--url", url, "apply", str(scenario), "--report", str(report), *extra)
    return result, json.loads(report.read_text()) if report.exists() else {}


TWO_QUEUES = """
name: dask-two-queues
topology:
  queues: [{name: q1, durable: false}, {name: q2, durable: false}]
workload:
  producers:
    - {name: p1, queue: q1, messages: 1500, confirm: 50, instances: 2}
    - {name: p2, queue: q2, messages: 1500, confirm: 50, instances: 2}
  consumers:
    - {name: c1, queue: q1, instances: 2, prefetch: 100, multi_ack: 10}
    - {name: c2, queue: q2, instances: 2, prefetch: 100, multi_ack: 10}
expect:
  - {no_loss: true}
  - {consumer: c1, received: 3000}
  - {consumer: c2, received: 3000}
"""


def _counts(report: dict[str, Any]) -> dict[str, Any]:
    return {"producers": {n: {k: p[k] for k in ("published", "confirmed", "nacked", "returned")}
                          for n, p in report["producers"].items()},
            "consumers": {n: {k: c[k] for k in ("received", "acked", "duplicates", "lost")}
                          for n, c in report["consumers"].items()},
            "messages": {k: report["messages"][k] for k in ("expected", "lost", "duplicates")}}


def test_four_producers_and_four_consumers_on_dask_count_what_the_broker_and_the_local_engine_count(
        cluster: Cluster, tmp_path: Path, url: str, vhost: str, management: Management) -> None:
    result, report = apply(tmp_path, url, TWO_QUEUES, "--engine", cluster.engine)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert f"note: engine: Dask scheduler {cluster.address}, 4 jobs on 2 Dask workers" in result.stdout
    assert "note: clocks: the 2 Dask workers differ by at most " in result.stdout

    def stats(queue: str) -> tuple[int, int]:
        found = management.get(f"/queues/{q(vhost)}/{q(queue)}", "queue").get("message_stats", {})
        return int(found.get("publish", 0)), int(found.get("ack", 0))

    until(lambda: stats("q1") == (3000, 3000) and stats("q2") == (3000, 3000), 30,
          "the broker's statistics to count 3000 published and acked on each queue", interval=0.5)
    dask_counts = _counts(report)
    assert dask_counts["producers"]["p1"]["confirmed"] == 3000
    assert dask_counts["consumers"]["c1"]["received"] + dask_counts["consumers"]["c2"]["received"] == 6000

    local, local_report = apply(tmp_path, url, TWO_QUEUES)
    assert local.exit_code == 0, local.output
    assert _counts(local_report) == dask_counts


def test_the_engine_can_come_from_the_environment_or_the_file(cluster: Cluster, tmp_path: Path, url: str) -> None:
    small = TWO_QUEUES.replace("messages: 1500", "messages: 100").replace("received: 3000", "received: 200")
    result, _ = apply(tmp_path, url, small.replace("workload:\n", f"workload:\n  engine: {cluster.engine}\n  workers: 2\n", 1))
    assert result.exit_code == 0, result.output
    assert f"note: engine: Dask scheduler {cluster.address}, 2 jobs on 2 Dask workers" in result.stdout
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("version: 1\n" + small)
    env = mqspec("--url", url, "apply", str(scenario), "--workers", "3", env={"MQSPEC_ENGINE": cluster.engine})
    assert env.exit_code == 0, env.output
    assert f"note: engine: Dask scheduler {cluster.address}, 3 jobs on 2 Dask workers" in env.stdout


def test_a_close_connections_fault_during_a_dask_run_loses_no_confirmed_message(cluster: Cluster, tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: dask-flaky
topology:
  queues: [{name: orders, durable: true}]
workload:
  producers: [{name: p, queue: orders, messages: 1200, rate: 800, confirm: 20, persistent: true}]
  consumers: [{name: c, queue: orders, prefetch: 50, multi_ack: 5, processing_time: 1ms}]
  faults:
    - {action: close_connections, at: 500ms}
expect:
  - {producer: p, confirmed: 1200}
  - {no_loss: true}
""", "--engine", cluster.engine)
    assert result.exit_code == 0, result.output
    assert report["producers"]["p"]["reconnects"] == 1
    assert report["consumers"]["c"]["reconnects"] == 1
    assert report["messages"]["lost"] == 0


def test_a_dask_worker_killed_mid_run_fails_the_run_naming_its_lost_instances(
        cluster: Cluster, tmp_path: Path, url: str, vhost: str, management: Management) -> None:
    victim = start_worker(cluster, "victim")
    try:
        until(lambda: _count(cluster.address) >= 3, 30, "the victim Dask worker", interval=0.3)
        address = next(a for a, info in workers_of(cluster.address).items() if info.get("name") == "victim")
        scenario = tmp_path / "long.yaml"
        scenario.write_text("version: 1\n" + """
name: dask-victim
topology:
  queues: [{name: q1, durable: false}, {name: q2, durable: false}]
workload:
  workers: 6
  producers:
    - {name: p1, queue: q1, messages: 4000, rate: 400, instances: 2}
    - {name: p2, queue: q2, messages: 4000, rate: 400, instances: 2}
  consumers:
    - {name: c1, queue: q1, instances: 2}
    - {name: c2, queue: q2, instances: 2}
expect:
  - {no_loss: true}
""")
        run = subprocess.Popen([str(BIN / "mqspec"), "--url", url, "apply", str(scenario), "--engine", cluster.engine],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        until(lambda: len(management.get(f"/vhosts/{q(vhost)}/connections", "connections")) >= 8 or run.poll() is not None, 60,
              "the run's eight connections", interval=0.2)
        time.sleep(1.0)
        jobs = descendants_of(victim.pid)
        victim.send_signal(signal.SIGKILL)
        out, err = run.communicate(timeout=60)
    finally:
        victim.kill()
        victim.wait()
    assert any(name.startswith("mqspec-worker-") for name in jobs.values()), jobs
    until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in jobs), 10,
          "the killed Dask worker's job processes to die with it", interval=0.2)
    assert run.returncode == 1, out + err
    assert "Traceback" not in out + err
    error = next(line for line in err.splitlines() if line.startswith("error: "))
    assert error.startswith("error: workload job ")
    assert f"was lost: its Dask worker {address} died; its instances' counts are unknown: " in error
    lost = error.split("counts are unknown: ")[1].split(", ")
    assert lost and all(label.split(" '")[0] in ("producer", "consumer") for label in lost)
    for label in lost:
        assert f"unknown: the counts of {label} (its Dask worker {address} died)" in out


def test_a_job_process_killed_mid_run_fails_the_run_naming_its_lost_instances(
        cluster: Cluster, tmp_path: Path, url: str, vhost: str, management: Management) -> None:
    scenario = tmp_path / "long.yaml"
    scenario.write_text("version: 1\n" + """
name: dask-job-killed
topology:
  queues: [{name: q1, durable: false}]
workload:
  workers: 2
  producers: [{name: p, queue: q1, messages: 4000, rate: 400}]
  consumers: [{name: c, queue: q1}]
""")
    with Client(cluster.address, timeout=10, set_as_default=False) as client:
        hosts = client.run(os.getpid)
    run = subprocess.Popen([str(BIN / "mqspec"), "--url", url, "apply", str(scenario), "--engine", cluster.engine],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    until(lambda: len(management.get(f"/vhosts/{q(vhost)}/connections", "connections")) >= 2 or run.poll() is not None, 60,
          "the run's two connections", interval=0.2)
    time.sleep(1.0)
    jobs = {pid: name for host in hosts.values() for pid, name in descendants_of(host).items()
            if name.startswith("mqspec-worker-")}
    victim = min(jobs)
    os.kill(victim, signal.SIGKILL)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1, out + err
    assert "Traceback" not in out + err
    error = next(line for line in err.splitlines() if line.startswith("error: "))
    assert f"was lost: its Dask task failed: RuntimeError: its worker process (pid {victim}) ended with exit code -9 " \
           "before reporting its counts; its instances' counts are unknown: " in error
    assert error.split("counts are unknown: ")[1] in ("producer 'p' instance 0", "consumer 'c' instance 0")


def test_progress_coalesced_by_the_relay_keeps_every_latency_count() -> None:
    def progress(latency: dict[int, int] | None) -> Progress:
        return Progress(0, Snapshot(latency=latency))

    merged = dask_engine._merged(dask_engine._merged(progress({10: 2, 20: 1}), progress(None)), progress({10: 1, 30: 4}))
    assert merged.snapshot.latency == {10: 3, 20: 1, 30: 4}
    assert dask_engine._merged(None, progress({5: 1})) == progress({5: 1})


def test_a_job_started_a_second_time_refuses_to_run(cluster: Cluster, url: str) -> None:
    """Dask reruns the task of a lost worker elsewhere; the job's one claim token makes the rerun refuse."""
    workload = model.Workload(producers=(model.Producer("p", queue="q", messages=1),))
    settings = model.BrokerSettings(urls=(url,))
    job = assign(workload, settings, model.Topology(), 1, "test")[0]
    token = f"mqspec-test-{os.getpid()}-{time.monotonic_ns()}"
    with Client(cluster.address, timeout=10, set_as_default=False) as client:
        final = client.submit(dask_engine.run_job, job, token, pure=False).result(timeout=30)
        assert final == Final(0, Tallies())
        [sent] = [pickle.loads(item) for _at, item in client.get_events(f"{token}-out")]   # the scheduler keeps a topic's events
    assert sent == [Fatal(0, 1, "workload job 0 was started a second time (its first Dask worker was lost); it refused "
                                "to run again, which would publish its messages twice")]


def test_an_unknown_engine_is_refused_before_the_broker_is_touched(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("version: 1\nname: s\ntopology:\n  queues: [{name: q}]\nworkload:\n"
                        "  producers: [{name: p, queue: q, messages: 1}]\n")
    result = mqspec("--url", "amqp://guest:guest@127.0.0.1:1/nowhere", "apply", str(scenario), "--engine", "ray://x:1")
    assert result.exit_code == 2
    assert "error: unknown engine 'ray://x:1': use 'local' or 'dask://HOST:PORT' (a Dask scheduler)" in result.stderr


def test_an_engine_in_the_file_must_be_local_or_a_dask_address(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("version: 1\nname: s\nworkload:\n  engine: ray://x\n")
    result = mqspec("validate", str(scenario))
    assert result.exit_code == 2
    assert f"{scenario}:4:3: $.workload.engine: 'ray://x' does not match" in result.output
    assert "$.workload.engine" in result.output


def test_the_cli_does_not_import_dask_unless_asked() -> None:
    code = "import sys, mqspec.cli, mqspec.runner; print('distributed' in sys.modules or 'dask' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


def test_clock_offsets_beyond_a_millisecond_or_a_tenth_of_the_median_latency_are_called_out() -> None:
    close = [dask_engine.Offset("a", 0.0, 0.2), dask_engine.Offset("b", 0.3, 0.1)]
    far = [dask_engine.Offset("a", -1.0, 0.2), dask_engine.Offset("b", 1.5, 0.1)]
    latency = Latency(p50=20.0, p95=30.0, p99=40.0, max=50.0, count=10)
    assert dask_engine.clock_notes(close, latency) == [
        "clocks: the 2 Dask workers differ by at most 0.300 ms (measured at start through the scheduler, each to within 0.200 ms)"]
    assert dask_engine.clock_notes(far, latency)[1] == (
        "latency figures compare the clocks of different hosts, which differ by 2.500 ms, more than 1.000 ms (1 ms): "
        "they do not mean much; synchronise the hosts' clocks (chrony, PTP)")
    fast = Latency(p50=2.0, p95=3.0, p99=4.0, max=5.0, count=10)
    assert "10% of the median latency" in dask_engine.clock_notes(close, fast)[1]


def test_the_parent_asks_which_workers_are_alive_when_a_running_job_falls_silent_and_every_five_seconds() -> None:
    heard = {0: 100.0, 1: 100.0}
    assert not dask_engine.liveness_due(100.4, heard, [0, 1], checked_at=100.0)   # both heard 0.4 s ago
    assert dask_engine.liveness_due(100.6, heard, [0, 1], checked_at=100.0)       # silent for 0.6 s
    assert not dask_engine.liveness_due(100.9, heard, [0, 1], checked_at=100.6)   # asked 0.3 s ago
    assert not dask_engine.liveness_due(100.9, heard, [], checked_at=100.0)       # a finished job may be silent
    recent = {0: 104.9, 1: 104.9}
    assert not dask_engine.liveness_due(105.0, recent, [0, 1], checked_at=100.1)
    assert dask_engine.liveness_due(105.2, recent, [0, 1], checked_at=100.1)      # 5 s since the last check
