"""The tutorials' subscriber pattern: consumers that declare and bind their own queues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pika

from mqspec.core import model
from mqspec.core.definitions import to_definitions
from mqspec.core.loader import load_bytes
from tests.conftest import Result, mqspec

PLAIN = """version: 1
name: plain-subscribers
topology:
  exchanges:
    - {name: logs, type: fanout, durable: false}
  queues:
    - {name: sub1, durable: false, exclusive: true}
    - {name: sub2, durable: false, auto_delete: true}
    - {name: sub3, durable: false, auto_delete: true}
  bindings:
    - {exchange: logs, queue: sub1}
    - {exchange: logs, queue: sub2}
    - {exchange: logs, queue: sub3}
workload:
  producers:
    - {name: emit, exchange: logs, messages: 40, confirm: 10}
  consumers:
    - {name: r1, queue: sub1}
    - {name: r2, queue: sub2}
    - {name: r3, queue: sub3}
expect:
  - {every_message: [r1, r2, r3]}
  - {no_loss: true}
  - routes:
      - {exchange: logs, key: any, to: [sub1, sub2, sub3]}
"""

SERVER_NAMED = """version: 1
name: server-named
topology:
  exchanges:
    - {name: direct_logs, type: direct, durable: false}
workload:
  producers:
    - {name: emit, exchange: direct_logs, routing_keys: [info, warning, error], messages: 30, confirm: 10}
  consumers:
    - name: errors-only
      queue: {bind: [{exchange: direct_logs, keys: [error]}]}
    - name: everything
      queue: {exclusive: true, bind: [{exchange: direct_logs, keys: [info, warning, error]}]}
expect:
  - {consumer: errors-only, received: 10}
  - {consumer: everything, received: 30}
  - {no_loss: true}
  - routes:
      - {exchange: direct_logs, key: error, to: [errors-only, everything]}
      - {exchange: direct_logs, key: info, to: [everything]}
"""


def apply(tmp_path: Path, url: str, text: str, *extra: str) -> tuple[Result, dict[str, Any]]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(text)
    report = tmp_path / "report.json"
    result = mqspec("--url", url, "apply", str(scenario), "--report", str(report), *extra)
    return result, json.loads(report.read_text()) if report.exists() else {}


def _witness(url: str, exchange: str, kind: str, key: str = "") -> tuple[pika.BlockingConnection, str]:
    """A plain pika subscriber of our own, bound before the run: an independent count of what was published."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(exchange, kind, durable=False)
    name = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(name, exchange, key)
    return connection, name


def _published(witness: pika.BlockingConnection, queue: str) -> int:
    """Messages the witness got, route probes (x-mqspec-probe) left out."""
    channel, count = witness.channel(), 0
    while True:
        method, properties, _body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            witness.close()
            return count
        count += not (properties.headers or {}).get("x-mqspec-probe")


def test_three_exclusive_or_auto_delete_subscribers_on_a_fanout_pass_as_written(tmp_path: Path, url: str) -> None:
    witness, queue = _witness(url, "logs", "fanout")
    result, report = apply(tmp_path, url, PLAIN)
    assert result.exit_code == 0, result.output
    assert "note: queue 'sub1' belongs to consumer 'r1': its connection declares and binds it when the workload " \
           "starts, not apply" in result.output
    published = _published(witness, queue)
    assert published == 40
    assert [report["consumers"][name]["received"] for name in ("r1", "r2", "r3")] == [published] * 3


def test_apply_declares_no_private_queue_and_no_binding_to_one(tmp_path: Path, url: str, management: Any, vhost: str) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(PLAIN)
    result = mqspec("--url", url, "apply", str(scenario), "--topology-only")
    assert result.exit_code == 0, result.output
    queues = management.get(f"/queues/{vhost}", "queues") or []
    bindings = management.get(f"/bindings/{vhost}", "bindings") or []
    assert [q["name"] for q in queues] == []
    assert [b for b in bindings if b["source"] == "logs"] == []


def test_server_named_subscribers_get_what_their_bindings_route(tmp_path: Path, url: str) -> None:
    witness, queue = _witness(url, "direct_logs", "direct", "error")
    result, report = apply(tmp_path, url, SERVER_NAMED)
    assert result.exit_code == 0, result.output
    errors = _published(witness, queue)
    assert errors == 10
    assert report["consumers"]["errors-only"]["received"] == errors
    assert report["consumers"]["everything"]["received"] == 30


def test_a_server_named_queue_is_declared_and_bound_again_after_a_reconnect(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """version: 1
name: reconnecting-subscriber
topology:
  exchanges: [{name: logs, type: fanout, durable: false}]
workload:
  producers:
    - {name: emit, exchange: logs, messages: 600, rate: 150/s, confirm: 10}
  consumers:
    - {name: sub, queue: {bind: [{exchange: logs}]}}
  faults:
    - {action: close_connections, at: 500ms}
""")
    assert result.exit_code == 0, result.output
    consumer = report["consumers"]["sub"]
    assert consumer["reconnects"] >= 1
    # 75 messages arrive before the close at 0.5 s; without the new queue and binding nothing published after the
    # reconnect (about 1 s later, of a 4 s run) would arrive
    assert consumer["received"] >= 300, consumer


def test_a_consumer_cannot_read_another_consumers_exclusive_queue(tmp_path: Path) -> None:
    text = SERVER_NAMED.replace("  consumers:\n", "  consumers:\n    - {name: thief, queue: everything}\n")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(text)
    result = mqspec("validate", str(scenario))
    assert result.exit_code == 2
    assert result.stderr == (f"{scenario}:10:21: $.workload.consumers[0].queue: queue 'everything' is exclusive to the "
                             "connection of consumer 'everything', which declares it (hint: give this consumer a queue of its own)\n")


def test_export_leaves_out_private_and_exclusive_queues_with_their_bindings() -> None:
    loaded = load_bytes(PLAIN.encode(), "plain.yaml")
    assert loaded.scenario is not None
    data = to_definitions(loaded.scenario.topology)
    assert data["queues"] == [] and data["bindings"] == []
    lonely = model.Topology(vhost="v", exchanges=(model.Exchange("x"),),
                            queues=(model.Queue("mine", exclusive=True, durable=False),),
                            bindings=(model.Binding("x", "mine"),))
    assert to_definitions(lonely)["bindings"] == []


def test_routing_and_graph_know_a_server_named_queue_by_its_consumers_name(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SERVER_NAMED)
    routed = mqspec("route", str(scenario), "--exchange", "direct_logs", "--key", "error")
    assert routed.exit_code == 0, routed.output
    assert "errors-only" in routed.output and "everything" in routed.output
    graph = mqspec("graph", str(scenario))
    assert "errors-only" in graph.output


def test_validate_strict_refuses_an_exclusive_queue_no_consumer_owns(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("""version: 1
name: lonely
topology:
  exchanges: [{name: logs, type: fanout, durable: false}]
  queues: [{name: sub3, durable: false, exclusive: true}]
  bindings: [{exchange: logs, queue: sub3}]
""")
    result = mqspec("validate", "--strict", str(scenario))
    assert result.exit_code != 0
    assert ("$.topology.queues[0].exclusive: queue 'sub3' is exclusive but no single consumer reads it: nothing declares "
            "it (hint: give it exactly one consumer (of one instance), whose connection then declares and binds it)") in result.output
