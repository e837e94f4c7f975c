"""Expectations while the run goes: which are already decided by counts that only grow.

A count of a producer or consumer (published, confirmed, received, ...) never goes down during a
run, so `received >= 100` is met for good once 100 arrived, and `received: 100` (at most 100) has
failed for good at 101. Everything else is decided only at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

from mqspec.core import model
from mqspec.core.result import Live

MET, FAILED, OPEN = "met", "failed", "open"


def verdict(expectation: model.Expectation, live: Live) -> str:
    if not isinstance(expectation, model.CountExpectation):
        return OPEN
    rows = {"producer": live.producers, "consumer": live.consumers}.get(expectation.subject_kind)
    if rows is None or expectation.subject not in rows or expectation.measure not in rows[expectation.subject]:
        return OPEN
    value = rows[expectation.subject][expectation.measure]
    bounds = expectation.bounds
    if bounds.high is not None and value > bounds.high:
        return FAILED
    if bounds.high is None and bounds.low is not None and value >= bounds.low:
        return MET
    return OPEN


def tally(expectations: Sequence[model.Expectation], live: Live) -> dict[str, int]:
    """How many expectations are met, failed and open right now."""
    counts = {MET: 0, FAILED: 0, OPEN: 0}
    for expectation in expectations:
        counts[verdict(expectation, live)] += 1
    return counts
