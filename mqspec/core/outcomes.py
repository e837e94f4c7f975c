"""The fate of every message of a run, and how the run looked around each fault.

Outcomes split each producer stream's sequence numbers by two independent facts: did the broker
confirm the message (a producer without confirms counts every published message as confirmed,
as `no_loss` does), and did any consumer see it (first delivery, redelivery or dead-lettered)?

* confirmed_consumed, confirmed_lost: the broker promised it; lost is real loss;
* unconfirmed_consumed, unconfirmed_lost: nacked, returned or never confirmed (the connection died
  first); losing those is allowed, and counted;
* redelivered: messages seen again with redelivered=True (requeued after a consumer or node loss);
* duplicated: copies of one message on one queue beyond the first, redelivered or not (a
  republished copy that the broker had in fact enqueued, a delivery repeated after a reconnect).

The timeline is the parent's samples of the workers' cumulative counters (ten a second). A
queue is *unavailable* while none of its consumers receives anything for at least GAP seconds (half a second)
although messages wait for it (the published messages the routing oracle sends to that queue, minus
what its consumers received, is positive), ending at the next delivery; a silence still open when
the run ends counts only if a fault was active in it, and a queue whose consumers all stopped on
their own (after `messages: N`, say) is not unavailable from then on.
A publisher blocked by a resource alarm (connection.blocked) is not a queue that fails: the broker
reads none of its publishes, so they do not wait in the queue. While it is blocked only what the
broker confirmed counts as routed; without confirms, its queues' silence is not counted at all.
Blocked time is reported per producer (blocked, blocked_seconds), never as unavailability.
Each window names its queue; `queue_seconds` adds up how long each queue was unavailable.
The per-second series show published, confirmed and received counts from BEFORE seconds before
each fault to AFTER seconds after it was undone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # accounting builds result objects, and result holds these: no import cycle at run time
    from mqspec.core.accounting import ConsumerTally, ProducerTally

GAP = 0.5
BEFORE = 3
AFTER = 5


@dataclass(frozen=True)
class Outcomes:
    confirmed_consumed: int = 0
    confirmed_lost: int = 0
    unconfirmed_consumed: int = 0
    unconfirmed_lost: int = 0
    redelivered: int = 0
    duplicated: int = 0


@dataclass(frozen=True)
class Sample:
    """Cumulative counters at `at` seconds after the start."""

    at: float
    published: int
    confirmed: int
    received: Mapping[str, int] = field(default_factory=dict)   # queue -> messages its consumers received
    routed: Mapping[str, int] | None = None   # queue -> published messages routed to it (None: all of them)
    idle: frozenset[str] = frozenset()        # queues whose consumers all stopped on their own (messages: N, say)
    blocked: frozenset[str] = frozenset()     # queues fed by a blocked producer without confirms (a resource alarm)

    def waiting(self, queue: str) -> int:
        """Published messages routed to `queue` that its consumers have not received yet."""
        routed = self.published if self.routed is None else self.routed.get(queue, self.published)
        return routed - self.received.get(queue, 0)


@dataclass(frozen=True)
class FaultSpan:
    """A fault that fired: from `start` until it was undone (or its action returned) at `end`."""

    what: str
    start: float
    end: float


@dataclass(frozen=True)
class Window:
    queue: str
    start: float
    end: float
    open: bool = False   # still silent when the run ended

    @property
    def seconds(self) -> float:
        return round(self.end - self.start, 1)


@dataclass(frozen=True)
class Second:
    second: int
    published: int
    confirmed: int
    received: int


@dataclass(frozen=True)
class FaultSeries:
    fault: str
    start: float
    end: float
    seconds: tuple[Second, ...] = ()


def outcomes(producers: Sequence[ProducerTally], consumers: Sequence[ConsumerTally], duplicated: int) -> Outcomes:
    seen: dict[int, int] = {}    # sid -> every sequence number any consumer saw in any way
    again: dict[int, int] = {}   # sid -> those seen redelivered
    for consumer in consumers:
        for sid, track in consumer.streams.items():
            redelivered = _int(track.again)
            seen[sid] = seen.get(sid, 0) | _int(track.first) | redelivered | _int(track.dead)
            again[sid] = again.get(sid, 0) | redelivered
    totals = [0, 0, 0, 0]
    for tally in producers:
        everything = (1 << tally.published) - 1
        unconfirmed = _int(tally.failed) & everything
        confirmed = everything & ~unconfirmed
        got = seen.get(tally.sid, 0)
        for i, bits in enumerate((confirmed & got, confirmed & ~got, unconfirmed & got, unconfirmed & ~got)):
            totals[i] += bits.bit_count()
    return Outcomes(totals[0], totals[1], totals[2], totals[3], sum(b.bit_count() for b in again.values()), duplicated)


def _int(bitmap: bytes | bytearray) -> int:
    return int.from_bytes(bitmap, "little")


def unavailable(samples: Sequence[Sample], queues: Sequence[str], faults: Sequence[FaultSpan],
                gap: float = GAP) -> tuple[Window, ...]:
    windows: list[Window] = []
    for queue in queues:
        windows += _silences(samples, queue, faults, gap)
    return tuple(sorted(windows, key=lambda w: (w.start, w.queue)))


def _silences(samples: Sequence[Sample], queue: str, faults: Sequence[FaultSpan], gap: float) -> list[Window]:
    found: list[Window] = []
    since: Sample | None = None   # the last delivery before a silence, while messages wait
    for sample in samples:
        received = sample.received.get(queue, 0)
        if queue in sample.idle:   # nobody reads it any more, by the file's own choice: not the broker's doing
            since = None
            continue
        if queue in sample.blocked:   # an alarm holds its publishers back (reported as blocked), not the queue
            since = None
            continue
        if since is None:
            since = sample if sample.waiting(queue) > 0 else None
            continue
        if received > since.received.get(queue, 0):
            if sample.at - since.at >= gap:
                found.append(Window(queue, since.at, sample.at))
            since = sample if sample.waiting(queue) > 0 else None
        elif sample.waiting(queue) <= 0:
            since = None
    if since is not None and samples and samples[-1].at - since.at >= gap:
        end = samples[-1].at
        if any(f.start <= end and f.end >= since.at for f in faults):
            found.append(Window(queue, since.at, end, open=True))
    return found


def taken(published: int, confirmed: int, blocked: bool, confirms: bool) -> int:
    """How many of a producer's publishes the broker has taken, as far as the timeline can tell.

    A blocked connection's publishes sit unread in its socket; of those only the confirmed ones are
    known to be in a queue. Without confirms it cannot be told (the caller marks its queues blocked).
    """
    return confirmed if blocked and confirms else published


def routed_count(published: int, slots: frozenset[int], keys: int, order: str) -> int:
    """How many of a stream's first `published` messages use one of these key slots."""
    if keys <= 1 or len(slots) >= keys:
        return published
    if order == "random":   # a fixed hash spreads them evenly: close enough for a timeline
        return round(published * len(slots) / keys)
    return sum((published - slot + keys - 1) // keys for slot in slots if slot < published)


def longest(windows: Sequence[Window]) -> float:
    return max((w.seconds for w in windows), default=0.0)


def queue_seconds(windows: Sequence[Window]) -> dict[str, float]:
    """queue -> seconds it was unavailable in all, over its windows."""
    total: dict[str, float] = {}
    for window in windows:
        total[window.queue] = round(total.get(window.queue, 0.0) + window.seconds, 1)
    return total


def series(samples: Sequence[Sample], faults: Sequence[FaultSpan]) -> tuple[FaultSeries, ...]:
    return tuple(_around(samples, fault) for fault in faults)


def _around(samples: Sequence[Sample], fault: FaultSpan) -> FaultSeries:
    first, last = max(0, int(fault.start) - BEFORE), int(fault.end) + AFTER
    at_end: dict[int, Sample] = {}
    for sample in samples:
        at_end[int(sample.at)] = sample   # the last sample within each second
    points: list[Second] = []
    previous = _before(samples, first)
    for second in range(first, last + 1):
        found = at_end.get(second)
        if found is None:
            if samples and second > int(samples[-1].at):
                break
            continue
        points.append(Second(second, found.published - previous.published, found.confirmed - previous.confirmed,
                             sum(found.received.values()) - sum(previous.received.values())))
        previous = found
    return FaultSeries(fault.what, fault.start, fault.end, tuple(points))


def _before(samples: Sequence[Sample], second: int) -> Sample:
    earlier = [s for s in samples if s.at < second]
    return earlier[-1] if earlier else Sample(0.0, 0, 0, {})
