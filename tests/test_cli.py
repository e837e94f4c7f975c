"""The CLI shell: version, init, usage errors and exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mqspec import __version__
from tests.conftest import mqspec


def test_version_prints_the_version() -> None:
    result = mqspec("--version")
    assert (result.exit_code, result.stdout) == (0, f"mqspec {__version__}\n")


def test_init_writes_a_starter_that_validates_with_schema_modeline(tmp_path: Path, monkeypatch: object) -> None:
    target = tmp_path / "orders.yaml"
    result = mqspec("init", "orders", "-o", str(target))
    assert (result.exit_code, result.stdout) == (0, f"wrote {target}\n")
    text = target.read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    assert mqspec("validate", "--strict", str(target)).exit_code == 0


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "orders.yaml"
    target.write_text("keep me")
    result = mqspec("init", "orders", "-o", str(target))
    assert (result.exit_code, result.stderr) == (2, f"error: {target} exists; pass --force to overwrite it\n")
    assert target.read_text() == "keep me"


def test_init_refuses_a_name_that_cannot_be_an_entity_name(tmp_path: Path) -> None:
    result = mqspec("init", "bad name", "-o", str(tmp_path / "x.yaml"))
    assert result.exit_code == 2
    assert "must be letters, digits" in result.stderr


def test_unknown_option_is_a_usage_error() -> None:
    assert mqspec("validate", "--nope", "x.yaml").exit_code == 2


USAGE_LINES = {
    "validate": "Usage: mqspec validate [OPTIONS] FILE...",
    "schema": "Usage: mqspec schema [OPTIONS]",
    "init": "Usage: mqspec init [OPTIONS] NAME",
    "plan": "Usage: mqspec plan [OPTIONS] FILE",
    "apply": "Usage: mqspec apply [OPTIONS] FILE",
    "destroy": "Usage: mqspec destroy [OPTIONS] FILE",
    "export": "Usage: mqspec export [OPTIONS] FILE",
    "import": "Usage: mqspec import [OPTIONS]",
    "route": "Usage: mqspec route [OPTIONS] FILE",
    "graph": "Usage: mqspec graph [OPTIONS] FILE",
}


def _help(*command: str) -> str:
    result = mqspec(*command, "--help", env={"COLUMNS": "120"})
    assert result.exit_code == 0
    return result.stdout


def test_every_command_help_shows_a_conventional_usage_line() -> None:
    for command, usage in USAGE_LINES.items():
        assert _help(command).splitlines()[0] == usage


def test_help_shows_metavars_instead_of_python_type_names() -> None:
    for command in ["", *USAGE_LINES]:
        text = _help(*([command] if command else []))
        for python_type in ("<str>", "<path>", "<Path>", "list[", "<int", "{"):
            assert python_type not in text, f"mqspec {command} --help shows {python_type!r}:\n{text}"


def test_help_names_each_value_by_what_it_is() -> None:
    route, top = _help("route"), _help()
    for line in ("  -e, --exchange NAME   Exchange to publish to ('' is the default exchange).\n",
                 "  -k, --key KEY         Routing key.\n",
                 "  -H, --header K=V      Message header K=V (repeatable).\n",
                 "  --format [text|json]  Output format.  [default: text]\n"):
        assert line in route
    assert "  --url URL             AMQP URL; its path is the vhost.  [env var: MQSPEC_URL]\n" in top
    assert "  --management-url URL  Management API URL" in top
    assert "  FILE...  Scenario files.\n" in _help("validate")
    assert "  NAME  Scenario name; writes NAME.yaml.\n" in _help("init")
    assert "  -o, --output PATH  File to write (default NAME.yaml).\n" in _help("init")
    assert re.search(r"\n  --workers N +Processes for the workload\.  \[x>=1\]\n", _help("apply"))
    assert re.search(r"\n  --report PATH +Write the run report as JSON\.\n", _help("apply"))
    assert "  --from-definitions PATH  Read a definitions JSON file.\n" in _help("import")
    assert "  --format [mermaid|dot]  Graph language.  [default: mermaid]\n" in _help("graph")


def test_missing_file_argument_is_named_by_its_metavar() -> None:
    result = mqspec("validate")
    assert result.exit_code == 2
    assert "Error: Missing argument 'FILE'." in result.stderr


def test_init_into_a_missing_folder_is_refused_with_the_os_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = mqspec("init", "x", "-o", "nodir/x.yaml")
    assert (result.exit_code, result.stdout, result.stderr) == (
        2, "", "error: cannot write nodir/x.yaml: No such file or directory\n")
    assert not (tmp_path / "nodir").exists()


def test_init_onto_a_folder_is_refused_even_with_force(tmp_path: Path) -> None:
    result = mqspec("init", "x", "-o", str(tmp_path), "--force")
    assert (result.exit_code, result.stderr) == (2, f"error: cannot write {tmp_path}: it is a directory\n")


def test_init_refuses_names_that_make_reserved_amq_entity_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("amq", "amq.orders"):
        result = mqspec("init", name)
        assert (result.exit_code, result.stderr) == (
            2, f"error: scenario name '{name}' would make entity names such as '{name}.events', "
               "and RabbitMQ reserves names starting with 'amq.'; choose another name\n")
    assert list(tmp_path.iterdir()) == []


def test_init_accepts_a_name_that_merely_begins_with_amq(tmp_path: Path) -> None:
    target = tmp_path / "amqp-bridge.yaml"
    assert mqspec("init", "amqp-bridge", "-o", str(target)).exit_code == 0
    assert mqspec("validate", "--strict", str(target)).exit_code == 0


def test_init_tells_offline_editors_how_to_use_a_local_schema(tmp_path: Path) -> None:
    target = tmp_path / "orders.yaml"
    mqspec("init", "orders", "-o", str(target))
    modeline, offline = target.read_text().splitlines()[:2]
    assert modeline == "# yaml-language-server: $schema=./mqspec.schema.json"
    assert offline == ("# The schema (urn:mqspec:scenario:v1) for your editor: "
                       "run `mqspec schema > mqspec.schema.json` next to this file.")
