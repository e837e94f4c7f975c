"""Where a message goes: a pure model of RabbitMQ's exchange routing over the topology in a file.

It follows the broker (rabbit_exchange:route/2 and the exchange type modules of RabbitMQ 3.x):
- the default exchange delivers to the queue named by the routing key, if there is one;
- direct compares the key exactly, fanout ignores it, topic matches words (`*` is exactly one word,
  `#` is zero or more), headers compares header values with x-match all / any / all-with-x / any-with-x;
- exchange-to-exchange bindings are followed breadth first; every exchange is visited at most once
  (so cycles end) and every queue receives the message at most once;
- an exchange whose own bindings match nothing hands the message to its alternate exchange (from the
  `alternate-exchange` argument, or else from a policy), and that exchange routes it again;
- publishing straight to an internal exchange is refused; plugin exchange types (x-...) cannot be predicted.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from operator import or_
from types import MappingProxyType
from typing import Any, Literal

from mqspec.core import model
from mqspec.core.vocabulary import BUILTIN_EXCHANGES, INTERNAL_BUILTINS

MODELLED_TYPES = ("direct", "fanout", "topic", "headers")
MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")
ALTERNATE_LABEL = "(alternate)"


def display(exchange: str) -> str:
    """How an exchange is named in paths: the default exchange has the empty name."""
    return exchange if exchange else "(default exchange)"


@dataclass(frozen=True)
class Hop:
    """One step of a path: from an exchange, over a binding or an alternate-exchange link, to a target."""

    source: str
    target: str
    target_kind: Literal["queue", "exchange"] = "queue"
    label: str = ""
    via: Literal["binding", "alternate"] = "binding"

    def arrow(self) -> str:
        return f" -{self.label}-> " if self.label else " -> "


@dataclass(frozen=True)
class Delivery:
    """A queue the message reaches, with the first path (fewest hops) that gets it there."""

    queue: str
    hops: tuple[Hop, ...]

    def path(self) -> str:
        text = display(self.hops[0].source)
        return text + "".join(hop.arrow() + hop.target for hop in self.hops)


@dataclass(frozen=True)
class RoutingResult:
    exchange: str
    routing_key: str
    headers: Mapping[str, Any]
    deliveries: tuple[Delivery, ...] = ()
    # every exchange the message passed through, in the order they were visited
    visited: tuple[str, ...] = ()
    # why RabbitMQ refuses the publish itself ("" when it accepts it)
    refused: str = ""
    # exchanges of plugin types (x-...) the message reached: where they send it is unknown
    unpredictable: tuple[tuple[str, str], ...] = ()
    # exchanges marked external: bindings made outside the file are unknown
    external: tuple[str, ...] = ()
    # exchanges named by bindings or alternate-exchange links that do not exist (RabbitMQ skips them)
    missing: tuple[str, ...] = ()

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(d.queue for d in self.deliveries)

    @property
    def unroutable(self) -> bool:
        """True when the broker accepts the message and delivers it to no queue, for certain."""
        return not self.refused and not self.deliveries and not self.unpredictable

    @property
    def certain(self) -> bool:
        """True when the file alone decides the outcome (no plugin types, no external exchanges)."""
        return not self.unpredictable and not self.external


def route(topology: model.Topology, exchange: str, key: str = "", headers: Mapping[str, Any] | None = None,
          *, publish: bool = True) -> RoutingResult:
    """Where a message published to exchange with this routing key and these headers ends up.

    publish=False routes as the broker does internally (for example dead-lettering), where internal
    exchanges are allowed.
    """
    message_headers = dict(headers or {})
    start = resolve(topology, exchange)
    if start is None:
        return RoutingResult(exchange, key, message_headers, refused=f"exchange '{exchange}' does not exist (NOT_FOUND)")
    if publish and start.internal:
        return RoutingResult(exchange, key, message_headers, refused=f"exchange '{exchange}' is internal: RabbitMQ refuses "
                             "messages published to it directly (ACCESS_REFUSED)")
    return _Walk(topology, key, message_headers).run(start)


def resolve(topology: model.Topology, name: str) -> model.Exchange | None:
    """The exchange with this name: declared in the file, the default exchange, or an amq.* built-in."""
    declared = topology.exchange(name)
    if declared is not None:
        return declared
    if name == model.DEFAULT_EXCHANGE:
        return model.Exchange("", "direct")
    if name in BUILTIN_EXCHANGES:
        return model.Exchange(name, BUILTIN_EXCHANGES[name], internal=name in INTERNAL_BUILTINS)
    return None


class _Walk:
    """One message travelling through the exchanges: breadth first, each exchange once."""

    def __init__(self, topology: model.Topology, key: str, headers: dict[str, Any]) -> None:
        self.topology = topology
        self.key = key
        self.headers = headers
        self.deliveries: dict[str, Delivery] = {}
        self.visited: list[str] = []
        self.unpredictable: list[tuple[str, str]] = []
        self.external: list[str] = []
        self.missing: list[str] = []

    def run(self, start: model.Exchange) -> RoutingResult:
        seen = {start.name}
        work: deque[tuple[model.Exchange, tuple[Hop, ...]]] = deque([(start, ())])
        while work:
            exchange, trail = work.popleft()
            for hop in self._step(exchange):
                hops = (*trail, hop)
                if hop.target_kind == "queue":
                    self.deliveries.setdefault(hop.target, Delivery(hop.target, hops))
                elif hop.target not in seen:
                    seen.add(hop.target)
                    target = resolve(self.topology, hop.target)
                    if target is None:
                        self.missing.append(hop.target)
                    else:
                        work.append((target, hops))
        deliveries = tuple(sorted(self.deliveries.values(), key=lambda d: d.queue))
        return RoutingResult(start.name, self.key, self.headers, deliveries, tuple(self.visited),
                             unpredictable=tuple(self.unpredictable), external=tuple(self.external), missing=tuple(self.missing))

    def _step(self, exchange: model.Exchange) -> list[Hop]:
        """The hops out of one exchange: its matching bindings, or else its alternate exchange."""
        self.visited.append(exchange.name)
        if exchange.external:
            self.external.append(exchange.name)
        if exchange.type not in MODELLED_TYPES:
            self.unpredictable.append((exchange.name, exchange.type))
            return []
        hops = self._default_hops() if exchange.name == model.DEFAULT_EXCHANGE else self._binding_hops(exchange)
        if hops:
            return hops
        alternate = alternate_exchange(self.topology, exchange)
        return [Hop(exchange.name, alternate, "exchange", ALTERNATE_LABEL, "alternate")] if alternate is not None else []

    def _default_hops(self) -> list[Hop]:
        return [Hop("", self.key)] if self.topology.queue(self.key) is not None else []

    def _binding_hops(self, exchange: model.Exchange) -> list[Hop]:
        hops: dict[tuple[str, str], Hop] = {}
        for binding in self.topology.bindings:
            if binding.source != exchange.name or not binding_matches(exchange.type, binding, self.key, self.headers):
                continue
            hops.setdefault((binding.destination_type, binding.destination),
                            Hop(exchange.name, binding.destination, binding.destination_type, binding_label(exchange.type, binding)))
        return list(hops.values())


def binding_matches(exchange_type: str, binding: model.Binding, key: str, headers: Mapping[str, Any]) -> bool:
    if exchange_type == "fanout":
        return True
    if exchange_type == "direct":
        return binding.routing_key == key
    if exchange_type == "topic":
        return topic_matches(binding.routing_key, key)
    if exchange_type == "headers":
        return headers_match(binding.arguments, headers)
    return False


def topic_words(key: str) -> list[str]:
    """Words of a topic key as RabbitMQ splits them: '' has no words, 'a.' has two ('a' and '')."""
    return key.split(".") if key else []


def topic_matches(binding_key: str, routing_key: str) -> bool:
    """`*` matches exactly one word, `#` zero or more; every other word must be equal."""
    words = topic_words(routing_key)
    # reach[j]: the binding words seen so far match the first j words of the routing key
    reach = [True] + [False] * len(words)
    for token in topic_words(binding_key):
        if token == "#":
            reach = list(accumulate(reach, or_))
        else:
            reach = [False] + [reach[j] and (token in ("*", words[j])) for j in range(len(words))]
    return reach[-1]


def headers_match(arguments: Mapping[str, Any], headers: Mapping[str, Any]) -> bool:
    """RabbitMQ's headers exchange: x-match all (default) or any; the -with-x modes also compare x- headers."""
    mode = arguments.get("x-match")
    mode = mode if mode in MATCH_MODES else "all"
    with_x = mode.endswith("-with-x")
    pattern = [(name, value) for name, value in arguments.items()
               if name != "x-match" and (with_x or not name.startswith("x-"))]
    hits = (name in headers and (value is None or same_value(value, headers[name])) for name, value in pattern)
    return all(hits) if mode.startswith("all") else any(hits)


