"""The run second by second: rates, latency percentiles and queue depths, as plain data.

The engine feeds a Recorder once a second with cumulative counters (from the workers' progress
reports, which it reads anyway), the quantised latency counts the workers moved out of their
consumers since the last second, and queue depths; the Recorder turns them into per-second
points. Nothing here runs per message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PRODUCER_MEASURES = ("published", "confirmed")
CONSUMER_MEASURES = ("received", "acked")
PERCENTILES = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))


@dataclass(frozen=True)
class LatencyPoint:
    """End-to-end latency of the messages delivered in one second, in milliseconds."""

    p50: float
    p95: float
    p99: float
    max: float
    count: int


@dataclass(frozen=True)
class Point:
    """One second of the run. Rates are per second over the interval ending at `t`."""

    t: float
    producers: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    consumers: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    latency: LatencyPoint | None = None
    queues: Mapping[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """Something that happened at `t` seconds: a fault fired."""

    t: float
    text: str


@dataclass(frozen=True)
class TimeSeries:
    points: tuple[Point, ...] = ()
    events: tuple[Event, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.points


def percentiles(counts: Mapping[int, int]) -> LatencyPoint | None:
    """p50/p95/p99/max of microsecond counts (value -> occurrences), in milliseconds; None when empty."""
    total = sum(counts.values())
    if total <= 0:
        return None
    values = sorted(counts)
    found: dict[str, float] = {}
    wanted = list(PERCENTILES)
    seen = 0
    for value in values:
        seen += counts[value]
        while wanted and seen >= total * wanted[0][1] / 100:
            found[wanted.pop(0)[0]] = value / 1000
        if not wanted:
            break
    return LatencyPoint(round(found["p50"], 3), round(found["p95"], 3), round(found["p99"], 3), round(values[-1] / 1000, 3),
                        total)


def merge_counts(into: dict[int, int], counts: Mapping[int, int]) -> None:
    for value, count in counts.items():
        into[value] = into.get(value, 0) + count


class Recorder:
    """Turns cumulative counters sampled about once a second into per-second points."""

    def __init__(self) -> None:
        self.points: list[Point] = []
        self.events: list[Event] = []
        self.pending_latency: dict[int, int] = {}
        self.previous: dict[tuple[str, str, str], int] = {}
        self.previous_t = 0.0

    def latency(self, counts: Mapping[int, int]) -> None:
        """Latency counts (microseconds -> occurrences) that arrived since the last sample."""
        merge_counts(self.pending_latency, counts)

    def event(self, t: float, text: str) -> None:
        self.events.append(Event(round(t, 3), text))

    def sample(self, t: float, producers: Mapping[str, Mapping[str, int]], consumers: Mapping[str, Mapping[str, int]],
               queues: Mapping[str, int | None]) -> Point:
        """Cumulative counters by name and measure at `t` seconds; returns (and keeps) the second ending there.

        Each rate is the count over the span between the reported (rounded) times, so that rate x span gives
        back the count: the series adds up to what was counted, however short the last span is."""
        t = round(t, 3)
        span = t - self.previous_t
        point = Point(
            t=t,
            producers={name: self._rates("p", name, row, PRODUCER_MEASURES, span) for name, row in producers.items()},
            consumers={name: self._rates("c", name, row, CONSUMER_MEASURES, span) for name, row in consumers.items()},
            latency=percentiles(self.pending_latency),
            queues=dict(queues),
        )
        self.pending_latency = {}
        self.previous_t = t
        self.points.append(point)
        return point

    def _rates(self, kind: str, name: str, row: Mapping[str, int], measures: Iterable[str], span: float) -> dict[str, float]:
        rates: dict[str, float] = {}
        for measure in measures:
            key = (kind, name, measure)
            value = row.get(measure, 0)
            if span <= 0:
                rates[measure] = 0.0
                continue  # the count carries over into the next span
            rates[measure] = round((value - self.previous.get(key, 0)) / span, 3)
            self.previous[key] = value
        return rates

    def series(self) -> TimeSeries:
        return TimeSeries(tuple(self.points), tuple(self.events))


def columns(series: TimeSeries) -> dict[str, Any]:
    """The series as columns, one list per figure, aligned with `t` (the report's JSON shape).

    A producer or consumer absent from a second counts 0 there; a latency percentile with no
    delivery in a second, and a queue depth that could not be read, is None.
    """
    points = series.points
    producers = {name for p in points for name in p.producers}
    consumers = {name for p in points for name in p.consumers}
    queues = list(dict.fromkeys(name for p in points for name in p.queues))
    return {
        "t": [p.t for p in points],
        "producers": {name: {m: [p.producers.get(name, {}).get(m, 0.0) for p in points] for m in PRODUCER_MEASURES}
                      for name in sorted(producers)},
        "consumers": {name: {m: [p.consumers.get(name, {}).get(m, 0.0) for p in points] for m in CONSUMER_MEASURES}
                      for name in sorted(consumers)},
        "latency_ms": {m: [None if p.latency is None else getattr(p.latency, m) for p in points]
                       for m in ("p50", "p95", "p99", "max", "count")},
        "queues": {name: {"depth": [p.queues.get(name) for p in points]} for name in queues},
        "events": [{"t": e.t, "text": e.text} for e in series.events],
    }
