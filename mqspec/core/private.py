"""Private queues: the tutorials' subscriber pattern, where each consumer declares its own queue.

A consumer owns a queue in two ways:

- written on the consumer, `queue: {exclusive: true, bind: [{exchange: logs}]}` (server-named when
  `name` is left out; such a queue goes by the consumer's name in routes, graphs and reports);
- written the plain way, an `exclusive` or `auto_delete` queue under `topology.queues` with exactly
  one consumer (of one instance) on it.

Either way the queue and its bindings sit in the topology like any other (so routing, lint, graph
and the oracle see them), marked with their owner: the consumer's own connection declares and binds
them before any producer starts, and apply, plan, destroy and export leave them alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from mqspec.core import model


def declared_on_consumer(data: Mapping[str, Any]) -> bool:
    return isinstance(data.get("queue"), Mapping)


def queue_name(data: Mapping[str, Any]) -> str:
    """The name a consumer entry consumes from: its queue, or its own name for a server-named private queue."""
    queue = data.get("queue")
    if isinstance(queue, Mapping):
        return str(queue.get("name") or data.get("name", ""))
    return str(queue or "")


def consumer_queue(data: Mapping[str, Any], where: str) -> tuple[model.Queue, list[model.Binding]]:
    """The private queue written on a consumer entry, and its bindings."""
    spec: Mapping[str, Any] = data["queue"]
    name = queue_name(data)
    queue = model.Queue(name, "classic", spec.get("durable", False), spec.get("exclusive", True), spec.get("auto_delete", False),
                        dict(spec.get("arguments", {})), False, f"{where}.queue", owner=str(data["name"]),
                        server_named="name" not in spec)
    bindings = [binding for i, entry in enumerate(spec.get("bind", []))
                for binding in _bindings(entry, name, f"{where}.queue.bind[{i}]")]
    return queue, bindings


def _bindings(data: Mapping[str, Any], queue: str, where: str) -> list[model.Binding]:
    args = dict(data.get("arguments", {}))
    if "match" in data:
        args["x-match"] = data["match"]
    args.update(data.get("headers", {}))
    return [model.Binding(data["exchange"], queue, "queue", key, args, where) for key in data.get("keys", [""])]


def with_private_queues(topology: model.Topology, consumers: Sequence[Mapping[str, Any]]) -> model.Topology:
    """The topology with the consumers' own queues added, and plain exclusive/auto_delete queues owned."""
    queues, bindings = list(topology.queues), list(topology.bindings)
    for i, data in enumerate(consumers):
        if declared_on_consumer(data) and "name" in data:
            queue, found = consumer_queue(data, f"$.workload.consumers[{i}]")
            queues.append(queue)
            bindings += found
    owners = _plain_owners(topology, consumers)
    queues = [replace(q, owner=owners[q.name]) if q.name in owners else q for q in queues]
    return replace(topology, queues=tuple(queues), bindings=tuple(bindings))


def _plain_owners(topology: model.Topology, consumers: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """An exclusive or auto_delete queue of the topology with one consumer of one instance: that consumer owns it."""
    readers: dict[str, list[Mapping[str, Any]]] = {}
    for data in consumers:
        if not declared_on_consumer(data):
            readers.setdefault(queue_name(data), []).append(data)
    owners = {}
    for queue in topology.queues:
        found = readers.get(queue.name, [])
        if (queue.exclusive or queue.auto_delete) and not queue.external and queue.type == "classic" and len(found) == 1 \
                and found[0].get("instances", 1) == 1:
            owners[queue.name] = str(found[0].get("name", ""))
    return owners
