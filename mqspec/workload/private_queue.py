"""A consumer's own queue: declared (server-named when the file gives no name) and bound on the consumer's
connection, at the start and again after every reconnect, before it consumes.

The source exchanges are declared first when the file declares them (idempotent: apply made them the
same way), so a broker restart that dropped a transient exchange does not leave the queue unbound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pika.channel import Channel

from mqspec.core import model
from mqspec.core.vocabulary import queue_bind_args
from mqspec.workload.redeclare import Step, chain, declarable_exchange, exchange_step


def declare(channel: Channel, topology: model.Topology, queue: model.Queue, done: Callable[[str], None]) -> None:
    """Declare the queue, bind it, then `done(its name on the broker)`."""
    def declared(frame: Any) -> None:
        name = str(frame.method.queue)
        chain(_binding_steps(channel, topology, queue.name, name), lambda: done(name))

    channel.queue_declare("" if queue.server_named else queue.name, durable=queue.durable, exclusive=queue.exclusive,
                          auto_delete=queue.auto_delete, arguments=queue.broker_arguments() or None, callback=declared)


def _binding_steps(channel: Channel, topology: model.Topology, written: str, actual: str) -> list[Step]:
    steps: list[Step] = []
    for binding in topology.bindings_to(written):
        source = declarable_exchange(topology, binding.source)
        if source is not None:
            steps.append(exchange_step(channel, source))
        steps.append(_bind_step(channel, replace(binding, destination=actual)))
    return steps


def _bind_step(channel: Channel, binding: model.Binding) -> Step:
    return lambda callback: channel.queue_bind(**queue_bind_args(binding), callback=callback)
