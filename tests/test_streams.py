"""Streams: consumer offsets, filters, single active consumer, super streams and the stream protocol."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pika
import pytest

from mqspec.core import superstreams
from mqspec.core.loader import load_bytes
from tests.conftest import Result, mqspec

STREAM = """version: 1
name: stream-offsets
topology:
  queues:
    - {{name: events, type: stream}}
workload:
  producers:
    - {{name: writer, queue: events, messages: 20, confirm: 10}}
  consumers:
    - {{name: reader, queue: events, prefetch: 50, idle_timeout: 2s{extra}}}
expect:
  - {{consumer: reader, received: {received}}}
  - {{no_loss: true}}
"""


def apply(tmp_path: Path, url: str, text: str, *extra: str) -> tuple[Result, dict[str, Any]]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(text)
    report = tmp_path / "report.json"
    result = mqspec("--url", url, "apply", str(scenario), "--report", str(report), *extra)
    return result, json.loads(report.read_text()) if report.exists() else {}


def load_problems(text: str) -> list[str]:
    loaded = load_bytes(text.encode(), "s.yaml")
    return [p.render() for p in loaded.problems if p.severity == "error"]


def prefill(url: str, queue: str, count: int) -> None:
    """Messages of another program, written before the run with plain pika (confirmed)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "stream"})
    channel.confirm_delivery()
    for i in range(count):
        channel.basic_publish("", queue, f"old-{i}".encode())
    connection.close()


def stream_length(url: str, queue: str) -> int:
    """An independent count: read the whole stream from `first` with a plain pika consumer."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1000)
    seen = 0
    for method, _properties, _body in channel.consume(queue, arguments={"x-stream-offset": "first"},
                                                      inactivity_timeout=1.0):
        if method is None:
            break
        seen += 1
        channel.basic_ack(method.delivery_tag)
    connection.close()
    return seen


# --- offsets over AMQP ----------------------------------------------------------------------------

@pytest.mark.parametrize(("offset", "old_seen"), [("first", 10), ("next", 0), ("4", 6)])
def test_a_stream_consumer_starts_at_its_offset(tmp_path: Path, url: str, offset: str, old_seen: int) -> None:
    prefill(url, "events", 10)
    result, report = apply(tmp_path, url, STREAM.format(extra=f", offset: {offset}", received=20 + old_seen))
    assert result.exit_code == 0, result.output
    assert report["consumers"]["reader"]["received"] == 20 + old_seen
    assert report["consumers"]["reader"]["foreign"] == old_seen
    assert stream_length(url, "events") == 30


def test_a_stream_consumer_with_a_duration_ago_skips_older_chunks(tmp_path: Path, url: str) -> None:
    prefill(url, "events", 10)
    time.sleep(2.5)   # the AMQP timestamp is whole seconds: the prefilled chunk is older than "1s ago"
    result, report = apply(tmp_path, url, STREAM.format(extra=", offset: 1s", received=20))
    assert result.exit_code == 0, result.output
    assert report["consumers"]["reader"]["foreign"] == 0
    assert stream_length(url, "events") == 30


def test_a_stream_consumer_with_an_old_timestamp_reads_everything(tmp_path: Path, url: str) -> None:
    prefill(url, "events", 10)
    result, report = apply(tmp_path, url, STREAM.format(extra=", offset: '2020-01-01T00:00:00Z'", received=30))
    assert result.exit_code == 0, result.output
    assert report["consumers"]["reader"]["foreign"] == 10


# --- file rules ---------------------------------------------------------------------------------

CLASSIC = """version: 1
name: not-a-stream
topology:
  queues: [{name: jobs}]
workload:
  producers: [{name: p, queue: jobs, messages: 1}]
  consumers:
    - {name: c, queue: jobs, offset: first, filter: [red]}
