"""The CLI shell: version, init, usage errors and exit codes."""

from __future__ import annotations

from pathlib import Path

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
