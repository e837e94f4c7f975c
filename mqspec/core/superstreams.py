"""Super streams: their entities, as `rabbitmq-streams add_super_stream` declares them, and where a message goes.

`add_super_stream NAME --partitions 3` declares a durable direct exchange NAME with x-super-stream: true, and
streams NAME-0, NAME-1, NAME-2, each bound to it with the key 0, 1, 2 and the binding argument
x-stream-partition-order (its position). `--routing-keys amer,emea` names the partitions NAME-amer, NAME-emea,
bound with those keys. An AMQP publisher routes through the exchange (direct, by binding key); a stream-protocol
producer picks the partition itself: `hash` is murmur3 (32-bit, seed 104729) of the routing key's UTF-8 bytes,
unsigned, modulo the number of partitions, as the Java, Go and .NET stream clients do; `key` is the binding keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mqspec.core import model

HASH_SEED = 104729


def of(data: Mapping[str, Any], where: str) -> model.SuperStream:
    name = data["name"]
    partitions = data["partitions"]
    keys = tuple(str(i) for i in range(partitions)) if isinstance(partitions, int) else tuple(partitions)
    streams = tuple(f"{name}-{key}" for key in keys)
    binding_keys = tuple(data.get("binding_keys", keys))
    return model.SuperStream(name, streams, binding_keys, data.get("routing", "hash"), where)


def entities(stream: model.SuperStream, arguments: Mapping[str, Any]) -> tuple[model.Exchange, tuple[model.Queue, ...],
                                                                              tuple[model.Binding, ...]]:
    """The exchange, the partition streams and their bindings (`arguments`: x-arguments of every partition)."""
    exchange = model.Exchange(stream.name, "direct", arguments={"x-super-stream": True}, where=stream.where)
    queues = tuple(model.Queue(partition, "stream", arguments=dict(arguments), where=stream.where)
                   for partition in stream.partitions)
    bindings = tuple(model.Binding(stream.name, partition, "queue", key, {"x-stream-partition-order": order},
                                   stream.where)
                     for order, (partition, key) in enumerate(zip(stream.partitions, stream.binding_keys, strict=False)))
    return exchange, queues, bindings


def partitions_for(stream: model.SuperStream, routing_key: str) -> tuple[str, ...]:
    """The partitions a stream-protocol producer sends a message with this routing key to."""
    if stream.routing == "key":
        return tuple(p for p, key in zip(stream.partitions, stream.binding_keys, strict=False) if key == routing_key)
    return (stream.partitions[murmur3_32(routing_key.encode("utf-8"), HASH_SEED) % len(stream.partitions)],)


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit, unsigned (the hash of Guava's murmur3_32 and of mmh3.hash(..., signed=False))."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed & mask
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    tail = data[whole:]
    if tail:
        k = int.from_bytes(tail, "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h
