"""Received, duplicates, redelivered and acked after the consumer's connection is killed mid-run.

The judge is the broker itself, read by a plain client, never mqspec's adapters: its firehose tracer
(one `deliver.orders` copy, with its redelivered flag, for every delivery the broker made) and the
queue left empty with no consumer (so every published message was acked exactly once). The queue's
message_stats cannot judge this: a killed channel's statistics since its last emission (up to 5 s
of deliveries and acks) are dropped with the channel, never counted.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import httpx
import pika
import pytest

from tests.conftest import ROOT, queue_counts, until

pytestmark = pytest.mark.slow

API = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")
MESSAGES = 5400   # 18 s at 300/s: the management API lists a new connection only some seconds after it opens
KILLS = 2

SCENARIO = f"""version: 1
name: killed-consumer
topology:
  queues: [{{name: orders, durable: true}}]
workload:
  drain_timeout: 60s   # the single-ack case consumes about 200/s, slower than the producer
  producers: [{{name: p, queue: orders, messages: {MESSAGES}, rate: 300, confirm: 20, persistent: true}}]
  consumers: [{{name: c, queue: orders, idle_timeout: 4s, CONSUMER}}]
expect:
  - {{no_loss: true}}
"""
CONSUMERS = {   # the ack paths: prebuilt frames with batches, and acks after simulated processing
    # and pika's own basic_ack
    "prebuilt-multi-ack": ("", "prefetch: 100, multi_ack: 10"),
    "processing-time": ("", "prefetch: 50, multi_ack: 5, processing_time: 1ms"),
    "plain-pika-single-acks": ("1", "prefetch: 100, processing_time: 4ms"),   # slower than the producer: acks in flight
}


def _consumer_connection(vhost: str) -> str | None:
    rows = httpx.get(f"{API}/connections", auth=AUTH, params={"columns": "name,vhost,client_properties"}).json()
    for row in rows:
        label = str((row.get("client_properties") or {}).get("connection_name", ""))
        if row.get("vhost") == vhost and label.endswith(":consumer:c#0"):
            return str(row["name"])
    return None


def _tap_deliveries(url: str, vhost: str, queue: str) -> str:
    """Turn the vhost's firehose on and bind a queue of our own to its deliveries from `queue`."""
    httpx.put(f"{API}/vhosts/{quote(vhost, safe='')}", auth=AUTH, json={"tracing": True}).raise_for_status()
    tap = "test-tap"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.queue_declare(tap)
        channel.queue_bind(tap, "amq.rabbitmq.trace", f"deliver.{queue}")
    finally:
        connection.close()
    return tap


def _tapped(url: str, tap: str) -> tuple[int, int]:
    """(deliveries, of which redelivered) the firehose traced, drained by a plain client."""
    deliveries = redelivered = 0
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for _, properties, _ in channel.consume(tap, auto_ack=True, inactivity_timeout=2):
            if properties is None:
                break
            deliveries += 1
            redelivered += int((properties.headers or {}).get("redelivered", 0))
    finally:
        connection.close()
    return deliveries, redelivered


def _kill(name: str) -> None:
    response = httpx.delete(f"{API}/connections/{quote(name, safe='')}", auth=AUTH,
                            headers={"X-Reason": "test: kill the consumer's connection"})
    assert response.status_code in (204, 404), response.text


@pytest.mark.parametrize("case", list(CONSUMERS))
def test_killing_the_consumers_connection_counts_what_the_broker_counted(tmp_path: Path, url: str, vhost: str,
                                                                         case: str) -> None:
    plain, consumer_settings = CONSUMERS[case]
    scenario = tmp_path / "killed.yaml"
    scenario.write_text(SCENARIO.replace("CONSUMER", consumer_settings))
    report = tmp_path / "report.json"
    command = [str(ROOT / ".venv" / "bin" / "mqspec"), "--url", url, "apply", str(scenario), "--report", str(report)]
    tap = _tap_deliveries(url, vhost, "orders")
    env = {**os.environ, "MQSPEC_PLAIN_PIKA": plain}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    killed: list[str] = []
    try:
        for _ in range(KILLS):
            until(lambda: (_consumer_connection(vhost) or "") not in ("", *killed), 60, "a fresh consumer connection")
            name = _consumer_connection(vhost)
            assert name is not None, (killed, process.poll())
            _kill(name)
            killed.append(name)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, out + err
    consumer = json.loads(report.read_text())["consumers"]["c"]
    assert consumer["reconnects"] == KILLS
    assert queue_counts(url, "orders") == (0, 0), "the queue should end empty, every message acked once"
    deliveries, redelivered = _tapped(url, tap)
    assert redelivered > 0, "no delivery was cut off: the test proves nothing"
    seen = {key: consumer[key] for key in ("received", "duplicates", "redelivered", "acked")}
    assert seen == {"received": deliveries, "duplicates": deliveries - MESSAGES,
                    "redelivered": redelivered, "acked": MESSAGES}, (seen, deliveries, redelivered)
