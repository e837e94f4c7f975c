"""What a file holds never drives the terminal: control, bidi and zero-width characters are shown escaped, and
lines are counted as editors count them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import mqspec

DECLARE = "(hint: declare it under topology.exchanges, or mark it `external: true` there if it exists already)"


def _validate(tmp_path: Path, content: bytes) -> tuple[int, str]:
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    result = mqspec("validate", str(path))
    return result.exit_code, result.output.replace(str(path), "s.yaml")


@pytest.mark.parametrize(("written", "shown"), [
    ("\\e]0;pwned\\a", "\\x1b]0;pwned\\x07"),
    ("\\e[2J\\e[31mred", "\\x1b[2J\\x1b[31mred"),
    ("abc\\u202Edcba", "abc\\u202edcba"),
    ("nul\\0byte", "nul\\x00byte"),
    ("two\\nlines", "two\\x0alines"),
])
def test_escape_sequences_from_the_file_are_escaped_in_problems(tmp_path: Path, written: str, shown: str) -> None:
    code, output = _validate(tmp_path, f'version: 1\nname: t\ntopology:\n  bindings:\n    - {{exchange: "{written}", queue: q}}\n'.encode())
    assert code == 2
    assert output.splitlines()[0] == (f"s.yaml:5:8: $.topology.bindings[0].exchange: binding source exchange '{shown}' "
                                      f"is not declared {DECLARE}")
    assert "\x1b" not in output and "\u202e" not in output and "\x00" not in output


@pytest.mark.parametrize("line_break", ["\x85", "\u2028", "\u2029"])
def test_unicode_line_separators_do_not_shift_line_numbers(tmp_path: Path, line_break: str) -> None:
    content = f"version: 1\nname: t\n# a comment{line_break}with a separator\ntopology:\n  bindings:\n    - {{exchange: e, queue: q}}\n"
    code, output = _validate(tmp_path, content.encode())
    assert code == 2
    assert output.splitlines()[0] == f"s.yaml:6:8: $.topology.bindings[0].exchange: binding source exchange 'e' is not declared {DECLARE}"


def test_a_unicode_line_separator_inside_a_value_stays_in_the_value(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, "version: 1\nname: t\ntopology:\n  bindings:\n    - {exchange: \"a\u2028b\", queue: q}\n".encode())
    assert code == 2
    assert "binding source exchange 'a\\u2028b' is not declared" in output


@pytest.mark.parametrize(("character", "name"), [
    ("\\u200B", "U+200B ZERO WIDTH SPACE"), ("\\u200D", "U+200D ZERO WIDTH JOINER"), ("\\u2060", "U+2060 WORD JOINER"),
    ("\\uFEFF", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
])
def test_a_zero_width_character_in_an_entity_name_is_warned_about(tmp_path: Path, character: str, name: str) -> None:
    code, output = _validate(tmp_path, f'version: 1\nname: t\ntopology:\n  queues:\n    - {{name: "ord{character}ers", max_length: 1}}\n'
                                       .encode())
    assert code == 0
    assert output == (f"s.yaml:5:8: warning: $.topology.queues[0].name: queue name 'ord{character.lower()}ers' "
                      f"holds an invisible character, {name} (hint: remove it: a name that looks the same without it is another "
                      "name to RabbitMQ)\ns.yaml: valid (1 warning)\n")


def test_a_name_from_the_command_line_is_escaped_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nname: t\n")
    result = mqspec("route", str(path), "-e", "x\x1b[2J")
    assert result.exit_code == 2
    assert result.stderr == f"error: exchange 'x\\x1b[2J' is not declared in {path}\n"
