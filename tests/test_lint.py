"""Lint: warnings about topology that works but not as meant, and routes: checked offline. Exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqspec.core import lint
from mqspec.pipeline import load

HEAD = "version: 1\nname: lint\n"


def _lint(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + body)
    loaded = load(str(path))
    # what the oracle proves wrong is an error of the loader (offline.py); the rest are lint's warnings
    found = lint.check(loaded.scenario) if loaded.scenario is not None else loaded.problems
    return [p.render().replace(str(path), "s.yaml") for p in found]


ORDERS = """\
topology:
  exchanges:
    - {name: orders, type: topic}
  queues:
    - {name: created}
  bindings:
    - {exchange: orders, queue: created, keys: ["order.created"]}
workload:
  consumers:
    - {name: reader, queue: created}
"""


def test_producer_key_that_reaches_no_queue_is_named(tmp_path: Path) -> None:
    found = _lint(tmp_path, ORDERS + "  producers:\n"
                  "    - {name: shipper, exchange: orders, routing_keys: [order.created, order.shipped], messages: 1}\n")
    assert found == [
        "s.yaml:14:71: warning: $.workload.producers[0].routing_keys[1]: producer 'shipper' publishes key 'order.shipped' to exchange "
        "'orders', which routes it to no queue: RabbitMQ drops it (hint: bind a queue that matches it, or give the exchange an "
        "alternate_exchange; `mqspec route` shows where a message goes)"
    ]


def test_templated_key_is_checked_with_a_sample_sequence_number_and_mandatory_says_returned(tmp_path: Path) -> None:
    found = _lint(tmp_path, ORDERS + "  producers:\n"
                  "    - {name: shipper, exchange: orders, routing_keys: ['ship.{seq}'], messages: 1, mandatory: true}\n")
    assert [f.split(": ", 2)[2].split(" (hint")[0] for f in found] == [
        "$.workload.producers[0].routing_keys[0]: producer 'shipper' publishes key 'ship.{seq}' (e.g. 'ship.1') to exchange 'orders', "
        "which routes it to no queue: RabbitMQ returns it (mandatory)"
    ]


def test_unroutable_key_is_quiet_when_the_file_expects_returns_from_that_mandatory_producer(tmp_path: Path) -> None:
    body = ORDERS + "  producers:\n    - {name: p, exchange: orders, routing_keys: [order.created, lost], messages: 2, mandatory: true}\n"
    assert _lint(tmp_path, body + "expect:\n  - {producer: p, returned: 1}\n") == []
    assert len(_lint(tmp_path, body + "expect:\n  - {producer: p, returned: 0}\n")) == 1


def test_templated_key_that_matches_a_wildcard_binding_is_quiet(tmp_path: Path) -> None:
    body = ORDERS.replace('"order.created"', '"order.*"') + "  producers:\n" \
        "    - {name: shipper, exchange: orders, routing_keys: ['order.{seq}'], messages: 1}\n"
    assert _lint(tmp_path, body) == []


def test_producer_headers_that_match_no_binding_are_named(tmp_path: Path) -> None:
    body = """\
topology:
  exchanges: [{name: docs, type: headers}]
  queues: [{name: pdfs}]
  bindings: [{exchange: docs, queue: pdfs, match: all, headers: {format: pdf, pages: 1}}]
workload:
  producers: [{name: p, exchange: docs, headers: {format: pdf, pages: "1"}, messages: 1}]
  consumers: [{name: c, queue: pdfs}]
"""
    assert [f.split(" (hint")[0] for f in _lint(tmp_path, body)] == [
        "s.yaml:8:15: warning: $.workload.producers[0].routing_keys[0]: producer 'p' publishes key '' with headers "
        "{format=pdf, pages=\"1\"} to exchange 'docs', which routes it to no queue: RabbitMQ drops it"
    ]


def test_publishing_to_an_internal_exchange_is_an_error(tmp_path: Path) -> None:
    body = """\
topology:
  exchanges: [{name: inner, type: fanout, internal: true}]
workload:
  producers: [{name: p, exchange: inner, messages: 1}]
"""
    found = _lint(tmp_path, body)
    assert found == ["s.yaml:6:25: $.workload.producers[0].exchange: producer 'p' publishes to exchange 'inner', which is internal: "
                     "RabbitMQ refuses it (ACCESS_REFUSED) (hint: publish to an exchange that is bound to it, or set internal: false)"]


def test_queue_nothing_routes_to_and_no_producer_targets(tmp_path: Path) -> None:
    body = ORDERS.replace("    - {name: created}\n", "    - {name: created}\n    - {name: lonely, max_length: 10}\n") + \
        "  producers:\n    - {name: p, exchange: orders, routing_keys: [order.created], messages: 1}\n"
    assert _lint(tmp_path, body) == [
        "s.yaml:8:8: warning: $.topology.queues[1].name: queue 'lonely' is not bound to any exchange and no producer publishes to it: "
        "nothing reaches it (hint: bind it to an exchange, point a producer at it, or remove it)"
    ]


def test_queue_fed_through_the_default_exchange_by_a_producer_or_rpc_client_or_dead_letter_key_is_reachable(tmp_path: Path) -> None:
    body = """\
