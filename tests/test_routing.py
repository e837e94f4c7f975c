"""The routing oracle on its own: pure, no broker (tests/test_routing_broker.py cross-checks it live)."""

from __future__ import annotations

from typing import Any

import pytest

from mqspec.core.model import Binding, Exchange, Policy, Queue, Topology
from mqspec.core.routing import headers_match, route, topic_matches


def _paths(topology: Topology, exchange: str, key: str = "", headers: dict[str, Any] | None = None) -> list[str]:
    return [d.path() for d in route(topology, exchange, key, headers).deliveries]


TUTORIAL = Topology(
    exchanges=(Exchange("topic_logs", "topic"),),
    queues=(Queue("Q1"), Queue("Q2")),
    bindings=(Binding("topic_logs", "Q1", routing_key="*.orange.*"), Binding("topic_logs", "Q2", routing_key="*.*.rabbit"),
              Binding("topic_logs", "Q2", routing_key="lazy.#")),
)


@pytest.mark.parametrize(("key", "queues"), [
    ("quick.orange.rabbit", ("Q1", "Q2")),
    ("lazy.orange.elephant", ("Q1", "Q2")),
    ("quick.orange.fox", ("Q1",)),
    ("lazy.brown.fox", ("Q2",)),
    ("lazy.pink.rabbit", ("Q2",)),  # matches two bindings of Q2, delivered once
    ("quick.brown.fox", ()),
    ("orange", ()),
    ("quick.orange.new.rabbit", ()),
    ("lazy.orange.new.rabbit", ("Q2",)),
    ("quick.orange.male.rabbit", ()),
    ("lazy.orange.male.rabbit", ("Q2",)),
    ("lazy", ("Q2",)),
])
def test_topic_exchange_routes_the_tutorial_table(key: str, queues: tuple[str, ...]) -> None:
    assert route(TUTORIAL, "topic_logs", key).queues == queues


def test_topic_path_names_the_binding_key_that_matched() -> None:
    # lazy.orange.rabbit matches both bindings of Q2; the path names the first in the file
    assert _paths(TUTORIAL, "topic_logs", "lazy.orange.rabbit") == ["topic_logs -*.orange.*-> Q1", "topic_logs -*.*.rabbit-> Q2"]


