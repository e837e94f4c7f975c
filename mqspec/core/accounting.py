"""Exact message accounting with bounded memory, mergeable across processes.

Each producer instance numbers its messages 0, 1, 2, ... (its *stream*). Each consumer instance
keeps, per stream it hears from, four bitmaps indexed by sequence number (one bit per message,
no per-message objects):

* `first`: deliveries with redelivered=False.
* `again`: deliveries with redelivered=True (requeues, crashed or disconnected consumers).
* `dead`: deliveries carrying an x-death header, i.e. that came through a dead-letter exchange.
* `acked`: messages whose ack went out on an open channel of this delivery's generation. A
  redelivered copy of such a message proves the broker never got that ack (the connection died
  with it in flight, or before a multi_ack batch went out), so it is taken back: `acked` counts
  what the broker processed, not what was attempted.
* `returned`: messages this instance handed back itself (reject or nack with requeue) and has not
  got again yet.

A duplicate is every direct copy of a message beyond the first, redelivered or not: what the
broker's `deliver_get` counts minus the distinct messages, less the copies a consumer asked for by
requeueing the one before (a retry it requested, not a duplicate). `redelivered` is reported on its own.

A producer instance keeps one bitmap, `failed`, of the sequence numbers that will not arrive:
nacked, returned, or never confirmed. The *expected* messages of a stream are all published
sequence numbers minus `failed`.

Merging (in the parent process) ORs bitmaps as Python ints:

* lost, globally: expected messages that no consumer saw in any way;
* lost, per queue: expected messages of the key slots the queue is seen to receive that none of
  its consumers got directly. A producer's routing keys are slots (round-robin: seq % K, random:
  a fixed hash of seq % K), so a queue bound to one key of three is not charged for the others;
* duplicates, per queue: distinct messages each consumer instance got directly, summed, minus
  the distinct messages of the queue, plus duplicates within one consumer instance. A stream is
  not shared out: each instance reads all of it on its own, so there only the duplicates within
  one instance count;
* acked, per consumer: the instances' acks less those of a message two instances both acked and
  that was redelivered (with one copy in the queue, the broker took only one of those acks).

Latency: microseconds between the publish time in the mark and the delivery, quantised to 8
significant bits in a small dict on the hot path, folded into an HdrHistogram (2 significant
digits) outside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from mqspec.core import marks, model, reach, result

LATENCY_MAX_US = 3_600_000_000
LATENCY_DIGITS = 2
CLOCK_SLACK_US = 1_000_000         # publish times up to 1 s in the future are clock noise (recorded as 0)
DUPLICATE = 1                      # Track.see: another copy of a message this instance already got
OUT_OF_ORDER = 2                   # Track.see: a first copy numbered below one already seen
UNACKED = 4                        # Track.see: a redelivered copy of a message this instance acked
Row = tuple[bytes, int, bytes, bytes, int, int, int, int, int]   # a plain marked delivery, as frames.py reads it


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, LATENCY_MAX_US, LATENCY_DIGITS)


class Latency:
    """Quantised counts on the hot path; an HdrHistogram, built when asked for, for merging and percentiles.

    `counts` holds what came since the last fold, `kept` everything folded before: a worker folds ten times a
    second (the counts go to the parent as they are), and adding a few hundred keys to a dict costs a tenth
    of recording them in the histogram, which happens once, when the histogram is read."""

    __slots__ = ("_histogram", "counts", "kept")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.kept: dict[int, int] = {}
        self._histogram = new_histogram()

    def record_us(self, us: int) -> None:
        if us < 0:
            us = 0
        shift = us.bit_length() - 8
        if shift > 0:
            us = us >> shift << shift
        counts = self.counts
        counts[us] = counts.get(us, 0) + 1

    def record(self, us: int, count: int) -> None:
        """`count` samples of `us` microseconds (publisher confirms come in multiples)."""
        if count <= 0:
            return
        if us < 0:
            us = 0
        shift = us.bit_length() - 8
        if shift > 0:
            us = us >> shift << shift
        counts = self.counts
        counts[us] = counts.get(us, 0) + count

    def fold(self) -> None:
        """Move the counts since the last fold into the kept ones (cheap: few distinct keys)."""
        counts, kept = self.counts, self.kept
        if not kept:
            self.kept, self.counts = counts, kept
            return
        for value, count in counts.items():
            kept[value] = kept.get(value, 0) + count
        counts.clear()

    @property
    def histogram(self) -> HdrHistogram:
        """Every count so far, recorded in the HdrHistogram."""
        self.fold()
        record = self._histogram.record_value
        for value, count in self.kept.items():
            record(min(value, LATENCY_MAX_US), count)
        self.kept.clear()
        return self._histogram

    def encode(self) -> str:
        encoded = self.histogram.encode()
        return encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled (to the parent process) as the histogram's compact encoding."""
        return (_latency_from, (self.encode(),))


