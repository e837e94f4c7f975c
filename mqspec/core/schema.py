"""The JSON Schema of scenario files, and schema errors turned into problems a person can act on."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import fastjsonschema

from mqspec.core import scalars, schema_gate, units
from mqspec.core.document import Document, PathKey
from mqspec.core.problems import Problem, shorten

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

SCHEMA_FILE = "mqspec.schema.json"
_REPO_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / SCHEMA_FILE


def schema_text() -> str:
    """The schema as shipped: package data in an installed wheel, schemas/ in a checkout."""
    packaged = resources.files("mqspec").joinpath("_data", SCHEMA_FILE)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return _REPO_SCHEMA.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


_UNITS: Mapping[str, Callable[[Any], float]] = MappingProxyType(
    {"duration": units.seconds, "size": units.size_bytes, "rate": units.per_second})
_UNIT_WORDS = MappingProxyType({"duration": "a duration longer than", "size": "a size larger than", "rate": "a rate faster than"})


def _unit_range(validator: Any, spec: dict[str, Any], instance: Any, node: dict[str, Any]) -> Iterator[ValidationError]:
    """x-unit: a duration, size or rate that reads as a number, but one past what can be carried or meant."""
    if isinstance(instance, bool) or not isinstance(instance, (int, float, str)):
        return
    try:
        value = float(_UNITS[spec["unit"]](instance))
    except (ValueError, OverflowError, TypeError):
        return  # not written as this unit at all: the anyOf next to it says so
    if not value <= spec["max"]:  # also true for infinity and NaN
        shown = instance if isinstance(instance, str) else scalars.plain(instance)
        from jsonschema.exceptions import ValidationError

        yield ValidationError(f"{shorten(str(shown))} is {_UNIT_WORDS[spec['unit']]} {spec['max_text']}")


@lru_cache(maxsize=1)
def _validator() -> Any:
    """jsonschema's draft 2020-12 validator with mqspec's x-unit keyword; imported only when the gate refuses a file
    (a file the gate passes never needs it: 50 ms of imports and 10 ms of checking saved on every run)."""
    import jsonschema

    extended = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"x-unit": _unit_range})  # type: ignore[no-untyped-call]
    return extended(schema())


@lru_cache(maxsize=1)
def gate() -> Callable[[Any], Any]:
    """A fast check that raises on an invalid document and says nothing else (core/schema_gate.py), compiled ahead
    of time into core/gate_code.py by scripts/gen-gate."""
    from mqspec.core import gate_code

    formats = schema_gate.unit_formats(schema())
    validate: Callable[..., Any] = gate_code.validate
    return lambda data: validate(data, custom_formats=formats)


def passes_gate(data: Any) -> bool:
    try:
        gate()(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def violations(data: Any) -> list[str]:
    """jsonschema's verdict on plain data: the message of every error, none when valid."""
    return [error.message for error in _validator().iter_errors(data)]


def check(doc: Document) -> list[Problem]:
    """Every schema problem in the document, one per place, in document order: none when the fast gate passes it
    (it is at least as strict as jsonschema), jsonschema's messages otherwise."""
    if passes_gate(doc.data):
        return []
    found = [problem for error in _leaf_errors(_validator().iter_errors(doc.data)) for problem in _problems(doc, error)]
    unique = {(p.line, p.col, p.path, p.message): p for p in found}
    return sorted(unique.values(), key=lambda p: (p.line, p.col))


def _leaf_errors(errors: Iterator[ValidationError]) -> Iterator[ValidationError]:
    for error in errors:
        if error.validator in ("anyOf", "oneOf") and error.context and not _is_value_format(error):
            from jsonschema.exceptions import best_match

            yield best_match(error.context)
        else:
            yield _out_of_range(error) or _scalar_format(error) or error


def _scalar_format(error: ValidationError) -> ValidationError | None:
    """A scalar where a value takes a scalar format or a list of steps (a rate or a rate profile): the scalar
    format's own message ("-10 is not a rate in messages per second"), not the list's."""
    if isinstance(error.instance, list | dict) or not _is_value_format(error):
        return None
    return next((inner for inner in error.context or () if inner.validator == "anyOf" and _is_value_format(inner)), None)


def _out_of_range(error: ValidationError) -> ValidationError | None:
    """A value of the right shape but past its unit's bound (1.0e+300 as a rate) says so, even where the value
    may also take another shape (a rate or a profile of rates)."""
    for inner in error.context or ():
        if inner.validator == "x-unit":
            return inner
        found = _out_of_range(inner)
        if found is not None:
            return found
    return None


def _is_value_format(error: ValidationError) -> bool:
    """anyOf schemas like duration/size/rate read best as one message built from their description."""
    return isinstance(error.schema, dict) and "description" in error.schema and error.validator == "anyOf"


def errors_at(doc: Document) -> list[tuple[PathKey, str]]:
    """(path, validator) of every schema error: the places a partial check must leave out (a missing required
    key is given as the path it should have)."""
    found: list[tuple[PathKey, str]] = []
    for error in _leaf_errors(_validator().iter_errors(doc.data)):
        path: PathKey = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            found += [((*path, key), "additionalProperties") for key in _unknown_keys(error)]
        elif error.validator == "required" and isinstance(error.instance, dict) and isinstance(error.validator_value, list):
            found += [((*path, key), "required") for key in error.validator_value if key not in error.instance]
        else:
            found.append((path, str(error.validator)))
    return found


