"""The routing oracle agrees with the real broker: random topologies and messages, published for real.

Each hypothesis example declares a small topology (direct, fanout, topic and headers exchanges,
exchange-to-exchange bindings, alternate exchanges, internal exchanges, amq.* built-ins, queues) under
a name prefix of its own in one throwaway vhost, publishes a few messages with publisher confirms and
`mandatory`, reads every queue empty, and compares queue by queue with mqspec.core.routing.route.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import UnroutableError

from mqspec.broker.management import Management, q
from mqspec.core import model
from mqspec.core.routing import route

TYPES = ("direct", "fanout", "topic", "headers")
BUILTINS = {"amq.direct": "direct", "amq.fanout": "fanout", "amq.topic": "topic", "amq.headers": "headers", "amq.match": "headers"}
BOUND_BUILTINS = ("amq.topic", "amq.headers", "amq.fanout")
TOPIC_TOKENS = ("a", "b", "*", "#", "")
ROUTING_WORDS = ("a", "a", "b", "b", "", "*")
DIRECT_KEYS = ("", "a", "b", "a.b")
HEADER_NAMES = ("h1", "h2", "x-h")
# pika cannot send floats; None in a binding is AMQP void ("header present")
HEADER_VALUES: tuple[Any, ...] = (1, "1", "a", True)
BINDING_VALUES: tuple[Any, ...] = (1, "1", True, None)
MAX_EXAMPLES = 400


@dataclass(frozen=True)
class Message:
    exchange: str
    key: str
    headers: dict[str, Any]


@dataclass(frozen=True)
class Case:
    topology: model.Topology
    messages: tuple[Message, ...]


def _topic_key(draw: st.DrawFn, tokens: tuple[str, ...]) -> str:
    words = draw(st.lists(st.sampled_from(tokens), min_size=0, max_size=3))
    return ".".join(words)


def _binding_args(draw: st.DrawFn) -> dict[str, Any]:
    args: dict[str, Any] = {}
    mode = draw(st.sampled_from(("all", "any", "all-with-x", "any-with-x", None)))
    if mode is not None:
        args["x-match"] = mode
    for name in draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=2, unique=True)):
        args[name] = draw(st.sampled_from(BINDING_VALUES))
    return args


def _key_for(draw: st.DrawFn, exchange_type: str) -> str:
    if exchange_type == "topic":
        return _topic_key(draw, TOPIC_TOKENS)
    return draw(st.sampled_from(DIRECT_KEYS))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    names = [f"e{i}" for i in range(draw(st.integers(2, 4)))]
    queues = tuple(model.Queue(f"q{i}", durable=False) for i in range(draw(st.integers(1, 3))))
    exchanges = []
    for i, name in enumerate(names):
        alternate = draw(st.one_of(st.none(), st.sampled_from([*names, "amq.fanout", "missing"])))
        exchanges.append(model.Exchange(name, draw(st.sampled_from(TYPES)), durable=False, internal=i > 0 and draw(st.booleans()),
                                        arguments={"alternate-exchange": alternate} if alternate else {}))
    types = {e.name: e.type for e in exchanges} | BUILTINS
    bindings = []
    for _ in range(draw(st.integers(1, 8))):
        source = draw(st.one_of(st.sampled_from(names), st.sampled_from(names), st.sampled_from(BOUND_BUILTINS)))
        to_exchange = len(names) > 1 and draw(st.integers(0, 2)) == 0
        destination = draw(st.sampled_from(names)) if to_exchange else draw(st.sampled_from([q.name for q in queues]))
        by_headers = types[source] == "headers"
        bindings.append(model.Binding(source, destination, "exchange" if to_exchange else "queue",
                                      "" if by_headers else _key_for(draw, types[source]), _binding_args(draw) if by_headers else {}))
    public = [e.name for e in exchanges if not e.internal]
    targets = st.one_of(st.sampled_from(public), st.sampled_from(public), st.sampled_from(("", "amq.topic", "amq.headers")))
    bound_keys = sorted({b.routing_key for b in bindings})
    messages = []
    for _ in range(draw(st.integers(1, 6))):
        exchange = draw(targets)
        if exchange == "":
            key = draw(st.sampled_from([*(q.name for q in queues), "nowhere"]))
        else:
            key = draw(st.one_of(st.just(_topic_key(draw, ROUTING_WORDS)), st.sampled_from(bound_keys), st.sampled_from(DIRECT_KEYS)))
        headers = draw(st.dictionaries(st.sampled_from(HEADER_NAMES), st.sampled_from(HEADER_VALUES), max_size=3))
        messages.append(Message(exchange, key, headers))
    topology = model.Topology(exchanges=tuple(exchanges), queues=queues, bindings=tuple(bindings))
    return Case(topology, tuple(messages))


class Lab:
    """One vhost and one channel, reused by every example; each example gets a name prefix of its own."""

    def __init__(self, url: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel: BlockingChannel = self.connection.channel()
        self.channel.confirm_delivery()
        self.counter = itertools.count()

    def close(self) -> None:
        self.connection.close()

    def run(self, case: Case, prefix: str | None = None) -> tuple[dict[int, set[str]], set[int]]:
        """Declare, publish, drain; returns message number -> queues it reached, and the numbers returned."""
        prefix = f"t{next(self.counter)}." if prefix is None else prefix
        try:
            self._declare(case.topology, prefix)
            returned = {i for i, message in enumerate(case.messages) if not self._publish(i, message, prefix)}
            return self._drain(case.topology, prefix), returned
        finally:
            for queue in case.topology.queues:
                self.channel.queue_delete(prefix + queue.name)
            for exchange in case.topology.exchanges:
                self.channel.exchange_delete(prefix + exchange.name)

    def _declare(self, topology: model.Topology, prefix: str) -> None:
        names = {e.name for e in topology.exchanges}

        def real(name: str) -> str:
            return prefix + name if name in names else name

        for exchange in topology.exchanges:
            args = {k: real(v) for k, v in exchange.arguments.items()}
            self.channel.exchange_declare(prefix + exchange.name, exchange.type, durable=False, internal=exchange.internal,
                                          arguments=args)
        for queue in topology.queues:
            self.channel.queue_declare(prefix + queue.name, durable=False)
        for b in topology.bindings:
            if b.destination_type == "queue":
                self.channel.queue_bind(prefix + b.destination, real(b.source), b.routing_key, dict(b.arguments))
            else:
                self.channel.exchange_bind(prefix + b.destination, real(b.source), b.routing_key, dict(b.arguments))

    def _publish(self, number: int, message: Message, prefix: str) -> bool:
        builtin = message.exchange == "" or message.exchange.startswith("amq.")
        exchange = message.exchange if builtin else prefix + message.exchange
        key = prefix + message.key if message.exchange == "" else message.key
        properties = pika.BasicProperties(headers=message.headers or None)
        try:
            self.channel.basic_publish(exchange, key, str(number).encode(), properties, mandatory=True)
        except UnroutableError:
            return False
        return True

    def _drain(self, topology: model.Topology, prefix: str) -> dict[int, set[str]]:
        reached: dict[int, set[str]] = {}
        for queue in topology.queues:
            while True:
                method, _, body = self.channel.basic_get(prefix + queue.name, auto_ack=True)
                if method is None:
                    break
                reached.setdefault(int(body), set()).add(queue.name)
        return reached


@pytest.fixture
def lab(url: str) -> Iterator[Lab]:
    opened = Lab(url)
    yield opened
    opened.close()


def _describe(case: Case) -> str:
    lines = [f"exchange {e.name} {e.type}{' internal' if e.internal else ''} {dict(e.arguments)}" for e in case.topology.exchanges]
    lines += [f"bind {b.source} -> {b.destination_type} {b.destination} key={b.routing_key!r} args={dict(b.arguments)}"
              for b in case.topology.bindings]
    return "\n".join(lines)


@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=cases())
def test_oracle_predicts_exactly_the_queues_the_broker_delivers_to(lab: Lab, case: Case) -> None:
    reached, returned = lab.run(case)
    for number, message in enumerate(case.messages):
        predicted = route(case.topology, message.exchange, message.key, message.headers)
        context = f"\n{_describe(case)}\nmessage {message}\npaths {[d.path() for d in predicted.deliveries]}"
        assert set(predicted.queues) == reached.get(number, set()), context
        assert predicted.unroutable == (number in returned), context


def test_publishing_to_an_internal_exchange_is_refused_by_broker_and_oracle(lab: Lab) -> None:
    topology = model.Topology(exchanges=(model.Exchange("inner", "fanout", internal=True),), queues=(model.Queue("q"),),
                              bindings=(model.Binding("inner", "q"),))
    assert "is internal" in route(topology, "inner", "k").refused
    lab.channel.exchange_declare("inner", "fanout", internal=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="ACCESS_REFUSED"):
        lab.channel.basic_publish("inner", "k", b"x")


def test_header_values_compare_as_erlang_does_int_equals_float(management: Management, vhost: str, lab: Lab) -> None:
    lab.channel.exchange_declare("h", "headers")
    lab.channel.queue_declare("float-bound")
    management.post(f"/bindings/{q(vhost)}/e/h/q/float-bound", "binding", {"routing_key": "", "arguments": {"n": 1.0}})
    topology = model.Topology(exchanges=(model.Exchange("h", "headers"),), queues=(model.Queue("float-bound"),),
                              bindings=(model.Binding("h", "float-bound", arguments={"n": 1.0}),))
    for value in (1, 2, "1"):
        lab.channel.basic_publish("h", "", b"x", pika.BasicProperties(headers={"n": value}))
        method, _, _ = lab.channel.basic_get("float-bound", auto_ack=True)
        assert (method is not None) == bool(route(topology, "h", "", {"n": value}).queues), value


def test_alternate_exchange_from_a_policy_and_the_argument_winning_over_it_agree_with_broker(
        management: Management, vhost: str, lab: Lab) -> None:
    policy = model.Policy("ae", "^orders", {"alternate-exchange": "by-policy"}, apply_to="exchanges")
    topology = model.Topology(
        exchanges=(model.Exchange("orders", "direct"), model.Exchange("orders.own", "direct", arguments={"alternate-exchange": "by-arg"}),
                   model.Exchange("by-policy", "fanout"), model.Exchange("by-arg", "fanout")),
        queues=(model.Queue("policy-caught"), model.Queue("arg-caught")),
        bindings=(model.Binding("by-policy", "policy-caught"), model.Binding("by-arg", "arg-caught")),
        policies=(policy,))
    management.put(f"/policies/{q(vhost)}/ae", "policy", {"pattern": policy.pattern, "definition": dict(policy.definition),
                                                          "apply-to": policy.apply_to})
    case = Case(topology, (Message("orders", "x", {}), Message("orders.own", "x", {})))
    reached, _ = lab.run(case, prefix="")
    assert reached == {0: {"policy-caught"}, 1: {"arg-caught"}}
    assert [route(topology, m.exchange, m.key).queues for m in case.messages] == [("policy-caught",), ("arg-caught",)]
