"""Bootstrap from a fresh clone: the Makefile's Python checks and scripts/ensure-broker.

ensure-broker runs against the real, running broker, which is never stopped or restarted here. Paths that would
start a broker are exercised as an unprivileged user against a port nothing listens on, where the script must
refuse with instructions instead of touching anything.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqspec.broker.management import Management
from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "ensure-broker"
UP = "ensure-broker: RabbitMQ is up (AMQP 127.0.0.1:5672, streams 127.0.0.1:5552, management http://127.0.0.1:15672/api/overview)\n"
SBIN = "/usr/sbin:/sbin"


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder an unprivileged user can read, holding a copy of the script and a PATH of chosen tools."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        path.chmod(0o755)
        shutil.copy(SCRIPT, path / "ensure-broker")
        (path / "bin").mkdir(mode=0o755)
        yield path


def _tools(folder: Path, *names: str, python: str | None = None) -> str:
    for name in names:
        found = shutil.which(name, path="/usr/bin:/bin")
        assert found, f"{name} is needed to run this test"
        (folder / "bin" / name).symlink_to(found)
    if python:
        (folder / "bin" / "python3").symlink_to(python)
    return str(folder / "bin")


def _run(script: Path, env: dict[str, str], *, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    command = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "/bin/bash", str(script)]
    if unprivileged and os.geteuid() == 0:
        command = ["runuser", "-u", "nobody", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/", check=False)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _installed(tool: str) -> str | None:
    return shutil.which(tool, path=f"/usr/bin:/bin:{SBIN}")


def test_uses_the_running_broker_and_says_so(management: Management) -> None:
    result = _run(SCRIPT, {"PATH": os.environ["PATH"]})
    assert (result.returncode, result.stdout, result.stderr) == (0, "", UP)


def test_checks_the_management_api_with_python_when_curl_is_missing(management: Management,
                                                                    public_dir: Path) -> None:
    path = _tools(public_dir, "id", "sleep", "grep", python=os.path.realpath(sys.executable))
    result = _run(public_dir / "ensure-broker", {"PATH": path})
    assert (result.returncode, result.stderr) == (
        0, "ensure-broker: curl not found; using python3 to check the management API\n" + UP)


def test_without_curl_or_python_says_what_to_install(public_dir: Path) -> None:
    result = _run(public_dir / "ensure-broker", {"PATH": _tools(public_dir, "id", "sleep", "grep")})
    assert (result.returncode, result.stderr) == (
        1, "ensure-broker: need curl or python3 to check the management API; "
           "install one, e.g.: sudo apt-get install curl\n")


def test_an_unprivileged_user_is_told_how_to_start_the_broker_without_waiting(public_dir: Path) -> None:
    port = _unused_port()
    result = _run(public_dir / "ensure-broker", {"PATH": "/usr/bin:/bin", "MQSPEC_BROKER_PORT": str(port)},
                  unprivileged=True)
    server = _installed("rabbitmq-server")
    if server:
        expected: tuple[str, ...] = (
            f"RabbitMQ is installed ({server}) but not running on 127.0.0.1:{port}, and starting it needs root",
            "start it as root, then enable the management API:",
            "  sudo systemctl start rabbitmq-server      # with systemd",
            "  sudo rabbitmq-server -detached            # without systemd",
            "  sudo rabbitmq-plugins enable rabbitmq_management")
    else:
        expected = ("RabbitMQ is not installed. Install it and enable the management API, e.g.:",
                    "  sudo apt-get install rabbitmq-server",
                    "  sudo rabbitmq-plugins enable rabbitmq_management")
    assert (result.returncode, result.stderr) == (1, "".join(f"ensure-broker: {line}\n" for line in expected))


def test_an_unprivileged_user_is_told_how_to_enable_the_management_api(management: Management,
                                                                       public_dir: Path) -> None:
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else os.path.realpath(sys.executable)
    path = _tools(public_dir, "id", "sleep", "grep", python=python)
    missing = "http://127.0.0.1:15672/api/no-such-endpoint"
    result = _run(public_dir / "ensure-broker", {"PATH": path, "MQSPEC_MANAGEMENT_CHECK_URL": missing},
                  unprivileged=True)
    last = result.stderr.splitlines()[-1]
    if _installed("rabbitmq-plugins"):
        assert last == (f"ensure-broker: the management API does not answer at {missing}; "
                        "enable it as root: sudo rabbitmq-plugins enable rabbitmq_management")
    else:
        assert last == "ensure-broker: rabbitmq-plugins not found; is RabbitMQ installed?"
    assert result.returncode == 1


def _fake_python(folder: Path, name: str, body: str) -> Path:
    script = folder / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def _create_venv(python: str | Path, venv: Path) -> subprocess.CompletedProcess[str]:
    """Run only the Makefile's venv-creation step, so no package is installed."""
    make = shutil.which("make")
    assert make, "make is needed to run this test"
    return subprocess.run([make, "-s", "-C", str(ROOT), "--eval", "check-venv: ; @$(CREATE_VENV)", "check-venv",
                           f"VENV={venv}", f"PYTHON={python}"], capture_output=True, text=True, timeout=60, check=False)


def test_make_refuses_a_python_older_than_3_11_and_names_the_fix(tmp_path: Path) -> None:
    old = _fake_python(tmp_path, "python3", 'case "$1" in -V) echo "Python 3.9.2";; *) exit 1;; esac\n')
    result = _create_venv(old, tmp_path / "venv")
    assert result.returncode != 0
    assert result.stderr.splitlines()[:2] == [
        f"make: mqspec needs Python 3.11 or newer, but {old} is Python 3.9.2.",
        "make: install a newer one (e.g. sudo apt-get install python3.11 python3.11-venv) and run: make PYTHON=python3.11 ..."]
    assert not (tmp_path / "venv").exists()


def test_make_says_to_install_python3_venv_when_venv_does_not_work(tmp_path: Path) -> None:
    debian = _fake_python(tmp_path, "python3", f"""if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin"; echo "ensurepip is not available"; exit 1
fi
exec {os.path.realpath(sys.executable)} "$@"
""")
    result = _create_venv(debian, tmp_path / "venv")
    assert result.returncode != 0
    assert result.stderr.splitlines()[:3] == [
        "ensurepip is not available",
        f"make: '{debian} -m venv' does not work; on Debian/Ubuntu install it with: sudo apt-get install python3-venv",
        "make: (for another Python version, install its pythonX.Y-venv package)"]
    assert not (tmp_path / "venv").exists(), "a half-made venv would be mistaken for a working one next time"


def test_make_names_a_missing_python(tmp_path: Path) -> None:
    result = _create_venv(tmp_path / "no-such-python", tmp_path / "venv")
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == (f"make: {tmp_path}/no-such-python not found; install Python 3.11 or newer, "
                                             "e.g.: sudo apt-get install python3 python3-venv")


def test_make_creates_a_venv_with_a_working_python(tmp_path: Path) -> None:
    result = _create_venv(os.path.realpath(sys.executable), tmp_path / "venv")
    assert (result.returncode, result.stderr) == (0, "")
    assert subprocess.run([tmp_path / "venv" / "bin" / "python", "-m", "pip", "--version"],
                          capture_output=True, check=False).returncode == 0