topology:
  queues:
    - {name: hello}
    - {name: requests}
    - {name: parked}
    - {name: work, dead_letter: {exchange: "", routing_key: parked}}
workload:
  producers: [{name: p, queue: hello, messages: 1}, {name: w, queue: work, messages: 1}]
  consumers: [{name: c, queue: hello}, {name: c2, queue: work}, {name: c3, queue: parked}]
  rpc_servers: [{name: s, queue: requests}]
  rpc_clients: [{name: r, queue: requests}]
"""
    assert _lint(tmp_path, body) == []


def test_topology_only_files_get_no_workload_warnings(tmp_path: Path) -> None:
    body = "topology:\n  queues:\n    - {name: task_queue}\n"
    assert _lint(tmp_path, body) == []


GROWING = """\
topology:
  POLICIES
  exchanges: [{name: orders, type: fanout}]
  queues:
    - {name: read}
    - {name: kept}
    - {name: capped, message_ttl: 1m}
    - {name: inspected}
    - {name: private, exclusive: true}
  bindings:
    - {exchange: orders, queue: read}
    - {exchange: orders, queue: kept}
    - {exchange: orders, queue: capped}
    - {exchange: orders, queue: inspected}
    - {exchange: orders, queue: private}
workload:
  consumers: [{name: reader, queue: read}, {name: owner, queue: private}]
expect:
  - {queue: inspected, depth: 0}
"""


def test_queue_without_consumer_or_limit_grows_forever(tmp_path: Path) -> None:
    assert _lint(tmp_path, GROWING.replace("POLICIES", "policies: []")) == [
        "s.yaml:8:8: warning: $.topology.queues[1].name: queue 'kept' has no consumer and no TTL or length limit: its messages pile "
        "up forever (hint: add a consumer, or set message_ttl, max_length or max_length_bytes)"
    ]


def test_a_policy_limit_counts_as_a_limit(tmp_path: Path) -> None:
    policy = "policies: [{name: cap, pattern: '^kept$', apply_to: queues, definition: {max-length: 5}}]"
    assert _lint(tmp_path, GROWING.replace("POLICIES", policy)) == []


DEAD_LETTER = """\
topology:
  exchanges:
    - {name: orders, type: direct}
    - {name: dlx, type: direct}
  queues:
    - {name: work, dead_letter: DEAD}
    - {name: failed}
  bindings:
    - {exchange: orders, queue: work, keys: [order]}
    - {exchange: dlx, queue: failed, keys: [failed]}
workload:
  producers: [{name: p, exchange: orders, routing_keys: [order], messages: 1}]
  consumers: [{name: c, queue: work}, {name: f, queue: failed}]
"""


def test_dead_letter_key_that_the_dead_letter_exchange_routes_nowhere(tmp_path: Path) -> None:
    found = _lint(tmp_path, DEAD_LETTER.replace("DEAD", "{exchange: dlx, routing_key: failure}"))
    assert found == [
        "s.yaml:8:49: warning: $.topology.queues[0].dead_letter.routing_key: dead-letter exchange 'dlx' of queue 'work' routes the "
        "dead-letter key 'failure' to no queue: dead-lettered messages are dropped (hint: bind a queue to exchange 'dlx' with a "
        "matching key, or set dead_letter.routing_key to a key it routes)"
    ]


def test_without_a_dead_letter_key_the_original_keys_are_checked(tmp_path: Path) -> None:
    found = _lint(tmp_path, DEAD_LETTER.replace("DEAD", "{exchange: dlx}"))
    assert [f.split(" (hint")[0] for f in found] == [
        "s.yaml:8:34: warning: $.topology.queues[0].dead_letter.exchange: dead-letter exchange 'dlx' of queue 'work' routes key "
        "'order' (the original routing key; the queue sets no dead-letter routing key) to no queue: those dead-lettered messages "
        "are dropped"
    ]


def test_dead_letter_exchange_that_routes_the_key_is_quiet(tmp_path: Path) -> None:
    assert _lint(tmp_path, DEAD_LETTER.replace("DEAD", "{exchange: dlx, routing_key: failed}")) == []


def test_dead_letter_exchange_without_known_keys_warns_only_when_it_has_no_bindings_at_all(tmp_path: Path) -> None:
    body = """\
