"""Load shapes: rate profiles, message size distributions, processing time distributions, entity patterns.

Pure values and the arithmetic the engine runs on them:

- a rate profile is a list of steps, ramps and bursts; `count(t)` is how many messages are due by t
  seconds after the start (the integral of the rate, plus bursts), `at(n)` its inverse: when message
  n (from 0) is due. The producer's scheduler publishes message n at start + at(n), as it did
  with start + n/rate for a fixed rate;
- a size distribution (fixed, uniform range, weighted list) is sampled once per producer instance
  into a table the hot path indexes by sequence number, with a seeded RNG (same file, same sizes);
- processing time: fixed, uniform, exponential or normal (clamped at 0);
- `expand` turns an entry with `count: N` into N entries with `{i}` replaced by 1..N (PerfTest's
  --queue-pattern 'q-%d' --queue-pattern-from 1 --queue-pattern-to N).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

PATTERN = "{i}"
SIZE_TABLE = 4096   # sampled sizes per producer instance, indexed by seq % SIZE_TABLE


# --- rate profiles --------------------------------------------------------------------------

@dataclass(frozen=True)
class RateStep:
    """One entry of a rate profile: `seconds` long (None: until the producer stops), the rate going from `rate`
    to `end_rate` linearly (equal for a step), after `burst` messages due at once when it begins."""

    seconds: float | None
    rate: float
    end_rate: float
    burst: int = 0
    where: str = ""


@dataclass(frozen=True)
class RateProfile:
    steps: tuple[RateStep, ...]
    starts: tuple[float, ...] = field(init=False, repr=False, compare=False)   # when each step begins
    counts: tuple[float, ...] = field(init=False, repr=False, compare=False)   # messages due before it begins
    end: float = field(init=False, repr=False, compare=False)
    full: float = field(init=False, repr=False, compare=False)                 # messages of the whole profile

    @classmethod
    def fixed(cls, rate: float) -> RateProfile:
        return cls((RateStep(None, rate, rate),))

    def __post_init__(self) -> None:
        starts, counts = [], []
        t = n = 0.0
        for step in self.steps:
            starts.append(t)
            counts.append(n)
            n += step.burst
            if step.seconds is None:
                t = n = math.inf
                break
            n += (step.rate + step.end_rate) / 2 * step.seconds
            t += step.seconds
        object.__setattr__(self, "starts", tuple(starts))
        object.__setattr__(self, "counts", tuple(counts))
        object.__setattr__(self, "end", t)
        object.__setattr__(self, "full", n)

    @property
    def seconds(self) -> float | None:
        """How long the profile lasts; None when its last step has no end."""
        return None if math.isinf(self.end) else self.end

    @property
    def total(self) -> int | None:
        """Messages the whole profile publishes; None when it has no end."""
        return None if math.isinf(self.full) else int(self.full + 1e-9)

    def count(self, t: float) -> float:
        """Messages due by t seconds after the start (a burst counts at once when its step begins)."""
        if t < 0:
            return 0.0
        i = bisect.bisect_right(self.starts, t) - 1
        step, x = self.steps[i], t - self.starts[i]
        if step.seconds is not None and x >= step.seconds:
            return self.full   # past the end of the last step
        slope = 0.0 if not step.seconds else (step.end_rate - step.rate) / step.seconds
        return self.counts[i] + step.burst + step.rate * x + slope * x * x / 2

    def due(self, t: float) -> int:
        """How many messages (0, 1, 2, ...) are due by t: message n once count(t) >= n (message 0 of a fixed
        rate at t = 0, message n at n/rate, as before profiles)."""
        due = int(self.count(t) + 1e-9) + 1
        total = self.total
        return due if total is None else min(due, total)

    def at(self, n: int) -> float | None:
        """When message n is due (seconds after the start); None when the profile ends before it."""
        total = self.total
        if total is not None and n >= total:
            return None
        last = len(self.steps) - 1
        for i, step in enumerate(self.steps):
            if i < last and self.counts[i + 1] <= n:
                continue
            left = n - self.counts[i] - step.burst   # messages into the step's rate part; <= 0: in its burst
            when = self.starts[i] + (_time_for(left, step) if left > 0 else 0.0)
            return None if math.isinf(when) else when
        return None   # pragma: no cover - total covers it

    def window(self, t: float, seconds: float) -> int:
        """Messages due in the `seconds` before t (at least 1): how much of a stall is caught up at once."""
        return max(1, int(self.count(t) - self.count(t - seconds)) + 1)


def _time_for(messages: float, step: RateStep) -> float:
    """Seconds into a step's rate part until `messages` are due: the inverse of rate*x + slope*x²/2."""
    slope = 0.0 if not step.seconds else (step.end_rate - step.rate) / step.seconds
    if abs(slope) < 1e-12:
        return messages / step.rate if step.rate > 0 else math.inf
    disc = step.rate * step.rate + 2 * slope * messages
    x = (-step.rate + math.sqrt(max(0.0, disc))) / slope
    return min(x, step.seconds or x)


