"""Hostile files never produce a traceback, a hang or unbounded memory: exit 2 with a file:line message."""

from __future__ import annotations

import random
from pathlib import Path

from mqspec.core.document import MAX_DEPTH, MAX_FILE_BYTES
from tests.conftest import mqspec


def _validate(tmp_path: Path, content: bytes) -> tuple[int, str]:
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    result = mqspec("validate", str(path))
    return result.exit_code, result.output.replace(str(path), "hostile.yaml")


def test_billion_laughs_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    code, output = _validate(tmp_path, ("\n".join(lines) + "\n").encode())
    assert code == 2
    assert output == ("hostile.yaml:7:10: $: document expands to more than 1,000,000 values (alias bomb?) "
                      "(hint: use fewer aliases or a smaller file)\n")


def test_nesting_past_the_limit_is_refused(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, b"a: " + b"[" * 200 + b"]" * 200 + b"\n")
    assert code == 2
    assert output == f"hostile.yaml:1:{MAX_DEPTH + 3}: $: nesting deeper than {MAX_DEPTH} levels (hint: flatten the document)\n"


def test_nesting_thousands_of_levels_deep_is_refused(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n")
    assert code == 2
    assert output == ("hostile.yaml:1:1003: $: YAML syntax error: exceeded maximum nesting depth (while increasing flow level) "
                      "(hint: check indentation and quoting)\n")


def test_deep_block_mapping_nesting_is_refused(tmp_path: Path) -> None:
    content = "".join(f"{'  ' * i}k{i}:\n" for i in range(500)).encode()
    code, output = _validate(tmp_path, content)
    assert code == 2
    assert "nesting deeper than 64 levels" in output


def test_sixty_megabyte_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(60 * 1024 * 1024)
    result = mqspec("validate", str(path))
    assert result.exit_code == 2
    assert result.output == (f"{path}:1:1: $: file is {60 * 1024 * 1024:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit "
                             "(hint: split the scenario into smaller files)\n")


def test_invalid_utf8_names_the_byte_and_line(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, b"version: 1\nname: caf\xe9\n")
    assert code == 2
    assert output == "hostile.yaml:2:10: $: invalid UTF-8 byte 0xe9 at offset 20 (hint: save the file as UTF-8 text)\n"


def test_random_binary_bytes_are_refused_cleanly(tmp_path: Path) -> None:
    rng = random.Random(1234)
    for _ in range(20):
        code, output = _validate(tmp_path, bytes(rng.randrange(256) for _ in range(4096)))
        assert code == 2
        assert output.startswith("hostile.yaml:")
        assert "Traceback" not in output


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    result = mqspec("validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert result.output == f"{tmp_path / 'nope.yaml'}:0:0: $: cannot read file: No such file or directory (hint: check the path)\n"
