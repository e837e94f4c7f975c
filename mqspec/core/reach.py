"""Which queues a producer's messages reach, per routing-key slot, by the routing oracle (routing.py).

A producer cycles through its routing keys (slot i is key i); every slot is routed once over the
file's topology. Keys with placeholders (`{seq}`), plugin exchange types and external exchanges
cannot be predicted: then the answer is None and accounting falls back to what consumers saw.
"""

from __future__ import annotations

from collections.abc import Mapping

from mqspec.core import model, routing, superstreams

SlotsByQueue = Mapping[str, frozenset[int]]


def slots_by_queue(topology: model.Topology, producer: model.Producer, certain: bool = True) -> SlotsByQueue | None:
    """queue -> the key slots of this producer that reach it; None when the file cannot tell.

    certain=False: the queues the file's own bindings reach, even when others may exist (external
    or plugin exchanges), which is enough to know where to look for messages left behind.
    """
    keys = producer.routing_keys or ("",)
    if producer.super_stream is not None:
        return _super_stream_slots(topology, producer.super_stream, keys)
    if producer.queue is not None:
        return {producer.queue: frozenset(range(len(keys)))}
    if any("{" in key for key in keys):
        return None
    found: dict[str, set[int]] = {}
    for slot, key in enumerate(keys):
        routed = routing.route(topology, producer.exchange, key, producer.headers)
        if certain and not routed.certain:
            return None
        for queue in routed.queues:
            found.setdefault(queue, set()).add(slot)
    return {queue: frozenset(slots) for queue, slots in found.items()}


def _super_stream_slots(topology: model.Topology, name: str, keys: tuple[str, ...]) -> SlotsByQueue | None:
    """A stream-protocol producer picks the partition of each message itself (superstreams.py)."""
    stream = topology.super_stream(name)
    if stream is None or any("{" in key for key in keys):
        return None
    found: dict[str, set[int]] = {}
    for slot, key in enumerate(keys):
        for partition in superstreams.partitions_for(stream, key):
            found.setdefault(partition, set()).add(slot)
    return {queue: frozenset(slots) for queue, slots in found.items()}


def queues_reached(topology: model.Topology, workload: model.Workload) -> list[str]:
    """Every queue some producer of the workload reaches by the file's bindings, in file order of producers."""
    names: list[str] = []
    for producer in workload.producers:
        reached = slots_by_queue(topology, producer, certain=False)
        names += list(reached or {})
    return list(dict.fromkeys(names))
