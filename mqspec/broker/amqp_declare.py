"""Apply without the management API: declare exchanges, queues and bindings over AMQP.

A passive declare tells whether an entity exists; an existing one is then declared with the file's
properties, which the broker refuses (PRECONDITION_FAILED) when a property it compares differs.
Arguments the broker does not compare (x-consumer-timeout, custom keys) cannot be checked this way,
and bindings cannot be listed over AMQP, so binding declares are reported as done every time.
Users, permissions, policies and vhosts need the management API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pika.exceptions as pe

from mqspec import definitions, model
from mqspec.broker import amqp
from mqspec.errors import MqspecError
from mqspec.plan import Change, Outcome, QueueStats, Step, binding_name


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
        args = dict(binding.arguments) or None
        if binding.destination_type == "exchange":
            error = self._call(f"bind exchange '{binding.destination}'", lambda: self.channel.exchange_bind(
                binding.destination, binding.source, routing_key=binding.routing_key, arguments=args))
        else:
            error = self._call(f"bind queue '{binding.destination}'", lambda: self.channel.queue_bind(
                binding.destination, binding.source, routing_key=binding.routing_key, arguments=args))
        return Step(change, "failed", error.message, error.exit_code) if error else Step(change, "done")


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