topology:
  exchanges: [{name: dlx, type: topic}, {name: empty, type: fanout}]
  queues:
    - {name: a, dead_letter: {exchange: dlx}}
    - {name: b, dead_letter: {exchange: empty}}
    - {name: parked, max_length: 10}
  bindings: [{exchange: dlx, queue: parked, keys: ["x.#"]}]
"""
    assert [f.split(" (hint")[0] for f in _lint(tmp_path, body)] == [
        "s.yaml:7:31: warning: $.topology.queues[1].dead_letter.exchange: dead-letter exchange 'empty' of queue 'b' has no bindings: "
        "dead-lettered messages are dropped"
    ]


def test_dead_letter_exchange_from_a_policy_is_checked_and_located_at_the_queue(tmp_path: Path) -> None:
    body = DEAD_LETTER.replace("dead_letter: DEAD", "max_length: 5").replace(
        "topology:\n", "topology:\n  policies: [{name: dl, pattern: '^work$', definition: {dead-letter-exchange: dlx}}]\n")
    assert [f.split(" (hint")[0] for f in _lint(tmp_path, body)] == [
        "s.yaml:9:7: warning: $.topology.queues[0]: dead-letter exchange 'dlx' of queue 'work' routes key 'order' (the original "
        "routing key; the queue sets no dead-letter routing key) to no queue: those dead-lettered messages are dropped"
    ]


@pytest.mark.parametrize(("key", "message"), [
    ("a..b", "topic binding key 'a..b' has an empty word: it matches only routing keys with an empty word there (hint: remove the "
             "extra '.')"),
    ("a.", "topic binding key 'a.' has an empty word: it matches only routing keys with an empty word there (hint: remove the "
           "extra '.')"),
    ("order.#x", "topic binding key 'order.#x' glues '#' to other characters in '#x': RabbitMQ matches that word literally, not "
                 "as a wildcard (hint: give each wildcard a word of its own between dots, e.g. 'order.*' or 'order.#')"),
    ("a*.b", "topic binding key 'a*.b' glues '*' to other characters in 'a*': RabbitMQ matches that word literally, not as a "
             "wildcard (hint: give each wildcard a word of its own between dots, e.g. 'order.*' or 'order.#')"),
])
def test_odd_topic_binding_keys_are_named(tmp_path: Path, key: str, message: str) -> None:
    body = f"topology:\n  exchanges: [{{name: t, type: topic}}]\n  queues: [{{name: q}}]\n" \
           f"  bindings: [{{exchange: t, queue: q, keys: ['*.ok', '{key}']}}]\n"
    assert [f.split(": ", 2)[2] for f in _lint(tmp_path, body)] == [f"$.topology.bindings[0].keys[1]: {message}"]


def test_topic_binding_without_keys_matches_only_the_empty_key(tmp_path: Path) -> None:
    body = "topology:\n  queues: [{name: q}]\n  bindings: [{exchange: amq.topic, queue: q}]\n"
    assert _lint(tmp_path, body) == [
        "s.yaml:5:14: warning: $.topology.bindings[0]: binding of queue 'q' to topic exchange 'amq.topic' has the empty key: it matches "
        "only messages whose routing key is empty (hint: give keys, e.g. keys: ['#'] to match every routing key)"
    ]


def test_good_topic_keys_and_direct_keys_with_dots_are_quiet(tmp_path: Path) -> None:
    body = "topology:\n  exchanges: [{name: d, type: direct}, {name: t, type: topic}]\n  queues: [{name: q}]\n" \
           "  bindings: [{exchange: d, queue: q, keys: ['a..b', '#x']}, {exchange: t, queue: q, keys: ['#', '*.a.#', 'a.b']}]\n"
    assert _lint(tmp_path, body) == []


ROUTES = """\
topology:
  exchanges: [{name: orders, type: topic}, {name: audit, type: fanout, internal: true}]
  queues: [{name: billing}, {name: audit.log}]
  bindings:
    - {exchange: orders, queue: billing, keys: ["order.*"]}
    - {exchange: orders, to_exchange: audit, keys: ["#"]}
    - {exchange: audit, queue: audit.log}
expect:
  - routes:
