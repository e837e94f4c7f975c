"""RabbitMQ's own vocabulary, in one place: built-in exchanges and reserved names, direct reply-to, the friendly
queue fields and the x-argument each becomes, which properties a redeclare cannot change (so a difference forces
a replace), and the shapes of a declare over AMQP and of the management API's request bodies. Pure: no I/O.

Every module that needs one of these asks here, so that a name RabbitMQ reserves, or the arguments of a declare,
cannot drift apart between the validator, the router, the planner, apply and the workload's redeclares.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from mqspec.core import model

DEFAULT_EXCHANGE = ""
RESERVED_PREFIX = "amq."            # exchange and queue names RabbitMQ refuses to declare (ACCESS_REFUSED)
SERVER_NAMED_PREFIX = "amq.gen-"    # queues the broker names itself
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

# Every exchange a vhost has from the start, with its type. The default exchange has the empty name.
BUILTIN_EXCHANGES: Mapping[str, str] = MappingProxyType({
    DEFAULT_EXCHANGE: "direct", "amq.direct": "direct", "amq.fanout": "fanout", "amq.topic": "topic",
    "amq.headers": "headers", "amq.match": "headers", "amq.rabbitmq.trace": "topic",
})
INTERNAL_BUILTINS = frozenset({"amq.rabbitmq.trace"})

# Friendly queue fields and the x-argument each becomes.
QUEUE_ARGUMENT_NAMES: Mapping[str, str] = MappingProxyType({
    "message_ttl": "x-message-ttl",
    "expires": "x-expires",
    "max_length": "x-max-length",
    "max_length_bytes": "x-max-length-bytes",
    "overflow": "x-overflow",
    "max_priority": "x-max-priority",
    "single_active_consumer": "x-single-active-consumer",
    "delivery_limit": "x-delivery-limit",
    "dead_letter_exchange": "x-dead-letter-exchange",
    "dead_letter_routing_key": "x-dead-letter-routing-key",
})

# Properties fixed when an exchange or queue is declared: the broker refuses a redeclare that differs
# (PRECONDITION_FAILED) or keeps the old value, and no request changes them in place, so a difference in any of
# them forces a delete and a new declare. A field `arguments.x-...` is covered by `arguments`.
IMMUTABLE_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "queue": frozenset({"type", "durable", "exclusive", "auto_delete", "arguments"}),
    "exchange": frozenset({"type", "durable", "auto_delete", "internal", "arguments"}),
})


def is_immutable(kind: str, field: str) -> bool:
    """Whether a difference in this field of this kind of entity forces a replace."""
    return field.split(".", 1)[0] in IMMUTABLE_FIELDS.get(kind, frozenset())


def is_builtin_exchange(name: str) -> bool:
    """The default exchange and every `amq.*` exchange: they exist in every vhost and cannot be declared."""
    return name == DEFAULT_EXCHANGE or is_reserved(name)


def is_reserved(name: str) -> bool:
    return name.startswith(RESERVED_PREFIX)


def is_server_named(name: str) -> bool:
    return name.startswith(SERVER_NAMED_PREFIX)


def vhost_of(url: str) -> str:
    """The vhost named by an AMQP URL path: '' or '/' mean the default vhost '/' (the AMQP URI spec)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


# --- declares over AMQP: keyword arguments of pika's channel methods (blocking and asynchronous alike) -------

def exchange_declare_args(exchange: model.Exchange) -> dict[str, Any]:
    return {"exchange": exchange.name, "exchange_type": exchange.type, "durable": exchange.durable,
            "auto_delete": exchange.auto_delete, "internal": exchange.internal,
            "arguments": dict(exchange.arguments) or None}


def queue_declare_args(queue: model.Queue) -> dict[str, Any]:
    return {"queue": queue.name, "durable": queue.durable, "exclusive": queue.exclusive,
            "auto_delete": queue.auto_delete, "arguments": queue.broker_arguments() or None}


def queue_bind_args(binding: model.Binding) -> dict[str, Any]:
    """For `queue_bind`; a binding to an exchange takes `exchange_bind_args`."""
    return {"queue": binding.destination, "exchange": binding.source, "routing_key": binding.routing_key,
            "arguments": dict(binding.arguments) or None}


def exchange_bind_args(binding: model.Binding) -> dict[str, Any]:
    return {"destination": binding.destination, "source": binding.source, "routing_key": binding.routing_key,
            "arguments": dict(binding.arguments) or None}


# --- the management API's request bodies (also the entries of a definitions document, without name and vhost) --

def exchange_body(exchange: model.Exchange) -> dict[str, Any]:
    """PUT /api/exchanges/{vhost}/{name}."""
    return {"type": exchange.type, "durable": exchange.durable, "auto_delete": exchange.auto_delete,
            "internal": exchange.internal, "arguments": dict(exchange.arguments)}


def queue_body(queue: model.Queue) -> dict[str, Any]:
    """PUT /api/queues/{vhost}/{name}; the queue type travels as x-queue-type."""
    return {"durable": queue.durable, "auto_delete": queue.auto_delete, "arguments": queue.broker_arguments()}


def binding_body(binding: model.Binding) -> dict[str, Any]:
    """POST /api/bindings/{vhost}/e/{source}/{q|e}/{destination}."""
    return {"routing_key": binding.routing_key, "arguments": dict(binding.arguments)}


def policy_body(policy: model.Policy) -> dict[str, Any]:
    """PUT /api/policies/{vhost}/{name} (and /api/operator-policies/...)."""
    return {"pattern": policy.pattern, "definition": dict(policy.definition), "priority": policy.priority,
            "apply-to": policy.apply_to}
