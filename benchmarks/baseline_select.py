"""Hand-tuned pika SelectConnection (asynchronous) producer/consumer.

Producer tuning:
  * prebuilt BasicProperties / body / bound methods, deadline checked per batch;
  * batch publishing: publish BATCH messages per step while the connection's
    outbound buffer stays under HIGH_WATER bytes, then yield to the ioloop
    (``call_later(0, ...)``) so the socket drains;
  * workload b: windowed publisher confirms (CONFIRM_WINDOW unconfirmed in
    flight), the broker's multiple=True acks release whole ranges at once;
  * pika writes every frame (method, header, body) as its own transport chunk,
    i.e. three send() calls per message; the producer coalesces the transport's
    pending chunks into one buffer after each batch (``--no-coalesce`` to
    disable).

Consumer tuning: prefetch 200 with ack multiple=True every 100 messages
(workload b), auto-ack with no prefetch limit (workload a). Pika's consumer
path is used as is.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

import pika
from benchcli import (
    ACK_EVERY,
    CONFIRM_WINDOW,
    DRAIN_IDLE,
    FIRST_MESSAGE_TIMEOUT,
    PREFETCH,
    Args,
    drain_cap,
    emit,
    now,
    parse_args,
    signal_ready,
)
from pika.channel import Channel
from pika.frame import Method
from pika.spec import Basic, BasicProperties

# Tuning knobs (environment overrides exist for re-tuning on other machines).
BATCH = int(os.environ.get("SELECT_BATCH", "50"))  # publishes per step
HIGH_WATER = int(os.environ.get("SELECT_HIGH_WATER", str(256 * 1024)))  # bytes
BACKOFF = 0.001  # seconds to wait when the outbound buffer did not drain
REFILL = int(os.environ.get("SELECT_REFILL", str(CONFIRM_WINDOW // 2)))


class Client:
    """Connection + channel + queue declare; subclasses implement ``begin``."""

    def __init__(self, args: Args) -> None:
        self.args = args
        self.conn = pika.SelectConnection(
            pika.URLParameters(args.url), on_open_callback=self._on_open,
            on_open_error_callback=self._on_fail, on_close_callback=self._on_fail)
        self.ch: Channel
        self.error: object = None

    def run(self) -> None:
        self.conn.ioloop.start()
        if self.error is not None:
            raise SystemExit(f"connection failed: {self.error}")

    def _on_open(self, _conn: Any) -> None:
        self.conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, ch: Channel) -> None:
        self.ch = ch
        ch.queue_declare(self.args.queue, durable=False,
                         callback=lambda _f: self.begin())

    def _on_fail(self, _conn: Any, error: object) -> None:
        if not isinstance(error, pika.exceptions.ConnectionClosedByClient):
            self.error = error
        self.conn.ioloop.stop()

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        self.conn.ioloop.call_later(delay, fn)

    def begin(self) -> None:
        raise NotImplementedError


class Producer(Client):
    def begin(self) -> None:
        self.published = 0
        self.outstanding: deque[int] = deque()  # unconfirmed delivery tags
        self.nacked = 0
        self.waiting_for_acks = False
        self.done = False
        self.confirm = self.args.workload == "b"
        if self.confirm:
            self.ch.confirm_delivery(self._on_confirm,
                                     callback=lambda _f: self._start())
        else:
            self._start()

    def _start(self) -> None:
        self.body = b"x" * self.args.size
        self.props = BasicProperties()
        self.start = now()
        self.deadline = self.start + self.args.seconds
        self._pump()

    def _pump(self) -> None:
        """Publish until the deadline, the confirm window or the buffer limit."""
        self.waiting_for_acks = False
        if self.done:
            return
        publish = self.ch.basic_publish
        queue, body = self.args.queue, self.body
        props = self.props
        buffered = self.conn._get_write_buffer_size
        transport = self.conn._transport
        coalescing = not self.args.flags["no-coalesce"]
        sent = 0
        while True:
            if now() >= self.deadline:
                self._finish()
                return
            if buffered() > HIGH_WATER:
                # Let the ioloop write; back off if nothing drained since last time.
                self.after(0 if sent else BACKOFF, self._pump)
                return
            room = BATCH
            if self.confirm:
                room = min(BATCH, CONFIRM_WINDOW - len(self.outstanding))
                if room <= 0:
                    self.waiting_for_acks = True
                    return
                first = self.published + 1
                self.outstanding.extend(range(first, first + room))
            for _ in range(room):
                publish("", queue, body, props)
            self.published += room
            sent += room
            if coalescing:
                coalesce(transport)

    def _on_confirm(self, frame: Method) -> None:
        method = frame.method
        tag = method.delivery_tag
        outstanding = self.outstanding
        if method.multiple:
            while outstanding and outstanding[0] <= tag:
                outstanding.popleft()
                self.nacked += isinstance(method, Basic.Nack)
        else:
            outstanding.remove(tag)
            self.nacked += isinstance(method, Basic.Nack)
        if self.waiting_for_acks and len(outstanding) <= REFILL:
            self._pump()
        elif self.done and not outstanding:
            self.conn.close()

    def _finish(self) -> None:
        self.done = True
        self.elapsed = now() - self.start
        if not (self.confirm and self.outstanding):
            self.conn.close()
        # else: closed by _on_confirm once the last ack arrives

    def report(self) -> None:
        emit("producer", self.published, self.elapsed, nacked=self.nacked)


def coalesce(transport: Any) -> None:
    """Merge the transport's pending chunks so one send() covers a batch."""
    chunks = transport._tx_buffers
    if len(chunks) > 1:
        joined = b"".join(chunks)
        chunks.clear()
        chunks.append(joined)