"""


def test_routes_that_match_the_topology_pass_offline(tmp_path: Path) -> None:
    body = ROUTES + "      - {exchange: orders, key: order.created, to: [billing, audit.log]}\n" \
                    "      - {exchange: orders, key: ship, to: [audit.log]}\n" \
                    "      - {key: billing, to: [billing]}\n      - {key: nobody, to: []}\n"
    assert _lint(tmp_path, body) == []


def test_route_mismatch_is_an_error_naming_the_route_expected_and_predicted_queues(tmp_path: Path) -> None:
    body = ROUTES + "      - {exchange: orders, key: order.created, to: [billing]}\n" \
                    "      - {exchange: orders, key: ship, to: []}\n"
    assert _lint(tmp_path, body) == [
        "s.yaml:12:9: $.expect[0].routes[0]: route (exchange 'orders', key 'order.created') should reach [billing], but the topology "
        "routes it to [audit.log, billing] (hint: fix the bindings or the expectation; `mqspec route` shows the path)",
        "s.yaml:13:9: $.expect[0].routes[1]: route (exchange 'orders', key 'ship') should reach no queue, but the topology routes it "
        "to [audit.log] (hint: fix the bindings or the expectation; `mqspec route` shows the path)",
    ]


def test_route_to_an_internal_exchange_is_an_error(tmp_path: Path) -> None:
    found = _lint(tmp_path, ROUTES + "      - {exchange: audit, to: [audit.log]}\n")
    assert found == [
        "s.yaml:12:9: $.expect[0].routes[0]: route (exchange 'audit', key '') cannot be published: exchange 'audit' is internal: "
        "RabbitMQ refuses messages published to it directly (ACCESS_REFUSED) (hint: publish to an exchange that is not internal)"
    ]


def test_route_through_a_plugin_exchange_cannot_be_checked_offline(tmp_path: Path) -> None:
    body = "topology:\n  exchanges: [{name: hash, type: x-consistent-hash}]\n  queues: [{name: q}]\n" \
           "  bindings: [{exchange: hash, queue: q, keys: ['1']}]\nexpect:\n  - routes: [{exchange: hash, key: k, to: [q]}]\n"
    assert _lint(tmp_path, body) == [
        "s.yaml:8:14: warning: $.expect[0].routes[0]: route (exchange 'hash', key 'k') cannot be checked offline: exchange 'hash' has "
        "plugin type 'x-consistent-hash' (hint: apply checks it against the broker)"
    ]


def test_route_with_headers_names_them(tmp_path: Path) -> None:
    body = "topology:\n  exchanges: [{name: docs, type: headers}]\n  queues: [{name: pdfs}]\n" \
           "  bindings: [{exchange: docs, queue: pdfs, match: any, headers: {format: pdf}}]\n" \
           "expect:\n  - routes: [{exchange: docs, headers: {format: zip, pages: 2}, to: [pdfs]}]\n"
    assert [f.split(" (hint")[0] for f in _lint(tmp_path, body)] == [
        "s.yaml:8:14: $.expect[0].routes[0]: route (exchange 'docs', key '', headers {format=zip, pages=2}) should reach [pdfs], but "
        "the topology routes it to no queue"
    ]


def test_literal_password_warning_is_kept(tmp_path: Path) -> None:
    body = "topology:\n  users: [{name: app, password: hunter22}]\n"
    assert [f.split(" (hint")[0] for f in _lint(tmp_path, body)] == [
        "s.yaml:4:23: warning: $.topology.users[0].password: password is written literally in the file"
    ]


def test_sample_key_fills_placeholders_as_the_workload_does() -> None:
    assert lint.sample_key("order.{seq}", "p") == "order.1"
    assert lint.sample_key("shard.{instance}.{producer}.{other}", "emitter") == "shard.0.emitter.{other}"


def test_multi_ack_above_the_prefetch_is_warned(tmp_path: Path) -> None:
    found = _lint(tmp_path, """\
topology:
  queues: [{name: q}]
workload:
  producers: [{name: p, queue: q, messages: 10}]
  consumers: [{name: slow, queue: q, prefetch: 10, multi_ack: 50}, {name: fine, queue: q, prefetch: 50, multi_ack: 50}]
""")
    assert found == [
        "s.yaml:7:52: warning: $.workload.consumers[0].multi_ack: consumer 'slow' acknowledges every 50 messages but may "
        "hold only 10 unacknowledged (prefetch): acks go out every 10 messages instead "
        "(hint: set multi_ack to at most 10, or raise the prefetch)"]


def test_a_literal_password_in_a_broker_url_is_warned_without_showing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINT_URL_PASSWORD", "from-env")
    found = _lint(tmp_path, """\
broker:
  url: [amqp://app:s3cret-1@node1/, "amqp://app:${LINT_URL_PASSWORD}@node2/", amqp://guest:guest@node3/]
  management_url: http://admin:s3cret-2@node1:15672
topology:
  queues: [{name: q}]
""")
    assert all("s3cret" not in line for line in found)
    assert [line for line in found if "URL" in line] == [
        "s.yaml:4:9: warning: $.broker.url[0]: the URL has a password written literally in the file "
        "(hint: use ${ENV_VAR} interpolation, e.g. url: amqp://app:${APP_PASSWORD}@host/vhost)",
        "s.yaml:5:3: warning: $.broker.management_url: the URL has a password written literally in the file "
        "(hint: use ${ENV_VAR} interpolation, e.g. url: amqp://app:${APP_PASSWORD}@host/vhost)"]
