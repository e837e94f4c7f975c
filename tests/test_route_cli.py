"""mqspec route (no broker) and validate's routing checks, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import mqspec

SHOP = """\
version: 1
name: shop
topology:
  exchanges:
    - {name: shop.events, type: topic, alternate_exchange: shop.unrouted}
    - {name: shop.audit, type: fanout, internal: true}
    - {name: shop.unrouted, type: fanout}
    - {name: shop.docs, type: headers}
    - {name: plain, type: direct}
    - {name: hash, type: x-consistent-hash}
    - {name: legacy, type: fanout, external: true}
  queues:
    - {name: billing}
    - {name: audit.log}
    - {name: unrouted}
    - {name: pdfs}
  bindings:
    - {exchange: shop.events, queue: billing, keys: ["order.*"]}
    - {exchange: shop.events, to_exchange: shop.audit, keys: ["order.#", "audit.#"]}
    - {exchange: shop.audit, queue: audit.log}
    - {exchange: shop.unrouted, queue: unrouted}
    - {exchange: shop.docs, queue: pdfs, match: all, headers: {format: pdf, pages: 1}}
    - {exchange: hash, queue: pdfs, keys: ["1"]}
"""


@pytest.fixture
def shop(tmp_path: Path) -> str:
    path = tmp_path / "shop.yaml"
    path.write_text(SHOP)
    return str(path)


def test_route_prints_one_queue_per_line_with_its_path(shop: str) -> None:
    result = mqspec("route", shop, "--exchange", "shop.events", "--key", "order.created")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "shop.events -order.#-> shop.audit -> audit.log\nshop.events -order.*-> billing\n", "")


def test_route_shows_the_alternate_exchange_taking_what_no_binding_matches(shop: str) -> None:
    result = mqspec("route", shop, "-e", "shop.events", "-k", "ship.created")
    assert (result.exit_code, result.stdout) == (0, "shop.events -(alternate)-> shop.unrouted -> unrouted\n")


def test_route_through_the_default_exchange(shop: str) -> None:
    result = mqspec("route", shop, "--exchange", "", "--key", "billing")
    assert (result.exit_code, result.stdout) == (0, "(default exchange) -> billing\n")


def test_unroutable_message_is_dropped_or_returned_with_mandatory(shop: str) -> None:
    result = mqspec("route", shop, "-e", "plain", "-k", "nothing")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "unroutable: dropped\n", "note: the message passed through plain and matched no binding to a queue\n")
    result = mqspec("route", shop, "-e", "plain", "-k", "nothing", "--mandatory")
    assert (result.exit_code, result.stdout) == (0, "unroutable: returned to the publisher (mandatory)\n")


def test_headers_are_typed_like_yaml_and_quoting_keeps_a_string(shop: str) -> None:
    result = mqspec("route", shop, "-e", "shop.docs", "-H", "format=pdf", "-H", "pages=1")
    assert (result.exit_code, result.stdout) == (0, "shop.docs -all: format=pdf pages=1-> pdfs\n")
    result = mqspec("route", shop, "-e", "shop.docs", "-H", "format=pdf", "-H", 'pages="1"')
    assert (result.exit_code, result.stdout) == (0, "unroutable: dropped\n")


def test_a_header_without_equals_sign_is_a_usage_error(shop: str) -> None:
    result = mqspec("route", shop, "-e", "shop.docs", "-H", "format")
    assert (result.exit_code, result.stderr) == (2, "error: --header 'format' is not NAME=VALUE (e.g. --header format=pdf)\n")


def test_publishing_to_an_internal_exchange_is_refused(shop: str) -> None:
    result = mqspec("route", shop, "-e", "shop.audit")
    assert (result.exit_code, result.stdout) == (
        1, "refused: exchange 'shop.audit' is internal: RabbitMQ refuses messages published to it directly (ACCESS_REFUSED)\n")


def test_plugin_exchange_types_are_not_guessed(shop: str) -> None:
    result = mqspec("route", shop, "-e", "hash", "-k", "k")
    assert (result.exit_code, result.stdout) == (
        1, "unknown: exchange 'hash' has plugin type 'x-consistent-hash'; mqspec cannot predict where it routes messages\n")


def test_external_exchange_is_an_unknown_answer_not_a_dropped_message(shop: str) -> None:
    result = mqspec("route", shop, "-e", "legacy")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1, "unknown: exchange 'legacy' is external; bindings made outside this file are not known\n", "")
    as_json = json.loads(mqspec("route", shop, "-e", "legacy", "--format", "json").stdout)
    assert (as_json["status"], as_json["outcome"], as_json["external"]) == ("unknown", "unknown", ["legacy"])


def test_unknown_exchange_is_an_input_error_with_a_suggestion(shop: str) -> None:
    result = mqspec("route", shop, "-e", "shop.event", "-k", "x")
    assert (result.exit_code, result.stdout, result.stderr) == (
        2, "", f"error: exchange 'shop.event' is not declared in {shop}; did you mean 'shop.events'?\n")


def test_route_json_for_scripts(shop: str) -> None:
    result = mqspec("route", shop, "-e", "shop.events", "-k", "audit.x", "-H", "n=1", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "exchange": "shop.events", "routing_key": "audit.x", "headers": {"n": 1}, "status": "routed", "outcome": "delivered",
        "mandatory": False,
        "queues": [{"queue": "audit.log", "path": "shop.events -audit.#-> shop.audit -> audit.log", "hops": [
            {"source": "shop.events", "target": "shop.audit", "target_kind": "exchange", "label": "audit.#", "via": "binding"},
            {"source": "shop.audit", "target": "audit.log", "target_kind": "queue", "label": "", "via": "binding"}]}],
        "visited": ["shop.events", "shop.audit"], "refused": None, "unpredictable": [], "external": [], "missing": [],
    }
    unroutable = json.loads(mqspec("route", shop, "-e", "plain", "--mandatory", "--format", "json").stdout)
    assert (unroutable["status"], unroutable["outcome"], unroutable["queues"]) == ("unroutable", "returned", [])


def test_route_needs_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nname: bad\ntopology:\n  bindings: [{exchange: nope, queue: q}]\n")
    result = mqspec("route", str(path), "-e", "nope")
    assert result.exit_code == 2
    assert result.stderr.endswith(f"found; nothing was changed (mqspec validate {path} lists them)\n")


def test_validate_warns_about_an_unroutable_producer_key_and_strict_fails(shop: str) -> None:
    Path(shop).write_text(SHOP + "workload:\n  producers:\n    - {name: p, exchange: plain, routing_keys: [lost], messages: 1}\n"
                          "  consumers: [{name: a, queue: billing}, {name: b, queue: audit.log}, {name: c, queue: unrouted},"
                          " {name: d, queue: pdfs}]\n")
    result = mqspec("validate", shop)
    assert result.exit_code == 0
    assert result.stdout == (
        f"{shop}:26:49: warning: $.workload.producers[0].routing_keys[0]: producer 'p' publishes key 'lost' to exchange 'plain', "
        "which routes it to no queue: RabbitMQ drops it (hint: bind a queue that matches it, or give the exchange an "
        f"alternate_exchange; `mqspec route` shows where a message goes)\n{shop}: valid (1 warning)\n")
    assert mqspec("validate", "--strict", shop).exit_code == 2


def test_validate_fails_on_a_route_expectation_the_topology_contradicts(shop: str) -> None:
    Path(shop).write_text(SHOP + "expect:\n  - routes:\n      - {exchange: shop.events, key: order.paid, to: [billing]}\n")
    result = mqspec("validate", shop)
    assert result.exit_code == 2
    assert result.stderr == (
        f"{shop}:26:9: $.expect[0].routes[0]: route (exchange 'shop.events', key 'order.paid') should reach [billing], but the "
        "topology routes it to [audit.log, billing] (hint: fix the bindings or the expectation; `mqspec route` shows the path)\n")
