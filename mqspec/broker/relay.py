"""Move messages from one queue to another through mqspec itself, when the broker has no shovel plugin.

One channel consumes the source (manual acknowledgements, a prefetch of WINDOW) and publishes each message to the
destination through the default exchange with the same body and BasicProperties (headers, priority, delivery
mode, expiration, message id...), mandatory, with publisher confirms. A source message is acknowledged only once
its copy is confirmed. Deliveries and publishes on one channel are numbered alike from 1, and every delivery is
published at once, so confirm n (multiple or not) acknowledges delivery n (multiple alike). A nack requeues the
source message; a return (the destination is gone) stops the relay before anything else is acknowledged.

If the process dies, the broker requeues every unacknowledged message: copies of those already confirmed exist in
the destination too, so they are duplicated, never lost. On the next run they arrive redelivered, and the relay
counts them as possible duplicates.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import pika
from pika.channel import Channel
from pika.spec import Basic, BasicProperties

from mqspec.errors import OperationFailed

WINDOW = 2000
IDLE = 2.0
PAUSE_ENV = "MQSPEC_MIGRATE_PAUSE_AT"


@dataclass
class Moved:
    moved: int = 0
    redelivered: int = 0


def relay(params: pika.URLParameters, source: str, destination: str, limit: int, pause_at: str = "") -> Moved:
    """Move `limit` messages (at least; those already in flight too) from `source` to `destination`."""
    job = _Relay(params, source, destination, limit, pause_at)
    return job.run()


class _Relay:
    def __init__(self, params: pika.URLParameters, source: str, destination: str, limit: int, pause_at: str) -> None:
        self.params, self.source, self.destination, self.limit = params, source, destination, limit
        self.pause_at = pause_at
        self.result = Moved()
        self.received = 0
        self.pending: set[int] = set()
        self.cancelled = False
        self.error = ""
        self.paused = False
        self.finished = False
        self.last_delivery = time.monotonic()
        self.channel: Channel | None = None
        self.connection: pika.SelectConnection | None = None

    def run(self) -> Moved:
        self.connection = pika.SelectConnection(self.params, on_open_callback=self._opened,
                                                on_open_error_callback=self._failed_to_open,
                                                on_close_callback=self._closed)
        self.connection.ioloop.start()
        self.connection.ioloop.close()
        if self.error:
            raise OperationFailed(self.error)
        return self.result

    # --- connection and channel ------------------------------------------------------------------------------

    def _opened(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._channel_open)

    def _failed_to_open(self, connection: Any, error: BaseException) -> None:
        self.error = f"the relay could not connect: {error}"
        connection.ioloop.stop()

    def _closed(self, connection: Any, reason: BaseException) -> None:
        if not self.finished and not self.error:
            self.error = f"the relay's connection closed before it finished: {reason}"
        connection.ioloop.stop()

    def _channel_open(self, channel: Channel) -> None:
        self.channel = channel
        channel.add_on_close_callback(self._channel_closed)
        channel.add_on_return_callback(self._returned)
        channel.confirm_delivery(self._confirmed, callback=lambda _frame: self._qos(channel))

    def _qos(self, channel: Channel) -> None:
        channel.basic_qos(prefetch_count=min(WINDOW, max(1, self.limit)),
                          callback=lambda _frame: self._consume(channel))

    def _consume(self, channel: Channel) -> None:
        if self.limit <= 0:
            self._finish()
            return
        channel.basic_consume(self.source, self._delivered, auto_ack=False, consumer_tag="mqspec-migrate-relay")
        self._watch()

    def _watch(self) -> None:
        """The source ran dry before `limit` (someone else consumed): finish once nothing came for IDLE seconds."""
        assert self.connection is not None
        if self.finished or self.error:
            return
        if not self.pending and time.monotonic() - self.last_delivery > IDLE:
            self._finish()
            return
        self.connection.ioloop.call_later(0.5, self._watch)

    def _channel_closed(self, _channel: Channel, reason: BaseException) -> None:
        if not self.finished and not self.error:
            self.error = f"the relay's channel closed before it finished: {reason}"
        if self.connection is not None and self.connection.is_open:
            self.connection.close()

    # --- messages --------------------------------------------------------------------------------------------

    def _delivered(self, channel: Channel, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
        if self.error:
            return
        self.received += 1
        self.last_delivery = time.monotonic()
        if method.redelivered:
            self.result.redelivered += 1
        self.pending.add(method.delivery_tag)
        channel.basic_publish("", self.destination, body, properties, mandatory=True)
        if self.received >= self.limit and not self.cancelled:
            self.cancelled = True
            channel.basic_cancel("mqspec-migrate-relay", callback=lambda _frame: self._maybe_finish())

    def _confirmed(self, frame: Any) -> None:
        method = frame.method
        assert self.channel is not None
        if self.error:
            return
        tag, multiple = method.delivery_tag, method.multiple
        done = {t for t in self.pending if t <= tag} if multiple else {tag} & self.pending
        self.pending -= done
        if isinstance(method, Basic.Ack):
            self.channel.basic_ack(tag, multiple=multiple)
            self.result.moved += len(done)
        else:
            self.channel.basic_nack(tag, multiple=multiple, requeue=True)
        self._pause_midway()
        self._maybe_finish()

    def _returned(self, _channel: Channel, _method: Any, _properties: Any, _body: bytes) -> None:
        self.error = f"queue '{self.destination}' did not accept a message (it no longer exists?); nothing more was moved"
        if self.connection is not None and self.connection.is_open:
            self.connection.close()

    def _pause_midway(self) -> None:
        if self.pause_at and not self.paused and self.result.moved * 2 >= self.limit:
            self.paused = True
            print(f"mqspec: migration paused at {self.pause_at}", file=sys.stderr, flush=True)
            time.sleep(float(os.environ.get("MQSPEC_MIGRATE_PAUSE_SECONDS", "3600")))

    def _done(self) -> bool:
        return self.cancelled and not self.pending and self.received >= self.limit

    def _maybe_finish(self) -> None:
        if self._done():
            self._finish()

    def _finish(self) -> None:
        self.finished = True
        if self.channel is not None and self.channel.is_open:
            self.channel.close()
        if self.connection is not None and self.connection.is_open:
            self.connection.close()
