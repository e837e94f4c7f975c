"""A run never passes by accident: frozen workers, timeouts, unseen producers, errors, signals and secrets."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika

from mqspec.broker.management import Management, q
from mqspec.core.model import BrokerSettings
from tests.conftest import ROOT, mqspec, vhost_url

MQSPEC = str(ROOT / ".venv" / "bin" / "mqspec")


def worker_processes(parent: int | None = None) -> dict[int, str]:
    """pid -> name of every process called mqspec-worker-N (optionally: children of `parent`), from /proc."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            name = Path(f"/proc/{entry}/comm").read_text().strip()
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if name.startswith("mqspec-worker-") and (parent is None or ppid == parent):
            found[int(entry)] = name
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Running:
    process: subprocess.Popen[str]
    report: Path
    lines: list[str] = field(default_factory=list)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(text in line for line in self.lines):
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        assert any(text in line for line in self.lines), "".join(self.lines)

    def workers(self, count: int, timeout: float = 20) -> dict[int, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = worker_processes(self.process.pid)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} worker processes, found {worker_processes(self.process.pid)}")

    @property
    def out(self) -> str:
        return "".join(self.lines)


@contextmanager
def running(tmp_path: Path, url: str, text: str, env: dict[str, str] | None = None) -> Iterator[Running]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("version: 1\n" + text)
    report = tmp_path / "report.json"
    command = [MQSPEC, "--url", url, "apply", str(scenario), "--report", str(report)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})})
    run = Running(process, report)
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: run.lines.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        yield run
    finally:
        if process.poll() is None:
            for pid in worker_processes(process.pid):
                os.kill(pid, signal.SIGKILL)
            process.kill()
        process.wait(timeout=30)
        reader.join(5)
        process.stdout.close()


def apply(tmp_path: Path, url: str, text: str, env: dict[str, str] | None = None) -> tuple[int, str, dict[str, Any]]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("version: 1\n" + text)
    report = tmp_path / "report.json"
    result = mqspec("--url", url, "apply", str(scenario), "--report", str(report), env=env)
    return result.exit_code, result.output, json.loads(report.read_text()) if report.exists() else {}


def connections_in(management: Management, vhost: str) -> list[str]:
    tracked = management.get("/connections?disable_stats=true", "connections") or []
    return [c["name"] for c in tracked if c.get("vhost") == vhost]


# --- a frozen worker (#12.1) ----------------------------------------------------------------------

FROZEN = """
name: frozen
topology:
  queues: [{name: q, durable: false}]
workload:
  timeout: 12s   # room for the broker's statistics to show the first publishes before the worker is frozen
  timeout_ok: true
  workers: 2
  producers: [{name: p, queue: q, messages: 100000, rate: 200, confirm: 50}]
  consumers: [{name: c, queue: q}]
expect:
  - {no_loss: true}
  - {queue: q, depth: {min: 0}}
"""


def _wait_until_publishing(url: str, queue: str, timeout: float = 30) -> None:
    """The consumer is subscribed (so every worker reported ready and the run started) and messages flow."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if channel.queue_declare(queue, passive=True).method.consumer_count >= 1:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"no consumer on {queue} within {timeout}s")
    finally:
        connection.close()
    vhost = pika.URLParameters(url).virtual_host
    with Management(BrokerSettings(urls=(url,))) as management:
        while time.monotonic() < deadline:
            stats = management.get(f"/queues/{q(vhost)}/{q(queue)}", "queue").get("message_stats", {})
            if stats.get("publish", 0) > 0:
                return
            time.sleep(0.2)
    raise AssertionError(f"nothing was published to {queue} within {timeout}s")


def test_a_frozen_worker_makes_its_expectations_unknown_fails_the_run_and_is_killed(tmp_path: Path, url: str) -> None:
    with running(tmp_path, url, FROZEN) as run:
        run.wait_for("Apply complete")
        workers = run.workers(2)
        producer_worker = next(pid for pid, name in workers.items() if name == "mqspec-worker-1")  # consumers come first
        _wait_until_publishing(url, "q")
        os.kill(producer_worker, signal.SIGSTOP)
        run.process.wait(timeout=60)
    report = json.loads(run.report.read_text())
    assert run.process.returncode == 1, run.out
    assert "  UNKNOWN no loss: every confirmed (or published, without confirms) message was consumed (the counts of " \
           "producer 'p' instance 0 are missing)" in run.out
    assert ("  UNKNOWN counts of producer 'p' instance 0 (missing: worker 1 did not report its counters within 10s "
            "and was killed)") in run.out
    assert "PASS no loss" not in run.out
    assert "PASS queue 'q' depth >= 0" in run.out   # the broker's own count does not depend on the frozen worker
    assert report["missing_counts"] == ["producer 'p' instance 0: worker 1 did not report its counters within 10s and was killed"]
    assert [e["unknown"] for e in report["expectations"]] == [True, False, True]
    assert report["passed"] is False
    assert not alive(producer_worker)


# --- the timeout (#12.2) -----------------------------------------------------------------------------

UNFINISHED = """
name: cut-short
topology:
  queues: [{name: q, durable: false}]