def _latency_from(encoded: str) -> Latency:
    latency = Latency()
    latency._histogram = HdrHistogram.decode(encoded)
    return latency


class Track:
    """One consumer instance's view of one producer stream: four growable bitmaps."""

    __slots__ = ("acked", "again", "dead", "first", "returned", "top")

    def __init__(self) -> None:
        self.first = bytearray(64)
        self.again = bytearray(64)
        self.dead = bytearray(64)
        self.acked = bytearray(64)
        self.returned = bytearray(64)
        self.top = -1

    def grow(self, index: int) -> None:
        """Make room for byte `index` (doubling, so growth is amortised)."""
        size = max(len(self.first) * 2, index + 1)
        extra = bytes(size - len(self.first))
        self.first.extend(extra)
        self.again.extend(extra)
        self.dead.extend(extra)
        self.acked.extend(extra)
        self.returned.extend(extra)

    def see(self, seq: int, redelivered: bool, dead: bool) -> int:
        """Record one delivery; returns 0 or DUPLICATE, OUT_OF_ORDER, UNACKED ORed. Every consumer delivery comes here."""
        index = seq >> 3
        first = self.first
        if index >= len(first):
            self.grow(index)
            first = self.first
        bit = 1 << (seq & 7)
        if dead:
            self.dead[index] |= bit
            return 0
        again = self.again
        if redelivered:
            seen = (first[index] | again[index]) & bit
            again[index] |= bit
            if not seen:
                return 0
            returned = self.returned
            if returned[index] & bit:      # the retry this instance asked for by requeueing it
                returned[index] &= ~bit
                return 0
            acked = self.acked
            if acked[index] & bit:
                acked[index] &= ~bit
                return DUPLICATE | UNACKED
            return DUPLICATE
        if (first[index] | again[index]) & bit:
            first[index] |= bit
            return DUPLICATE
        first[index] |= bit
        if seq < self.top:
            return OUT_OF_ORDER
        self.top = seq
        return 0

    def ack(self, seq: int) -> None:
        """The ack of this message went out (see() has seen it, so the bitmap is long enough)."""
        self.acked[seq >> 3] |= 1 << (seq & 7)

    def requeue(self, seq: int) -> None:
        """This instance rejected or nacked the message with requeue: its next copy is a retry, not a duplicate."""
        self.returned[seq >> 3] |= 1 << (seq & 7)


