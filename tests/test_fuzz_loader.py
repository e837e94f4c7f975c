"""Generated and mutated documents: the loader answers with a scenario or file:line problems, never a crash."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from mqspec.core.problems import errors
from mqspec.pipeline import load
from tests.conftest import SCENARIOS

SEEDS = [p.read_bytes() for p in sorted(SCENARIOS.glob("*.yaml"))] or [b"version: 1\nname: x\n"]
FUZZ = settings(max_examples=300, deadline=2000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False), st.text(max_size=20))
_keys = st.sampled_from(["version", "name", "topology", "queues", "exchanges", "bindings", "workload", "producers",
                         "consumers", "expect", "name", "type", "durable", "queue", "exchange", "keys", "messages", "x"])
_documents = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
                          max_leaves=30)


def _check(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(content)
    loaded = load(str(path), env={})
    if loaded.scenario is None:
        problems = errors(loaded.problems)
        assert problems, "no scenario and no error"
        for problem in problems:
            assert problem.file == str(path)
            assert problem.line >= 1 and problem.col >= 1
            assert problem.message


@seed(20261127)
@FUZZ
@given(base=st.sampled_from(SEEDS), data=st.data())
def test_mutated_scenarios_load_or_report_problems(tmp_path_factory: object, base: bytes, data: st.DataObject) -> None:
    content = bytearray(base)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, max(len(content) - 1, 0)))
        action = data.draw(st.sampled_from(["flip", "delete", "insert", "duplicate"]))
        if action == "flip" and content:
            content[position] = data.draw(st.integers(0, 255))
        elif action == "delete":
            del content[position:position + data.draw(st.integers(1, 20))]
        elif action == "insert":
            content[position:position] = data.draw(st.sampled_from([b"\t", b":", b"- ", b"&a ", b"*a", b"{", b"]", b"${X}", b"\n  "]))
        else:
            content[position:position] = content[position:position + data.draw(st.integers(1, 40))]
    _check(_tmp(tmp_path_factory), bytes(content))


@seed(20261127)
@FUZZ
@given(document=_documents)
def test_generated_documents_load_or_report_problems(tmp_path_factory: object, document: object) -> None:
    wrapped = {"version": 1, "name": "fuzz", "topology": document} if not isinstance(document, dict) else document
    _check(_tmp(tmp_path_factory), yaml.safe_dump(wrapped).encode())


def _tmp(factory: object) -> Path:
    path: Path = factory.mktemp("fuzz")  # type: ignore[attr-defined]
    return path