class Consumer(Client):
    def begin(self) -> None:
        self.count = 0
        self.start = 0.0
        self.elapsed = 0.0
        self.manual = self.args.workload == "b"
        if self.manual:
            self.ch.basic_qos(prefetch_count=PREFETCH,
                              callback=lambda _f: self._subscribe())
        else:
            self._subscribe()

    def _subscribe(self) -> None:
        self.ch.basic_consume(self.args.queue, self._on_message,
                              auto_ack=not self.manual,
                              callback=lambda _f: signal_ready())
        self.after(FIRST_MESSAGE_TIMEOUT, self._give_up)

    def _on_message(self, ch: Channel, method: Basic.Deliver,
                    _props: BasicProperties, _body: bytes) -> None:
        self.last = now()
        count = self.count = self.count + 1
        if count == 1:
            self.start = self.last
            self._measure()
        if self.manual and count % ACK_EVERY == 0:
            ch.basic_ack(method.delivery_tag, multiple=True)
        self.last_tag = method.delivery_tag

    def _measure(self) -> None:
        if self.args.measure == "window":
            self.after(self.args.seconds, lambda: self._finish(now()))
        else:
            self.cap = self.start + drain_cap(self.args.seconds)
            self.after(DRAIN_IDLE / 4, self._check_idle)

    def _check_idle(self) -> None:
        if now() - self.last >= DRAIN_IDLE or now() >= self.cap:
            self._finish(self.last)
        else:
            self.after(DRAIN_IDLE / 4, self._check_idle)

    def _give_up(self) -> None:
        if self.count == 0:
            self.conn.close()

    def _finish(self, end: float) -> None:
        self.elapsed = end - self.start
        self.final = self.count
        if self.manual:
            self.ch.basic_ack(self.last_tag, multiple=True)
        self.conn.close()

    def report(self) -> None:
        emit("consumer", getattr(self, "final", 0), self.elapsed)


def main() -> None:
    args = parse_args(__doc__ or "", flags=("no-coalesce",))
    client = Producer(args) if args.role == "producer" else Consumer(args)
    client.run()
    client.report()


if __name__ == "__main__":
    main()
