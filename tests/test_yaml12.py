"""Plain values are read as YAML 1.2 reads them, everywhere: the file, `route -H`, and what reaches the broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqspec.broker.management import Management, q
from mqspec.commands.route import header_value
from mqspec.core.loader import load_bytes
from tests.conftest import mqspec

HEADERS = """\
version: 1
name: headers
topology:
  exchanges:
    - {name: docs, type: headers}
  queues:
    - {name: inbox, max_length: 10}
  bindings:
    - {exchange: docs, queue: inbox, match: all, headers: {country: NO, enabled: on, ver: 1.10, zip: 01234}}
"""


def _scenario(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_norway_on_and_a_leading_zero_read_as_yaml_1_2_says() -> None:
    loaded = load_bytes(HEADERS.encode(), "s.yaml")
    assert loaded.scenario is not None
    assert dict(loaded.scenario.topology.bindings[0].arguments) == {
        "x-match": "all", "country": "NO", "enabled": "on", "ver": 1.1, "zip": 1234}


@pytest.mark.parametrize(("text", "value"), [
    ("", None), ("yes", "yes"), ("No", "No"), ("off", "off"), ("y", "y"), ("true", True), ("FALSE", False), ("~", None), ("null", None),
    ("01234", 1234), ("0o17", 15), ("0x1F", 31), ("1_000", "1_000"), ("0b101", "0b101"), ("1:20", "1:20"), ("-42", -42),
    ("1e3", 1000), ("1.10", 1.1), ("2001-12-14", "2001-12-14"), ("+0x1F", "+0x1F"),
])
def test_plain_scalars_follow_the_yaml_1_2_core_schema(text: str, value: object) -> None:
    loaded = load_bytes(f"version: 1\nname: s\nx-value: {text}\n".encode(), "s.yaml")
    assert loaded.scenario is not None
    assert type(_raw_value(text)) is type(value)
    assert _raw_value(text) == value


def _raw_value(text: str) -> object:
    from mqspec.core.document import parse_bytes

    return parse_bytes(f"x: {text}\n".encode(), "s.yaml", {}).data["x"]


def test_validate_warns_where_yaml_1_1_tools_read_a_value_otherwise(tmp_path: Path) -> None:
    path = _scenario(tmp_path, HEADERS)
    result = mqspec("validate", str(path))
    assert result.exit_code == 0
    where = "$.topology.bindings[0].headers"
    assert result.output == (
        f"{path}:9:69: warning: {where}.country: NO reads as the string \"NO\" in mqspec (YAML 1.2), but as false in "
        'YAML 1.1 tools such as PyYAML (hint: quote it ("NO") if it is text; write false if it is a boolean, so that every '
        "YAML tool reads the same)\n"
        f"{path}:9:82: warning: {where}.enabled: on reads as the string \"on\" in mqspec (YAML 1.2), but as true in "
        'YAML 1.1 tools such as PyYAML (hint: quote it ("on") if it is text; write true if it is a boolean, so that every '
        "YAML tool reads the same)\n"
        f"{path}:9:102: warning: {where}.zip: 01234 reads as 1234 in mqspec (YAML 1.2), but as 668 in YAML 1.1 tools such as "
        'PyYAML (hint: quote it ("01234") if it is text; write 1234 or 668 if it is a number, so that every YAML tool reads '
        "the same)\n"
        f"{path}: valid (3 warnings)\n")


def test_quoted_values_and_values_both_versions_agree_on_are_not_warned_about(tmp_path: Path) -> None:
    path = _scenario(tmp_path, HEADERS.replace("country: NO, enabled: on, ver: 1.10, zip: 01234",
                                               'country: "NO", enabled: true, ver: 1.10, zip: "01234"'))
    result = mqspec("validate", str(path))
    assert (result.exit_code, result.output) == (0, f"{path}: valid\n")


def test_route_header_values_are_typed_as_the_file_types_them(tmp_path: Path) -> None:
    path = _scenario(tmp_path, HEADERS.replace("country: NO, enabled: on, ver: 1.10, zip: 01234",
                                               'country: "NO", zip: 1234'))
    result = mqspec("route", str(path), "-e", "docs", "-H", "country=NO", "-H", "zip=01234")
    assert (result.exit_code, result.stdout) == (0, "docs -all: country=NO zip=1234-> inbox\n")


@pytest.mark.parametrize(("raw", "value"), [
    ("NO", "NO"), ("on", "on"), ("01234", 1234), ("1_000", "1_000"), ("true", True), ("2.0", 2), ("1.5", 1.5),
    ('"1"', "1"), (".inf", ".inf"),
])
def test_header_value_reads_a_command_line_value_as_yaml_1_2(raw: str, value: object) -> None:
    assert type(header_value(raw)) is type(value)
    assert header_value(raw) == value


def test_binding_headers_reach_the_broker_as_yaml_1_2_reads_them(tmp_path: Path, url: str, vhost: str,
                                                                 management: Management) -> None:
    path = _scenario(tmp_path, HEADERS)
    result = mqspec("--url", url, "apply", "--topology-only", str(path))
    assert result.exit_code == 0, result.output
    bindings = management.get(f"/bindings/{q(vhost)}/e/docs/q/inbox", "bindings")
    assert [b["arguments"] for b in bindings] == [{"x-match": "all", "country": "NO", "enabled": "on", "ver": 1.1, "zip": 1234}]


_WORDS = ["yes", "No", "ON", "off", "y", "N", "null", "Null", "true", "FALSE", "tRue", "nulls", "Yes!", "onion",
          "topo.q.1", "fanout", "néant", "Ω", "t", "f", "o", "~", "=", ".inf", "0o7", "1_000", "12:30", "2001-12-14"]


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.sampled_from(_WORDS), st.text(max_size=12)))
def test_the_fast_plain_text_answer_never_differs_from_either_yaml_version(text: str) -> None:
    """The reader skips resolving a plain scalar that scalars.plain_text calls text; both versions must agree."""
    from mqspec.core import scalars

    if scalars.plain_text(text):
        assert scalars.resolve(text) == text
        assert scalars.yaml11(text) == text