"""


def test_offset_and_filter_on_a_classic_queue_are_refused() -> None:
    assert load_problems(CLASSIC) == [
        "s.yaml:8:30: $.workload.consumers[0].offset: offset applies to stream queues; queue 'jobs' is classic "
        "(hint: consume from a queue of type: stream, or remove offset)",
        "s.yaml:8:45: $.workload.consumers[0].filter: filter applies to stream queues; queue 'jobs' is classic "
        "(hint: consume from a queue of type: stream, or remove filter)",
    ]


def test_a_timestamp_that_is_no_date_is_refused() -> None:
    text = STREAM.format(extra=", offset: '2024-13-45'", received=1)
    assert load_problems(text) == [
        "s.yaml:10:69: $.workload.consumers[0].offset: offset is not a timestamp: give ISO 8601 such as "
        "2024-05-01T12:00:00Z (hint: or a duration ago such as 10m, or first, last, next, or an offset number)"]


def test_single_active_consumer_over_amqp_is_refused() -> None:
    text = STREAM.format(extra=", single_active_consumer: true", received=1)
    assert load_problems(text) == [
        "s.yaml:10:69: $.workload.consumers[0].single_active_consumer: single active consumer on a stream needs "
        "protocol: stream (the group is formed by the stream protocol's consumer name; AMQP 0-9-1 consumers cannot "
        "join one) (hint: add protocol: stream)"]


# --- super streams --------------------------------------------------------------------------------

SUPER = """version: 1
name: super
topology:
  super_streams:
    - {name: invoices, partitions: 3}
    - {name: regions, partitions: [amer, emea], routing: key}
"""


def test_a_super_stream_declares_what_add_super_stream_declares() -> None:
    loaded = load_bytes(SUPER.encode(), "s.yaml")
    assert loaded.scenario is not None, loaded.problems
    topology = loaded.scenario.topology
    exchange = topology.exchange("invoices")
    assert exchange is not None and exchange.type == "direct" and exchange.arguments == {"x-super-stream": True}
    assert [(q.name, q.type) for q in topology.queues] == [
        ("invoices-0", "stream"), ("invoices-1", "stream"), ("invoices-2", "stream"),
        ("regions-amer", "stream"), ("regions-emea", "stream")]
    assert [(b.source, b.destination, b.routing_key, dict(b.arguments)) for b in topology.bindings[:3]] == [
        ("invoices", "invoices-0", "0", {"x-stream-partition-order": 0}),
        ("invoices", "invoices-1", "1", {"x-stream-partition-order": 1}),
        ("invoices", "invoices-2", "2", {"x-stream-partition-order": 2})]


def test_hash_routing_is_murmur3_of_the_key_modulo_the_partitions() -> None:
    mmh3 = pytest.importorskip("mmh3")   # rstream's dependency: an independent murmur3
    loaded = load_bytes(SUPER.encode(), "s.yaml")
    assert loaded.scenario is not None
    invoices = loaded.scenario.topology.super_stream("invoices")
    assert invoices is not None
    for key in ("", "a", "abcd", "order-17", "é-clé", "hello world"):
        expected = mmh3.hash(key.encode(), 104729, signed=False) % 3
        assert superstreams.partitions_for(invoices, key) == (f"invoices-{expected}",)


def test_key_routing_follows_the_binding_keys() -> None:
    loaded = load_bytes(SUPER.encode(), "s.yaml")
    assert loaded.scenario is not None
    regions = loaded.scenario.topology.super_stream("regions")
    assert regions is not None
    assert superstreams.partitions_for(regions, "emea") == ("regions-emea",)
    assert superstreams.partitions_for(regions, "apac") == ()


def test_apply_declares_a_super_stream_the_broker_routes_by_binding_key(tmp_path: Path, url: str) -> None:
    result, _ = apply(tmp_path, url, SUPER)
    assert result.exit_code == 0, result.output
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("invoices", "2", b"to partition 2")
    channel.basic_publish("regions", "emea", b"to emea")
    connection.close()
    assert stream_length(url, "invoices-2") == 1
    assert stream_length(url, "invoices-0") == 0
    assert stream_length(url, "regions-emea") == 1


# --- what this broker cannot do -------------------------------------------------------------------

FILTERED = """version: 1
name: filtered
topology:
  queues: [{name: events, type: stream}]
