"""A consumer instance: prefetch, auto or manual acks (every N with multiple=true), rejects, crashes, stops.

Every delivery is accounted on arrival by ConsumerTally.see (accounting.py: the bitmaps).
Simulated processing is sequential, like a single-threaded worker: deliveries wait in a local FIFO
and each takes `processing_time` on an ioloop timer, so other instances in the process carry on.
Reject and nack fractions are deterministic (an accumulator), so counts are exact and repeatable.
"""

from __future__ import annotations

import os
import random
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from pika.channel import Channel
from pika.spec import Basic, BasicProperties

from mqspec.core import marks, model, read_wait
from mqspec.core.accounting import ConsumerTally, Row, Track
from mqspec.workload import frames, private_queue
from mqspec.workload.client import Client, Context
from mqspec.workload.redeclare import declare_for_consumer

IDLE_CHECK_MAX = 0.25
ACK_IDLE = 0.2                     # pending multi_ack acks are flushed at the latest after this long
START_SLACK_NS = 5_000_000_000     # publish times before the worker started (minus this) are not this run's
RECV_BYTES = int(os.environ.get("MQSPEC_RECV_BYTES", "65536"))  # per recv() once the parser runs (pika: 4096)
FOREIGN = -1                       # _account: not a message of this run's producers (no sequence number)
PROBE = -2                         # _account: a route probe


def stream_arguments(spec: model.Consumer, resume_at: int | None) -> dict[str, Any]:
    """x-stream-offset (and x-stream-filter) of basic.consume on a stream.

    A consumer resubscribing after a reconnect resumes after the last message it saw (`resume_at`), whatever
    its offset said. A timestamp goes as an AMQP timestamp (seconds), as RabbitMQ reads it."""
    arguments: dict[str, Any] = {}
    offset = spec.offset
    if resume_at is not None:
        arguments["x-stream-offset"] = resume_at
    elif offset is not None:
        if offset.kind == "offset":
            arguments["x-stream-offset"] = offset.offset
        elif offset.kind == "timestamp":
            moment = (offset.timestamp_ms / 1000 if offset.timestamp_ms is not None else time.time() - (offset.ago or 0))
            arguments["x-stream-offset"] = datetime.fromtimestamp(moment, UTC)
        else:
            arguments["x-stream-offset"] = offset.kind
    if spec.filter:
        arguments["x-stream-filter"] = list(spec.filter)
    return arguments


