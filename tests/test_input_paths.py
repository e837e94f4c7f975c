"""Files a scenario names (TLS files, body_file) are found from the scenario's folder, once, whatever the working folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqspec.pipeline import load
from tests.conftest import mqspec

NAMED_FILES = """\
version: 1
name: t
broker:
  url: amqps://app@rabbit:5671/%2F
  tls: {ca_file: ca.pem, cert_file: certs/client.pem, key_file: certs/client.key}
topology:
  queues:
    - {name: q, max_length: 10}
workload:
  producers:
    - {name: p, queue: q, messages: 1, body_file: bodies/order.json}
  consumers:
    - {name: c, queue: q}
"""


@pytest.fixture
def from_parent_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """scenarios/t.yaml and the files it names, with the parent folder as the working folder (as a pre-commit hook runs)."""
    folder = tmp_path / "scenarios"
    for name in ("ca.pem", "certs/client.pem", "certs/client.key", "bodies/order.json"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
    (folder / "t.yaml").write_text(NAMED_FILES)
    monkeypatch.chdir(tmp_path)
    return Path("scenarios/t.yaml")


def test_relative_tls_and_body_files_are_found_when_validating_from_a_parent_folder(from_parent_folder: Path) -> None:
    result = mqspec("validate", str(from_parent_folder))
    assert (result.exit_code, result.output) == (0, "scenarios/t.yaml: valid\n")


def test_the_model_holds_each_path_resolved_once(from_parent_folder: Path) -> None:
    loaded = load(str(from_parent_folder), env={})
    assert loaded.scenario is not None, loaded.problems
    tls = loaded.scenario.broker.tls
    assert (tls.ca_file, tls.cert_file, tls.key_file) == ("scenarios/ca.pem", "scenarios/certs/client.pem", "scenarios/certs/client.key")
    assert loaded.scenario.workload.producers[0].body == b"{}"


def test_a_missing_file_names_what_the_file_says_and_where_it_was_looked_for(from_parent_folder: Path) -> None:
    Path("scenarios/ca.pem").unlink()
    Path("scenarios/bodies/order.json").unlink()
    result = mqspec("validate", str(from_parent_folder))
    assert result.exit_code == 2
    assert result.output == (
        "scenarios/t.yaml:5:9: $.broker.tls.ca_file: ca_file 'ca.pem' does not exist (looked for scenarios/ca.pem) "
        "(hint: give the path of a PEM file; a relative path starts at the scenario file's folder)\n"
        "scenarios/t.yaml:11:40: $.workload.producers[0].body_file: body_file 'bodies/order.json' does not exist "
        "(looked for scenarios/bodies/order.json) (hint: give the path of a file; a relative path starts at the scenario "
        "file's folder)\n")