workload:
  producers: [{name: writer, queue: events, messages: 5, filter_value: red}]
  consumers: [{name: reader, queue: events, filter: [red], idle_timeout: 1s}]
"""


def test_stream_filters_on_a_broker_older_than_3_13_are_refused_before_anything_changes(
        tmp_path: Path, url: str, management: Any) -> None:
    version = management.overview()["rabbitmq_version"]
    assert version.startswith("3.10"), "this test pins the shared broker's version"
    for command in ("plan", "apply"):
        scenario = tmp_path / "filtered.yaml"
        scenario.write_text(FILTERED)
        result = mqspec("--url", url, command, str(scenario))
        assert result.exit_code == 1, result.output
        assert result.stderr.splitlines()[-3:] == [
            f"{scenario}:6:58: $.workload.producers[0].filter_value: stream filtering (x-stream-filter-value) "
            f"needs RabbitMQ 3.13 or newer; the broker runs {version} (hint: upgrade the broker, or remove this field)",
            f"{scenario}:7:45: $.workload.consumers[0].filter: stream filtering (x-stream-filter) needs RabbitMQ 3.13 "
            f"or newer; the broker runs {version} (hint: upgrade the broker, or remove this field)",
            f"error: {scenario}: 2 fields need a newer RabbitMQ than the broker's {version}; nothing was changed"]
    _assert_not_declared(url, "events")


RAW_FILTERS = """version: 1
name: raw-filters
topology:
  queues: [{name: events, type: stream, arguments: {x-stream-filter-size-bytes: 32}}]
workload:
  producers: [{name: writer, queue: events, messages: 5, headers: {x-stream-filter-value: red}}]
  consumers: [{name: reader, queue: events, protocol: stream, single_active_consumer: true, idle_timeout: 1s}]
"""


def test_raw_filter_arguments_and_stream_single_active_consumer_on_3_10_are_refused_naming_the_version(
        tmp_path: Path, url: str, management: Any) -> None:
    version = management.overview()["rabbitmq_version"]
    assert version.startswith("3.10"), "this test pins the shared broker's version"
    scenario = tmp_path / "raw.yaml"
    scenario.write_text(RAW_FILTERS)
    result = mqspec("--url", url, "apply", str(scenario))
    assert result.exit_code == 1, result.output
    hint = f"the broker runs {version} (hint: upgrade the broker, or remove this field)"
    assert result.stderr.splitlines()[-4:] == [
        f"{scenario}:4:53: $.topology.queues[0].arguments.x-stream-filter-size-bytes: stream filtering "
        f"(x-stream-filter-size-bytes) needs RabbitMQ 3.13 or newer; {hint}",
        f"{scenario}:6:68: $.workload.producers[0].headers.x-stream-filter-value: stream filtering "
        f"(x-stream-filter-value) needs RabbitMQ 3.13 or newer; {hint}",
        f"{scenario}:7:63: $.workload.consumers[0].single_active_consumer: single active consumer on streams needs "
        f"RabbitMQ 3.11 or newer; {hint}",
        f"error: {scenario}: 3 fields need a newer RabbitMQ than the broker's {version}; nothing was changed"]
    _assert_not_declared(url, "events")


# --- the stream protocol --------------------------------------------------------------------------

NATIVE = """version: 1
name: stream-protocol
topology:
  queues:
    - {name: events, type: stream}
  super_streams:
    - {name: invoices, partitions: 3}