def same_value(pattern: Any, value: Any) -> bool:
    """Equality as Erlang's == on AMQP field values: 1 == 1.0, but 1 != '1' and true != 1."""
    if isinstance(pattern, bool) or isinstance(value, bool):
        return isinstance(pattern, bool) and isinstance(value, bool) and pattern == value
    if isinstance(pattern, int | float) and isinstance(value, int | float):
        return pattern == value
    return type(pattern) is type(value) and bool(pattern == value)


def binding_label(exchange_type: str, binding: model.Binding) -> str:
    """What a binding matches, as shown on a path or a graph edge."""
    if exchange_type == "fanout":
        return ""
    if exchange_type == "headers":
        return headers_label(binding.arguments)
    return binding.routing_key


def headers_label(arguments: Mapping[str, Any]) -> str:
    mode = arguments.get("x-match", "all")
    pairs = " ".join(f"{name}={value_text(value)}" for name, value in arguments.items() if name != "x-match")
    return f"{mode}: {pairs}" if pairs else str(mode)


def value_text(value: Any) -> str:
    """A header value as typed on the command line: strings that would read as another type are quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "(present)"
    if isinstance(value, str):
        return json.dumps(value) if value == "" or _looks_typed(value) else value
    return str(value)


_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def _looks_typed(text: str) -> bool:
    return text in ("true", "false") or _NUMBER.fullmatch(text) is not None or text.startswith(('"', "'"))


def alternate_exchange(topology: model.Topology, exchange: model.Exchange) -> str | None:
    """The exchange that gets what this one cannot route: the argument wins over a policy."""
    if exchange.name == model.DEFAULT_EXCHANGE:
        return None
    if exchange.alternate_exchange is not None:
        return exchange.alternate_exchange
    value = policy_value(topology, "exchange", exchange.name, "alternate-exchange")
    return value if isinstance(value, str) else None


_APPLIES = MappingProxyType({"exchange": ("all", "exchanges"), "queue": ("all", "queues", "classic_queues", "quorum_queues", "streams")})


def effective_policy(topology: model.Topology, kind: Literal["exchange", "queue"], name: str,
                     operator: bool = False, queue_type: str = "classic") -> model.Policy | None:
    """The one policy (or operator policy) that applies: the highest priority among those whose pattern matches."""
    candidates = [p for p in topology.policies
                  if p.operator == operator and _applies(p, kind, queue_type) and _pattern_matches(p.pattern, name)]
    best: model.Policy | None = None
    for policy in candidates:
        if best is None or policy.priority > best.priority:
            best = policy
    return best


def policy_value(topology: model.Topology, kind: Literal["exchange", "queue"], name: str, key: str,
                 queue_type: str = "classic") -> Any:
    policy = effective_policy(topology, kind, name, queue_type=queue_type)
    return None if policy is None else policy.definition.get(key)


def dead_letter(topology: model.Topology, queue: model.Queue) -> tuple[str | None, str | None]:
    """The dead-letter exchange and routing key of a queue: its arguments win over a policy, each on its own."""
    exchange = queue.dead_letter_exchange
    key = queue.dead_letter_routing_key
    if exchange is None:
        value = policy_value(topology, "queue", queue.name, "dead-letter-exchange", queue.type)
        exchange = value if isinstance(value, str) else None
    if key is None:
        value = policy_value(topology, "queue", queue.name, "dead-letter-routing-key", queue.type)
        key = value if isinstance(value, str) else None
    return exchange, key


def _applies(policy: model.Policy, kind: str, queue_type: str) -> bool:
    if policy.apply_to not in _APPLIES[kind]:
        return False
    narrowed = {"classic_queues": "classic", "quorum_queues": "quorum", "streams": "stream"}.get(policy.apply_to)
    return narrowed is None or narrowed == queue_type


def _pattern_matches(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False
