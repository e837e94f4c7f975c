"""The workload engine against the real broker: delivery semantics, accounting, reports, faults and errors."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pika
import pytest

from mqspec.broker import amqp
from mqspec.broker.management import Management
from mqspec.core import model
from mqspec.errors import BrokerUnavailable, MqspecError, OperationFailed
from mqspec.report import run_json
from mqspec.workload import frames
from tests.conftest import AMQP_ROOT, ROOT, Result, mqspec, queue_counts, settled_queue_stats, until, vhost_url


def apply(tmp_path: Path, url: str, text: str, *extra: str) -> tuple[Result, dict[str, Any]]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("version: 1\n" + text)
    report = tmp_path / "report.json"
    result = mqspec("--url", url, "apply", str(scenario), "--report", str(report), *extra)
    data = json.loads(report.read_text()) if report.exists() else {}
    return result, data


def failed_lines(result: Result) -> list[str]:
    return [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("FAIL")]


def table_row(stdout: str, title: str, name: str) -> dict[str, str]:
    """One row of a summary table in the text output, by column header."""
    lines = stdout.splitlines()
    header = lines[lines.index(title) + 1].split()
    rows = (line.split() for line in lines[lines.index(title) + 3:])
    row = next(cells for cells in rows if cells and cells[0] == name)
    return dict(zip(header, row, strict=True))


FANOUT = """
name: fanout-three
topology:
  exchanges: [{name: news, type: fanout, durable: false}]
  queues: [{name: a, durable: false}, {name: b, durable: false}, {name: c, durable: false}]
  bindings: [{exchange: news, queue: a}, {exchange: news, queue: b}, {exchange: news, queue: c}]
workload:
  producers: [{name: pub, exchange: news, messages: 300, confirm: 50}]
  consumers:
    - {name: ca, queue: a}
    - {name: cb, queue: b, prefetch: 20, multi_ack: 7}
    - {name: cc, queue: c, ack: auto}
expect:
  - {every_message: [ca, cb, cc]}
  - {no_loss: true}
  - {no_duplicates: true}
"""


def test_fanout_gives_each_of_three_consumers_every_message(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, FANOUT)
    assert result.exit_code == 0, result.output
    assert {name: c["received"] for name, c in report["consumers"].items()} == {"ca": 300, "cb": 300, "cc": 300}
    assert {name: c["acked"] for name, c in report["consumers"].items()} == {"ca": 300, "cb": 300, "cc": 300}
    assert report["producers"]["pub"]["confirmed"] == 300
    assert report["messages"] == {"expected": 300, "lost": 0, "duplicates": 0}


def test_report_counts_equal_what_the_broker_saw(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: broker-agrees
topology:
  exchanges: [{name: copy, type: fanout, durable: false}]
  queues: [{name: read, durable: false}, {name: kept, durable: false}]
  bindings: [{exchange: copy, queue: read}, {exchange: copy, queue: kept}]
workload:
  producers: [{name: p, exchange: copy, messages: 777, confirm: 50, instances: 2}]
  consumers: [{name: c, queue: read, messages: 1000, prefetch: 100}]
""")
    assert result.exit_code == 0, result.output
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    kept = channel.queue_declare("kept", passive=True).method.message_count
    read = channel.queue_declare("read", passive=True).method.message_count
    connection.close()
    producer, consumer = report["producers"]["p"], report["consumers"]["c"]
    assert producer["published"] == producer["confirmed"] == kept == 1554
    assert (consumer["received"], consumer["acked"], read) == (1000, 1000, 554)