class ConsumerTally:
    """Counters of one consumer instance (mutable, lives in a worker process)."""

    __slots__ = ("acked", "crashed", "dead_lettered", "duplicates", "earliest_ns", "first_ns", "foreign", "held", "instance",
                 "last_ns", "last_sid", "last_track", "latency", "nacked", "name", "out_of_order", "queue", "read_wait",
                 "received", "reconnects", "redelivered", "rejected", "stopped", "streams")

    def __init__(self, name: str, queue: str, instance: int, earliest_ns: int = 0) -> None:
        self.name, self.queue, self.instance = name, queue, instance
        self.received = self.acked = self.rejected = self.nacked = self.redelivered = 0
        self.duplicates = self.out_of_order = self.foreign = self.dead_lettered = 0
        self.reconnects = self.held = 0
        self.crashed = False
        self.stopped = ""
        self.first_ns = self.last_ns = 0
        self.streams: dict[int, Track] = {}
        self.latency = Latency()
        self.earliest_ns = earliest_ns   # publish times before this are not this run's: no latency from them
        self.last_sid = -1               # the stream of the previous delivery, and its Track (consecutive
        self.last_track: Track | None = None   # deliveries mostly come from one producer)
        self.read_wait = 0.0             # the longest a byte was let wait in the socket (core/read_wait.py), seconds

    def track(self, sid: int) -> Track:
        found = self.streams.get(sid)
        if found is None:
            found = self.streams[sid] = Track()
        return found

    def see(self, sid: int, seq: int, ts_ns: int, now_ns: int, redelivered: bool, dead: bool) -> None:
        """Account one marked delivery of this run: the consumer's hot path."""
        track = self.last_track
        if sid != self.last_sid or track is None:
            track = self.last_track = self.track(sid)
            self.last_sid = sid
        seen = track.see(seq, redelivered, dead)
        if seen:
            if seen & DUPLICATE:
                self.duplicates += 1
                if seen & UNACKED:
                    self.acked -= 1    # the broker never got that ack: the message came back
            else:
                self.out_of_order += 1
        us = (now_ns - ts_ns) // 1000
        if us >= -CLOCK_SLACK_US and ts_ns >= self.earliest_ns:   # else a timestamp from another run or the future
            self.latency.record_us(us)

    def see_batch(self, rows: Sequence[Row], now_ns: int, run_id: int, caps: Mapping[int, int],
                  settled: list[tuple[Track | None, int]] | None) -> None:
        """Account `rows`, deliveries that arrived together (at `now_ns`), none redelivered or
        dead-lettered: exactly what see() would for each, one row after another, in far fewer steps.

        A row is (_, delivery tag, _, _, run id, stream id, seq, publish ns, _), as the inbound parser reads it.
        `settled`, when given, gets (track, seq) per row, track None for a message not of this run (foreign).
        Consecutive rows mostly share a stream and a publish time (a producer stamps a whole batch with one),
        so the stream's bitmaps and the latency are looked up once per change, not once per row."""
        count = len(rows)
        if not count:
            return
        self.received += count
        if self.received == count:
            self.first_ns = now_ns
        self.last_ns = now_ns
        sid_now, cap = -1, 0
        track = self.last_track or Track()
        first, again = track.first, track.again
        last_ts, same = -1, 0
        for _, _, _, _, run, sid, seq, ts, _ in rows:
            if sid != sid_now:
                sid_now, cap = sid, caps.get(sid, 0)
            if run != run_id or seq >= cap:
                self.foreign += 1
                if settled is not None:
                    settled.append((None, seq))
                continue
            if sid != self.last_sid:
                track = self.last_track = self.track(sid)
                self.last_sid = sid
                first, again = track.first, track.again
            byte, bit = seq >> 3, 1 << (seq & 7)
            if byte < len(first) and seq > track.top and not (first[byte] | again[byte]) & bit:
                first[byte] |= bit
                track.top = seq
            else:
                self._see_slowly(track, seq)
                first, again = track.first, track.again
            if settled is not None:
                settled.append((track, seq))
            if ts == last_ts:
                same += 1
                continue
            if same:
                self._latency_of(last_ts, now_ns, same)
            last_ts, same = ts, 1
        if same:
            self._latency_of(last_ts, now_ns, same)

    def _see_slowly(self, track: Track, seq: int) -> None:
        seen = track.see(seq, False, False)
        if seen & DUPLICATE:
            self.duplicates += 1
        elif seen:
            self.out_of_order += 1

    def _latency_of(self, ts_ns: int, now_ns: int, count: int) -> None:
        """`count` deliveries published at `ts_ns`, received at `now_ns` (the same test as see())."""
        us = (now_ns - ts_ns) // 1000
        if us >= -CLOCK_SLACK_US and ts_ns >= self.earliest_ns:
            self.latency.record(us, count)


class ProducerTally:
    """Counters of one producer instance (mutable, lives in a worker process)."""

    __slots__ = ("blocked", "blocked_ns", "confirm", "confirm_latency", "confirmed", "done", "failed", "first_ns", "index",
                 "instance", "keys", "last_ns", "nacked", "name", "order", "published", "read_wait", "reconnects", "republished",
                 "returned", "unconfirmed")

    def __init__(self, name: str, index: int, instance: int, keys: int, order: str, confirm: bool) -> None:
        self.name, self.index, self.instance = name, index, instance
        self.keys, self.order, self.confirm = keys, order, confirm
        self.published = self.confirmed = self.nacked = self.returned = 0
        self.republished = self.reconnects = self.unconfirmed = 0
        self.blocked = self.blocked_ns = 0
        self.first_ns = self.last_ns = 0
        self.done = False
        self.failed = bytearray()
        self.confirm_latency = Latency()   # publish -> basic.ack, per confirmed message
        self.read_wait = 0.0               # the longest confirms were let wait in the socket (core/read_wait.py), seconds

    @property
    def sid(self) -> int:
        return marks.stream_id(self.index, self.instance)

    def fail(self, seq: int) -> None:
        """This message will not arrive: nacked, returned or never confirmed."""
        index = seq >> 3
        if index >= len(self.failed):
            self.failed.extend(bytes(max(index + 1 - len(self.failed), len(self.failed))))
        self.failed[index] |= 1 << (seq & 7)


