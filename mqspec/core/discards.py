"""Messages the broker throws away: rejected or nacked with requeue: false on a queue without a
dead-letter exchange (from its arguments or a policy). They were delivered, so they are not lost,
but no consumer processed them; `no_loss` fails on them unless it allows them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from mqspec.core import model, routing
from mqspec.core.result import ConsumerResult


def discards(consumer: model.Consumer, topology: model.Topology) -> bool:
    """Does the broker discard what this consumer rejects or nacks?"""
    if consumer.requeue or not (consumer.reject or consumer.nack):
        return False
    queue = topology.queue(consumer.queue)
    return queue is None or routing.dead_letter(topology, queue)[0] is None


def with_discarded(results: Mapping[str, ConsumerResult], work: model.Workload,
                   topology: model.Topology) -> dict[str, ConsumerResult]:
    """Each consumer result with its `discarded` count."""
    throwing = {c.name for c in work.consumers if discards(c, topology)}
    return {name: replace(r, discarded=r.rejected + r.nacked) if name in throwing else r for name, r in results.items()}
