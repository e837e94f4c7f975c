"""Producers and consumers on the stream protocol (port 5552), through rstream.

rstream is asyncio; the worker runs a pika ioloop. Each instance here runs its own asyncio loop in a thread
of the worker process, and talks to the worker only through `ioloop.add_callback_threadsafe` (ready,
finished, fatal) and through its tally, whose counters the worker reads for progress. Bodies carry the
same marks as over AMQP (marks.py), sent as the data section of an AMQP 1.0 message, so an AMQP 0-9-1
consumer of the stream sees the same bytes, and a stream consumer's deliveries count like AMQP ones.
A stream consumer remembers the offset after the last message it saw, and resumes there when rstream
resubscribes after a lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from mqspec.broker.capabilities import stream_endpoint
from mqspec.core import marks, model, superstreams
from mqspec.core.accounting import ConsumerTally, ProducerTally, slot_of
from mqspec.errors import BrokerUnavailable, MqspecError
from mqspec.workload.client import Context

START_SLACK_NS = 5_000_000_000
CONFIRM_WAIT = 10.0       # seconds the end of publishing waits for outstanding confirms
IDLE_CHECK = 0.05


def _credentials(settings: model.BrokerSettings) -> tuple[str, str, str]:
    parts = urlsplit(settings.url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return unquote(parts.username or "guest"), unquote(parts.password or "guest"), vhost


class StreamClient:
    """One rstream producer or consumer in a thread with its own asyncio loop."""

    def __init__(self, ctx: Context, label: str) -> None:
        self.ctx = ctx
        self.label = label
        self.connection_name = f"{ctx.connection_prefix}:{label}"
        self.done = False
        self.reconnects = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.go_event: asyncio.Event | None = None
        self.stop_event: asyncio.Event | None = None
        self.go_at = 0.0
        self.stop_reason = ""

    def start(self) -> None:
        threading.Thread(target=self._thread, name=f"mqspec {self.label}", daemon=True).start()

    def _thread(self) -> None:
        try:
            asyncio.run(self._run())
        except ModuleNotFoundError as exc:
            missing = MqspecError(f"{self.label}: protocol: stream needs the rstream client ({exc}); "
                                  "install it with: pip install 'mqspec[stream]'")
            self._on_ioloop(lambda: self.ctx.fatal(missing))
        except Exception as exc:  # noqa: BLE001 - one line to the parent, never a traceback
            error = exc if isinstance(exc, MqspecError) else BrokerUnavailable(
                f"{self.label}: the stream protocol failed: {type(exc).__name__}: {exc}")
            self._on_ioloop(lambda: self.ctx.fatal(error))
        finally:
            self._on_ioloop(self._finish)

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.go_event, self.stop_event = asyncio.Event(), asyncio.Event()
        await self.main()

    async def main(self) -> None:
        raise NotImplementedError

    def _on_ioloop(self, callback: Any) -> None:
        self.ctx.ioloop.add_callback_threadsafe(callback)

    def _finish(self) -> None:
        if not self.done:
            self.done = True
            self.closed()
            self.ctx.finished(self)  # type: ignore[arg-type]

    def closed(self) -> None:
        """The client is finished for good."""

    def announce_ready(self) -> None:
        self._on_ioloop(lambda: self.ctx.ready(self))  # type: ignore[arg-type]

    def go(self, go_at: float) -> None:
        self.go_at = go_at
        if self.loop is not None and self.go_event is not None:
            self.loop.call_soon_threadsafe(self.go_event.set)

    def stop(self, reason: str = "") -> None:
        self.stop_reason = self.stop_reason or reason
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)

    def endpoint(self) -> dict[str, Any]:
        host, port = stream_endpoint(self.ctx.settings)
        username, password, vhost = _credentials(self.ctx.settings)
        return {"host": host, "port": port, "username": username, "password": password, "vhost": vhost,
                "connection_name": self.connection_name, "load_balancer_mode": False}


class StreamProducer(StreamClient):
    """Publishes like the AMQP producer: body (with placeholders), body_file, size distribution, content_type, headers (as
    application properties), rate or rate profile, routing keys with placeholders and key order (super streams),
    a confirm window and confirm latency. A stream always confirms, so `confirm` only bounds what is in flight."""

    def __init__(self, ctx: Context, spec: model.Producer, index: int, instance: int,
                 default_duration: float | None) -> None:
        super().__init__(ctx, f"producer:{spec.name}#{instance}")
        self.spec, self.index, self.instance = spec, index, instance
        self.tally = ProducerTally(spec.name, index, instance, len(spec.routing_keys), spec.key_order, True)
        self.schedule = spec.schedule()
        ends = spec.messages is not None or (self.schedule is not None and self.schedule.total is not None)
        self.duration = spec.duration if spec.duration is not None else (None if ends else default_duration)
        self.super_stream = ctx.topology.super_stream(spec.super_stream) if spec.super_stream else None
        sizes = spec.size_distribution()
        self.prefix_mark = spec.body is None and spec.body_template is None and marks.fits_prefix(sizes.smallest)
        self.sizes = sizes.table(marks.stream_id(index, instance)) if sizes.varies and spec.body is None \
            and spec.body_template is None else None
        self.buffer = marks.body_buffer(max(sizes.largest, marks.PREFIX_SIZE)) if self.prefix_mark else bytearray()
        self.body = spec.body if spec.body is not None else b"x" * sizes.largest
        self.headers: dict[str, Any] = dict(spec.headers)
        self.sent_ns: dict[int, int] = {}    # publishing id -> publish time, while unconfirmed (confirm latency)
        self.room: asyncio.Event | None = None
        self.properties: Any = None          # the AMQP 1.0 properties section: content_type

    def _target(self, seq: int) -> str:
        if self.super_stream is None:
            return self.spec.queue or ""
        keys = self.spec.routing_keys
        key = keys[slot_of(seq, len(keys), self.spec.key_order)]
        if "{" in key:
            key = model.fill_key(key, self.spec.name, seq, self.instance)
        found = superstreams.partitions_for(self.super_stream, key)
        return found[0] if found else ""

    def _body(self, seq: int, now_ns: int) -> tuple[bytes, dict[str, Any] | None]:
        """The body of message seq and its application properties; the mark in the body or in the x-mqspec one."""
        sizes = self.sizes
        if self.prefix_mark:
            marks.PREFIX.pack_into(self.buffer, 0, marks.MAGIC, self.ctx.run_id, self.tally.sid, seq, now_ns)
            size = self.spec.size if sizes is None else sizes[seq % len(sizes)]
            return bytes(memoryview(self.buffer)[:size]), self.headers or None
        properties = {**self.headers, marks.HEADER: marks.header_mark(self.ctx.run_id, self.tally.sid, seq, now_ns)}
        template = self.spec.body_template
        if template is not None:
            return model.fill_body(template, self.spec.name, seq), properties
        size = self.spec.size if sizes is None else sizes[seq % len(sizes)]
        return self.body if self.spec.body is not None else self.body[:size], properties

    def _message(self, rstream: Any, seq: int, now_ns: int) -> Any:
        body, application_properties = self._body(seq, now_ns)
        message = rstream.AMQPMessage(body=body, application_properties=application_properties,
                                      properties=self.properties)
        message.publishing_id = seq + 1   # its confirm names it: seq + 1 (rstream's own numbering starts at 1)
        return message

    async def main(self) -> None:
        import rstream

        assert self.go_event is not None and self.stop_event is not None
        self.room = asyncio.Event()
        content_type = self.spec.content_type
        self.properties = rstream.Properties(content_type=content_type) if content_type else None
        options = self.endpoint()
        value = self.spec.filter_value
        if value is not None:   # x-stream-filter-value, RabbitMQ 3.13+ (features.py refuses it on older brokers)
            options["filter_value_extractor"] = lambda _message: value
        producer = rstream.Producer(**options)
        await producer.start()
        try:
            self.announce_ready()
            await self.go_event.wait()
            await asyncio.sleep(max(0.0, self.go_at + self.spec.start_after - time.monotonic()))
            await self._publish(producer, rstream)
            await self._await_confirms()
        finally:
            self.tally.done = True
            await producer.close()

    async def _publish(self, producer: Any, rstream: Any) -> None:
        spec, tally, stop = self.spec, self.tally, self.stop_event
        assert stop is not None
        limit = spec.messages if spec.messages is not None else marks.SEQ_LIMIT
        started = time.monotonic()
        end = started + self.duration if self.duration is not None else None
        timed = spec.confirm is not None
        paced, windowed = self.schedule is not None, bool(spec.confirm)
        seq = 0
        while seq < limit and not stop.is_set() and (end is None or time.monotonic() < end):
            if (paced and not await self._pace(seq, started)) or (windowed and not await self._window()):
                break
            now_ns = time.time_ns()
            if tally.published == 0:
                tally.first_ns = now_ns
            if timed:
                self.sent_ns[seq + 1] = now_ns
            await producer.send(self._target(seq), self._message(rstream, seq, now_ns), on_publish_confirm=self._confirmed)
            tally.published += 1
            tally.last_ns = now_ns
            seq += 1

    async def _pace(self, seq: int, started: float) -> bool:
        """Wait until message seq is due by the rate or rate profile; False when the profile has ended."""
        schedule = self.schedule
        if schedule is None:
            return True
        due = schedule.at(seq)
        if due is None:
            return False
        await asyncio.sleep(max(0.0, started + due - time.monotonic()))
        return True

    async def _window(self) -> bool:
        """With `confirm: N`, wait while N messages are unconfirmed; False when the run stops meanwhile."""
        window, room, stop = self.spec.confirm, self.room, self.stop_event
        assert room is not None and stop is not None
        tally = self.tally
        while window and tally.published - tally.confirmed - tally.nacked >= window:
            room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(room.wait(), IDLE_CHECK)
            if stop.is_set():
                return False
        return True

    async def _confirmed(self, status: Any) -> None:
        tally = self.tally
        if status.is_confirmed:
            tally.confirmed += 1
            sent = self.sent_ns.pop(status.message_id, 0)
            if sent:
                tally.confirm_latency.record((time.time_ns() - sent) // 1000, 1)
        else:
            tally.nacked += 1
            self.sent_ns.pop(status.message_id, None)
            tally.fail(status.message_id - 1)
        if self.room is not None:
            self.room.set()

    async def _await_confirms(self) -> None:
        deadline = time.monotonic() + CONFIRM_WAIT
        tally = self.tally
        while tally.confirmed + tally.nacked < tally.published and time.monotonic() < deadline:
            await asyncio.sleep(IDLE_CHECK)
        tally.unconfirmed = tally.published - tally.confirmed - tally.nacked


class StreamConsumer(StreamClient):
    def __init__(self, ctx: Context, spec: model.Consumer, instance: int) -> None:
        super().__init__(ctx, f"consumer:{spec.name}#{instance}")
        self.spec, self.instance = spec, instance
        self.tally = ConsumerTally(spec.name, spec.queue, instance, ctx.started_ns - START_SLACK_NS)
        self.next_offset: int | None = None
        self.accepting = True
        self.slow = spec.processing_time.busy
        self.random = random.Random(f"{spec.name}#{instance}")

    @property
    def active(self) -> bool:
        return not self.done and self.accepting

    def crash(self) -> None:
        self.tally.crashed = True
        self.accepting = False
        self.stop("crashed")

    def offset_specification(self) -> Any:
        from rstream import ConsumerOffsetSpecification, OffsetType

        if self.next_offset is not None:
            return ConsumerOffsetSpecification(OffsetType.OFFSET, self.next_offset)
        offset = self.spec.offset or model.StreamOffset("next")
        if offset.kind == "offset":
            return ConsumerOffsetSpecification(OffsetType.OFFSET, offset.offset)
        if offset.kind == "timestamp":
            ms = offset.timestamp_ms if offset.timestamp_ms is not None else round((time.time() - (offset.ago or 0)) * 1000)
            return ConsumerOffsetSpecification(OffsetType.TIMESTAMP, ms)
        kinds = {"first": OffsetType.FIRST, "last": OffsetType.LAST, "next": OffsetType.NEXT}
        return ConsumerOffsetSpecification(kinds[offset.kind], None)

    async def main(self) -> None:
        import rstream

        assert self.stop_event is not None
        consumer = rstream.Consumer(**self.endpoint())
        await consumer.start()
        try:
            await consumer.subscribe(self.spec.queue, self._on_message, decoder=rstream.amqp_decoder,
                                     offset_specification=self.offset_specification(), **self._group(), **self._filter())
            self.announce_ready()
            await self._until_stopped()
        finally:
            if not self.tally.stopped:
                self.tally.stopped = self.stop_reason or "closed"
            await consumer.close()

    def _group(self) -> dict[str, Any]:
        if not self.spec.single_active_consumer:
            return {}
        return {"subscriber_name": self.spec.name, "properties": {"single-active-consumer": "true", "name": self.spec.name},
                "consumer_update_listener": self._promoted}

    def _filter(self) -> dict[str, Any]:
        if not self.spec.filter:
            return {}
        from rstream import FilterConfiguration

        return {"filter_input": FilterConfiguration(list(self.spec.filter))}

    async def _promoted(self, _active: bool, _event: Any) -> Any:
        return self.offset_specification()

    async def _until_stopped(self) -> None:
        stop, idle = self.stop_event, self.spec.idle_timeout
        assert stop is not None
        last_count, last_change = -1, time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(IDLE_CHECK)
            if idle is not None and self.go_event is not None and self.go_event.is_set():
                if self.tally.received != last_count:
                    last_count, last_change = self.tally.received, time.monotonic()
                elif time.monotonic() - last_change >= idle:
                    self.tally.stopped = "idle"
                    return
            if not self.accepting:
                return

    async def _on_message(self, message: Any, context: Any) -> None:
        if not self.accepting:
            return
        self.next_offset = context.offset + 1
        tally = self.tally
        now_ns = time.time_ns()
        count = tally.received = tally.received + 1
        if count == 1:
            tally.first_ns = now_ns
        tally.last_ns = now_ns
        body = _body(message)
        found = marks.read_body_mark(body) or marks.read_header_mark(_properties(message.application_properties))
        if found is None:
            tally.foreign += 1
        else:
            run, sid, seq, ts = found
            if run != self.ctx.run_id or seq >= self.ctx.stream_caps.get(sid, 0):
                tally.foreign += 1
            else:
                tally.see(sid, seq, ts, now_ns, False, False)
        tally.acked = tally.received   # a stream has no acks: what is read is settled
        limit = self.spec.messages
        if limit is not None and count >= limit:
            self.accepting = False
            tally.stopped = "messages"
        if self.slow:
            await asyncio.sleep(self.spec.processing_time.sample(self.random))   # rstream awaits each callback

    def closed(self) -> None:
        self.tally.reconnects = self.reconnects
        self.tally.acked = self.tally.received


def _body(message: Any) -> bytes:
    body = message.body
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, list):
        return b"".join(bytes(part) for part in body)
    return bytes(message)


def _properties(found: Any) -> dict[str, Any] | None:
    """Application properties with text keys (rstream decodes them as bytes)."""
    if not found:
        return None
    return {key.decode("utf-8", "replace") if isinstance(key, bytes) else key: value for key, value in found.items()}