workload:
  timeout: 1500ms
  producers: [{name: p, queue: q, messages: 100000, rate: 500}]
  consumers: [{name: c, queue: q}]
expect:
  - {producer: p, published: {min: 10}}
"""


def test_a_producer_cut_short_by_the_timeout_fails_the_run(tmp_path: Path, url: str) -> None:
    code, out, report = apply(tmp_path, url, UNFINISHED)
    assert code == 1, out
    published = report["producers"]["p"]["published"]
    assert 10 <= published < 100000
    assert (report["ended"], report["passed"], report["producers"]["p"]["finished"]) == ("timeout", False, 0)
    assert re.search(r"FAIL producer 'p' finished before the workload timeout it was still publishing when the timeout "
                     rf"ended the run after 1\.\ds \({published:,} of 100,000 messages published\) \(set "
                     r"workload.timeout_ok: true if stopping at the timeout is fine\)", out), out


def test_timeout_ok_lets_a_run_end_at_its_timeout(tmp_path: Path, url: str) -> None:
    code, out, report = apply(tmp_path, url, UNFINISHED.replace("  timeout: 1500ms\n", "  timeout: 1500ms\n  timeout_ok: true\n"))
    assert code == 0, out
    assert (report["ended"], report["passed"]) == ("timeout", True)
    assert [e["description"] for e in report["expectations"]] == ["producer 'p' published >= 10"]


# --- a consumer's loss counts producers it never heard from (#12.3) ------------------------------------

def test_a_consumer_is_charged_with_messages_that_expired_before_it_saw_any(tmp_path: Path, url: str) -> None:
    code, out, report = apply(tmp_path, url, """
name: expired
topology:
  exchanges: [{name: x, type: fanout, durable: false}]
  queues: [{name: q, durable: false}]
  bindings: [{exchange: x, queue: q}]
workload:
  producers:
    - {name: fresh, exchange: x, messages: 40, confirm: 40}
    - {name: stale, exchange: x, messages: 500, confirm: 500, expiration: 1ms, start_after: 50ms}
  consumers: [{name: c, queue: q, prefetch: 1, processing_time: 10ms}]
expect:
  - {consumer: c, lost: 0}
""")
    connection = pika.BlockingConnection(pika.URLParameters(url))
    depth = connection.channel().queue_declare("q", passive=True).method.message_count
    connection.close()
    consumer = report["consumers"]["c"]
    assert report["producers"]["stale"]["confirmed"] == 500
    assert (consumer["received"], depth) == (40, 0)        # the broker agrees: nothing of 'stale' is left to deliver
    assert consumer["lost"] == report["messages"]["lost"] == 500
    assert consumer["expected"] == 540
    assert code == 1, out
    assert "FAIL consumer 'c' lost 0: expected 0, got 500" in out


# --- an error during the workload (#12.17) ------------------------------------------------------------

def test_a_refusal_mid_run_writes_the_reports_and_says_what_was_left_in_which_queue(
        tmp_path: Path, management: Management, vhost: str) -> None:
    user = f"mqspec-refused-{uuid.uuid4().hex[:6]}"
    connection = pika.BlockingConnection(pika.URLParameters(vhost_url(vhost)))
    channel = connection.channel()
    channel.exchange_declare("app.x", "fanout")
    channel.exchange_declare("forbidden.x", "fanout")
    channel.queue_declare("app.in")
    channel.queue_bind("app.in", "app.x")
    management.put(f"/users/{user}", f"user '{user}'", {"password": "refused-pw", "tags": "management"})
    try:
        management.set_permissions(user, vhost, configure="^$", write="^app\\.", read="^app\\.")
        scenario = tmp_path / "scenario.yaml"
        scenario.write_text("""version: 1
name: refused
topology:
  exchanges: [{name: app.x, type: fanout, external: true}, {name: forbidden.x, type: fanout, external: true}]
  queues: [{name: app.in, external: true}]
  bindings: [{exchange: app.x, queue: app.in}]
workload:
  producers:
    - {name: allowed, exchange: app.x, messages: 100000, rate: 400}
    - {name: refused, exchange: forbidden.x, messages: 10, start_after: 700ms}
