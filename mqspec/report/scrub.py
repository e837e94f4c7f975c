"""Secrets out of every report: the same redactor that guards stderr, applied to the data before rendering.

A failing restart command, a broker error or a note can quote a URL or a password verbatim; the
text, JSON and JUnit reports all render from the scrubbed copy, so none of them can leak it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mqspec.core.expect import ExpectationResult
from mqspec.core.result import RunResult

T = TypeVar("T")


def scrub(value: T, redact: Callable[[str], str]) -> T:
    """A copy of value (strings, tuples, lists, mappings, dataclasses) with every string redacted."""
    return _scrub(value, redact)  # type: ignore[no-any-return]


def _scrub(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, tuple):
        return type(value)(*(_scrub(v, redact) for v in value)) if hasattr(value, "_fields") else \
            tuple(_scrub(v, redact) for v in value)
    if isinstance(value, list):
        return [_scrub(v, redact) for v in value]
    if isinstance(value, Mapping):
        return {_scrub(k, redact): _scrub(v, redact) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _scrub(getattr(value, f.name), redact) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    return value


def scrub_run(run: RunResult, results: list[ExpectationResult],
              redact: Callable[[str], str]) -> tuple[RunResult, list[ExpectationResult]]:
    return scrub(run, redact), [scrub(r, redact) for r in results]
