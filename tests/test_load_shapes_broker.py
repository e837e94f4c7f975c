"""Load shapes take effect in the engine, checked against the broker: a plain pika client and the management API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika

from mqspec.broker.management import Management
from mqspec.core import marks
from tests.conftest import mqspec, queue_counts


def _apply(tmp_path: Path, text: str) -> tuple[int, str, dict[str, Any]]:
    path, report = tmp_path / "scenario.yaml", tmp_path / "run.json"
    path.write_text(text)
    result = mqspec("apply", str(path), "--report", str(report))
    return result.exit_code, result.output, json.loads(report.read_text())


def _bodies(url: str, queue: str) -> list[bytes]:
    """Every body left in the queue, read by a plain pika client."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        bodies = []
        while True:
            method, _properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return bodies
            bodies.append(body)
    finally:
        connection.close()


def test_a_rate_profile_steps_ramps_and_bursts_in_the_engine(url: str, tmp_path: Path) -> None:
    code, output, report = _apply(tmp_path, f"""\
version: 1
name: profile
broker: {{url: "{url}"}}
topology:
  queues: [{{name: backlog, durable: false}}]
workload:
  producers:
    - {{name: shop, queue: backlog, confirm: 50, rate: [{{for: 2s, rate: 100/s}}, {{for: 2s, ramp_to: 300/s}}, {{burst: 200}}]}}
""")
    assert code == 0, output
    ready, _ = queue_counts(url, "backlog")
    assert ready == report["producers"]["shop"]["published"] == 200 + 400 + 200
    series = report["timeseries"]
    t = [0.0, *series["t"]]
    published = [rate * (t[i + 1] - t[i]) for i, rate in enumerate(series["producers"]["shop"]["published"])]
    assert abs(sum(published) - ready) <= 0.03 * ready   # the series' rates are rounded
    first_two = sum(n for i, n in enumerate(published) if t[i + 1] <= 2.0)
    whole = sum(1 for i in range(len(published)) if t[i + 1] <= 2.0)
    assert whole and 60 * t[whole] <= first_two <= 140 * t[whole], (t, published)   # 100/s, on a noisy machine
    assert max(series["producers"]["shop"]["published"]) > 200, "the ramp and the burst go past the first step's rate"


def test_size_distributions_shape_the_bodies_a_plain_client_reads(url: str, tmp_path: Path) -> None:
    code, output, _report = _apply(tmp_path, f"""\
version: 1
name: sizes
broker: {{url: "{url}"}}
topology:
  queues: [{{name: mixed, durable: false}}, {{name: ranged, durable: false}}]
workload:
  producers:
    - {{name: weighted, queue: mixed, messages: 400, size: [{{size: 100B, weight: 3}}, {{size: 5KiB, weight: 1}}]}}
    - {{name: uniform, queue: ranged, messages: 300, size: {{min: 64B, max: 2KiB}}}}
""")
    assert code == 0, output
    mixed = _bodies(url, "mixed")
    assert len(mixed) == 400 and {len(b) for b in mixed} == {100, 5120}
    assert 0.15 < sum(len(b) == 5120 for b in mixed) / 400 < 0.35
    ranged = _bodies(url, "ranged")
    assert len(ranged) == 300 and min(map(len, ranged)) >= 64 and max(map(len, ranged)) <= 2048
    assert len({len(b) for b in ranged}) > 100
    assert all(b.startswith(marks.MAGIC) for b in mixed + ranged), "each body still carries its accounting mark"


