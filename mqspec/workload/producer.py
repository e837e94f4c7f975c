"""A producer instance: batched publishing with write-buffer flow control, windowed confirms, fixed rates.

The per-message path does as little as possible: properties are built once, a generated body is a
preallocated bytearray whose mark is rewritten in place with struct.pack_into, the publish time is
read once per batch (a batch is written to the socket as one buffer, so that is when it leaves),
and routing keys are picked by index. Publishing runs in batches from an ioloop callback; it
pauses when the connection's outbound buffer passes a high-water mark, when the confirm window is
full, or when a fixed `rate` has sent every message due so far, and resumes from ioloop callbacks.

A `rate` is a schedule against absolute time: message n (from 0) is due at start + at(n), the
inverse of the rate profile's cumulative count (n/rate for a fixed rate; see mqspec/core/shapes.py),
so a late timer is caught up on the next pump instead of being lost, and a run of `duration` seconds
publishes rate × duration messages. After a long stall (a reconnect) at most MAX_BEHIND seconds of
messages are caught up at once; the rest of the stall is skipped (a profile resumes where it was).
A finite profile ends the producer when its last message is sent.

Sizes that vary (a range or a weighted list) come from a table sampled once per instance with a
seeded RNG; each body is a slice of one preallocated buffer of the largest size, mark in front.
"""

from __future__ import annotations

import bisect
import time
from typing import Any

from pika.channel import Channel
from pika.frame import Method
from pika.spec import Basic, BasicProperties

from mqspec.core import marks, model, read_wait
from mqspec.core.accounting import ProducerTally, slot_of
from mqspec.core.shapes import RateProfile
from mqspec.workload import frames
from mqspec.workload.client import Client, Context
from mqspec.workload.redeclare import declare_for_producer

BATCH = 50
FRAME_BATCH = 200   # publishes per write when sending prebuilt frames
HIGH_WATER = 256 * 1024
BACKOFF = 0.001
MAX_BEHIND = 1.0    # seconds of a fixed rate's messages caught up after a stall


def coalesce(connection: Any) -> None:
    """Join the transport's pending chunks so one send() covers a whole batch (pika sends each frame alone)."""
    transport = getattr(connection, "_transport", None)
    chunks = getattr(transport, "_tx_buffers", None)
    if chunks is not None and len(chunks) > 1:
        joined = b"".join(chunks)
        chunks.clear()
        chunks.append(joined)


def write_buffer_size(connection: Any) -> int:
    size = getattr(connection, "_get_write_buffer_size", None)
    return int(size()) if size is not None else 0