workload:
  producers:
    - {name: writer, queue: events, messages: 500, protocol: stream}
    - {name: biller, super_stream: invoices, routing_keys: [a, b, c, d, e, f], messages: 60, protocol: stream}
  consumers:
    - {name: native, queue: events, offset: first, protocol: stream, idle_timeout: 3s}
    - {name: amqp, queue: events, offset: first, prefetch: 200, idle_timeout: 3s}
expect:
  - {consumer: native, received: 500}
  - {consumer: amqp, received: 500}
"""


def test_stream_protocol_producers_and_consumers_count_like_amqp_ones(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, NATIVE)
    assert result.exit_code == 0, result.output
    assert report["producers"]["writer"]["confirmed"] == 500
    assert report["consumers"]["native"]["received"] == 500
    assert report["consumers"]["native"]["foreign"] == 0
    assert stream_length(url, "events") == 500
    loaded = load_bytes(NATIVE.encode(), "s.yaml")
    assert loaded.scenario is not None
    invoices = loaded.scenario.topology.super_stream("invoices")
    assert invoices is not None
    expected = {p: 0 for p in invoices.partitions}
    for key in "abcdef":
        expected[superstreams.partitions_for(invoices, key)[0]] += 10
    assert {p: stream_length(url, p) for p in invoices.partitions} == expected


CARRIED = """version: 1
name: stream-protocol-messages
topology:
  queues: [{name: events, type: stream}]
workload:
  producers:
    - name: templated
      queue: events
      messages: 30
      protocol: stream
      body: "order {seq} from {producer}"
      content_type: text/plain
      headers: {region: emea, tier: 3, urgent: true}
      confirm: 10
    - {name: sized, queue: events, messages: 60, protocol: stream, size: {min: 40, max: 400}, headers: {kind: sized}}
    - {name: profiled, queue: events, protocol: stream, rate: [{for: 1s, rate: 50/s}]}
  consumers:
    - {name: native, queue: events, offset: first, protocol: stream, idle_timeout: 2s, processing_time: 20ms}
expect:
  - {consumer: native, received: 140}
  - {no_loss: true}
"""


def _stream_deliveries(url: str, queue: str) -> list[tuple[bytes, dict[str, Any], str | None]]:
    """Every message of the stream from `first`, by a plain pika consumer: (body, all headers, content type)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1000)
    found = []
    for method, properties, body in channel.consume(queue, arguments={"x-stream-offset": "first"}, inactivity_timeout=1.0):
        if method is None:
            break
        found.append((body, dict(properties.headers or {}), properties.content_type))
        channel.basic_ack(method.delivery_tag)
    connection.close()
    return found


def read_stream(url: str, queue: str) -> list[tuple[bytes, dict[str, Any], str | None]]:
    """Every message of the stream: (body, headers without the broker's x-stream-offset, content type)."""
    return [(body, {k: v for k, v in headers.items() if k != "x-stream-offset"}, kind)
            for body, headers, kind in _stream_deliveries(url, queue)]


def test_stream_protocol_producers_send_bodies_sizes_headers_and_rate_profiles(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, CARRIED)
    assert result.exit_code == 0, result.output
    messages = read_stream(url, "events")
    templated = [m for m in messages if m[0].startswith(b"order ")]
    assert sorted(m[0] for m in templated) == sorted(f"order {i} from templated".encode() for i in range(30))
    assert {m[2] for m in templated} == {"text/plain"}
    assert all({k: v for k, v in m[1].items() if k != "x-mqspec"} == {"region": "emea", "tier": 3, "urgent": True}
               and "x-mqspec" in m[1] for m in templated)
    sized = [m for m in messages if m[1].get("kind") == "sized"]
    lengths = [len(m[0]) for m in sized]
    assert len(sized) == 60 and min(lengths) >= 40 and max(lengths) <= 400 and len(set(lengths)) > 10
    profiled = [m for m in messages if not m[1]]
    assert len(profiled) == 50 and len(messages) == 140
    producers = report["producers"]
    assert producers["profiled"]["published"] == 50 and producers["profiled"]["rate"] <= 60, "50/s for 1 s"
    assert producers["templated"]["confirm_latency_ms"]["count"] == producers["templated"]["confirmed"] == 30
    native = report["consumers"]["native"]
    assert (native["received"], native["foreign"], native["duplicates"]) == (140, 0, 0)
    assert native["rate"] <= 1 / (0.020 * 0.9), "each message took its 20 ms of processing"


