"""Broker-side failures: one line saying what happened and to what, with the documented exit code."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import mqspec

NO_MANAGEMENT = "http://127.0.0.1:1"
LISTENER = """\
version: 1
name: errors
broker: {connect_timeout: 1s}
topology:
  queues:
    - {name: app.q, external: true}
workload:
  consumers:
    - {name: c, queue: app.q, idle_timeout: 1s}
"""
DECLARES = "version: 1\nname: errors\ntopology:\n  queues:\n    - {name: app.q, message_ttl: TTL}\n"


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return str(path)


def _last_error(stderr: str) -> str:
    return [line for line in stderr.splitlines() if line.startswith("error:")][-1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word, like a hung broker."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def test_connection_refused_names_host_and_port_and_exits_3(tmp_path: Path) -> None:
    result = mqspec("--url", "amqp://guest:guest@127.0.0.1:1/%2F", "--management-url", NO_MANAGEMENT, "apply", _file(tmp_path, LISTENER))
    assert result.exit_code == 3
    assert _last_error(result.stderr) == "error: cannot connect to 127.0.0.1:1: connection refused"


def test_silent_broker_times_out_within_the_connect_timeout(tmp_path: Path, silent_port: int) -> None:
    started = time.monotonic()
    result = mqspec("--url", f"amqp://guest:guest@127.0.0.1:{silent_port}/%2F", "--management-url", NO_MANAGEMENT,
                    "apply", _file(tmp_path, LISTENER))
    assert result.exit_code == 3
    assert _last_error(result.stderr) == f"error: cannot connect to 127.0.0.1:{silent_port}: timed out"
    assert time.monotonic() - started < 15


def test_refused_authentication_says_so_plainly_without_the_password(tmp_path: Path, vhost: str) -> None:
    result = mqspec("--url", f"amqp://guest:wrong-secret@127.0.0.1:5672/{vhost}", "--management-url", NO_MANAGEMENT,
                    "apply", _file(tmp_path, LISTENER))
    assert result.exit_code == 3
    assert _last_error(result.stderr) == "error: authentication refused for user 'guest' at 127.0.0.1:5672"
    assert "wrong-secret" not in result.output


def test_missing_vhost_is_named(tmp_path: Path) -> None:
    result = mqspec("--url", "amqp://guest:guest@127.0.0.1:5672/no-such-vhost", "apply", _file(tmp_path, LISTENER))
    assert result.exit_code != 0
    assert "vhost 'no-such-vhost' not found" in _last_error(result.stderr)


def test_precondition_failed_names_the_differing_argument(tmp_path: Path, url: str, vhost: str) -> None:
    assert mqspec("--url", url, "apply", "--topology-only", _file(tmp_path, DECLARES.replace("TTL", "60s"))).exit_code == 0
    result = mqspec("--url", url, "--management-url", NO_MANAGEMENT, "apply", "--topology-only",
                    _file(tmp_path, DECLARES.replace("TTL", "120s")))
    assert result.exit_code == 1
    assert _last_error(result.stderr).startswith(
        f"error: queue 'app.q' in vhost '{vhost}' exists with a different 'x-message-ttl'")