class Producer(Client):
    def __init__(self, ctx: Context, spec: model.Producer, index: int, instance: int, default_duration: float | None) -> None:
        super().__init__(ctx, f"producer:{spec.name}#{instance}")
        self.spec = spec
        self.instance = instance
        keys = spec.routing_keys or ("",)
        self.keys = keys
        self.templated = any("{" in k for k in keys)
        self.tally = ProducerTally(spec.name, index, instance, len(keys), spec.key_order, spec.confirm is not None)
        self.sid = self.tally.sid
        self.run_id = ctx.run_id
        self.exchange = spec.exchange if spec.queue is None else ""
        self.window = spec.confirm or 0
        self.refill = max(1, self.window // 2)
        self.limit = spec.messages if spec.messages is not None else marks.SEQ_LIMIT  # seq numbers are 32-bit
        self.schedule = spec.schedule()
        ends = spec.messages or (self.schedule is not None and self.schedule.total is not None)
        self.duration = spec.duration if spec.duration is not None else (None if ends else default_duration)
        self.properties = _properties(spec)
        sizes = spec.size_distribution()
        self.prefix_mark = spec.body is None and spec.body_template is None and marks.fits_prefix(sizes.smallest)
        self.buffer = marks.body_buffer(spec.size) if self.prefix_mark else bytearray()
        self.body = spec.body if spec.body is not None else (b"x" * spec.size if spec.body_template is None else b"")
        # varying sizes: message seq is sizes[seq % len(sizes)] bytes long; None when every body is spec.size
        self.sizes = sizes.table(marks.stream_id(index, instance)) if sizes.varies and spec.body is None \
            and spec.body_template is None else None
        self.headers: dict[str, Any] = self.properties.headers if not self.prefix_mark else {}
        # confirm bookkeeping: delivery tag -> seq is republished[t-1] for t <= len(republished), else seq_base + ...
        self.tag = 0
        self.acked_upto = 0
        self.acked_above: set[int] = set()
        self.republished: list[int] = []
        self.seq_base = 0
        self.to_republish: list[int] = []
        # confirm latency: the batches in flight, by the last delivery tag of each and its publish time (time.time_ns)
        self.batch_ends: list[int] = []
        self.batch_times: list[int] = []
        self.batch_head = 0
        # run state
        self.started = False
        self.publishing = False
        self.finishing = False
        self.waiting_acks = False
        self.pump_scheduled = False
        self.end_at: float | None = None
        self.rate_start = 0.0   # when message 0 of the fixed-rate schedule was due (time.monotonic)
        self.rate_sent = 0      # messages sent on that schedule
        self.synced = False
        self.templates: list[frames.PublishTemplate] = []
        self.blocked_since = 0   # time.monotonic_ns() of the connection.blocked in force, else 0
        self.tuned_confirmed = 0   # tally.confirmed when the confirms' low-water mark was last tuned

    # --- setup ------------------------------------------------------------------------------

    def opened(self, connection: Any) -> None:
        """Count and time connection.blocked (a resource alarm): a pause, never loss."""
        connection.add_on_connection_blocked_callback(lambda _c, _f: self._blocked())
        connection.add_on_connection_unblocked_callback(lambda _c, _f: self._unblocked())

    def _blocked(self) -> None:
        if not self.blocked_since:
            self.blocked_since = time.monotonic_ns()
            self.tally.blocked += 1

    def _unblocked(self) -> None:
        if self.blocked_since:
            self.tally.blocked_ns += time.monotonic_ns() - self.blocked_since
            self.blocked_since = 0

    def setup(self, channel: Channel) -> None:
        self.tag = self.acked_upto = 0
        self.acked_above = set()
        self.republished = []
        self.seq_base = self.tally.published
        self._forget_batches()
        if self.ready_once:
            self.operation = "redeclare the producer's exchange"
            declare_for_producer(channel, self.ctx.topology, self.spec, self._after_redeclare)
        else:
            self._after_redeclare()

    def _after_redeclare(self) -> None:
        channel = self.channel
        if channel is None:
            return
        if self.spec.mandatory:
            channel.add_on_return_callback(self._on_return)
        if self.window:
            self.operation = "enable publisher confirms"
            channel.confirm_delivery(self._on_confirm, callback=lambda _frame: self._on_ready())
        else:
            self._on_ready()

    def _on_ready(self) -> None:
        self._build_templates()
        if self.templates and self.window:
            self.later(0, self._parse_confirms)   # once pika has returned from the frame that called us
        if not self.ready_once:
            self.became_ready()
            self.ctx.ready(self)
            return
        self.operation = "publish"
        if self.to_republish:
            self._republish()
        if self.finishing:
            self._maybe_done()
        elif self.publishing:
            self._schedule(0)

    def _build_templates(self) -> None:
        """Prebuilt frames per routing key for this channel, when the message is fixed but for its mark."""
        self.templates = []
        channel, connection = self.channel, self.connection
        if not (self.ctx.fast and self.prefix_mark and not self.templated and self.sizes is None and channel is not None
                and frames.supported(connection)):
            return
        body = bytes(self.buffer)
        self.templates = [frames.PublishTemplate(channel.channel_number, self.exchange, key, self.properties,
                                                 self.spec.mandatory, body, connection._body_max_length)  # type: ignore[union-attr]
                          for key in self.keys]

    def _parse_confirms(self) -> None:
        """Confirms read straight from the socket's bytes, not through pika's frame objects and callbacks."""
        channel, connection = self.channel, self.connection
        if channel is None or connection is None or not channel.is_open or self.done:
            return
        frames.ConfirmParser(connection, channel.channel_number, self._confirm).install()
        rule = self.ctx.read_rule
        self.read_once(frames.CONFIRM_READ, rule.cap > 0 and not rule.by_age and not self.spec.throttled
                       and not self.spec.mandatory)
        self.tuned_confirmed = self.tally.confirmed

    def tune_reads(self) -> None:
        """Ten times a second: the low-water mark for the confirms of the next tenth, from the last one's."""
        hold = self.socket_wait
        if hold is None:
            return
        confirmed = self.tally.confirmed
        mark, wait = read_wait.confirm_water(self.ctx.read_rule, hold.take_bytes(), confirmed - self.tuned_confirmed,
                                             self.window)
        hold.tune(mark, wait)
        self.tally.read_wait = max(self.tally.read_wait, wait)
        self.tuned_confirmed = confirmed

    def go(self, go_at: float) -> None:
        """Start publishing `start_after` seconds after the common start time (time.monotonic)."""
        delay = max(0.0, go_at + self.spec.start_after - time.monotonic())
        self.later(delay, self._begin)

    def _begin(self) -> None:
        if self.done or self.stopping or self.started:
            return
        self.started = True
        self.publishing = True
        self.operation = "publish"
        now = time.monotonic()
        if self.duration is not None:
            self.end_at = now + self.duration
        self.rate_start = now
        self.rate_sent = 0
        if self.limit == 0:
            self._stop_publishing()
            return
        self._schedule(0)

    # --- publishing -------------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if not self.pump_scheduled:
            self.pump_scheduled = True
            self.later(delay, self._pump)

    def _pump(self) -> None:
        self.pump_scheduled = False
        connection = self.connection
        if not self.publishing or self.channel is None or connection is None or not self.channel.is_open:
            return
        sent = 0
        while True:
            now = time.monotonic()
            if self.end_at is not None and now >= self.end_at:
                self._stop_publishing()
                return
            if write_buffer_size(connection) > HIGH_WATER:
                self._schedule(0 if sent else BACKOFF)
                return
            room = FRAME_BATCH if self.templates else BATCH
            if self.window:
                room = min(room, self.window - self.outstanding)
                if room <= 0:
                    self.waiting_acks = True
                    return
            if self.limit is not None:
                room = min(room, self.limit - self.tally.published)
            schedule = self.schedule
            if schedule is not None:
                room = min(room, self._due(now, schedule))
                if room <= 0:
                    due_at = schedule.at(self.rate_sent)
                    if due_at is None:   # the profile has ended
                        self._stop_publishing()
                        return
                    self._schedule(max(BACKOFF, self.rate_start + due_at - now))
                    return
            if room <= 0:
                self._stop_publishing()
                return
            self._publish(room)
            sent += room
            self.rate_sent += room
            coalesce(connection)
            if self.limit is not None and self.tally.published >= self.limit:
                self._stop_publishing()
                return

    def _due(self, now: float, schedule: RateProfile) -> int:
        """How many messages of the schedule are due now and not yet sent."""
        elapsed = now - self.rate_start
        due = schedule.due(elapsed) - self.rate_sent
        if due > 1:
            behind = schedule.window(elapsed, MAX_BEHIND)
            if due > behind:
                resume = schedule.at(self.rate_sent + behind - 1)
                self.rate_start = now - (elapsed if resume is None else resume)
                due = behind
        return due

    def _publish(self, count: int) -> None:
        """Publish `count` fresh messages; the hot path."""
        tally = self.tally
        first = tally.published
        now_ns = time.time_ns()
        if not tally.first_ns:
            tally.first_ns = now_ns
        if self.templates:
            self._publish_frames(first, count, now_ns)
            tally.published = first + count
            tally.last_ns = time.time_ns()  # end of the batch: the publishing window includes it
            self.tag += count
            if self.window:
                self.batch_ends.append(self.tag)
                self.batch_times.append(now_ns)
            return
        publish = self.channel.basic_publish  # type: ignore[union-attr]
        exchange, properties, mandatory = self.exchange, self.properties, self.spec.mandatory
        keys = self.keys
        nkeys = len(keys)
        if self.sizes is not None:
            for seq in range(first, first + count):
                self._publish_one(seq, now_ns, publish)
        elif self.prefix_mark and not self.templated:
            pack, buffer, magic, run, sid = marks.PREFIX.pack_into, self.buffer, marks.MAGIC, self.run_id, self.sid
            if nkeys == 1:
                key = keys[0]
                for seq in range(first, first + count):
                    pack(buffer, 0, magic, run, sid, seq, now_ns)
                    publish(exchange, key, bytes(buffer), properties, mandatory)
            else:
                order = self.spec.key_order
                for seq in range(first, first + count):
                    pack(buffer, 0, magic, run, sid, seq, now_ns)
                    publish(exchange, keys[slot_of(seq, nkeys, order)], bytes(buffer), properties, mandatory)
        else:
            for seq in range(first, first + count):
                self._publish_one(seq, now_ns, publish)
        tally.published = first + count
        tally.last_ns = time.time_ns()  # end of the batch: the publishing window includes it
        self.tag += count
        if self.window:
            self.batch_ends.append(self.tag)
            self.batch_times.append(now_ns)

    def _publish_frames(self, first: int, count: int, now_ns: int) -> None:
        """One write for the whole batch: the template repeated, each copy's mark packed in place."""
        pack, magic, run, sid = marks.PREFIX.pack_into, marks.MAGIC, self.run_id, self.sid
        templates = self.templates
        if len(templates) == 1:
            template = templates[0]
            size = template.size
            batch = template.message * count
            offset = template.mark_offset
            for seq in range(first, first + count):
                pack(batch, offset, magic, run, sid, seq, now_ns)
                offset += size
        else:
            order = self.spec.key_order
            nkeys = len(templates)
            parts = []
            for seq in range(first, first + count):
                template = templates[slot_of(seq, nkeys, order)]
                pack(template.message, template.mark_offset, magic, run, sid, seq, now_ns)
                parts.append(bytes(template.message))
            batch = bytearray(b"".join(parts))
        connection: Any = self.connection
        frames.emit(connection, batch)
        connection.bytes_sent += len(batch)
        connection.frames_sent += 3 * count

    def _publish_one(self, seq: int, now_ns: int, publish: Any) -> None:
        """Any message: templated key, user body with a header mark; used for republishing too."""
        key = self._key(seq)
        sizes = self.sizes
        if self.prefix_mark:
            marks.PREFIX.pack_into(self.buffer, 0, marks.MAGIC, self.run_id, self.sid, seq, now_ns)
            body = bytes(self.buffer) if sizes is None else bytes(memoryview(self.buffer)[:sizes[seq % len(sizes)]])
        elif sizes is not None:
            self.headers[marks.HEADER] = marks.header_mark(self.run_id, self.sid, seq, now_ns)
            body = self.body[:sizes[seq % len(sizes)]]
        else:
            self.headers[marks.HEADER] = marks.header_mark(self.run_id, self.sid, seq, now_ns)
            body = self._body(seq)
        publish(self.exchange, key, body, self.properties, self.spec.mandatory)

    def _key(self, seq: int) -> str:
        keys = self.keys
        key = keys[slot_of(seq, len(keys), self.spec.key_order)]
        if "{" in key:
            key = model.fill_key(key, self.spec.name, seq, self.instance)
        return key

    def _body(self, seq: int) -> bytes:
        template = self.spec.body_template
        if template is None:
            return self.body
        return model.fill_body(template, self.spec.name, seq)

    def _republish(self) -> None:
        seqs, self.to_republish = self.to_republish, []
        if self.channel is None:
            return
        now_ns = time.time_ns()
        for seq in seqs:
            self._publish_one(seq, now_ns, self.channel.basic_publish)
        coalesce(self.connection)
        self.republished = seqs
        self.tag = len(seqs)
        if seqs:
            self.batch_ends.append(self.tag)
            self.batch_times.append(now_ns)
        self.seq_base = self.tally.published
        self.tally.republished += len(seqs)

    # --- confirms and returns ---------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        return self.tag - self.acked_upto - len(self.acked_above)

    def _seq_of(self, tag: int) -> int:
        republished = self.republished
        if tag <= len(republished):
            return republished[tag - 1]
        return self.seq_base + tag - len(republished) - 1

    def _on_confirm(self, frame: Method) -> None:
        method = frame.method
        self._confirm(method.delivery_tag, method.multiple, isinstance(method, Basic.Nack))

    def _confirm(self, tag: int, multiple: bool, nack: bool) -> None:
        """A basic.ack or basic.nack, from pika or from the confirm parser (frames.ConfirmParser)."""
        low = self.acked_upto
        settled = self._settle_upto(tag, nack) if multiple else self._settle_one(tag, nack)
        if nack:
            self.tally.nacked += settled
        else:
            self.tally.confirmed += settled
            if settled:
                self._time_confirms(low, tag, multiple, settled)
        if self.finishing:
            # checked first: a window that filled before a reconnect must not send the last confirms to the pump,
            # which no longer publishes (and so would never finish the producer)
            self._maybe_done()
        elif self.waiting_acks and self.outstanding <= self.refill:
            self.waiting_acks = False
            self._schedule(0)

    def _time_confirms(self, low: int, tag: int, multiple: bool, settled: int) -> None:
        """Publish-to-confirm time of the `settled` messages a basic.ack covered, each from its batch's publish time."""
        ends, times, head = self.batch_ends, self.batch_times, self.batch_head
        if head >= len(ends):
            return
        record = self.tally.confirm_latency.record
        now_ns = time.time_ns()
        last = min(bisect.bisect_left(ends, tag, head), len(ends) - 1)
        if not multiple:
            record((now_ns - times[last]) // 1000, 1)
        else:
            below, left = low, settled
            for k in range(bisect.bisect_left(ends, low + 1, head), last + 1):
                count = min(min(ends[k], tag) - below, left)
                record((now_ns - times[k]) // 1000, count)
                below, left = ends[k], left - count
        upto = self.acked_upto
        while head < len(ends) and ends[head] <= upto:
            head += 1
        if head > 1024:
            del ends[:head], times[:head]
            head = 0
        self.batch_head = head

    def _forget_batches(self) -> None:
        self.batch_ends, self.batch_times, self.batch_head = [], [], 0

    def _settle_upto(self, tag: int, nack: bool) -> int:
        low = self.acked_upto
        if tag <= low:
            return 0
        above = self.acked_above
        if above:
            inside = {t for t in above if t <= tag}
            above -= inside
        else:
            inside = set()
        if nack:
            for t in range(low + 1, tag + 1):
                if t not in inside:
                    self.tally.fail(self._seq_of(t))
        self.acked_upto = tag
        return tag - low - len(inside)

    def _settle_one(self, tag: int, nack: bool) -> int:
        if tag <= self.acked_upto or tag in self.acked_above:
            return 0
        if nack:
            self.tally.fail(self._seq_of(tag))
        if tag == self.acked_upto + 1:
            self.acked_upto = tag
            above = self.acked_above
            while self.acked_upto + 1 in above:
                above.discard(self.acked_upto + 1)
                self.acked_upto += 1
        else:
            self.acked_above.add(tag)
        return 1

    def _on_return(self, _channel: Channel, _method: Any, properties: BasicProperties, body: bytes) -> None:
        mark = marks.read_mark(body, properties.headers)
        if mark is None or mark[0] != self.run_id or mark[1] != self.sid:
            return
        self.tally.returned += 1
        self.tally.fail(mark[2])

    def unconfirmed_seqs(self) -> list[int]:
        above = self.acked_above
        return [self._seq_of(t) for t in range(self.acked_upto + 1, self.tag + 1) if t not in above]

    # --- ending -----------------------------------------------------------------------------

    def _stop_publishing(self) -> None:
        self.publishing = False
        self.finishing = True
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.tally.done or self.channel is None:
            return
        if self.window and (self.outstanding or self.to_republish):
            return
        if not self.window and not self.synced:
            # a round trip on the publishing channel: every publish before it has been routed
            self.synced = True
            self.channel.basic_qos(prefetch_count=0, callback=lambda _frame: self._mark_done())
            return
        self._mark_done()

    def _mark_done(self) -> None:
        if not self.tally.done:
            self.tally.done = True
            self.ctx.progress_changed()
            self.close()

    def lost(self) -> None:
        self._unblocked()
        self.tally.reconnects = self.reconnects
        if self.window:
            self.to_republish = sorted(set(self.to_republish) | set(self.unconfirmed_seqs()))
        self.tag = self.acked_upto = 0
        self.acked_above = set()
        self.synced = False
        self.waiting_acks = False   # the window is empty on the new channel

    def stop(self, reason: str = "") -> None:
        """The run is ending: stop publishing and close."""
        self.publishing = False
        self.close()

    def closed(self) -> None:
        self._unblocked()
        if self.window:
            pending = sorted(set(self.unconfirmed_seqs()) | set(self.to_republish))
            for seq in pending:
                self.tally.fail(seq)
            self.tally.unconfirmed = len(pending)
            self.to_republish = []
            self.tag = self.acked_upto
            self.acked_above = set()
        self.tally.reconnects = self.reconnects


def _properties(spec: model.Producer) -> BasicProperties:
    headers: dict[str, Any] | None = dict(spec.headers) if spec.headers else None
    if spec.body is not None or spec.body_template is not None or not marks.fits_prefix(spec.size_distribution().smallest):
        headers = dict(headers or {})
    return BasicProperties(
        content_type=spec.content_type,
        headers=headers,
        priority=spec.priority,
        expiration=str(spec.expiration_ms) if spec.expiration_ms is not None else None,
        delivery_mode=2 if spec.persistent else None,
    )
