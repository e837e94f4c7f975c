"""The JSON Schema is the single source of the format: valid itself, shipped, printed, and met by every scenario."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from mqspec.core.schema import schema, schema_text
from tests.conftest import ROOT, SCENARIOS, mqspec


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_packaged_schema_is_the_one_in_schemas_folder() -> None:
    assert json.loads(schema_text()) == json.loads((ROOT / "schemas" / "mqspec.schema.json").read_text())


def test_schema_command_prints_the_schema() -> None:
    result = mqspec("schema")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == schema()


def _objects(node: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            found.append(node)
        for value in node.values():
            found += _objects(value)
    elif isinstance(node, list):
        for value in node:
            found += _objects(value)
    return found


def test_every_object_in_the_schema_refuses_unknown_keys() -> None:
    open_objects = [o for o in _objects(schema()) if o.get("additionalProperties") is not False]
    assert open_objects == []


@pytest.mark.parametrize("scenario", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_scenario_validates(scenario: Path) -> None:
    result = mqspec("validate", "--strict", str(scenario))
    assert result.exit_code == 0, result.output


def _undocumented(node: object, where: str = "$") -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, prop in node.get("properties", {}).items():
            ref = prop.get("$ref", "") if isinstance(prop, dict) else ""
            target = schema()["$defs"].get(ref.rsplit("/", 1)[-1], {}) if ref else {}
            if not prop.get("description") and not target.get("description"):
                found.append(f"{where}.{key}")
        for key, value in node.items():
            found += _undocumented(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _undocumented(value, f"{where}[{i}]")
    return found


def test_every_property_in_the_schema_has_a_description() -> None:
    assert _undocumented(schema()) == []
