"""After a reconnect, declare again what a client needs (a broker restart drops transient entities).

Declares are idempotent when the entity exists with the same properties; they follow the
scenario's topology, so they match what apply declared. Entities the file does not declare (or
marks external) are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pika.channel import Channel

from mqspec.core import model
from mqspec.core.vocabulary import (
    exchange_bind_args,
    exchange_declare_args,
    is_builtin_exchange,
    queue_bind_args,
    queue_declare_args,
)

Step = Callable[[Callable[[Any], None]], None]


def chain(steps: list[Step], done: Callable[[], None]) -> None:
    """Run asynchronous declare steps one after another, then `done`."""
    if not steps:
        done()
        return
    first, rest = steps[0], steps[1:]
    first(lambda _frame: chain(rest, done))


def exchange_step(channel: Channel, exchange: model.Exchange) -> Step:
    return lambda callback: channel.exchange_declare(**exchange_declare_args(exchange), callback=callback)


def _queue_step(channel: Channel, queue: model.Queue) -> Step:
    return lambda callback: channel.queue_declare(**queue_declare_args(queue), callback=callback)


def _binding_step(channel: Channel, binding: model.Binding) -> Step:
    if binding.destination_type == "exchange":
        return lambda callback: channel.exchange_bind(**exchange_bind_args(binding), callback=callback)
    return lambda callback: channel.queue_bind(**queue_bind_args(binding), callback=callback)


def declarable_exchange(topology: model.Topology, name: str) -> model.Exchange | None:
    if is_builtin_exchange(name):
        return None
    exchange = topology.exchange(name)
    return exchange if exchange is not None and not exchange.external else None


def _declarable_queue(topology: model.Topology, name: str) -> model.Queue | None:
    queue = topology.queue(name)
    return queue if queue is not None and not queue.external and not queue.exclusive and queue.owner is None else None


def queue_steps(channel: Channel, topology: model.Topology, name: str) -> list[Step]:
    """The queue, its dead-letter exchange, and its bindings from declared exchanges."""
    queue = _declarable_queue(topology, name)
    if queue is None:
        return []
    steps: list[Step] = []
    dlx = queue.dead_letter_exchange
    dlx_exchange = declarable_exchange(topology, dlx) if dlx else None
    if dlx_exchange is not None:
        steps.append(exchange_step(channel, dlx_exchange))
    steps.append(_queue_step(channel, queue))
    for binding in topology.bindings:
        if binding.destination_type == "queue" and binding.destination == name:
            source = declarable_exchange(topology, binding.source)
            if source is not None:
                steps += [exchange_step(channel, source), _binding_step(channel, binding)]
    return steps


def declare_for_producer(channel: Channel, topology: model.Topology, spec: model.Producer, done: Callable[[], None]) -> None:
    """The target exchange (or queue), and the queues bound to that exchange with their bindings."""
    steps: list[Step] = []
    if spec.queue is not None:
        steps += queue_steps(channel, topology, spec.queue)
    else:
        exchange = declarable_exchange(topology, spec.exchange)
        if exchange is not None:
            steps.append(exchange_step(channel, exchange))
            for binding in topology.bindings:
                if binding.source == spec.exchange and binding.destination_type == "queue":
                    steps += queue_steps(channel, topology, binding.destination)
    chain(steps, done)


def declare_for_consumer(channel: Channel, topology: model.Topology, queue: str, done: Callable[[], None]) -> None:
    chain(queue_steps(channel, topology, queue), done)