def _problems(doc: Document, error: ValidationError) -> list[Problem]:
    path: PathKey = tuple(error.absolute_path)
    if path and path[-1] == "password":  # never echo what might be a secret
        return [doc.problem(path, "password must be text", "write password: ${APP_PASSWORD} and export APP_PASSWORD")]
    if error.validator == "additionalProperties":
        return [doc.problem((*path, key), *_explain_unknown(error, key)) for key in _unknown_keys(error)]
    message, hint = _explain(error)
    return [doc.problem(path, message, hint)]


def _explain(error: ValidationError) -> tuple[str, str]:
    explain = {
        "required": _explain_required,
        "type": _explain_type,
        "enum": _explain_enum,
        "const": _explain_const,
        "anyOf": _explain_format,
        "minimum": _explain_bound,
        "maximum": _explain_bound,
        "exclusiveMinimum": _explain_bound,
        "minLength": _explain_length,
        "minItems": _explain_length,
        "x-unit": _explain_range,
    }.get(str(error.validator))
    if explain is not None:
        return explain(error)
    return error.message, _hint_from_description(error)


def _unknown_keys(error: ValidationError) -> list[str]:
    node: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    allowed = set(node.get("properties", {}))
    patterns = [re.compile(pattern) for pattern in node.get("patternProperties", {})]
    instance = error.instance if isinstance(error.instance, dict) else {}
    return [key for key in instance if key not in allowed and not any(p.search(key) for p in patterns)]


def _explain_unknown(error: ValidationError, key: str) -> tuple[str, str]:
    allowed = sorted(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{key}'; did you mean '{close[0]}'?", f"rename it to '{close[0]}'"
    if key == "<<":
        return "unknown key '<<'", "a merge key needs an alias: <<: *defaults"
    return f"unknown key '{key}'", "allowed keys here: " + ", ".join(allowed)


def _explain_required(error: ValidationError) -> tuple[str, str]:
    missing = str(error.message).split("'")[1] if "'" in error.message else error.message
    return f"missing required key '{missing}'", f"add '{missing}: ...'"


_TYPE_NAMES = MappingProxyType({"string": "a string", "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "null"})


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _explain_type(error: ValidationError) -> tuple[str, str]:
    wanted = error.validator_value
    kinds = wanted if isinstance(wanted, list) else [wanted]
    names = " or ".join(_TYPE_NAMES.get(str(k), str(k)) for k in kinds)
    if "string" in kinds and not isinstance(error.instance, (str, dict, list)) and error.instance is not None:
        return f"expected {names}, got {_describe(error.instance)}", "put it in quotes; YAML read it as a number, boolean or date"
    if isinstance(error.instance, str) and "string" not in kinds:
        return f"expected {names}, got {_describe(error.instance)}", f"write {names} without quotes"
    return f"expected {names}, got {_describe(error.instance)}", _hint_from_description(error) or f"write {names}"


def _explain_enum(error: ValidationError) -> tuple[str, str]:
    choices = [str(c) for c in error.validator_value] if isinstance(error.validator_value, list) else []
    message = f"{_describe(error.instance)} is not one of: {', '.join(choices)}"
    close = difflib.get_close_matches(str(error.instance), choices, n=1, cutoff=0.6)
    return (f"{message}; did you mean '{close[0]}'?", f"use '{close[0]}'") if close else (message, "pick one of the listed values")


def _explain_const(error: ValidationError) -> tuple[str, str]:
    if error.absolute_path and error.absolute_path[-1] == "version":
        return f"unsupported version {_describe(error.instance)}", "this mqspec reads version: 1"
    return f"must be {_describe(error.validator_value)}, got {_describe(error.instance)}", "remove the key or set it as shown"


def _explain_format(error: ValidationError) -> tuple[str, str]:
    node: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    description = str(node.get("description", ""))
    kind, _, example = description.partition(":")
    choices = [str(c) for alt in node.get("anyOf", []) for c in alt.get("enum", [])]
    if choices:
        close = difflib.get_close_matches(str(error.instance), choices, n=1, cutoff=0.6)
        if close:
            return f"{_describe(error.instance)} is not a valid value; did you mean '{close[0]}'?", description
        return f"{_describe(error.instance)} is not a valid value", description
    return f"{_describe(error.instance)} is not {kind.lower().strip() or 'valid here'}", f"write{example.rstrip('.')}" if example else ""


def _explain_bound(error: ValidationError) -> tuple[str, str]:
    words = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than"}[str(error.validator)]
    return f"must be {words} {error.validator_value}, got {_describe(error.instance)}", _hint_from_description(error)


def _explain_range(error: ValidationError) -> tuple[str, str]:
    return error.message, "check the unit, or write a smaller value"


def _explain_length(error: ValidationError) -> tuple[str, str]:
    return "must not be empty", _hint_from_description(error) or "give a value"


def _hint_from_description(error: ValidationError) -> str:
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    return str(description) if description else ""