def test_fifty_queues_from_a_pattern_with_their_bindings_producers_and_consumers(url: str, vhost: str, tmp_path: Path,
                                                                                 management: Management) -> None:
    code, output, report = _apply(tmp_path, f"""\
version: 1
name: pattern
broker: {{url: "{url}"}}
topology:
  queues: [{{name: "q-{{i}}", count: 50, durable: false}}]
  bindings: [{{exchange: amq.direct, queue: "q-{{i}}", keys: ["k{{i}}"], count: 50}}]
workload:
  producers: [{{name: "p-{{i}}", exchange: amq.direct, routing_keys: ["k{{i}}"], messages: 20, count: 50}}]
  consumers: [{{name: "c-{{i}}", queue: "q-{{i}}", count: 50, messages: 20}}]
  workers: 2
expect:
  - {{consumer: c-50, received: 20}}
  - {{no_loss: true}}
""")
    assert code == 0, output
    names = {q["name"] for q in management.get(f"/queues/{quote(vhost, safe='')}", "queues")}
    assert names == {f"q-{i}" for i in range(1, 51)}
    bindings = {(b["destination"], b["routing_key"]) for b in management.get(f"/bindings/{quote(vhost, safe='')}", "bindings")
                if b["source"] == "amq.direct"}
    assert bindings == {(f"q-{i}", f"k{i}") for i in range(1, 51)}
    assert {name: c["received"] for name, c in report["consumers"].items()} == {f"c-{i}": 20 for i in range(1, 51)}
    assert all(queue_counts(url, f"q-{i}")[0] == 0 for i in (1, 25, 50))


def test_exponential_processing_time_paces_a_consumer(url: str, tmp_path: Path) -> None:
    code, output, report = _apply(tmp_path, f"""\
version: 1
name: slow
broker: {{url: "{url}"}}
topology:
  queues: [{{name: work, durable: false}}]
workload:
  producers: [{{name: p, queue: work, messages: 60}}]
  consumers: [{{name: c, queue: work, prefetch: 1, messages: 60, processing_time: {{distribution: exponential, mean: 25ms}}}}]
""")
    assert code == 0, output
    assert report["consumers"]["c"]["received"] == 60
    rate = report["consumers"]["c"]["rate"]
    assert 60 / rate > 0.7, f"60 messages of 25 ms on average take about 1.5 s, not {60 / rate:.2f}s"
    assert queue_counts(url, "work") == (0, 0)


def test_a_consumer_at_its_message_limit_acks_what_it_still_processes_before_the_run_ends(url: str,
                                                                                          tmp_path: Path) -> None:
    """The third delivery takes 600 ms to process, long after the consumer stopped taking more (messages: 3):
    the run waits for it instead of ending and handing it back to the queue unacked."""
    code, output, report = _apply(tmp_path, f"""\
version: 1
name: last-one
broker: {{url: "{url}"}}
topology:
  queues: [{{name: work, durable: false}}]
workload:
  producers: [{{name: p, queue: work, messages: 3}}]
  consumers: [{{name: c, queue: work, prefetch: 1, messages: 3, processing_time: 600ms}}]
""")
    assert code == 0, output
    consumer = report["consumers"]["c"]
    assert (consumer["received"], consumer["acked"]) == (3, 3), consumer
    assert queue_counts(url, "work") == (0, 0)


def test_confirm_latency_is_measured_per_confirmed_message_and_checked(url: str, tmp_path: Path) -> None:
    code, output, report = _apply(tmp_path, f"""\
version: 1
name: confirms
broker: {{url: "{url}"}}
topology:
  queues: [{{name: kept, durable: true}}]
workload:
  producers: [{{name: p, queue: kept, messages: 2000, confirm: 100, persistent: true}}]
expect:
  - {{producer: p, confirm_latency: {{p99: 30s}}}}
  - {{producer: p, confirm_latency: {{p50: 0ms}}, description: impossible}}
""")
    assert code == 1, output
    ready, _ = queue_counts(url, "kept")
    confirm = report["producers"]["p"]["confirm_latency_ms"]
    assert confirm["count"] == report["producers"]["p"]["confirmed"] == ready == 2000
    assert 0 < confirm["p50"] <= confirm["p99"] <= confirm["max"]
    assert [(e["description"], e["passed"]) for e in report["expectations"]] == [
        ("producer 'p' confirm latency p99 <= 30s", True), ("impossible", False)]
    assert f"p50 was {confirm['p50']:g}ms" in output
    assert "confirm latency ms (p): p50" in output
