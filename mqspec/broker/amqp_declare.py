"""Apply without the management API: declare exchanges, queues and bindings over AMQP.

A passive declare tells whether an entity exists; an existing one is then declared with the file's
properties, which the broker refuses (PRECONDITION_FAILED) when a property it compares differs.
Arguments the broker does not compare (x-consumer-timeout, custom keys) cannot be checked this way,
and bindings cannot be listed over AMQP, so binding declares are reported as done every time.
Users, permissions, policies and vhosts need the management API.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pika.exceptions as pe

from mqspec import definitions, model
from mqspec.broker import amqp
from mqspec.errors import BrokerUnavailable, MqspecError
from mqspec.plan import Change, Entity, Outcome, QueueStats, Step, binding_name

# A refused declare closes its channel; pika logs that as a warning, and this module reports it as an error.
logging.getLogger("pika").setLevel(logging.CRITICAL)


def needs_management(topology: model.Topology) -> list[str]:
    """Entities of the file that only the management API can apply, as 'kind 'name'' labels."""
    labels = [f"vhost '{v.name}'" for v in topology.vhosts]
    labels += [f"user '{u.name}'" for u in topology.users]
    labels += [f"permissions of user '{p.user}' in vhost '{p.vhost}'" for p in topology.permissions]
    labels += [f"topic permissions of user '{p.user}' on exchange '{p.exchange}'" for p in topology.topic_permissions]
    labels += [f"{'operator policy' if p.operator else 'policy'} '{p.name}'" for p in topology.policies]
    return labels


def declare(settings: model.BrokerSettings, topology: model.Topology) -> tuple[Outcome, int]:
    """Declare every exchange, queue and binding of the topology.

    The outcome has one step per exchange or queue that was created or refused, and one per binding that
    failed; the number is of bindings declared, since AMQP cannot tell a new binding from an existing one.
    """
    connection = amqp.connect(settings, connection_name="mqspec apply (AMQP fallback)")
    try:
        session = _Session(connection, settings.url)
        steps = [step for e in definitions.declarable_exchanges(topology.exchanges) if (step := session.exchange(e))]
        steps += [step for qu in definitions.declarable_queues(topology.queues) if (step := session.queue(qu))]
        bound = [session.binding(b) for b in topology.bindings]
        steps += [step for step in bound if step.status != "done"]
        return Outcome(tuple(steps)), sum(1 for step in bound if step.status == "done")
    finally:
        if connection.is_open:
            connection.close()


class _Session:
    def __init__(self, connection: Any, url: str) -> None:
        self.connection = connection
        self.url = url
        self.channel = connection.channel()

    def _call(self, operation: str, action: Callable[[], object]) -> MqspecError | None:
        try:
            action()
        except pe.ChannelClosedByBroker as exc:
            self.channel = self.connection.channel()
            if exc.reply_code == 403:    # the operation already names the entity
                return BrokerUnavailable(f"access refused: user '{amqp.user_of(self.url)}' may not {operation} in vhost "
                                         f"'{amqp.vhost_of(self.url)}' ({exc.reply_text})")
            return amqp.translate(exc, self.url, operation)
        except pe.AMQPError as exc:
            return amqp.translate(exc, self.url, operation)
        return None

    def _exists(self, check: Callable[[], object]) -> bool:
        try:
            check()
        except pe.ChannelClosedByBroker as exc:
            self.channel = self.connection.channel()
            if exc.reply_code == 404:
                return False
            raise amqp.translate(exc, self.url) from None
        return True

    def exchange(self, exchange: model.Exchange) -> Step | None:
        existed = self._exists(lambda: self.channel.exchange_declare(exchange.name, passive=True))
        error = self._call(f"declare exchange '{exchange.name}'", lambda: self.channel.exchange_declare(
            exchange.name, exchange.type, durable=exchange.durable, auto_delete=exchange.auto_delete,
            internal=exchange.internal, arguments=dict(exchange.arguments) or None))
        return _step(Change("create", "exchange", exchange.name, (), exchange), existed, error)

    def queue(self, queue: model.Queue) -> Step | None:
        existed = self._exists(lambda: self.channel.queue_declare(queue.name, passive=True))
        error = self._call(f"declare queue '{queue.name}'", lambda: self.channel.queue_declare(
            queue.name, durable=queue.durable, auto_delete=queue.auto_delete, arguments=queue.broker_arguments() or None))
        return _step(Change("create", "queue", queue.name, (), queue), existed, error)

    def binding(self, binding: model.Binding) -> Step:
        change = Change("create", "binding", binding_name(binding), (), binding)
        error = self._bind(binding)
        return Step(change, "failed", error.message, error.exit_code) if error else Step(change, "done")

    def declare(self, entity: Entity) -> MqspecError | None:
        """Declare one new exchange, queue or binding (no existence check: the plan says it is new)."""
        if isinstance(entity, model.Exchange):
            return self._call(f"declare exchange '{entity.name}'", lambda: self.channel.exchange_declare(
                entity.name, entity.type, durable=entity.durable, auto_delete=entity.auto_delete,
                internal=entity.internal, arguments=dict(entity.arguments) or None))
        if isinstance(entity, model.Queue):
            return self._call(f"declare queue '{entity.name}'", lambda: self.channel.queue_declare(
                entity.name, durable=entity.durable, auto_delete=entity.auto_delete,
                arguments=entity.broker_arguments() or None))
        if isinstance(entity, model.Binding):
            return self._bind(entity)
        raise TypeError(f"cannot declare {type(entity).__name__} over AMQP")

    def _bind(self, binding: model.Binding) -> MqspecError | None:
        args = dict(binding.arguments) or None
        if binding.destination_type == "exchange":
            return self._call(f"bind exchange '{binding.destination}' to exchange '{binding.source}'",
                              lambda: self.channel.exchange_bind(binding.destination, binding.source,
                                                                 routing_key=binding.routing_key, arguments=args))
        return self._call(f"bind queue '{binding.destination}' to exchange '{binding.source}'",
                          lambda: self.channel.queue_bind(binding.destination, binding.source,
                                                          routing_key=binding.routing_key, arguments=args))


def _step(change: Change, existed: bool, error: MqspecError | None) -> Step | None:
    if error is not None:
        return Step(change if not existed else Change("replace", change.kind, change.name, (), change.desired),
                    "failed", error.message, error.exit_code)
    return None if existed else Step(change, "done")


def queue_counts(settings: model.BrokerSettings, names: list[str]) -> dict[str, QueueStats]:
    """Ready messages and consumers of some queues, exact at this moment (a passive declare of each).

    The management API's counts lag up to a few seconds behind; these do not, but they leave out
    messages delivered and not yet acknowledged.
    """
    connection = amqp.connect(settings, connection_name="mqspec (queue counts)")
    try:
        channel = connection.channel()
        counts: dict[str, QueueStats] = {}
        for name in names:
            try:
                declared = channel.queue_declare(name, passive=True)
            except pe.ChannelClosedByBroker:
                channel = connection.channel()
                continue
            counts[name] = QueueStats(declared.method.message_count, declared.method.consumer_count)
        return counts
    finally:
        if connection.is_open:
            connection.close()


class Declarer:
    """Many new exchanges, queues and bindings at once: several AMQP connections declaring side by side.

    Measured on a 2-core machine, 2,000 queues and bindings: 16 connections took 2.6-3.4 s where the broker's
    own definitions import took 4.6-5.4 s. Each connection is used by one thread at a time and kept between
    calls, so exchanges and queues can be declared first and their bindings after.
    """

    def __init__(self, settings: model.BrokerSettings, connections: int) -> None:
        self.settings = settings
        self.size = max(1, connections)
        self._sessions: list[_Session | None] = [None] * self.size

    def run(self, entities: list[Entity]) -> list[MqspecError | None]:
        """Declare every entity; the error of each (or None), in the same order. Raises when no connection opens."""
        slices = [list(range(i, len(entities), self.size)) for i in range(self.size)]
        slices = [s for s in slices if s]
        results: list[MqspecError | None] = [None] * len(entities)

        def work(worker: int) -> None:
            try:
                session = self._session(worker)
                for index in slices[worker]:
                    results[index] = session.declare(entities[index])
            except pe.AMQPError as exc:      # the connection itself failed
                raise amqp.translate(exc, self.settings.url) from None

        self._session(0)       # fail fast, and once, when the broker cannot be reached over AMQP
        with ThreadPoolExecutor(max_workers=len(slices)) as pool:
            list(pool.map(work, range(len(slices))))
        return results

    def _session(self, worker: int) -> _Session:
        session = self._sessions[worker]
        if session is None:
            name = f"mqspec apply ({worker + 1}/{self.size})"
            session = _Session(amqp.connect(self.settings, connection_name=name), self.settings.url)
            self._sessions[worker] = session
        return session

    def close(self) -> None:
        for session in self._sessions:
            if session is not None and session.connection.is_open:
                with contextlib.suppress(pe.AMQPError):
                    session.connection.close()