# --- message sizes --------------------------------------------------------------------------

SizeKind = Literal["fixed", "uniform", "weighted"]


@dataclass(frozen=True)
class SizeDistribution:
    """Body sizes in bytes: fixed, uniform between low and high, or weighted choices of (size, weight)."""

    kind: SizeKind = "fixed"
    low: int = 100
    high: int = 100
    choices: tuple[tuple[int, float], ...] = ()

    @classmethod
    def fixed(cls, size: int) -> SizeDistribution:
        return cls("fixed", size, size)

    @property
    def smallest(self) -> int:
        return min(s for s, _ in self.choices) if self.kind == "weighted" else self.low

    @property
    def largest(self) -> int:
        return max(s for s, _ in self.choices) if self.kind == "weighted" else self.high

    @property
    def varies(self) -> bool:
        return self.smallest != self.largest

    def table(self, seed: int, length: int = SIZE_TABLE) -> list[int]:
        """`length` sizes drawn with a RNG seeded by `seed`; message seq gets table[seq % length]."""
        if not self.varies:
            return [self.low if self.kind != "weighted" else self.choices[0][0]]
        rng = random.Random(seed)
        if self.kind == "uniform":
            return [rng.randint(self.low, self.high) for _ in range(length)]
        sizes = [s for s, _ in self.choices]
        weights = [w for _, w in self.choices]
        return rng.choices(sizes, weights, k=length)


# --- processing time ------------------------------------------------------------------------

ProcessingKind = Literal["fixed", "uniform", "exponential", "normal"]


@dataclass(frozen=True)
class ProcessingTime:
    """Seconds of simulated work per message: fixed (low), uniform between low and high, exponential with
    `mean`, or normal with `mean` and `stddev` (clamped at 0)."""

    low: float = 0.0
    high: float = 0.0
    kind: ProcessingKind = "uniform"
    mean: float = 0.0
    stddev: float = 0.0

    @property
    def busy(self) -> bool:
        """Whether any message takes time at all."""
        return self.high > 0 or self.mean > 0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "exponential":
            return rng.expovariate(1 / self.mean) if self.mean > 0 else 0.0
        if self.kind == "normal":
            return max(0.0, rng.gauss(self.mean, self.stddev))
        low, high = self.low, self.high
        return low if low >= high else rng.uniform(low, high)


# --- entity patterns ------------------------------------------------------------------------

def expand(entries: Any) -> Iterator[tuple[int, Any]]:
    """Each entry of a list with its index in the file; one with `count: N` as N copies, `{i}` in its strings
    replaced by 1..N and `count` left out (so the copies keep the template's position for messages)."""
    if not isinstance(entries, list):
        return
    for index, entry in enumerate(entries):
        count = entry.get("count") if isinstance(entry, Mapping) else None
        if not isinstance(count, int) or isinstance(count, bool):
            yield index, entry
            continue
        template = {k: v for k, v in entry.items() if k != "count"}
        for i in range(1, count + 1):
            yield index, _substitute(template, str(i))


def _substitute(value: Any, i: str) -> Any:
    if isinstance(value, str):
        return value.replace(PATTERN, i)
    if isinstance(value, Mapping):
        return {_substitute(k, i): _substitute(v, i) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, i) for v in value]
    return value


def repeats_itself(entry: Mapping[str, Any]) -> bool:
    """An entry with count > 1 and no {i} anywhere: every copy would be the same."""
    count = entry.get("count")
    return isinstance(count, int) and count > 1 and PATTERN not in repr(entry)


def pattern_lists(data: Mapping[str, Any]) -> Sequence[tuple[tuple[str, str], Any]]:
    """The lists whose entries may carry `count`: topology queues and bindings, workload producers and consumers."""
    topology = data.get("topology") if isinstance(data.get("topology"), Mapping) else {}
    workload = data.get("workload") if isinstance(data.get("workload"), Mapping) else {}
    assert isinstance(topology, Mapping) and isinstance(workload, Mapping)
    return [(("topology", "queues"), topology.get("queues")), (("topology", "bindings"), topology.get("bindings")),
            (("workload", "producers"), workload.get("producers")), (("workload", "consumers"), workload.get("consumers"))]