@pytest.mark.parametrize(("binding", "key", "matches"), [
    ("#", "", True),
    ("#", "a.b.c", True),
    ("*", "", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("", "", True),
    ("", "a", False),
    ("a.#", "a", True),
    ("#.a", "a", True),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.*.b", "a.b", False),
    ("#.#", "", True),
    ("*.*", ".", True),  # two empty words
    ("*", ".", False),
    ("a.", "a.", True),
    ("a.", "a", False),
    ("a.*", "a.", True),  # the empty word is a word
    ("a*", "ab", False),  # glued wildcard is a literal word
    ("a*", "a*", True),
    ("*.#", "", False),
    ("#.*", "a", True),
])
def test_topic_words_follow_rabbitmq_edge_cases(binding: str, key: str, matches: bool) -> None:
    assert topic_matches(binding, key) is matches


@pytest.mark.parametrize(("arguments", "headers", "matches"), [
    ({"x-match": "all", "format": "pdf", "type": "report"}, {"format": "pdf", "type": "report"}, True),
    ({"x-match": "all", "format": "pdf", "type": "report"}, {"format": "pdf"}, False),
    ({"x-match": "any", "format": "pdf", "type": "report"}, {"format": "pdf"}, True),
    ({"x-match": "any", "format": "pdf", "type": "report"}, {"format": "zip"}, False),
    ({"format": "pdf"}, {"format": "pdf", "extra": 1}, True),  # no x-match means all
    ({"x-match": "all"}, {}, True),  # nothing to compare: all holds
    ({"x-match": "any"}, {"a": 1}, False),  # nothing to compare: any fails
    ({"x-match": "all", "x-tenant": "a", "format": "pdf"}, {"format": "pdf"}, True),  # x- ignored by all
    ({"x-match": "any", "x-tenant": "a"}, {"x-tenant": "a"}, False),  # and by any
    ({"x-match": "all-with-x", "x-tenant": "a", "format": "pdf"}, {"format": "pdf"}, False),
    ({"x-match": "all-with-x", "x-tenant": "a", "format": "pdf"}, {"format": "pdf", "x-tenant": "a"}, True),
    ({"x-match": "any-with-x", "x-tenant": "a"}, {"x-tenant": "a"}, True),
    ({"n": 1}, {"n": "1"}, False),  # types matter
    ({"n": 1}, {"n": 1.0}, True),  # as Erlang ==: numbers compare by value
    ({"flag": True}, {"flag": 1}, False),
    ({"flag": True}, {"flag": True}, True),
    ({"present": None}, {"present": "anything"}, True),  # void: the header only has to be there
    ({"present": None}, {}, False),
])
def test_headers_exchange_matches_as_rabbitmq(arguments: dict[str, Any], headers: dict[str, Any], matches: bool) -> None:
    assert headers_match(arguments, headers) is matches


def test_headers_path_shows_the_match() -> None:
    topology = Topology(exchanges=(Exchange("docs", "headers"),), queues=(Queue("pdfs"),),
                        bindings=(Binding("docs", "pdfs", arguments={"x-match": "any", "format": "pdf", "pages": 1}),))
    assert _paths(topology, "docs", "ignored", {"format": "pdf"}) == ["docs -any: format=pdf pages=1-> pdfs"]


SHOP = Topology(
    exchanges=(Exchange("shop.events", "topic"), Exchange("shop.audit", "fanout", internal=True)),
    queues=(Queue("billing"), Queue("audit.log"), Queue("archive")),
    bindings=(Binding("shop.events", "billing", routing_key="order.*"),
              Binding("shop.events", "shop.audit", "exchange", "#"),
              Binding("shop.audit", "audit.log"), Binding("shop.audit", "archive", routing_key="ignored-by-fanout")),
)


def test_exchange_to_exchange_chain_into_a_fanout_reaches_every_bound_queue() -> None:
    assert _paths(SHOP, "shop.events", "order.created") == [
        "shop.events -#-> shop.audit -> archive",
        "shop.events -#-> shop.audit -> audit.log",
        "shop.events -order.*-> billing",
    ]


def test_a_queue_reached_by_several_paths_gets_the_message_once_by_the_shortest() -> None:
    topology = Topology(
        exchanges=(Exchange("a", "fanout"), Exchange("b", "fanout"), Exchange("c", "fanout")),
        queues=(Queue("q"),),
        bindings=(Binding("a", "b", "exchange"), Binding("a", "c", "exchange"), Binding("b", "c", "exchange"),
                  Binding("c", "q"), Binding("b", "q")),
    )
    result = route(topology, "a")
    assert [d.path() for d in result.deliveries] == ["a -> b -> q"]
    assert result.visited == ("a", "b", "c")


def test_exchange_cycles_end_and_each_exchange_is_visited_once() -> None:
    topology = Topology(
        exchanges=(Exchange("ping", "fanout"), Exchange("pong", "fanout")),
        queues=(Queue("q"),),
        bindings=(Binding("ping", "pong", "exchange"), Binding("pong", "ping", "exchange"), Binding("ping", "ping", "exchange"),
                  Binding("pong", "q")),
    )
    result = route(topology, "ping")
    assert result.queues == ("q",)
    assert result.visited == ("ping", "pong")


ALTERNATE = Topology(
    exchanges=(Exchange("orders", "direct", arguments={"alternate-exchange": "orders.unrouted"}),
               Exchange("orders.unrouted", "fanout"), Exchange("empty", "fanout")),
    queues=(Queue("created"), Queue("unrouted")),
    bindings=(Binding("orders", "created", routing_key="created"), Binding("orders.unrouted", "unrouted"),
              Binding("orders", "empty", "exchange", "to-empty")),
)


def test_alternate_exchange_catches_keys_no_binding_matches() -> None:
    assert _paths(ALTERNATE, "orders", "cancelled") == ["orders -(alternate)-> orders.unrouted -> unrouted"]
    assert _paths(ALTERNATE, "orders", "created") == ["orders -created-> created"]


def test_alternate_exchange_is_not_used_when_a_binding_to_an_exchange_matched_even_if_that_routes_nowhere() -> None:
    result = route(ALTERNATE, "orders", "to-empty")
    assert result.unroutable
    assert result.visited == ("orders", "empty")


def test_alternate_exchange_of_an_exchange_further_down_the_chain_is_used() -> None:
    topology = Topology(
        exchanges=(Exchange("front", "fanout"), Exchange("back", "direct", arguments={"alternate-exchange": "catch"}),
                   Exchange("catch", "fanout", arguments={"alternate-exchange": "front"})),
        queues=(Queue("caught"),),
        bindings=(Binding("front", "back", "exchange"), Binding("catch", "caught")),
    )
    assert _paths(topology, "front", "anything") == ["front -> back -(alternate)-> catch -> caught"]


def test_alternate_exchange_from_a_policy_applies_when_the_exchange_has_no_argument() -> None:
    policy = Policy("ae", "^orders$", {"alternate-exchange": "orders.unrouted"}, apply_to="exchanges")
    topology = Topology(exchanges=(Exchange("orders", "direct"), Exchange("orders.unrouted", "fanout")), queues=(Queue("unrouted"),),
                        bindings=(Binding("orders.unrouted", "unrouted"),), policies=(policy,))
    assert route(topology, "orders", "x").queues == ("unrouted",)
    queues_only = Topology(exchanges=topology.exchanges, queues=topology.queues, bindings=topology.bindings,
                           policies=(Policy("ae", "^orders$", {"alternate-exchange": "orders.unrouted"}, apply_to="queues"),))
    assert route(queues_only, "orders", "x").unroutable


def test_a_missing_alternate_exchange_is_skipped_and_reported() -> None:
    topology = Topology(exchanges=(Exchange("orders", "direct", arguments={"alternate-exchange": "nowhere"}),))
    result = route(topology, "orders", "x")
    assert result.unroutable
    assert result.missing == ("nowhere",)


def test_default_exchange_delivers_to_the_queue_named_by_the_key() -> None:
    topology = Topology(queues=(Queue("hello"),))
    assert _paths(topology, "", "hello") == ["(default exchange) -> hello"]
    assert route(topology, "", "goodbye").unroutable


def test_built_in_exchanges_route_over_bindings_in_the_file_and_otherwise_nowhere() -> None:
    topology = Topology(queues=(Queue("logs"),), bindings=(Binding("amq.topic", "logs", routing_key="log.#"),))
    assert route(topology, "amq.topic", "log.error").queues == ("logs",)
    assert route(topology, "amq.direct", "log.error").unroutable
    assert route(topology, "amq.fanout").unroutable


def test_publishing_to_an_internal_exchange_is_refused_but_it_routes_what_other_exchanges_send() -> None:
    result = route(SHOP, "shop.audit", "x")
    assert result.refused == "exchange 'shop.audit' is internal: RabbitMQ refuses messages published to it directly (ACCESS_REFUSED)"
    assert not result.unroutable
    assert route(SHOP, "shop.audit", "x", publish=False).queues == ("archive", "audit.log")
    assert route(Topology(), "amq.rabbitmq.trace").refused.startswith("exchange 'amq.rabbitmq.trace' is internal")


def test_an_unknown_exchange_is_refused_as_not_found() -> None:
    assert route(SHOP, "nope").refused == "exchange 'nope' does not exist (NOT_FOUND)"


def test_plugin_exchange_types_are_reported_as_unpredictable_not_unroutable() -> None:
    topology = Topology(exchanges=(Exchange("front", "fanout"), Exchange("hash", "x-consistent-hash")), queues=(Queue("a"),),
                        bindings=(Binding("front", "hash", "exchange"), Binding("front", "a"), Binding("hash", "a", routing_key="1")))
    result = route(topology, "front")
    assert result.queues == ("a",)
    assert result.unpredictable == (("hash", "x-consistent-hash"),)
    assert not result.unroutable and not result.certain


def test_external_exchanges_make_the_answer_uncertain() -> None:
    topology = Topology(exchanges=(Exchange("legacy", "fanout", external=True),))
    result = route(topology, "legacy")
    assert result.unroutable and not result.certain
    assert result.external == ("legacy",)