REFUSED = """version: 1
name: stream-protocol-refusals
topology:
  queues: [{name: events, type: stream}]
workload:
  producers:
    - {name: w, queue: events, messages: 5, protocol: stream, mandatory: true}
  consumers:
    - {name: r, queue: events, protocol: stream, prefetch: 10, ack: auto, requeue: true, idle_timeout: 1s}
    - {name: s, queue: events, protocol: stream, multi_ack: 10, idle_timeout: 1s}
"""


def test_what_the_stream_protocol_cannot_carry_is_refused_with_its_place() -> None:
    assert load_problems(REFUSED) == [
        "s.yaml:7:63: $.workload.producers[0].mandatory: mandatory has no meaning for a stream (hint: remove it)",
        "s.yaml:9:50: $.workload.consumers[0].prefetch: prefetch has no meaning over the stream protocol: the broker "
        "grants credit in chunks of messages, not in messages (hint: remove it, or use protocol: amqp)",
        "s.yaml:9:64: $.workload.consumers[0].ack: ack has no meaning over the stream protocol: a stream consumer "
        "acknowledges nothing, what it reads is settled (hint: remove it, or use protocol: amqp)",
        "s.yaml:9:75: $.workload.consumers[0].requeue: requeue has no meaning over the stream protocol (no acks, "
        "no requeue) (hint: remove it, or use protocol: amqp)",
        "s.yaml:10:50: $.workload.consumers[1].multi_ack: multi_ack has no meaning over the stream protocol: a stream "
        "consumer acknowledges nothing, what it reads is settled (hint: remove it, or use protocol: amqp)",
    ]


# --- duplicates on a stream ---------------------------------------------------------------------

READERS = """version: 1
name: stream-readers
topology:
  queues: [{name: events, type: stream}]
workload:
  producers: [{name: writer, queue: events, messages: 300, confirm: 50}]
  consumers:
    - {name: native, queue: events, offset: first, protocol: stream, instances: 2, idle_timeout: 2s}
    - {name: amqp, queue: events, offset: first, prefetch: 100, idle_timeout: 2s}
expect:
  - {consumer: native, received: 600}
  - {consumer: amqp, received: 300}
  - {no_loss: true}
  - {no_duplicates: true}
"""


def stream_offsets(url: str, queue: str) -> list[int]:
    """The x-stream-offset of every message of the stream, read from `first` with plain pika."""
    return [headers["x-stream-offset"] for _, headers, _ in _stream_deliveries(url, queue)]


def test_consumers_of_one_stream_each_read_every_message_and_none_is_a_duplicate(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, READERS)
    assert result.exit_code == 0, result.output
    assert "accounting: 300 messages expected, 0 lost, 0 duplicates" in result.stdout
    assert stream_offsets(url, "events") == list(range(300)), "the stream holds offsets 0..299, nothing else"
    native, amqp = report["consumers"]["native"], report["consumers"]["amqp"]
    assert (native["per_instance"], native["duplicates"], native["foreign"]) == ([300, 300], 0, 0)
    assert (amqp["received"], amqp["acked"], amqp["duplicates"]) == (300, 300, 0)
    assert report["outcomes"]["duplicated"] == 0


def _assert_not_declared(url: str, queue: str) -> None:
    """A refused file changes nothing: the queue it declares does not exist (a passive declare, no statistics)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            connection.channel().queue_declare(queue, passive=True)
    finally:
        connection.close()