def test_report_has_the_documented_shape(tmp_path: Path, url: str) -> None:
    junit = tmp_path / "junit.xml"
    result, report = apply(tmp_path, url, FANOUT, "--junit", str(junit))
    assert result.exit_code == 0
    assert {"scenario", "passed", "producers", "consumers", "latency_ms", "expectations"} <= set(report)
    assert (report["scenario"], report["passed"]) == ("fanout-three", True)
    assert {"published", "confirmed", "nacked", "returned", "rate", "reconnects", "republished"} <= set(report["producers"]["pub"])
    assert {"received", "acked", "redelivered", "duplicates", "lost", "rate", "foreign"} <= set(report["consumers"]["ca"])
    assert set(report["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert report["expectations"][0] == {"description": "every message reached each of 'ca', 'cb', 'cc'", "passed": True,
                                         "unknown": False, "expected": 300, "actual": {"ca": 300, "cb": 300, "cc": 300}, "detail": "",
                                         "where": "$.expect[0]"}
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("3", "0")


def test_json_output_prints_the_run_report_on_stdout(tmp_path: Path, url: str) -> None:
    scenario = tmp_path / "fanout.yaml"
    scenario.write_text("version: 1\n" + FANOUT)
    result = mqspec("--url", url, "apply", str(scenario), "--format", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert (report["scenario"], report["passed"], report["consumers"]["ca"]["received"]) == ("fanout-three", True, 300)


def test_junit_marks_a_failed_expectation_as_a_failure(tmp_path: Path, url: str) -> None:
    junit = tmp_path / "junit.xml"
    text = FANOUT.replace("{no_duplicates: true}", "{consumer: ca, received: 301}")
    result, report = apply(tmp_path, url, text, "--junit", str(junit))
    assert result.exit_code == 1
    assert report["passed"] is False
    failures = [case.find("failure") for case in ET.parse(junit).getroot().iter("testcase")]
    messages = [f.get("message") for f in failures if f is not None]
    assert messages == ["expected 301, got 300"]


def test_a_consumer_that_dies_mid_way_loses_nothing(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: crash
topology:
  queues: [{name: jobs, durable: false}]
workload:
  producers: [{name: jobs-in, queue: jobs, messages: 200, confirm: 50}]
  consumers:
    - {name: dies, queue: jobs, prefetch: 30, processing_time: 5ms, crash_after: 10}
    - {name: lives, queue: jobs, prefetch: 30}
expect:
  - {consumer: dies, received: 10}
  - {no_loss: true}
  - {duplicated: 10, description: "the ten deliveries the crashed consumer got came again to the other one"}
  - {consumer: lives, lost: 0}
""")
    assert result.exit_code == 0, result.output
    lives = report["consumers"]["lives"]
    assert lives["redelivered"] >= 1
    assert report["consumers"]["dies"]["crashed"] == 1
    assert report["messages"]["lost"] == 0


def test_a_crash_leaves_the_crashing_delivery_unacked_and_the_run_does_not_wait_for_a_queue_nobody_reads(
        tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: lonely
topology:
  queues: [{name: jobs, durable: false}]
workload:
  producers: [{name: p, queue: jobs, messages: 50, confirm: 50}]
  consumers: [{name: only, queue: jobs, prefetch: 5, crash_after: 10}]
expect:
  - {consumer: only, received: 10}
  - {consumer: only, acked: 9}
  - {queue: jobs, depth: 41}
""")
    assert result.exit_code == 0, result.output
    assert (report["ended"], report["elapsed_s"] < 2) == ("done", True)


def test_kill_consumer_fault_redelivers_its_messages_to_the_others(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: kill
topology:
  queues: [{name: jobs, durable: false}]
workload:
  producers: [{name: jobs-in, queue: jobs, messages: 300, rate: 1000, confirm: 50}]
  consumers:
    - {name: victim, queue: jobs, prefetch: 50, processing_time: 20ms}
    - {name: other, queue: jobs, prefetch: 50}
  faults:
    - {action: kill_consumer, consumer: victim, at: 100ms}
expect:
  - {no_loss: true}
""")
    assert result.exit_code == 0, result.output
    assert report["consumers"]["victim"]["crashed"] == 1
    assert report["consumers"]["other"]["redelivered"] >= 1
    assert report["faults"][0].startswith("kill_consumer 'victim' at 0.1s: killed one instance")


def test_a_consumer_only_workload_receives_messages_from_another_client(tmp_path: Path, url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare("inbox", durable=False)
    for n in range(10):
        channel.basic_publish("", "inbox", f"before {n}".encode())
    connection.close()

    def publish_later() -> None:
        until(lambda: queue_counts(url, "inbox")[1] >= 1, 30, "the listener to consume from 'inbox'")
        later = pika.BlockingConnection(pika.URLParameters(url))
        for n in range(15):
            later.channel().basic_publish("", "inbox", f"during {n}".encode(), pika.BasicProperties(headers={"n": n}))
        later.close()

    publisher = threading.Thread(target=publish_later)
    publisher.start()
    result, report = apply(tmp_path, url, """
name: listener
topology:
  queues: [{name: inbox, durable: false}]
workload:
  consumers: [{name: listener, queue: inbox, idle_timeout: 1s}]
expect:
  - {consumer: listener, received: 25}
  - {consumer: listener, foreign: 25}
""")
    publisher.join()
    assert result.exit_code == 0, result.output
    assert report["ended"] == "done"
    assert report["latency_ms"] is None


def test_instances_spread_over_worker_processes_are_accounted_as_one(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: spread
topology:
  queues: [{name: work, durable: false}]
workload:
  workers: 3
  producers: [{name: p, queue: work, messages: 500, instances: 3, confirm: 100}]
  consumers: [{name: c, queue: work, instances: 2, prefetch: 100, multi_ack: 10}]
expect:
  - {consumer: c, received: 1500}
  - {producer: p, confirmed: 1500}
  - {no_loss: true}
  - {no_duplicates: true}
""")
    assert result.exit_code == 0, result.output
    assert report["workers"] == 3
    assert sum(report["consumers"]["c"]["per_instance"]) == 1500


def test_workers_option_overrides_the_file(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: one-process
topology:
  queues: [{name: work, durable: false}]
workload:
  workers: 2
  producers: [{name: p, queue: work, messages: 100}]
  consumers: [{name: c, queue: work, ack: auto}]
expect:
  - {consumer: c, received: 100}
""", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert report["workers"] == 1


def test_a_fixed_rate_reports_real_latency_and_says_nothing_about_queueing(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: paced
topology:
  queues: [{name: paced, durable: false}]
workload:
  producers: [{name: p, queue: paced, messages: 300, rate: 300/s, confirm: 20}]
  consumers: [{name: c, queue: paced}]
expect:
  - {latency: {p50: 50ms}}
  - {no_loss: true}
""")
    assert result.exit_code == 0, result.output
    assert 240 <= report["producers"]["p"]["rate"] <= 360
    assert report["latency_note"] is None


def test_an_unthrottled_producer_says_latency_is_mostly_queueing(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: flat-out
topology:
  queues: [{name: q, durable: false}]
workload:
  producers: [{name: p, queue: q, messages: 2000}]
  consumers: [{name: c, queue: q, ack: auto}]
""")
    assert result.exit_code == 0, result.output
    assert "mostly time spent waiting in the queue" in report["latency_note"]
    assert "mostly time spent waiting in the queue" in result.stdout


def test_consumers_under_load_let_bytes_wait_and_still_count_exactly_what_the_broker_delivered(
        tmp_path: Path, url: str, vhost: str) -> None:
    result, report = apply(tmp_path, url, """
name: held-reads
topology:
  queues: [{name: q, durable: false}]
workload:
  producers: [{name: p, queue: q, duration: 3s, confirm: 200}]
  consumers: [{name: c, queue: q, prefetch: 500, multi_ack: 50}]
""")
    assert result.exit_code == 0, result.output
    held = "consumers let bytes wait in their sockets up to 2 ms, producers let confirms wait up to 0.5 ms"
    # pika's own path (MQSPEC_PLAIN_PIKA=1) never holds a socket, and says nothing of waiting
    assert (held in report["latency_note"]) is frames.fast_path().enabled
    received = report["consumers"]["c"]["received"]
    assert received == report["consumers"]["c"]["acked"] == report["producers"]["p"]["confirmed"] > 10_000
    stats = settled_queue_stats(vhost, "q", acks=received)
    assert (stats["deliver_get"], stats["ack"], stats["redeliver"]) == (received, received, 0)
    assert queue_counts(url, "q") == (0, 0)


def test_a_read_wait_of_0_reads_at_once_and_the_report_says_nothing_of_waiting(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: reads-at-once
topology:
  queues: [{name: q, durable: false}]
workload:
  read_wait: 0
  producers: [{name: p, queue: q, duration: 1s}]
  consumers: [{name: c, queue: q, ack: auto}]
""")
    assert result.exit_code == 0, result.output
    assert "wait in their sockets" not in report["latency_note"]
    assert report["consumers"]["c"]["received"] == report["producers"]["p"]["published"]


def test_requeued_nacks_come_back_as_redeliveries_not_duplicates(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: nacks
topology:
  queues: [{name: q, durable: false}]
workload:
  producers: [{name: p, queue: q, messages: 100, confirm: 100}]
  consumers: [{name: c, queue: q, prefetch: 10, nack: 0.2, requeue: true}]
expect:
  - {consumer: c, acked: 100}
  - {consumer: c, duplicates: 0}
  - {no_loss: true}
""")
    assert result.exit_code == 0, result.output
    consumer = report["consumers"]["c"]
    assert consumer["nacked"] >= 20
    assert consumer["redelivered"] == consumer["nacked"]
    assert consumer["received"] == 100 + consumer["nacked"]


def test_user_bodies_are_marked_in_a_header_and_stay_as_written(tmp_path: Path, url: str) -> None:
    (tmp_path / "order.json").write_text('{"order": 1}')
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare("orders", durable=False)
    connection.close()
    result, report = apply(tmp_path, url, """
name: bodies
topology:
  queues: [{name: orders, durable: false}]
workload:
  producers:
    - {name: from-file, queue: orders, body_file: order.json, content_type: application/json, messages: 5, confirm: 5}
    - {name: tiny, queue: orders, size: 10, messages: 5, confirm: 5}
  consumers: [{name: c, queue: orders, messages: 10}]
expect:
  - {consumer: c, foreign: 0}
  - {no_loss: true}
""")
    assert result.exit_code == 0, result.output
    assert report["latency_ms"] is not None


def test_bodies_larger_than_a_frame_and_empty_bodies_arrive_whole(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: sizes
topology:
  queues: [{name: q, durable: false}]
workload:
  producers:
    - {name: big, queue: q, size: 300KiB, messages: 20, confirm: 5}
    - {name: empty, queue: q, size: 0, messages: 10, confirm: 10}
    - {name: headers, queue: q, headers: {tenant: acme, n: 7}, messages: 10, confirm: 10}
  consumers: [{name: c, queue: q, prefetch: 5, multi_ack: 3}]
expect:
  - {consumer: c, received: 40}
  - {consumer: c, foreign: 0}
  - {no_loss: true}
  - {no_duplicates: true}
""")
    assert result.exit_code == 0, result.output
    assert report["latency_samples"] == 40


def test_consumer_priority_gets_the_messages_first(tmp_path: Path, url: str) -> None:
    result, _ = apply(tmp_path, url, """
name: priorities
topology:
  queues: [{name: q, durable: false}]
workload:
  producers: [{name: p, queue: q, messages: 50, confirm: 50}]
  consumers:
    - {name: high, queue: q, priority: 10, prefetch: 100}
    - {name: low, queue: q, priority: 1, prefetch: 100}
expect:
  - {consumer: high, received: 50}
  - {consumer: low, received: 0}
""")
    assert result.exit_code == 0, result.output


def test_an_exclusive_consumer_shuts_out_a_second_one(tmp_path: Path, url: str) -> None:
    result, _ = apply(tmp_path, url, """
name: exclusive
topology:
  queues: [{name: q, durable: false}]
workload:
  consumers:
    - {name: first, queue: q, exclusive: true, idle_timeout: 200ms}
    - {name: second, queue: q, idle_timeout: 200ms}
""")
    assert result.exit_code != 0
    assert "ACCESS_REFUSED" in result.stderr and "exclusive" in result.stderr


def test_closing_connections_twice_mid_run_loses_no_confirmed_message(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: flaky-network
topology:
  queues: [{name: orders, durable: true}]
workload:
  # 400/s: the second close comes well after both clients reconnected from the first (client.SETTLE)
  producers: [{name: p, queue: orders, messages: 1200, rate: 400, confirm: 20, persistent: true}]
  consumers: [{name: c, queue: orders, prefetch: 50, multi_ack: 5, processing_time: 1ms}]
  faults:
    - {action: close_connections, at: 400ms}
    - {action: close_connections, after_messages: 800}
expect:
  - {producer: p, confirmed: 1200}
  - {consumer: c, lost: 0}
  - {no_loss: true}
""")
    assert result.exit_code == 0, result.output
    assert report["producers"]["p"]["reconnects"] == 2
    assert report["consumers"]["c"]["reconnects"] == 2
    assert table_row(result.stdout, "consumers", "c")["reconnects"] == "2"
    assert [f.split(":")[0] for f in report["faults"]] == ["close_connections at 0.4s", "close_connections after 800 messages"]
    assert report["messages"]["lost"] == 0


def test_ctrl_c_stops_cleanly_with_a_partial_report_and_exit_130(tmp_path: Path, url: str) -> None:
    scenario = tmp_path / "long.yaml"
    scenario.write_text("""version: 1
name: long
topology:
  queues: [{name: q, durable: false}]
workload:
  producers: [{name: p, queue: q, rate: 200, duration: 30s}]
  consumers: [{name: c, queue: q, prefetch: 1, processing_time: 50ms}]
expect:
  - {no_loss: true}
""")
    report = tmp_path / "partial.json"
    command = [str(ROOT / ".venv" / "bin" / "mqspec"), "--url", url, "apply", str(scenario), "--report", str(report)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout))  # type: ignore[arg-type]
    reader.start()
    until(lambda: any("Apply complete" in line for line in lines), 20, "the topology to be applied")
    until(lambda: queue_counts(url, "q")[0] > 0, 20, "the producer to publish (the slow consumer leaves a backlog)")
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    reader.join(5)
    err = process.stderr.read()
    process.stderr.close()
    process.stdout.close()
    out = "".join(lines)
    assert process.returncode == 130, out + err
    data = json.loads(report.read_text())
    assert (data["interrupted"], data["passed"], data["expectations"]) == (True, False, [])
    assert data["producers"]["p"]["published"] > 0
    assert "Traceback" not in err
    assert "interrupted (Ctrl-C); counts are partial" in out


# --- broker errors, one line each ---------------------------------------------------------------

def test_a_consumer_on_a_missing_queue_fails_naming_the_queue(tmp_path: Path, url: str, vhost: str) -> None:
    result, _ = apply(tmp_path, url, """
name: ghost
topology:
  queues: [{name: ghost, external: true}]
workload:
  consumers: [{name: c, queue: ghost, idle_timeout: 100ms}]
""")
    assert result.exit_code == 1
    assert result.stderr == (f"error: not found: queue 'ghost' in vhost '{vhost}' (while trying to consume from queue "
                             f"'ghost') (NOT_FOUND - no queue 'ghost' in vhost '{vhost}')\n")


def test_refused_connection_names_host_and_port_and_hides_the_password(vhost: str) -> None:
    settings = model.BrokerSettings(urls=(f"amqp://guest:s3cret-pw@127.0.0.1:5999/{vhost}",), connect_timeout=2)
    with pytest.raises(BrokerUnavailable) as caught:
        amqp.connect(settings)
    assert caught.value.message == "cannot connect to 127.0.0.1:5999: connection refused"


def test_cluster_urls_fail_over_to_the_next_node(vhost: str) -> None:
    settings = model.BrokerSettings(urls=(f"amqp://guest:guest@127.0.0.1:5999/{vhost}", vhost_url(vhost)))
    connection = amqp.connect(settings, "mqspec-test-failover")
    assert connection.is_open
    connection.close()


def test_workload_clients_fail_over_to_the_next_node(tmp_path: Path, vhost: str) -> None:
    scenario = tmp_path / "cluster.yaml"
    scenario.write_text(f"""version: 1
name: cluster
broker:
  url: [amqp://guest:guest@127.0.0.1:5999/{vhost}, {vhost_url(vhost)}]
topology:
  queues: [{{name: q, durable: false}}]
workload:
  producers: [{{name: p, queue: q, messages: 20, confirm: 20}}]
  consumers: [{{name: c, queue: q}}]
expect:
  - {{consumer: c, received: 20}}
""")
    result = mqspec("apply", str(scenario))
    assert result.exit_code == 0, result.output


def test_wrong_password_is_an_authentication_refusal() -> None:
    settings = model.BrokerSettings(urls=(f"{AMQP_ROOT.replace('guest:guest', 'guest:wrong-pw')}/%2F",))
    with pytest.raises(BrokerUnavailable) as caught:
        amqp.connect(settings)
    assert caught.value.message == "authentication refused for user 'guest' at 127.0.0.1:5672"


def test_unknown_vhost_is_named() -> None:
    with pytest.raises(BrokerUnavailable) as caught:
        amqp.connect(model.BrokerSettings(urls=(vhost_url("no-such-vhost-here"),)))
    assert caught.value.message == "vhost 'no-such-vhost-here' not found at 127.0.0.1:5672"


def test_access_refused_names_user_vhost_entity_and_operation(tmp_path: Path, management: Management, vhost: str) -> None:
    management.put("/users/mqspec-limited", "user 'mqspec-limited'", {"password": "limited-pw", "tags": "management"})
    try:
        management.set_permissions("mqspec-limited", vhost, configure="^app\\.", write="^app\\.", read="^app\\.")
        connection = pika.BlockingConnection(pika.URLParameters(vhost_url(vhost)))
        connection.channel().queue_declare("secret", durable=False)
        connection.close()
        limited = f"amqp://mqspec-limited:limited-pw@127.0.0.1:5672/{vhost}"
        result, _ = apply(tmp_path, limited, """
name: limited
topology:
  queues: [{name: secret, durable: false, external: true}]
workload:
  consumers: [{name: c, queue: secret, idle_timeout: 100ms}]
""")
    finally:
        management.delete("/users/mqspec-limited", "user 'mqspec-limited'")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"error: access refused: user 'mqspec-limited' may not consume from queue 'secret' "
                                    f"in vhost '{vhost}' (ACCESS_REFUSED")
    assert "limited-pw" not in result.output


def test_precondition_failed_names_the_differing_property(url: str, vhost: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_declare("orders", durable=True)
    try:
        connection.channel().queue_declare("orders", durable=False)
    except pika.exceptions.ChannelClosedByBroker as exc:
        error: MqspecError = amqp.translate(exc, url, "declare queue 'orders'")
    connection.close()
    assert isinstance(error, OperationFailed)
    assert error.message.startswith(f"queue 'orders' in vhost '{vhost}' exists with a different 'durable' "
                                    "(while trying to declare queue 'orders')")


def test_tls_verifies_certificates_by_default_and_insecure_does_not() -> None:
    secure = amqp.parameters(model.BrokerSettings(urls=("amqps://u:p@broker.example:5671/%2F",)), "amqps://u:p@broker.example:5671/%2F")
    assert secure.ssl_options.context.verify_mode == ssl.CERT_REQUIRED
    assert secure.ssl_options.context.check_hostname is True
    assert secure.ssl_options.server_hostname == "broker.example"
    insecure = model.BrokerSettings(urls=("amqps://u:p@10.0.0.1:5671/%2F",),
                                    tls=model.TlsSettings(insecure=True, server_name="rabbit.internal"))
    params = amqp.parameters(insecure, insecure.url)
    assert params.ssl_options.context.verify_mode == ssl.CERT_NONE
    assert params.ssl_options.server_hostname == "rabbit.internal"


def test_connection_parameters_carry_name_heartbeat_and_a_bounded_timeout() -> None:
    settings = model.BrokerSettings(urls=("amqp://u:p@h:5673/v",), heartbeat=15, connect_timeout=3, connection_name="shop")
    params = amqp.parameters(settings, settings.url)
    assert (params.host, params.port, params.virtual_host, params.heartbeat) == ("h", 5673, "v", 15)
    assert (params.socket_timeout, params.stack_timeout, params.connection_attempts) == (3, 4, 1)
    assert params.client_properties["connection_name"] == "shop"


def test_the_engine_does_not_leave_worker_processes_behind(tmp_path: Path, url: str) -> None:
    result, _ = apply(tmp_path, url, FANOUT)
    assert result.exit_code == 0
    import multiprocessing

    assert [p for p in multiprocessing.active_children() if p.name.startswith("mqspec-worker")] == []
    assert sys.modules["mqspec.workload.engine"] is not None


def _publish_raw(url: str, queue: str, body: bytes, headers: dict[str, Any] | None = None, durable: bool = False) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=durable)
    channel.basic_publish("", queue, body, pika.BasicProperties(headers=headers))
    connection.close()


LISTENER = """
name: hostile
topology:
  queues: [{name: inbox, durable: false}]
workload:
  timeout: 12s
  consumers: [{name: listener, queue: inbox, idle_timeout: 1s}]
expect:
  - {consumer: listener, received: 1}
  - {consumer: listener, foreign: 1}
"""


@pytest.mark.parametrize(("body", "headers"), [
    (b"MQs\x01" + b"\xff" * 20, None),
    (b"MQs\x02" + b"\xff" * 20, None),
    (b"forged", {"x-mqspec": f"0:1073741824:{time.time_ns()}"}),
    (b"forged", {"x-mqspec": f"0:0:1073741824:{time.time_ns()}"}),
], ids=["old-prefix", "prefix-with-huge-seq", "old-header", "header-with-huge-seq"])
def test_a_forged_mark_is_a_foreign_message_acked_once(tmp_path: Path, url: str, body: bytes,
                                                       headers: dict[str, Any] | None) -> None:
    _publish_raw(url, "inbox", body, headers)
    started = time.monotonic()
    result, report = apply(tmp_path, url, LISTENER)
    assert result.exit_code == 0, result.output
    consumer = report["consumers"]["listener"]
    assert (consumer["received"], consumer["redelivered"], consumer["acked"], consumer["foreign"],
            consumer["duplicates"]) == (1, 0, 1, 1, 0)
    assert report["latency_ms"] is None
    assert time.monotonic() - started < 8  # ended by idle_timeout, not by the 12 s timeout
    connection = pika.BlockingConnection(pika.URLParameters(url))
    assert connection.channel().queue_declare("inbox", passive=True).method.message_count == 0
    connection.close()


def test_leftovers_of_an_earlier_run_are_foreign_not_duplicates(tmp_path: Path, url: str) -> None:
    producer_only = """
name: leftovers
topology:
  queues: [{name: kept, durable: true}]
workload:
  producers: [{name: p, queue: kept, messages: 10, confirm: 10}]
"""
    first, _ = apply(tmp_path, url, producer_only)
    assert first.exit_code == 0, first.output
    result, report = apply(tmp_path, url, producer_only.replace("confirm: 10}]", "confirm: 10}]\n  consumers: "
                                                                "[{name: c, queue: kept, idle_timeout: 1s}]") + """
expect:
  - {no_duplicates: true}
  - {no_loss: true}
  - {consumer: c, foreign: 10}
""")
    assert result.exit_code == 0, result.output
    consumer = report["consumers"]["c"]
    assert (consumer["received"], consumer["foreign"], consumer["duplicates"], consumer["lost"]) == (20, 10, 0, 0)


def test_every_message_ignores_a_producer_that_routes_elsewhere(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: two-producers
topology:
  queues: [{name: orders, durable: false}, {name: audit, durable: false}]
workload:
  producers: [{name: shop, queue: orders, messages: 50, confirm: 10}, {name: audit, queue: audit, messages: 20, confirm: 10}]
  consumers: [{name: billing, queue: orders}, {name: auditor, queue: audit}]
expect:
  - {every_message: [billing, auditor]}
""")
    assert result.exit_code == 0, result.output
    assert report["expectations"][0]["expected"] == {"billing": 50, "auditor": 20}
    assert report["expectations"][0]["actual"] == {"billing": 50, "auditor": 20}


def test_multi_ack_above_the_prefetch_does_not_stall(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: big-batches
topology:
  queues: [{name: q, durable: false}]
workload:
  timeout: 20s
  producers: [{name: p, queue: q, messages: 95, confirm: 10}]
  consumers: [{name: c, queue: q, prefetch: 10, multi_ack: 50}]
expect:
  - {consumer: c, received: 95}
""")
    assert result.exit_code == 0, result.output
    consumer = report["consumers"]["c"]
    assert (consumer["received"], consumer["acked"], consumer["redelivered"]) == (95, 95, 0)
    assert report["ended"] == "drained"


def test_a_fault_the_run_never_reaches_fails_the_run(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: fault-too-late
topology:
  queues: [{name: q, durable: false}]
workload:
  timeout: 2s
  producers: [{name: p, queue: q, messages: 20, confirm: 10}]
  consumers: [{name: c, queue: q}]
  faults:
    - {action: close_connections, at: 30s}
expect:
  - {no_loss: true}
""")
    assert result.exit_code == 1, result.output
    (line,) = failed_lines(result)
    assert line.startswith("FAIL fault close_connections at 30s did not happen (the run ended after ")
    assert report["passed"] is False
    assert report["faults"] == []


def test_a_fixed_rate_publishes_rate_times_duration_messages(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: on-schedule
topology:
  queues: [{name: paced, durable: false}]
workload:
  producers: [{name: p, queue: paced, rate: 200/s, duration: 2s, confirm: 50}]
""")
    assert result.exit_code == 0, result.output
    assert 392 <= report["producers"]["p"]["published"] <= 408
    assert report["producers"]["p"]["confirmed"] == report["producers"]["p"]["published"]


UNREAD = """
name: unread
topology:
  queues: [{name: inbox, durable: false}]
workload:
  producers: [{name: p, queue: inbox, messages: 10}]
"""


def inbox_exists(url: str) -> bool:
    """Whether apply touched the broker at all: the scenario's only queue is 'inbox'."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_declare("inbox", passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()


def test_a_report_path_in_a_missing_folder_is_refused_before_the_run(tmp_path: Path, url: str) -> None:
    scenario = tmp_path / "unread.yaml"
    scenario.write_text("version: 1\n" + UNREAD)
    report = tmp_path / "nodir" / "report.json"
    result = mqspec("--url", url, "apply", str(scenario), "--report", str(report))
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: cannot write report to {report}: No such file or directory\n"
    assert not inbox_exists(url)   # refused before the broker was touched
    assert not report.parent.exists()


def test_a_junit_path_that_is_a_folder_is_refused_before_the_run(tmp_path: Path, url: str) -> None:
    scenario = tmp_path / "unread.yaml"
    scenario.write_text("version: 1\n" + UNREAD)
    result = mqspec("--url", url, "apply", str(scenario), "--report", str(tmp_path / "ok.json"), "--junit", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: cannot write JUnit report to {tmp_path}: it is a directory\n"
    assert not inbox_exists(url)
    assert not (tmp_path / "ok.json").exists()


def test_a_junit_path_under_a_file_is_refused_before_the_run(tmp_path: Path, url: str) -> None:
    scenario = tmp_path / "unread.yaml"
    scenario.write_text("version: 1\n" + UNREAD)
    junit = tmp_path / "unread.yaml" / "junit.xml"
    result = mqspec("--url", url, "apply", str(scenario), "--junit", str(junit))
    assert (result.exit_code, result.stderr) == (2, f"error: cannot write JUnit report to {junit}: Not a directory\n")
    assert not inbox_exists(url)


def test_a_burst_too_short_to_time_shows_no_rate_and_reports_the_run_window_rate(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: burst
topology:
  queues: [{name: q, durable: false}]
workload:
  producers: [{name: p, queue: q, messages: 50}]
  consumers: [{name: c, queue: q, messages: 50}]
""")
    assert result.exit_code == 0, result.output
    assert table_row(result.stdout, "producers", "p")["msg/s"] == "-"
    assert table_row(result.stdout, "consumers", "c")["msg/s"] == "-"
    elapsed = report["elapsed_s"]   # rounded to the millisecond
    assert 0 < elapsed < 5
    for side in (report["producers"]["p"], report["consumers"]["c"]):
        # over the whole run, not over the microseconds one batch took to write
        assert 50 / (elapsed + 0.001) <= side["rate"] <= 50 / max(elapsed - 0.001, 0.001)


def test_report_emits_exactly_the_fields_its_docstring_lists(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, """
name: every-field
topology:
  exchanges: [{name: copy, type: fanout, durable: false}]
  queues: [{name: read, durable: false}, {name: rpc_queue, durable: false}]
  bindings: [{exchange: copy, queue: read}]
workload:
  producers: [{name: p, exchange: copy, messages: 20, confirm: 10}]
  consumers: [{name: c, queue: read, messages: 20}]
  rpc_servers: [{name: s, queue: rpc_queue}]
  rpc_clients: [{name: r, queue: rpc_queue, requests: 3, timeout: 5s}]
expect:
  - {queue: read, depth: 0}
  - routes: [{exchange: copy, key: any, to: [read]}]
""")
    assert result.exit_code == 0, result.output
    assert list(report) == ["scenario", "passed", "producers", "consumers", "latency_ms", "expectations", "rpc_clients",
                            "rpc_servers", "latency_samples", "latency_note", "messages", "queues", "routes", "ended",
                            "interrupted", "error", "left_over", "missing_counts", "elapsed_s", "workers", "faults", "notes",
                            "outcomes", "unavailable", "unavailable_seconds", "fault_series", "timeseries"]
    assert list(report["timeseries"]) == ["t", "producers", "consumers", "latency_ms", "queues", "events"]
    assert set(report["producers"]["p"]) == {"published", "confirmed", "nacked", "returned", "rate", "instances",
                                             "unconfirmed", "reconnects", "republished", "finished", "blocked",
                                             "blocked_seconds", "confirm_latency_ms"}
    assert set(report["consumers"]["c"]) == {"received", "acked", "redelivered", "duplicates", "lost", "expected",
                                             "missing", "rate", "queue", "instances", "per_instance", "rejected", "nacked",
                                             "dead_lettered", "foreign", "out_of_order", "reconnects", "crashed",
                                             "discarded"}
    assert (report["consumers"]["c"]["expected"], report["consumers"]["c"]["missing"]) == (20, 0)
    assert set(report["rpc_clients"]["r"]) == {"requests", "sent", "answered", "timeouts", "stray", "rate"}
    assert report["rpc_servers"] == {"s": {"instances": 1, "handled": 3}}
    assert report["queues"] == {"read": {"exists": True, "depth": 0, "consumers": 0}}
    assert report["routes"] == [{"exchange": "copy", "key": "any", "headers": {}, "expected": ["read"],
                                 "landed": ["read"], "returned": False, "note": ""}]
    assert set(report["expectations"][0]) == {"description", "passed", "unknown", "expected", "actual", "detail", "where"}
    assert report["expectations"][1]["where"] == "$.expect[1].routes[0]"
    assert (report["ended"], report["interrupted"], report["faults"], report["notes"]) == ("drained", False, [], [])
    assert report["latency_samples"] == 20 and set(report["latency_ms"]) == {"p50", "p95", "p99", "max"}
    documented = run_json.__doc__ or ""
    for field in list(report) + list(report["producers"]["p"]) + list(report["consumers"]["c"]):
        assert f'"{field}"' in documented, field


def test_another_pika_release_runs_pikas_own_paths_and_says_so_once(tmp_path: Path, url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQSPEC_PLAIN_PIKA", raising=False)
    monkeypatch.setattr(pika, "__version__", "1.9.0")
    result, report = apply(tmp_path, url, FANOUT)
    assert result.exit_code == 0, result.output
    assert report["notes"] == [f"pika 1.9.0 is not the release mqspec's fast path was written for ({frames.WRITTEN_FOR}): "
                               "publishing and consuming through pika's own code, which is slower"]
    assert result.stdout.count("is not the release mqspec's fast path was written for") == 1
    assert report["messages"] == {"expected": 300, "lost": 0, "duplicates": 0}
