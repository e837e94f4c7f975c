"""An apply killed with SIGKILL halfway through a large topology converges when run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mqspec.broker.management import Management, q
from tests.conftest import mqspec

QUEUES = 1500


def _large_topology(tmp_path: Path) -> Path:
    lines = ["version: 1", "name: crash", "topology:", "  exchanges:", "    - {name: events, type: topic}", "  queues:"]
    lines += [f"    - {{name: q{i}, message_ttl: 60s}}" for i in range(QUEUES)]
    lines += ["  bindings:"] + [f"    - {{exchange: events, queue: q{i}, keys: ['q.{i}.#']}}" for i in range(QUEUES)]
    path = tmp_path / "large.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _queue_count(management: Management, vhost: str) -> int:
    return len(management.get(f"/queues/{q(vhost)}?columns=name", "queues") or [])


def test_apply_killed_midway_converges_on_the_next_run(url: str, vhost: str, management: Management, tmp_path: Path) -> None:
    path = _large_topology(tmp_path)
    command = [sys.executable, "-m", "mqspec.cli", "--url", url, "apply", "--topology-only", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while _queue_count(management, vhost) < 50 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    created = _queue_count(management, vhost)
    assert 0 < created < QUEUES, f"the kill should land midway, saw {created} queues"

    again = mqspec("--url", url, "apply", "--topology-only", str(path))
    assert again.exit_code == 0, again.output
    plan = mqspec("--url", url, "plan", "--detailed-exitcode", str(path))
    assert plan.exit_code == 0, plan.output
    assert _queue_count(management, vhost) == QUEUES
