"""RPC over AMQP as in the tutorial: servers answer on `reply_to` with the request's `correlation_id`.

Clients keep `concurrency` requests in flight, each with its own timeout timer, and reply either
on an exclusive, server-named callback queue or through direct reply-to (amq.rabbitmq.reply-to).
A reply whose correlation id is not outstanding (late, after its timeout, or unknown) is stray.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from pika.channel import Channel
from pika.spec import Basic, BasicProperties

from mqspec.core import model
from mqspec.core.vocabulary import DIRECT_REPLY_TO
from mqspec.workload.client import Client, Context
from mqspec.workload.redeclare import declare_for_consumer

FIB_LIMIT = 10_000


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def handle(handler: str, body: bytes) -> bytes:
    """The reply for one request: echo, or fib(n) of a numeric body."""
    if handler == "echo":
        return body
    try:
        n = int(body.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return b"error: fib needs a whole number"
    if n < 0 or n > FIB_LIMIT:
        return f"error: fib takes 0..{FIB_LIMIT}".encode()
    return str(fib(n)).encode()


@dataclass
class ServerTally:
    name: str
    instance: int
    handled: int = 0
    reconnects: int = 0


@dataclass
class ClientTally:
    name: str
    requests: int
    sent: int = 0
    answered: int = 0
    timeouts: int = 0
    stray: int = 0
    reconnects: int = 0
    first_ns: int = 0
    last_ns: int = 0
    done: bool = False


class RpcServer(Client):
    def __init__(self, ctx: Context, spec: model.RpcServer, instance: int) -> None:
        super().__init__(ctx, f"rpc-server:{spec.name}#{instance}")
        self.spec = spec
        self.tally = ServerTally(spec.name, instance)
        self.queue: deque[tuple[int, BasicProperties, bytes]] = deque()
        self.busy = False
        self.random = random.Random(f"{spec.name}#{instance}")

    def setup(self, channel: Channel) -> None:
        self.queue.clear()
        self.busy = False
        if self.ready_once:
            declare_for_consumer(channel, self.ctx.topology, self.spec.queue, self._qos)
        else:
            self._qos()

    def _qos(self) -> None:
        if self.channel is None:
            return
        self.operation = "set the RPC server's prefetch"
        self.channel.basic_qos(prefetch_count=self.spec.prefetch, callback=lambda _f: self._consume())

    def _consume(self) -> None:
        if self.channel is None:
            return
        self.operation = f"consume requests from queue '{self.spec.queue}'"
        self.channel.basic_consume(self.spec.queue, self._on_request, callback=lambda _f: self._on_consuming())

    def _on_consuming(self) -> None:
        if not self.ready_once:
            self.became_ready()
            self.ctx.ready(self)

    def go(self, go_at: float) -> None:
        """Servers serve from the moment they are subscribed."""

    def _on_request(self, _channel: Channel, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
        self.queue.append((method.delivery_tag, properties, body))
        if not self.busy:
            self._next()

    def _next(self) -> None:
        if not self.queue:
            self.busy = False
            return
        self.busy = True
        delay = self.spec.processing_time.sample(self.random)
        channel = self.channel
        if delay > 0:
            self.later(delay, lambda: self._answer(channel))
        else:
            self._answer(channel)

    def _answer(self, channel: Channel | None) -> None:
        if channel is None or channel is not self.channel or not self.queue:
            self.busy = False
            return
        tag, properties, body = self.queue.popleft()
        assert channel is not None
        if properties.reply_to:
            reply = BasicProperties(correlation_id=properties.correlation_id)
            channel.basic_publish("", properties.reply_to, handle(self.spec.handler, body), reply)
        channel.basic_ack(tag)
        self.tally.handled += 1
        self._next()

    def lost(self) -> None:
        self.queue.clear()
        self.busy = False
        self.tally.reconnects = self.reconnects

    def stop(self, reason: str = "") -> None:
        self.close()


class RpcClient(Client):
    def __init__(self, ctx: Context, spec: model.RpcClient) -> None:
        super().__init__(ctx, f"rpc-client:{spec.name}")
        self.spec = spec
        self.tally = ClientTally(spec.name, spec.requests)
        self.reply_to = ""
        self.outstanding: dict[str, Any] = {}
        self.seq = 0
        self.running = False

    def setup(self, channel: Channel) -> None:
        if self.spec.direct_reply_to:
            self.reply_to = DIRECT_REPLY_TO
            self._consume_replies()
        else:
            self.operation = "declare the RPC callback queue"
            channel.queue_declare("", exclusive=True, auto_delete=True, callback=self._on_callback_queue)

    def _on_callback_queue(self, frame: Any) -> None:
        self.reply_to = frame.method.queue
        self._consume_replies()

    def _consume_replies(self) -> None:
        if self.channel is None:
            return
        self.operation = f"consume replies from '{self.reply_to}'"
        self.channel.basic_consume(self.reply_to, self._on_reply, auto_ack=True, callback=lambda _f: self._on_consuming())

    def _on_consuming(self) -> None:
        if not self.ready_once:
            self.became_ready()
            self.ctx.ready(self)
        elif self.running:
            self._fill()

    def go(self, go_at: float) -> None:
        self.running = True
        self.later(max(0.0, go_at - time.monotonic()), self._fill)

    def _fill(self) -> None:
        channel = self.channel
        while (self.running and channel is not None and channel.is_open
               and len(self.outstanding) < self.spec.concurrency and self.seq < self.spec.requests):
            self._send(channel)
        self._maybe_done()

    def _send(self, channel: Channel) -> None:
        seq = self.seq
        self.seq += 1
        correlation = f"{self.spec.name}-{seq}"
        body = (self.spec.body or "{seq}").replace("{seq}", str(seq)).encode()
        now_ns = time.time_ns()
        if not self.tally.first_ns:
            self.tally.first_ns = now_ns
        properties = BasicProperties(reply_to=self.reply_to, correlation_id=correlation)
        channel.basic_publish("", self.spec.queue, body, properties)
        self.tally.sent += 1
        self.outstanding[correlation] = self.later(self.spec.timeout, lambda: self._timed_out(correlation))

    def _on_reply(self, _channel: Channel, _method: Basic.Deliver, properties: BasicProperties, _body: bytes) -> None:
        timer = self.outstanding.pop(properties.correlation_id or "", None)
        if timer is None:
            self.tally.stray += 1
            return
        self.ctx.ioloop.remove_timeout(timer)
        self.tally.answered += 1
        self.tally.last_ns = time.time_ns()
        self._fill()

    def _timed_out(self, correlation: str) -> None:
        if self.outstanding.pop(correlation, None) is not None:
            self.tally.timeouts += 1
            self._fill()

    def _maybe_done(self) -> None:
        if not self.tally.done and self.seq >= self.spec.requests and not self.outstanding:
            self.tally.done = True
            self.running = False
            self.ctx.progress_changed()
            self.close()

    def lost(self) -> None:
        """Requests in flight keep their timers; replies to a lost callback queue will not come."""
        self.tally.reconnects = self.reconnects

    def stop(self, reason: str = "") -> None:
        self.running = False
        for timer in self.outstanding.values():
            self.ctx.ioloop.remove_timeout(timer)
        self.tally.timeouts += len(self.outstanding)
        self.outstanding.clear()
        self.close()