""")
        report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
        result = mqspec("--url", f"amqp://{user}:refused-pw@127.0.0.1:5672/{q(vhost)}", "apply", str(scenario),
                        "--report", str(report), "--junit", str(junit))
        depth = channel.queue_declare("app.in", passive=True).method.message_count
    finally:
        connection.close()
        management.delete(f"/users/{user}", f"user '{user}'")
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith(f"error: access refused: user '{user}' may not publish on exchange 'forbidden.x' in vhost '{vhost}'")
    data = json.loads(report.read_text())
    assert data["error"] == result.stderr.removeprefix("error: ").rstrip("\n")
    assert (data["ended"], data["passed"], data["expectations"]) == ("failed", False, [])
    assert depth > 0
    assert data["left_over"] == {"app.in": depth}
    assert f"left behind: {depth:,} messages left in queue 'app.in'" in result.stdout
    assert "expectations were not checked: the workload failed." in result.stdout
    assert 'errors="1"' in junit.read_text() and f"{depth:,} messages left in queue 'app.in'" in junit.read_text()
    assert "refused-pw" not in result.output + report.read_text() + junit.read_text()


# --- signals (#12.8) -----------------------------------------------------------------------------------

LONG = """
name: long
topology:
  queues: [{name: q, durable: false}]
workload:
  workers: 2
  producers: [{name: p, queue: q, rate: 200, duration: 60s}]
  consumers: [{name: c, queue: q}]
expect:
  - {no_loss: true}
"""


def test_sigkill_of_mqspec_takes_its_workers_and_their_connections_with_it(
        tmp_path: Path, url: str, vhost: str, management: Management) -> None:
    with running(tmp_path, url, LONG) as run:
        run.wait_for("Apply complete")
        workers = run.workers(2)
        deadline = time.monotonic() + 10
        while len(connections_in(management, vhost)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(connections_in(management, vhost)) >= 2
        run.process.kill()
        run.process.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in workers if alive(pid)] == []
        deadline = time.monotonic() + 10
        while connections_in(management, vhost) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert connections_in(management, vhost) == []


def test_sigterm_ends_the_run_like_ctrl_c_with_a_partial_report_and_exit_143(tmp_path: Path, url: str) -> None:
    with running(tmp_path, url, LONG) as run:
        run.wait_for("Apply complete")
        workers = run.workers(2)
        time.sleep(1.0)
        run.process.terminate()
        run.process.wait(timeout=30)
    assert run.process.returncode == 143, run.out
    data = json.loads(run.report.read_text())
    assert (data["ended"], data["interrupted"], data["passed"], data["expectations"]) == ("terminated", True, False, [])
    assert data["producers"]["p"]["published"] > 0
    assert "terminated (SIGTERM); counts are partial" in run.out
    assert "Traceback" not in run.out
    assert [pid for pid in workers if alive(pid)] == []


# --- secrets in reports (#12.9) ------------------------------------------------------------------------

def test_a_failing_restart_command_is_scrubbed_from_every_report(tmp_path: Path, url: str, management: Management) -> None:
    user = f"mqspec-redact-{uuid.uuid4().hex[:6]}"
    try:
        code, out, report = apply(tmp_path, url, f"""
name: scrubbed
broker:
  restart_command: [[sh, -c, "echo refused >&2; exit 3", "http://ops:url-secret-pw@127.0.0.1:15672/", "arg-secret-pw"]]
topology:
  users: [{{name: {user}, password: "${{REDACT_PW}}"}}]
  queues: [{{name: q, durable: false}}]
workload:
  producers: [{{name: p, queue: q, messages: 20, rate: 40}}]
  consumers: [{{name: c, queue: q}}]
  faults: [{{action: restart_broker, at: 100ms}}]
expect:
  - {{consumer: c, received: 20}}
""", env={"REDACT_PW": "arg-secret-pw"})
    finally:
        management.delete(f"/users/{user}", f"user '{user}'")
    assert code == 1, out   # a fault that could not act fails the run
    (failed,) = [e for e in report["expectations"] if not e["passed"]]
    assert (failed["description"], failed["detail"]) == (
        "fault restart_broker at 0.1s", "could not act: restart_broker: 'sh -c echo refused >&2; exit 3 "
        "http://ops:***@127.0.0.1:15672/ ***' exited 3: refused")
    (note,) = report["notes"]
    assert note == ("restart_broker at 0.1s failed: restart_broker: 'sh -c echo refused >&2; exit 3 "
                    "http://ops:***@127.0.0.1:15672/ ***' exited 3: refused")
    assert f"note: {note}" in out
    assert "secret-pw" not in out + json.dumps(report)