# --- merging (parent process) -------------------------------------------------------------------

def as_int(bitmap: bytes | bytearray) -> int:
    return int.from_bytes(bitmap, "little")


def popcount(value: int) -> int:
    return value.bit_count()


def mix(seq: int) -> int:
    """A fixed 32-bit hash of a sequence number: the slot of `random` key order."""
    value = (seq * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF
    value ^= value >> 15
    value = (value * 0x85EBCA6B) & 0xFFFFFFFF
    return value ^ (value >> 13)


def slot_of(seq: int, keys: int, order: str) -> int:
    if keys <= 1:
        return 0
    return (mix(seq) if order == "random" else seq) % keys


def slot_mask(slot: int, keys: int, order: str, length: int) -> int:
    """Bit i set when message i of a stream uses key slot `slot`; `length` messages."""
    if keys <= 1:
        return (1 << length) - 1
    if order == "random":
        return sum(1 << seq for seq in range(length) if mix(seq) % keys == slot)
    period = keys * 8 // math.gcd(keys, 8)
    pattern = sum(1 << bit for bit in range(slot, period, keys)).to_bytes(period // 8, "little")
    repeated = int.from_bytes(pattern * (length // period + 1), "little")
    return repeated & ((1 << length) - 1)


def expected_bits(tally: ProducerTally) -> int:
    return ((1 << tally.published) - 1) & ~as_int(tally.failed)


@dataclass
class _Seen:
    """One consumer's (or queue's) bitmaps for one stream, as ints."""

    first: int = 0
    again: int = 0
    dead: int = 0
    direct_total: int = 0   # distinct messages got directly, summed over the instances

    def add(self, track: Track) -> None:
        first, again = as_int(track.first), as_int(track.again)
        self.first |= first
        self.again |= again
        self.dead |= as_int(track.dead)
        # a message this instance requeued and never got again was handed on, not duplicated, by the one that did
        self.direct_total += popcount((first | again) & ~as_int(track.returned))

    @property
    def direct(self) -> int:
        return self.first | self.again

    @property
    def any(self) -> int:
        return self.first | self.again | self.dead


def _seen_by(tallies: Iterable[ConsumerTally]) -> dict[int, _Seen]:
    seen: dict[int, _Seen] = {}
    for tally in tallies:
        for sid, track in tally.streams.items():
            seen.setdefault(sid, _Seen()).add(track)
    return seen


@dataclass(frozen=True)
class Streams:
    """The expected bitmap and slot layout of every producer stream."""

    expected: Mapping[int, int]
    layout: Mapping[int, tuple[int, str, int]]  # sid -> (keys, order, published)

    @classmethod
    def of(cls, producers: Sequence[ProducerTally]) -> Streams:
        return cls({p.sid: expected_bits(p) for p in producers},
                   {p.sid: (p.keys, p.order, p.published) for p in producers})

    def total(self) -> int:
        return sum(popcount(bits) for bits in self.expected.values())


def lost_everywhere(streams: Streams, consumers: Sequence[ConsumerTally]) -> int:
    seen = _seen_by(consumers)
    return sum(popcount(bits & ~seen.get(sid, _Seen()).any) for sid, bits in streams.expected.items())


Routes = Mapping[int, reach.SlotsByQueue | None]   # producer index -> queue -> key slots (None: unknown)


def expected_on_queue(streams: Streams, consumers: Sequence[ConsumerTally], queue: str = "",
                      routes: Routes | None = None, fallback: bool = True) -> dict[int, int]:
    """The expected messages (sid -> bitmap) routed to the queue these consumers read.

    A producer whose routes the routing oracle knows (`routes`) counts with the key slots that
    reach `queue`, whether or not any consumer heard from it. For the others only streams the
    queue is seen to receive count, and of those only the key slots it is seen to receive. With
    `fallback`, a queue that received nothing and is not known to receive nothing is charged with
    every expected message, so a consumer that got nothing never passes vacuously.
    """
    seen = _seen_by(consumers)
    routed: dict[int, int] = {}
    every_route_known = True
    for sid, expected in streams.expected.items():
        keys, order, published = streams.layout[sid]
        known = routes.get(marks.split_stream(sid)[0]) if routes is not None else None
        if known is not None:
            slots = known.get(queue, frozenset())
        else:
            every_route_known = False
            direct = seen[sid].direct if sid in seen else 0
            slots = frozenset(s for s in range(keys) if slot_mask(s, keys, order, published) & direct) if direct else frozenset()
        if not slots:
            continue
        if keys > 1 and len(slots) < keys:
            expected &= sum_masks(slot_mask(slot, keys, order, published) for slot in slots)
        routed[sid] = expected
    if not routed and fallback and not every_route_known:
        return dict(streams.expected)
    return routed


def missing_for(expected: Mapping[int, int], consumers: Sequence[ConsumerTally]) -> int:
    """Of these expected messages, how many the consumer instances never saw: for every_message."""
    seen = _seen_by(consumers)
    return sum(popcount(bits & ~seen.get(sid, _Seen()).any) for sid, bits in expected.items())


def lost_on_queue(streams: Streams, consumers: Sequence[ConsumerTally], queue: str = "",
                  routes: Routes | None = None) -> int:
    """Expected messages routed to this queue that none of its consumers got directly.

    Every message routed to the queue counts, including those of producers the consumers never
    heard from (all expired before delivery, say); without known routes only what was seen can.
    """
    seen = _seen_by(consumers)
    routed = expected_on_queue(streams, consumers, queue, routes, fallback=False)
    return sum(popcount(bits & ~seen[sid].direct) if sid in seen else popcount(bits) for sid, bits in routed.items())


def sum_masks(masks: Iterable[int]) -> int:
    total = 0
    for mask in masks:
        total |= mask
    return total


def duplicates_on_queue(consumers: Sequence[ConsumerTally], stream: bool = False) -> int:
    """Direct copies beyond the first of each message: the broker's deliveries less the distinct messages.

    On a stream every instance reads on its own (a stream is not shared out): only an instance's own
    second copy of a message is a duplicate, a copy read by each of two instances is not.
    """
    within = sum(c.duplicates for c in consumers)
    if stream:
        return within
    across = sum(seen.direct_total - popcount(seen.direct) for seen in _seen_by(consumers).values())
    return within + across


def acked_by(consumers: Sequence[ConsumerTally], stream: bool = False) -> int:
    """The acks the broker took from these instances of one queue.

    Each instance already took back an ack when the message came back to it. A message acked by
    one instance and redelivered to another (the first one's connection died with the ack) is
    still acked by both; the broker took one of those acks, so the others come off here. On a
    stream each instance reads (and acks) its own copy, so every ack counts.
    """
    acks = sum(c.acked for c in consumers)
    if stream:
        return acks
    tracks: dict[int, list[Track]] = {}
    for tally in consumers:
        for sid, track in tally.streams.items():
            tracks.setdefault(sid, []).append(track)
    for group in tracks.values():
        if len(group) > 1:
            redelivered = sum_masks(as_int(t.again) for t in group)
            acked = [as_int(t.acked) & redelivered for t in group]
            acks -= sum(popcount(bits) for bits in acked) - popcount(sum_masks(acked))
    return acks


# --- results -----------------------------------------------------------------------------------

MIN_RATE_WINDOW = 0.5   # seconds: a shorter first-to-last span gives no meaningful rate


def rate_over(count: int, first_ns: int, last_ns: int, run_window: float = 0.0) -> tuple[float, float]:
    """(messages per second, first-to-last span in seconds).

    Over the span when it is at least MIN_RATE_WINDOW; a shorter burst (50 messages written in one
    batch) is spread over the whole run window instead, so the number stays finite and plain.
    """
    span = max(0.0, (last_ns - first_ns) / 1e9) if first_ns else 0.0
    window = span if span >= MIN_RATE_WINDOW else max(span, run_window)
    if window <= 0:
        return float(count), span
    return round(count / window, 1), round(span, 3)


def _window(tallies: Iterable[ProducerTally | ConsumerTally]) -> tuple[int, int]:
    spans = [(t.first_ns, t.last_ns) for t in tallies if t.first_ns]
    if not spans:
        return 0, 0
    return min(s[0] for s in spans), max(s[1] for s in spans)


def producer_results(workload: model.Workload, tallies: Sequence[ProducerTally],
                     run_window: float = 0.0) -> dict[str, result.ProducerResult]:
    """run_window: the run's wall-clock seconds, the rate's window when publishing took under MIN_RATE_WINDOW."""
    out: dict[str, result.ProducerResult] = {}
    for producer in workload.producers:
        mine = [t for t in tallies if t.name == producer.name]
        published = sum(t.published for t in mine)
        rate, span = rate_over(published, *_window(mine), run_window)
        out[producer.name] = result.ProducerResult(
            name=producer.name, instances=producer.instances, published=published,
            confirmed=sum(t.confirmed for t in mine), nacked=sum(t.nacked for t in mine),
            returned=sum(t.returned for t in mine), unconfirmed=sum(t.unconfirmed for t in mine),
            reconnects=sum(t.reconnects for t in mine), republished=sum(t.republished for t in mine),
            blocked=sum(t.blocked for t in mine), blocked_seconds=round(sum(t.blocked_ns for t in mine) / 1e9, 1),
            rate=rate, span=span, throttled=producer.throttled, finished=sum(1 for t in mine if t.done),
            planned=None if producer.messages is None else producer.messages * producer.instances,
            confirm_latency=latency(t.confirm_latency for t in mine) if producer.confirm else None)
    return out


def routes_of(topology: model.Topology, workload: model.Workload) -> dict[int, reach.SlotsByQueue | None]:
    """Producer index -> where its key slots go, by the routing oracle (None where it cannot tell)."""
    return {index: reach.slots_by_queue(topology, producer) for index, producer in enumerate(workload.producers)}


def stream_queues(topology: model.Topology) -> frozenset[str]:
    """The queues of type stream (super stream partitions included): each consumer instance reads them on its own."""
    return frozenset(q.name for q in topology.queues if q.type == "stream")


def consumer_results(workload: model.Workload, streams: Streams, tallies: Sequence[ConsumerTally],
                     run_window: float = 0.0, routes: Routes | None = None,
                     stream_names: frozenset[str] = frozenset()) -> dict[str, result.ConsumerResult]:
    """stream_names: the queues that are streams (stream_queues), where duplicates and acks count per instance."""
    by_queue: dict[str, list[ConsumerTally]] = {c.queue: [] for c in workload.consumers}
    for tally in tallies:
        by_queue.setdefault(tally.queue, []).append(tally)
    lost = {queue: lost_on_queue(streams, group, queue, routes) for queue, group in by_queue.items()}
    routed = {queue: expected_on_queue(streams, group, queue, routes) for queue, group in by_queue.items()}
    out: dict[str, result.ConsumerResult] = {}
    for consumer in workload.consumers:
        mine = sorted((t for t in tallies if t.name == consumer.name), key=lambda t: t.instance)
        stream = consumer.queue in stream_names
        received = sum(t.received for t in mine)
        rate, span = rate_over(received, *_window(mine), run_window)
        out[consumer.name] = result.ConsumerResult(
            name=consumer.name, queue=consumer.queue, instances=consumer.instances, received=received,
            acked=acked_by(mine, stream), rejected=sum(t.rejected for t in mine), nacked=sum(t.nacked for t in mine),
            redelivered=sum(t.redelivered for t in mine), duplicates=duplicates_on_queue(mine, stream),
            lost=lost.get(consumer.queue, 0), out_of_order=sum(t.out_of_order for t in mine),
            dead_lettered=sum(t.dead_lettered for t in mine), foreign=sum(t.foreign for t in mine),
            reconnects=sum(t.reconnects for t in mine), crashed=sum(1 for t in mine if t.crashed),
            rate=rate, span=span, per_instance=tuple(t.received for t in mine),
            missing=missing_for(routed.get(consumer.queue, streams.expected), mine),
            expected=sum(popcount(bits) for bits in routed.get(consumer.queue, streams.expected).values()))
    return out


def latency(tallies: Iterable[Latency | str]) -> result.Latency | None:
    """Merge latency recorders (or their encoded histograms) into percentiles in milliseconds."""
    merged = new_histogram()
    for item in tallies:
        if isinstance(item, Latency):
            merged.add(item.histogram)   # folds what it has not yet
        else:
            merged.add(HdrHistogram.decode(item))
    count = merged.get_total_count()
    if not count:
        return None

    def ms(percentile: float) -> float:
        return round(float(merged.get_value_at_percentile(percentile)) / 1000, 3)

    return result.Latency(ms(50), ms(95), ms(99), round(float(merged.get_max_value()) / 1000, 3), int(count))


def duplicates_everywhere(tallies: Sequence[ConsumerTally], stream_names: frozenset[str] = frozenset()) -> int:
    """Duplicates of the run: per queue across its consumers; per consumer instance on a stream."""
    by_queue: dict[str, list[ConsumerTally]] = {}
    for tally in tallies:
        by_queue.setdefault(tally.queue, []).append(tally)
    return sum(duplicates_on_queue(group, queue in stream_names) for queue, group in by_queue.items())