class Consumer(Client):
    def __init__(self, ctx: Context, spec: model.Consumer, instance: int) -> None:
        super().__init__(ctx, f"consumer:{spec.name}#{instance}")
        self.spec = spec
        self.instance = instance
        self.tally = ConsumerTally(spec.name, spec.queue, instance, ctx.started_ns - START_SLACK_NS)
        self.auto = spec.ack == "auto"
        # acks every `multi_ack` deliveries, but never hold more than the prefetch: the broker would stop sending
        self.multi = max(1, min(spec.multi_ack, spec.prefetch) if spec.prefetch else spec.multi_ack)
        self.ack_timer_set = False
        self.slow = spec.processing_time.busy
        self.room = read_wait.room(spec)
        self.fractions = spec.reject > 0 or spec.nack > 0
        self.random = random.Random(f"{spec.name}#{instance}")
        self.pending = 0            # settled locally, not yet acked (multi_ack)
        self.unacked: list[tuple[Track | None, int]] = []   # their streams and sequence numbers
        self.last_tag = 0
        self.reject_acc = 0.0
        self.nack_acc = 0.0
        self.queue: deque[tuple[int, Track | None, int]] = deque()   # (delivery tag, stream, seq) waiting for processing
        self.busy = False
        self.accepting = True
        self.consumer_tag: str | None = None
        self.last_activity = time.monotonic()
        self.idle_count = 0
        self.started = False
        self.raw_acks: Channel | None = None   # the channel whose acks go out as prebuilt frames
        self.run_id = ctx.run_id
        self.stream_caps = ctx.stream_caps     # this run's streams -> bound on their sequence numbers
        self.fast = ctx.fast                   # our own frame parser and prebuilt acks (frames.py)
        declared = ctx.topology.queue(spec.queue)
        self.stream = declared is not None and declared.type == "stream"
        # a queue of its own (private_queue.py): declared and bound on this connection; its broker name
        self.private = declared if declared is not None and declared.owner == spec.name else None
        self.queue_name = spec.queue
        self.next_offset: int | None = None   # stream queues: the offset after the last delivery
        # bytes may wait in the socket to be read in larger batches (core/read_wait.py, socket_wait.py)
        self.read_rule = ctx.read_rule
        self.youngest_ns: int | None = None   # the age of the newest message seen since the last retune
        self.tuned_at = time.monotonic()
        self.tuned_received = 0

    # --- setup ------------------------------------------------------------------------------

    def setup(self, channel: Channel) -> None:
        self.pending = 0
        self.unacked.clear()
        self.queue.clear()
        self.busy = False
        self.tally.held = 0
        if self.private is not None:
            self.operation = f"declare and bind queue '{self.spec.queue}'"
            private_queue.declare(channel, self.ctx.topology, self.private, self._on_private_queue)
        elif self.ready_once:
            self.operation = f"redeclare queue '{self.spec.queue}'"
            declare_for_consumer(channel, self.ctx.topology, self.spec.queue, self._qos)
        else:
            self._qos()

    def _on_private_queue(self, name: str) -> None:
        self.queue_name = name
        self._qos()

    def _qos(self) -> None:
        channel = self.channel
        if channel is None:
            return
        if self.spec.prefetch is not None and not self.auto:
            self.operation = "set the prefetch (basic.qos)"
            channel.basic_qos(prefetch_count=self.spec.prefetch, callback=lambda _frame: self._consume())
        else:
            self._consume()

    def _consume(self) -> None:
        channel = self.channel
        if channel is None or not self.accepting:
            return
        arguments: dict[str, Any] | None = {"x-priority": self.spec.priority} if self.spec.priority is not None else None
        if self.stream:
            arguments = {**(arguments or {}), **stream_arguments(self.spec, self.next_offset)}
        self.operation = f"consume from queue '{self.spec.queue}'"
        self.consumer_tag = channel.basic_consume(
            self.queue_name, self._on_message, auto_ack=self.auto, exclusive=self.spec.exclusive,
            arguments=arguments, callback=lambda _frame: self._on_consuming())

    def _on_consuming(self) -> None:
        if self.fast and frames.supported(self.connection):
            self.later(0, self._install_parser)
        if not self.ready_once:
            self.became_ready()
            self.ctx.ready(self)

    def _install_parser(self, attempts: int = 100) -> None:
        """Take over the connection's incoming bytes once pika is between two messages."""
        channel, connection = self.channel, self.connection
        if channel is None or connection is None or not channel.is_open or self.done:
            return
        assembler = getattr(channel, "_content_assembler", None)
        if assembler is None or getattr(assembler, "_method_frame", None) is not None:
            if attempts:
                self.later(0, lambda: self._install_parser(attempts - 1))
            return
        frames.InboundParser(connection, channel.channel_number, self._deliver, self._deliver_marked).install()
        self.raw_acks = channel
        transport = getattr(connection, "_transport", None)
        if transport is not None and hasattr(transport, "_MAX_RECV_BYTES"):
            transport._MAX_RECV_BYTES = RECV_BYTES
        self.read_once(RECV_BYTES, not self.slow and self.read_rule.cap > 0)
        self.tuned_at, self.tuned_received = time.monotonic(), self.tally.received

    def tune_reads(self) -> None:
        """Ten times a second: the low-water mark and wait for the next tenth, from the last one's traffic."""
        hold = self.socket_wait
        if hold is None:
            return
        now, received, youngest = time.monotonic(), self.tally.received, self.youngest_ns
        mark, wait = read_wait.low_water(self.read_rule, now - self.tuned_at, hold.take_bytes(),
                                         received - self.tuned_received,
                                         None if youngest is None else youngest / 1e9, self.room)
        hold.tune(mark, wait)
        self.tally.read_wait = max(self.tally.read_wait, wait)
        self.tuned_at, self.tuned_received, self.youngest_ns = now, received, None

    def go(self, go_at: float) -> None:
        self.started = True
        self.last_activity = time.monotonic()
        if self.spec.idle_timeout is not None:
            self.later(self._idle_interval(), self._check_idle)

    # --- deliveries (hot path) --------------------------------------------------------------

    def _on_message(self, _channel: Channel, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
        self._deliver(method.delivery_tag, method.redelivered, properties.headers, body)

    def _deliver(self, delivery_tag: int, redelivered: bool, headers: Any, body: bytes) -> None:
        channel = self.channel
        if channel is None:
            return
        if not self.accepting and not self.auto:
            # prefetched after we stopped taking messages: give it back, unaccounted
            if channel.is_open:
                channel.basic_nack(delivery_tag, multiple=False, requeue=True)
            return
        if self.stream and headers is not None:
            offset = headers.get("x-stream-offset")
            if isinstance(offset, int):
                self.next_offset = offset + 1
        now_ns = time.time_ns()
        tally = self.tally
        count = tally.received = tally.received + 1
        if count == 1:
            tally.first_ns = now_ns
        tally.last_ns = now_ns
        if redelivered:
            tally.redelivered += 1
        dead = headers is not None and "x-death" in headers
        if dead:
            tally.dead_lettered += 1
        try:
            seq = self._account(tally, headers, body, now_ns, redelivered, dead)
        except Exception:  # noqa: BLE001 - a message we cannot make sense of never kills the channel
            tally.foreign += 1
            seq = FOREIGN
        if seq < 0:
            if seq == PROBE:
                self._probe_seen(channel, delivery_tag, headers, redelivered, dead)
                return
            track = None
        else:
            track = tally.last_track
        crash_after = self.spec.crash_after
        if crash_after is not None and count >= crash_after:
            self.crash()  # dies holding this delivery (and any unprocessed ones) unacknowledged
            return
        if not self.auto:
            if self.slow:
                self.queue.append((delivery_tag, track, seq))
                tally.held = len(self.queue)
                if not self.busy:
                    self._process_next()
            else:
                self._settle(channel, delivery_tag, track, seq)
        limit = self.spec.messages
        if limit is not None and count >= limit and self.accepting:
            self._stop_accepting("messages")

    def _deliver_marked(self, rows: list[Row]) -> None:
        """Plain marked deliveries that arrived together (none redelivered, no headers), from the inbound parser:
        accounted in one pass (ConsumerTally.see_batch), then acked as _settle would, every `multi_ack`."""
        channel = self.channel
        if channel is None:
            return
        if not self._in_bulk():
            for row in rows:
                self._deliver(row[1], False, None, marks.PREFIX.pack(row[3], row[4], row[5], row[6], row[7]))
            return
        settled: list[tuple[Track | None, int]] | None = None if self.auto else []
        now_ns = time.time_ns()
        if self.read_rule.by_age:
            age = now_ns - rows[-1][7]
            if self.youngest_ns is None or age < self.youngest_ns:
                self.youngest_ns = age
        self.tally.see_batch(rows, now_ns, self.run_id, self.stream_caps, settled)
        if settled is None:
            return
        if self.multi == 1:
            for row, (track, seq) in zip(rows, settled, strict=True):
                self._settle(channel, row[1], track, seq)
            return
        unacked, done = self.unacked, 0
        while len(settled) - done >= self.multi - len(unacked):
            upto = done + self.multi - len(unacked)
            unacked.extend(settled[done:upto])
            done = upto
            self._ack_unacked(channel, rows[upto - 1][1])
        if done < len(settled):
            unacked.extend(settled[done:])
            self.last_tag = rows[-1][1]
            if not self.ack_timer_set:
                self.ack_timer_set = True
                self.later(ACK_IDLE, self._ack_idle)
        self.pending = len(unacked)

    def _in_bulk(self) -> bool:
        """May deliveries be accounted in bulk? Not when any of them may need to be treated on its own."""
        spec = self.spec
        return (self.accepting and not self.slow and not self.fractions and not self.stream
                and spec.crash_after is None and spec.messages is None)

    def _account(self, tally: ConsumerTally, headers: Any, body: bytes, now_ns: int, redelivered: bool,
                 dead: bool) -> int:
        """Account one delivery: its sequence number for a mark of this run's own producers, else FOREIGN or PROBE."""
        if body[:4] == marks.MAGIC and len(body) >= marks.PREFIX_SIZE:
            run, sid, seq, ts = marks.MARK.unpack_from(body, 4)
        else:
            mark = marks.read_header_mark(headers)
            if mark is None:
                if headers is not None and marks.PROBE_HEADER in headers:
                    return PROBE
                tally.foreign += 1
                return FOREIGN
            run, sid, seq, ts = mark
        if run != self.run_id or seq >= self.stream_caps.get(sid, 0):
            tally.foreign += 1
            return FOREIGN
        tally.see(sid, seq, ts, now_ns, redelivered, dead)
        return int(seq)

    def _probe_seen(self, channel: Channel, tag: int, headers: Any, redelivered: bool, dead: bool) -> None:
        """A route probe is not part of the workload: uncount it, tell the parent where it landed, ack it."""
        tally = self.tally
        tally.received -= 1
        tally.redelivered -= int(redelivered)
        tally.dead_lettered -= int(dead)
        if tally.received == 0:
            tally.first_ns = 0
        self.ctx.probed(self.spec.queue, str(headers[marks.PROBE_HEADER]))
        if not self.auto:
            channel.basic_ack(tag)

    def _settle(self, channel: Channel, tag: int, track: Track | None, seq: int) -> None:
        """Ack, reject or nack one processed delivery (its stream and sequence number, track None if foreign)."""
        tally = self.tally
        if self.fractions:
            self.reject_acc += self.spec.reject
            self.nack_acc += self.spec.nack
            if self.reject_acc >= 1 - 1e-9:
                self.reject_acc -= 1
                channel.basic_reject(tag, requeue=self.spec.requeue)
                tally.rejected += 1
                self._returned(track, seq)
                return
            if self.nack_acc >= 1 - 1e-9:
                self.nack_acc -= 1
                channel.basic_nack(tag, multiple=False, requeue=self.spec.requeue)
                tally.nacked += 1
                self._returned(track, seq)
                return
        if self.multi == 1:
            if self._ack(channel, tag, False):
                tally.acked += 1
                if track is not None:
                    track.acked[seq >> 3] |= 1 << (seq & 7)
            return
        unacked = self.unacked
        unacked.append((track, seq))
        if len(unacked) >= self.multi:
            self._ack_unacked(channel, tag)
        else:
            self.last_tag = tag
            if not self.ack_timer_set:
                self.ack_timer_set = True
                self.later(ACK_IDLE, self._ack_idle)
        self.pending = len(unacked)

    def _returned(self, track: Track | None, seq: int) -> None:
        if self.spec.requeue and track is not None:
            track.requeue(seq)

    def _ack_unacked(self, channel: Channel, tag: int) -> None:
        """One multiple ack up to `tag`; only an ack that went out counts, and marks its messages acked."""
        unacked = self.unacked
        if self._ack(channel, tag, len(unacked) > 1):
            self.tally.acked += len(unacked)
            for track, seq in unacked:
                if track is not None:
                    track.acked[seq >> 3] |= 1 << (seq & 7)
        unacked.clear()
        self.pending = 0

    def _ack_idle(self) -> None:
        """Pending acks go out after a short quiet spell, so a trickle never waits for a full batch."""
        self.ack_timer_set = False
        if self.pending and not self.done:
            self._flush_acks()

    def _ack(self, channel: Channel, tag: int, multiple: bool) -> bool:
        """basic.ack, if the channel is open; a prebuilt frame when the inbound parser runs it (no pika objects)."""
        if not channel.is_open:
            return False   # closing with its connection: the broker requeues these, they come back
        connection, number = self.connection, channel.channel_number
        if self.raw_acks is channel and connection is not None:
            frames.emit(connection, frames.ack_frame(number, tag, multiple))
        else:
            channel.basic_ack(tag, multiple=multiple)
        return True

    def _flush_acks(self) -> None:
        channel = self.channel
        if self.unacked and channel is not None:
            self._ack_unacked(channel, self.last_tag)
        self.unacked.clear()
        self.pending = 0

    # --- simulated processing ---------------------------------------------------------------

    def _process_next(self) -> None:
        if not self.queue or self.channel is None:
            self.busy = False
            self.tally.held = len(self.queue)
            self._maybe_finish_stop()
            return
        self.busy = True
        delay = self.spec.processing_time.sample(self.random)
        channel = self.channel
        self.later(delay, lambda: self._processed(channel))

    def _processed(self, channel: Channel) -> None:
        if channel is not self.channel or not self.queue:
            self.busy = False
            return
        tag, track, seq = self.queue.popleft()
        self.tally.held = len(self.queue)
        self._settle(channel, tag, track, seq)
        self._process_next()

    # --- stopping ---------------------------------------------------------------------------

    def _idle_interval(self) -> float:
        return min(IDLE_CHECK_MAX, max(0.01, (self.spec.idle_timeout or 1.0) / 4))

    def _check_idle(self) -> None:
        if self.done or not self.accepting:
            return
        now = time.monotonic()
        if self.tally.received != self.idle_count:
            self.idle_count = self.tally.received
            self.last_activity = now
        if now - self.last_activity >= (self.spec.idle_timeout or 0):
            self._stop_accepting("idle")
        else:
            self.later(self._idle_interval(), self._check_idle)

    def _stop_accepting(self, reason: str) -> None:
        if not self.accepting:
            return
        self.accepting = False
        self.tally.stopped = reason
        channel = self.channel
        if channel is not None and channel.is_open and self.consumer_tag is not None:
            channel.basic_cancel(self.consumer_tag)
        self._maybe_finish_stop()

    def _maybe_finish_stop(self) -> None:
        if self.accepting or self.busy or self.queue:
            return
        self._flush_acks()
        self.ctx.progress_changed()
        self.close()

    def stop(self, reason: str = "drained") -> None:
        """The run is ending: ack what was processed, give back what was not, close."""
        if self.done:
            return
        self.queue.clear()
        self.busy = False
        self.tally.held = 0
        if self.accepting:
            self._stop_accepting(reason)
        else:
            self._maybe_finish_stop()

    def crash(self) -> None:
        """Die like a worker process would: close without acknowledging anything held."""
        self.accepting = False
        self.tally.crashed = True
        self.tally.stopped = "crashed"
        self.pending = 0
        self.unacked.clear()
        self.queue.clear()
        self.busy = False
        self.tally.held = 0
        self.stopping = True
        channel = self.channel
        if channel is not None and channel.is_open:
            channel.close()
        self.close()

    def lost(self) -> None:
        """Unacked deliveries went back to the queue with the connection; they will be redelivered."""
        self.pending = 0
        self.unacked.clear()
        self.queue.clear()
        self.busy = False
        self.tally.held = 0
        self.tally.reconnects = self.reconnects

    def closed(self) -> None:
        self.tally.reconnects = self.reconnects
        if self.auto:
            self.tally.acked = self.tally.received
        if not self.tally.stopped:
            self.tally.stopped = "closed"

    @property
    def active(self) -> bool:
        return not self.done and self.accepting
