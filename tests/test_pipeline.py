"""One pipeline decides validity: every command refuses every invalid file with exit 2, before any broker."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqspec.core.loader import load_bytes
from mqspec.pipeline import load
from tests.conftest import ROOT, mqspec

CORPUS = Path(__file__).parent / "corpus" / "invalid"
CASES = sorted(CORPUS.glob("*.yaml"))
COMMANDS = {
    "validate": ["validate"],
    "plan": ["plan"],
    "apply": ["apply"],
    "destroy": ["destroy"],
    "export": ["export"],
    "route": ["route", "--exchange", "x"],
    "graph": ["graph"],
}


@pytest.fixture(scope="module")
def listener() -> Iterator[socket.socket]:
    """A port that would see any AMQP or HTTP connection a command made."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.setblocking(False)
    yield server
    server.close()


def _connections(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            client, _ = server.accept()
        except BlockingIOError:
            return count
        client.close()
        count += 1


@pytest.mark.parametrize("command", list(COMMANDS), ids=list(COMMANDS))
def test_every_command_refuses_every_invalid_file_with_exit_2_and_no_broker_contact(
        command: str, listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    port = listener.getsockname()[1]
    monkeypatch.chdir(CORPUS)
    monkeypatch.delenv("MQSPEC_URL", raising=False)
    wrong = []
    for case in CASES:
        args = ["--url", f"amqp://guest:guest@127.0.0.1:{port}/%2F", "--management-url", f"http://127.0.0.1:{port}",
                *COMMANDS[command][:1], case.name, *COMMANDS[command][1:]]
        result = mqspec(*args)
        if result.exit_code != 2 or "Traceback" in result.output:
            wrong.append(f"{case.name}: exit {result.exit_code}: {result.output[-200:]}")
    assert wrong == []
    assert _connections(listener) == 0


def test_a_file_is_valid_for_every_command_exactly_when_validate_says_so(tmp_path: Path) -> None:
    internal = tmp_path / "internal.yaml"
    internal.write_text("version: 1\nname: x\ntopology:\n  exchanges: [{name: inner, type: fanout, internal: true}]\n"
                        "workload:\n  producers: [{name: p, exchange: inner, messages: 1}]\n")
    for args in (["validate"], ["plan"], ["apply"], ["export"], ["graph"]):
        result = mqspec("--url", "amqp://guest:guest@127.0.0.1:1/%2F", *args, str(internal))
        assert result.exit_code == 2, (args, result.output)
        assert "publishes to exchange 'inner', which is internal" in result.stderr


def test_strict_makes_warnings_fail_in_every_command(tmp_path: Path) -> None:
    warned = tmp_path / "warned.yaml"
    warned.write_text("version: 1\nname: x\ntopology:\n  queues: [{name: lonely}]\n"
                      "workload:\n  producers: [{name: p, exchange: '', routing_keys: [nowhere], messages: 1}]\n")
    for args in (["validate"], ["plan"], ["apply"], ["export"], ["graph"]):
        loose = mqspec("--url", "amqp://guest:guest@127.0.0.1:1/%2F", *args, str(warned))
        strict = mqspec("--url", "amqp://guest:guest@127.0.0.1:1/%2F", *args, str(warned), "--strict")
        assert ": warning: " in loose.output, args
        assert strict.exit_code == 2, (args, strict.output)
        assert loose.exit_code != 2 or args == ["validate"], (args, loose.output)


def test_no_module_level_mutable_state_in_mqspec() -> None:
    """No module-level name is bound to a mutable container or a fresh instance (state that would leak
    between two commands run in one process): lookup tables are MappingProxyType, frozenset or tuple."""
    containers = r"\[|\{|set\(|dict\(|list\(|defaultdict\(|deque\("
    pattern = re.compile(rf"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?::[^=]+)?=\s*(?P<value>{containers}|[A-Z][A-Za-z]*\(\))", re.M)
    found = []
    for path in sorted((ROOT / "mqspec").rglob("*.py")):
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            if match["name"] != "__all__":
                found.append(f"{path.relative_to(ROOT)}: {match['name']} = {match['value']}")
    assert found == []


# The one file the core reads: its own schema, package data shipped with it.
_CORE_READS_ITS_SCHEMA = "mqspec/core/schema.py"
_FILE_SYSTEM = re.compile(r"\.(read_bytes|read_text|write_bytes|write_text|is_file|is_dir|exists|stat|iterdir|glob)\(|\.resolve\(\)|"
                          r"\bopen\(|os\.(listdir|scandir|stat|walk|path\.(realpath|isfile|isdir|exists|getsize))\(")


def test_the_core_never_touches_the_file_system() -> None:
    """Body files and TLS files are read at the edge (pipeline.read_inputs) and handed to the core as data."""
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sorted((ROOT / "mqspec" / "core").rglob("*.py")) if str(path.relative_to(ROOT)) != _CORE_READS_ITS_SCHEMA
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if _FILE_SYSTEM.search(line)]
    assert found == []


def test_a_body_file_reaches_the_core_only_through_the_edge(tmp_path: Path) -> None:
    body = tmp_path / "body.bin"
    body.write_bytes(b"\x00payload")
    text = (b"version: 1\nname: b\ntopology:\n  queues: [{name: q}]\nworkload:\n"
            b"  producers: [{name: p, queue: q, body_file: body.bin, messages: 1}]\n")
    (tmp_path / "s.yaml").write_bytes(text)
    through_the_edge = load(str(tmp_path / "s.yaml"), env={})
    assert through_the_edge.scenario is not None
    assert through_the_edge.scenario.workload.producers[0].body == b"\x00payload"
    alone = load_bytes(text, str(tmp_path / "s.yaml"), env={})  # the core by itself: it was handed no files
    assert alone.scenario is None
    assert any("body_file 'body.bin' does not exist" in p.message for p in alone.problems)


def test_a_layer_violation_fails_the_import_contracts(tmp_path: Path) -> None:
    """make lint runs lint-imports: the core importing pika (or a renderer the engine) is refused."""
    copy = tmp_path / "mqspec"
    subprocess.run(["cp", "-r", str(ROOT / "mqspec"), str(copy)], check=True)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    lint = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    clean = subprocess.run(lint, cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)}, check=False)
    assert clean.returncode == 0, clean.stdout
    with (copy / "core" / "units.py").open("a") as units:
        units.write("\nimport pika  # noqa: E402,F401\n")
    broken = subprocess.run(lint, cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)}, check=False)
    assert broken.returncode != 0
    assert "mqspec.core.units -> pika" in broken.stdout
