"""apply --migrate against the real broker: a queue full of messages changes type without losing one.

Messages are published and drained with plain pika clients, and counted by passive declares and the management
API, never by mqspec itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pika
import pytest

from mqspec.broker.management import Management, q
from tests.conftest import mqspec, queue_counts, until

pytestmark = pytest.mark.slow

CLASSIC = """\
version: 1
name: migrate
topology:
  exchanges:
    - {name: orders, type: topic}
  queues:
    - {name: orders.q}
  bindings:
    - {exchange: orders, queue: orders.q, keys: ["order.#"]}
"""
QUORUM = CLASSIC.replace("{name: orders.q}", "{name: orders.q, type: quorum}")
HOLDING = "mqspec.migrate.orders.q"


def scenario(tmp_path: Path, text: str, name: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def publish_many(url: str, count: int, start: int = 0) -> None:
    """`count` persistent messages to exchange 'orders' (headers i and kind, priority i % 10), every one confirmed."""
    state = {"sent": 0, "confirmed": 0}
    window = 2000

    def send_more(channel: Any) -> None:
        while state["sent"] < count and state["sent"] - state["confirmed"] < window:
            i = start + state["sent"]
            properties = pika.BasicProperties(delivery_mode=2, headers={"i": i, "kind": "order"}, priority=i % 10,
                                              message_id=f"id-{i}")
            channel.basic_publish("orders", "order.new", f"m{i}".encode(), properties)
            state["sent"] += 1

    def confirmed(frame: Any) -> None:
        assert isinstance(frame.method, pika.spec.Basic.Ack), "a publish was nacked"
        state["confirmed"] = frame.method.delivery_tag if frame.method.multiple else state["confirmed"] + 1
        if state["confirmed"] >= count:
            connection.close()
        else:
            send_more(channel_box[0])

    channel_box: list[Any] = []

    def on_channel(channel: Any) -> None:
        channel_box.append(channel)
        channel.confirm_delivery(confirmed, callback=lambda _f: send_more(channel))

    connection = pika.SelectConnection(pika.URLParameters(url),
                                       on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
                                       on_close_callback=lambda c, _r: c.ioloop.stop())
    connection.ioloop.start()
    connection.ioloop.close()
    assert state["confirmed"] >= count


def drain(url: str, queue: str) -> list[tuple[bytes, dict[str, Any], int | None]]:
    """Every message of the queue (body, headers less the broker's x-delivery-count, priority), acknowledged."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    expected = channel.queue_declare(queue, passive=True).method.message_count
    channel.basic_qos(prefetch_count=5000)
    found: list[tuple[bytes, dict[str, Any], int | None]] = []
    for method, properties, body in channel.consume(queue, inactivity_timeout=2):
        if method is None:
            break
        headers = {k: v for k, v in (properties.headers or {}).items() if k != "x-delivery-count"}
        found.append((body, headers, properties.priority))
        if len(found) % 1000 == 0 or len(found) >= expected:
            channel.basic_ack(method.delivery_tag, multiple=True)
    channel.cancel()
    connection.close()
    return found


class Producer(threading.Thread):
    """Publishes to exchange 'orders' with confirms at about `rate` messages a second on its own connection."""

    def __init__(self, url: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.rate = url, rate
        self.confirmed: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = connection.channel()
        channel.confirm_delivery()
        i, started = 0, time.monotonic()
        while not self.stop.is_set():
            n = 1_000_000 + i
            channel.basic_publish("orders", "order.live", f"m{n}".encode(),
                                  pika.BasicProperties(delivery_mode=2, headers={"i": n, "kind": "live"}, priority=n % 10),
                                  mandatory=True)
            self.confirmed.append(n)
            i += 1
            time.sleep(max(0.0, started + i / self.rate - time.monotonic()))
        connection.close()


def bindings_of(management: Management, vhost: str, queue: str) -> set[tuple[str, str]]:
    found = management.get(f"/queues/{q(vhost)}/{q(queue)}/bindings", "bindings") or []
    return {(b["source"], b["routing_key"]) for b in found if b["source"]}


def queue_type(management: Management, vhost: str, queue: str) -> str:
    return str(management.get(f"/queues/{q(vhost)}/{q(queue)}", "queue")["type"])


def expected(ids: list[int]) -> Counter[tuple[bytes, tuple[tuple[str, Any], ...], int]]:
    return Counter((f"m{i}".encode(), (("i", i), ("kind", "order" if i < 1_000_000 else "live")), i % 10) for i in ids)


def received(messages: list[tuple[bytes, dict[str, Any], int | None]]) -> Counter[tuple[bytes, tuple[tuple[str, Any], ...], int]]:
    return Counter((body, tuple(sorted(headers.items())), priority or 0) for body, headers, priority in messages)


def prepare(url: str, tmp_path: Path, count: int) -> tuple[str, str]:
    classic = scenario(tmp_path, CLASSIC, "classic.yaml")
    assert mqspec("--url", url, "apply", classic, "--topology-only").exit_code == 0
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_bind("orders.q", "amq.topic", "not.in.the.file")     # a binding the file does not declare
    connection.close()
    publish_many(url, count)
    until(lambda: queue_counts(url, "orders.q")[0] == count, 30, f"{count} messages in orders.q")
    return classic, scenario(tmp_path, QUORUM, "quorum.yaml")


# --- the plan ------------------------------------------------------------------------------------------------

def test_plan_offers_migrate_with_the_message_count_and_apply_without_consent_names_both_options(
        url: str, tmp_path: Path) -> None:
    _, quorum = prepare(url, tmp_path, 25)
    plan = mqspec("--url", url, "plan", quorum)
    assert ("-/+ queue 'orders.q' (holds 25 messages, 0 consumers)\n"
            "      type \"classic\" → \"quorum\"\n"
            "      ~> migrate (25 messages): apply --migrate moves them to holding queue 'mqspec.migrate.orders.q', "
            "replaces the queue, restores its bindings and moves them back; nothing is lost\n"
            "  + binding") in plan.stdout
    refused = mqspec("--url", url, "apply", quorum, "--topology-only", "--allow-replace")
    assert refused.exit_code == 1
    assert ("error: refusing to replace queue 'orders.q': it holds 25 messages that would be lost; rerun with --migrate "
            "to move them to the new queue, or with --force to discard them\n") in refused.stderr
    assert queue_counts(url, "orders.q")[0] == 25


def test_plan_says_the_delete_cancels_the_queues_consumers(url: str, tmp_path: Path) -> None:
    _, quorum = prepare(url, tmp_path, 5)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    channel.basic_consume("orders.q", lambda *_: None)
    try:
        plan = mqspec("--url", url, "plan", quorum)
        assert ("      the delete cancels its 1 consumer; --migrate-wait-consumers DURATION waits for them to go first\n"
                in plan.stdout), plan.stdout
        waited = mqspec("--url", url, "apply", quorum, "--topology-only", "--migrate", "--migrate-wait-consumers", "1s")
        assert waited.exit_code == 1
        assert ("error: migrating queue 'orders.q' stopped: queue 'orders.q' still has 1 consumers after waiting 1 s; "
                "nothing was changed; apply --migrate again to finish it") in waited.output
    finally:
        connection.close()


# --- 100,000 messages, classic to quorum, while a producer publishes ------------------------------------------

@pytest.mark.parametrize("via", ["shovel", "relay"])
def test_migrate_to_quorum_keeps_100k_messages_their_headers_bindings_and_every_message_published_meanwhile(
        via: str, url: str, vhost: str, management: Management, tmp_path: Path) -> None:
    _, quorum = prepare(url, tmp_path, 100_000)
    producer = Producer(url, rate=1000)
    producer.start()
    until(lambda: len(producer.confirmed) >= 200, 10, "the producer to publish")
    try:
        result = mqspec("--url", url, "apply", quorum, "--topology-only", "--migrate", "--migrate-via", via)
    finally:
        producer.stop.set()
        producer.join()
    assert result.exit_code == 0, result.output
    assert re.search(rf"migrated queue 'orders.q' by {via} in [0-9.]+ s: \d+ messages moved, 0 possibly duplicated", result.stdout)
    assert result.stdout.endswith("Apply complete: 2 created, 1 replaced.\n")
    assert queue_type(management, vhost, "orders.q") == "quorum"
    assert bindings_of(management, vhost, "orders.q") == {("orders", "order.#"), ("amq.topic", "not.in.the.file")}
    assert management.get(f"/queues/{q(vhost)}/{q(HOLDING)}", "holding", missing_ok=True) is None
    got = received(drain(url, "orders.q"))
    want = expected(list(range(100_000)) + producer.confirmed)
    assert set(got) == set(want), f"missing {len(set(want) - set(got))}, unexpected {len(set(got) - set(want))}"
    # The bindings switch over bind-first: a message published in that instant may land twice, never nowhere.
    assert sum(got.values()) - len(want) <= 50


# --- SIGKILL at each point, then a rerun -----------------------------------------------------------------------

KILLS = [(via, point) for via in ("shovel", "relay") for point in ("held", "moving-out", "deleted", "moving-back")]


@pytest.mark.parametrize(("via", "point"), KILLS)
def test_migrate_killed_at_a_point_is_finished_by_the_next_run_without_loss(
        via: str, point: str, url: str, vhost: str, management: Management, tmp_path: Path) -> None:
    count = 20_000
    _, quorum = prepare(url, tmp_path, count)
    command = [sys.executable, "-m", "mqspec.cli", "--url", url, "apply", quorum, "--topology-only", "--migrate",
               "--migrate-via", via]
    env = {**os.environ, "MQSPEC_MIGRATE_PAUSE_AT": point}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    assert process.stderr is not None
    for line in process.stderr:
        if line.strip() == f"mqspec: migration paused at {point}":
            break
    else:
        pytest.fail(f"mqspec ended without pausing at {point} (exit {process.wait()})")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    publish_many(url, 10, start=500_000)        # published while the migration is half done: must survive too

    plan = mqspec("--url", url, "plan", quorum)
    assert f"note: queue 'orders.q' is half-way through a migration (holding queue '{HOLDING}'" in plan.stdout
    assert "apply --migrate finishes it" in plan.stdout
    refused = mqspec("--url", url, "apply", quorum, "--topology-only")
    assert refused.exit_code == 1
    assert (f"error: refusing to apply: queue 'orders.q' is half-way through a migration and its messages wait in "
            f"holding queue '{HOLDING}'; rerun with --migrate to finish it") in refused.stderr

    if via == "shovel":     # a shovel started before the kill goes on server-side; the rerun waits for it
        time.sleep(0.2)
    rerun = mqspec("--url", url, "apply", quorum, "--topology-only", "--migrate", "--migrate-via", via)
    assert rerun.exit_code == 0, rerun.output
    report = re.search(r"migrated queue 'orders.q' by (\w+), resumed at ([\w-]+) in [0-9.]+ s: \d+ messages moved, "
                       r"(\d+) possibly duplicated by a crash \(redelivered after it\), 0 remaining", rerun.stdout)
    assert report, rerun.stdout
    assert report.group(1) == via
    assert queue_type(management, vhost, "orders.q") == "quorum"
    assert bindings_of(management, vhost, "orders.q") == {("orders", "order.#"), ("amq.topic", "not.in.the.file")}
    got = received(drain(url, "orders.q"))
    want = expected([*range(count), *range(500_000, 500_010)])
    assert set(got) == set(want), f"missing {len(set(want) - set(got))}, unexpected {len(set(got) - set(want))}"
    duplicates = sum(got.values()) - len(want)
    # Killed between binding the holding queue and unbinding the queue, the 10 published meanwhile land in both.
    doubly_routed = 10 if point == "held" else 0
    assert duplicates <= int(report.group(3)) + doubly_routed + 5, (duplicates, report.group(3))
    if point == "held":
        assert "messages published since were routed to both and may be there twice" in rerun.stdout


def test_migrate_with_its_exchange_replaced_in_the_same_run_keeps_every_binding_and_message(
        url: str, vhost: str, management: Management, tmp_path: Path) -> None:
    _, _ = prepare(url, tmp_path, 500)
    both = scenario(tmp_path, QUORUM.replace("{name: orders, type: topic}", "{name: orders, type: topic, "
                                             "alternate_exchange: amq.fanout}"), "both.yaml")
    result = mqspec("--url", url, "apply", both, "--topology-only", "--migrate", "--allow-replace")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("Apply complete: 2 created, 2 replaced.\n"), result.stdout
    assert queue_type(management, vhost, "orders.q") == "quorum"
    assert bindings_of(management, vhost, "orders.q") == {("orders", "order.#"), ("amq.topic", "not.in.the.file")}
    publish_many(url, 1, start=700_000)      # through the replaced exchange
    assert received(drain(url, "orders.q")) == expected([*range(500), 700_000])
