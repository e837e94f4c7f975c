"""The fast schema gate (core/schema_gate.py) never passes a document that jsonschema refuses.

Large files are checked by fastjsonschema first and by jsonschema only when the gate says no; a gate more
lenient than jsonschema would let an invalid file through unreported. So every document the tests have, valid
and invalid, and thousands of mutations of them, must get the same verdict from both, or a stricter one from the
gate (which only costs time).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from mqspec.core import schema
from mqspec.core.document import DocumentError, parse_bytes
from tests.conftest import SCENARIOS

CORPUS = Path(__file__).parent / "corpus" / "invalid"


def _data(path: Path) -> Any:
    try:
        return parse_bytes(path.read_bytes(), str(path), {}).data
    except DocumentError:
        return None


def _valid_by_jsonschema(data: Any) -> bool:
    return not schema.violations(data)


VALID = [(p.name, _data(p)) for p in sorted(SCENARIOS.glob("*.yaml"))]
INVALID = [(p.name, d) for p in sorted(CORPUS.glob("*.yaml")) if (d := _data(p)) is not None]


@pytest.mark.parametrize(("name", "data"), VALID, ids=[name for name, _ in VALID])
def test_the_gate_passes_every_shipped_scenario(name: str, data: Any) -> None:
    assert _valid_by_jsonschema(data)
    assert schema.passes_gate(data)


@pytest.mark.parametrize(("name", "data"), INVALID, ids=[name for name, _ in INVALID])
def test_the_gate_refuses_what_jsonschema_refuses_in_the_invalid_corpus(name: str, data: Any) -> None:
    if not _valid_by_jsonschema(data):
        assert not schema.passes_gate(data)


def _base() -> dict[str, Any]:
    return {"version": 1, "name": "gate",
            "broker": {"url": "amqp://localhost", "heartbeat": 30},
            "topology": {"exchanges": [{"name": "x", "type": "topic"}],
                         "queues": [{"name": "q", "message_ttl": 60000}],
                         "bindings": [{"exchange": "x", "queue": "q", "keys": ["a.#"]}]},
            "workload": {"duration": "5s",
                         "producers": [{"name": "p", "exchange": "x", "routing_keys": ["a.b"], "rate": "100/s", "size": "1KiB"}],
                         "consumers": [{"name": "c", "queue": "q"}]},
            "expect": [{"no_loss": True}, {"no_duplicates": True}]}


@pytest.mark.parametrize(("path", "value"), [
    (("version",), True),  # const 1: Python says True == 1
    (("expect", 1, "no_duplicates"), 1),  # const true: Python says 1 == True
    (("expect", 0, "no_loss"), 1),
    (("broker", "heartbeat"), 70000),  # x-unit beside a $ref: heartbeat at most 65535 s
    (("broker", "heartbeat"), "70000s"),
    (("workload", "producers", 0, "size"), "200MiB"),  # x-unit beside a $ref: at most 128 MiB
    (("workload", "producers", 0, "rate"), "2000000000/s"),
    (("workload", "duration"), "5000000000s"),
    (("workload", "duration"), 1e300),
    (("topology", "queues", 0, "message_ttl"), True),
])
def test_the_gate_refuses_the_values_a_draft_7_translation_could_let_through(path: tuple[Any, ...], value: Any) -> None:
    data = _base()
    assert _valid_by_jsonschema(data) and schema.passes_gate(data)
    _set(data, path, value)
    assert not _valid_by_jsonschema(data)
    assert not schema.passes_gate(data)


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64), st.floats(allow_nan=False), st.text(max_size=12),
              st.sampled_from(["30s", "1KiB", "100/s", "topic", "quorum", "stream", "reject", "first", "-1s", "", "0"]),
              # past a bound, or the bool-int confusions of Python's ==
              st.sampled_from([True, False, 0, 1, 70000, "70000s", "200MiB", "2000000000/s", "5000000000s", 1e300, 2**63])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["name", "type", "x", "rate", "for"]),
                                                               inner, max_size=3),
    max_leaves=6)
_KEYS = ["name", "type", "durable", "queue", "exchange", "keys", "rate", "size", "duration", "arguments", "for",
         "max_length", "message_ttl", "prefetch", "ack", "confirm", "x-extra", "vhost", "offset", "count"]
_SEEDS = [data for _, data in VALID] + [_base()]


@seed(20261202)
@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(_SEEDS), data=st.data())
def test_the_gate_is_never_more_lenient_than_jsonschema_on_mutated_scenarios(base: Any, data: st.DataObject) -> None:
    document = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(document)
        path = data.draw(st.sampled_from(paths))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "add", "delete"]))
        if action == "replace":
            parent[path[-1]] = data.draw(_values)
        elif action == "add" and isinstance(parent[path[-1]], dict):
            parent[path[-1]][data.draw(st.sampled_from(_KEYS))] = data.draw(_values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
    if not _valid_by_jsonschema(document):
        assert not schema.passes_gate(document), document


_BOUNDARY = [True, False, None, 0, 1, -1, 70000, 2**63, 1e300, 0.5, "", "x", "30s", "70000s", "200MiB",
             "2000000000/s", "5000000000s", [], {}]


@pytest.mark.parametrize("base", _SEEDS, ids=[name for name, _ in VALID] + ["base"])
def test_the_gate_agrees_with_jsonschema_on_every_single_value_swapped_for_a_boundary(base: Any) -> None:
    lenient = []
    for path in _paths(base):
        for value in _BOUNDARY:
            document = copy.deepcopy(base)
            _set(document, path, value)
            if schema.passes_gate(document) and not _valid_by_jsonschema(document):
                lenient.append((path, value))
    assert not lenient


def _many_queues(bad_at: int | None) -> bytes:
    lines = ["version: 1", "name: many", "topology:", "  queues:"]
    lines += [f"    - {{name: q.{i}, message_ttl: {'soon' if i == bad_at else 60000}}}" for i in range(1200)]
    return ("\n".join(lines) + "\n").encode()


def test_a_large_file_the_gate_refuses_still_gets_jsonschemas_problem_at_its_line() -> None:
    from mqspec.core.loader import load_bytes

    assert load_bytes(_many_queues(None), "many.yaml", env={}).scenario is not None
    loaded = load_bytes(_many_queues(700), "many.yaml", env={})
    assert loaded.scenario is None
    problems = [p for p in loaded.problems if p.severity == "error"]
    assert [(p.line, p.path) for p in problems] == [(705, "$.topology.queues[700].message_ttl")], problems


def test_the_shipped_gate_module_is_compiled_from_the_current_schema() -> None:
    """core/gate_code.py is generated by scripts/gen-gate; a schema change without a rerun would gate files with
    yesterday's rules (and the tests above would check the stale module, not the schema)."""
    from mqspec.core import schema_gate

    shipped = (Path(schema.__file__).parent / "gate_code.py").read_text(encoding="utf-8")
    assert shipped == schema_gate.gate_module(schema.schema()), "stale: run .venv/bin/python scripts/gen-gate"
