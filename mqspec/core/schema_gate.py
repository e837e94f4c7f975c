"""A fast yes/no check of a document against the scenario schema, for large files.

jsonschema gives the messages a person reads, but it spends about 100 µs per topology entry; a file of 6,000
queues and bindings took 0.6 s. fastjsonschema compiles the schema into plain Python that answers "valid" ten
times faster. It only answers yes or no: when it says no, jsonschema runs as before and reports every problem.

The gate must never say yes where jsonschema would say no. fastjsonschema implements draft 7, so the schema is
rewritten into a draft-7 schema that is at least as strict as the draft 2020-12 one (tests/test_schema_gate.py
checks the two agree on every file the tests have, valid and invalid, and on random mutations):
- `$ref` with sibling keywords: draft 7 ignores the siblings, so both go under `allOf`;
- `const` and non-string `enum` values: Python's `==` says `True == 1`, so each also states its JSON type;
- `x-unit` (mqspec's own keyword, a duration, size or rate past its bound): a format for strings, `maximum` for
  numbers (stricter than x-unit for numbers too large for a float, which only sends those files the slow way).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from mqspec.core import units

DRAFT7 = "http://json-schema.org/draft-07/schema#"
_NOT_SCHEMAS = frozenset({"enum", "const", "required", "default", "examples", "description", "title", "x-unit"})
_UNIT_PARSERS: Mapping[str, Callable[[Any], float]] = MappingProxyType({
    "duration": units.seconds, "size": units.size_bytes, "rate": units.per_second})


def gate_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The scenario schema rewritten for a draft-7 validator, at least as strict."""
    rewritten: dict[str, Any] = _rewrite(schema)
    rewritten.pop("$id", None)
    rewritten["$schema"] = DRAFT7
    return rewritten


def unit_formats(schema: dict[str, Any]) -> dict[str, Callable[[str], bool]]:
    """The string formats the rewritten schema names for its x-unit bounds: `x-unit:duration:65535` -> a check."""
    found: dict[str, Callable[[str], bool]] = {}
    _collect_units(schema, found)
    return found


def _rewrite(node: Any) -> Any:
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _rewrite_value(key, value) for key, value in node.items() if key != "x-unit"}
    strict = _typed_constants(out)
    if "x-unit" in node:
        strict.append(_unit_schema(node["x-unit"]))
    if "$ref" in out and (strict or set(out) - {"$ref", "description", "default", "title", "examples"}):
        strict.append({"$ref": out.pop("$ref")})
    if strict:
        out["allOf"] = [*out.get("allOf", []), *strict]
    return out


def _rewrite_value(key: str, value: Any) -> Any:
    if key in ("properties", "patternProperties", "$defs", "definitions"):
        return {name: _rewrite(schema) for name, schema in value.items()}
    if key in _NOT_SCHEMAS:
        return value
    return _rewrite(value)


def _typed_constants(node: dict[str, Any]) -> list[dict[str, Any]]:
    """`const: 1` accepts `true` in Python; a type beside it does not."""
    values = [node["const"]] if "const" in node else list(node.get("enum", []))
    if "const" in node:
        node["enum"] = [node.pop("const")]  # const is also where fastjsonschema's short messages break
    kinds = {_json_type(value) for value in values if not isinstance(value, str)}
    if not kinds:
        return []
    return [{"type": sorted(kinds | ({"string"} if any(isinstance(v, str) for v in values) else set()))}]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "array" if isinstance(value, list) else "object"


def _format_name(spec: dict[str, Any]) -> str:
    return f"x-unit:{spec['unit']}:{spec['max']}"


def _unit_schema(spec: dict[str, Any]) -> dict[str, Any]:
    return {"format": _format_name(spec), "maximum": spec["max"]}


def _collect_units(node: Any, found: dict[str, Callable[[str], bool]]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect_units(item, found)
    elif isinstance(node, dict):
        spec = node.get("x-unit")
        if isinstance(spec, dict):
            found[_format_name(spec)] = _within(_UNIT_PARSERS[spec["unit"]], spec["max"])
        for value in node.values():
            _collect_units(value, found)


def _within(parse: Callable[[Any], float], bound: float) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            value = float(parse(text))
        except (ValueError, OverflowError, TypeError):
            return True  # not written as this unit: the schema's own anyOf says so
        return value <= bound

    return check


_GATE_HEADER = '''\
# Generated by scripts/gen-gate from schemas/mqspec.schema.json (core/schema_gate.py). Do not edit; rerun the script.
# ruff: noqa
# mypy: ignore-errors
from types import MappingProxyType
'''


def gate_module(schema: dict[str, Any]) -> str:
    """The gate as Python source, compiled ahead of time by fastjsonschema: a module whose `validate(data,
    custom_formats)` raises on an invalid document. Its lookup table is made read-only like every other one."""
    import fastjsonschema

    code: str = fastjsonschema.compile_to_code(gate_schema(schema), formats=unit_formats(schema), use_default=False,
                                               detailed_exceptions=False)
    start = code.index("REGEX_PATTERNS = {")
    end = code.index("\n}\n", start)
    code = code[:start] + "REGEX_PATTERNS = MappingProxyType({" + code[start + len("REGEX_PATTERNS = {"):end] + "\n})\n" + code[end + 3:]
    return _GATE_HEADER + _NAMED_CALL.sub("custom_formats, None)", code)


# Where a generated check calls the check of a part, it names the part for its message (`.queues[7]`, built with
# str.format(**locals()) on every entry: a third of the gate's time). The gate's messages are never shown.
_NAMED_CALL = re.compile(r'custom_formats, \(name_prefix or "data"\) \+ "[^"]*"(?:\.format\(\*\*locals\(\)\))?\)')
