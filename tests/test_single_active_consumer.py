"""Single active consumer (x-single-active-consumer) on classic and quorum queues, against the broker.

Two consumers share a queue declared with `single_active_consumer: true`; each stops after 200 of the
300 messages. Only one may receive at a time, and the other takes over when it leaves: so one gets
200 and the other the remaining 100 (round robin would give each about 150). The judge is the broker:
its consumer list, polled during the run (the producer starts 6 s late, as the management API lists a
connection only some seconds after it opens), shows one consumer single_active and the other waiting,
never two active. (It does not reliably list the waiting one as active after the takeover: 3.10
updates that status only with some later statistics emission, and for quorum queues not at all.)
The queue's own statistics (ack, deliver_get, redeliver) agree with what the consumers counted.

About one classic-queue run in ten (3 of some 30 here) on this broker (3.10.8) hits a known broker bug: the queue's process
crashes as the active consumer leaves (rabbitmq-server#5460, still open in 3.11), the messages in flight
are nacked and the rest lost. The test reports that case as an expected failure, recognised by those
nacks, and fails on anything else.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import ROOT, queue_counts, settled_queue_stats

pytestmark = pytest.mark.slow   # about 20 s per queue type, most of it waiting for the broker's statistics

API = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")

SCENARIO = """version: 1
name: single-active
topology:
  queues: [{{name: jobs, type: {kind}, durable: true, single_active_consumer: true}}]
workload:
  producers: [{{name: p, queue: jobs, messages: 300, rate: 100/s, confirm: 50, start_after: 6s}}]
  consumers:
    - {{name: a, queue: jobs, prefetch: 1, messages: 200, idle_timeout: 10s}}
    - {{name: b, queue: jobs, prefetch: 1, messages: 200, idle_timeout: 10s}}
expect:
  - {{no_loss: true}}
  - {{no_duplicates: true}}
"""


def _consumers(vhost: str) -> list[tuple[str, str]]:
    """(mqspec consumer name, activity status) of each consumer of the queue `jobs`, as the broker lists them."""
    rows = httpx.get(f"{API}/consumers/{quote(vhost, safe='')}", auth=AUTH).json()
    names = _connection_names(vhost)
    return [(names.get(_connection_of(row), "?"), str(row.get("activity_status")))
            for row in rows if row.get("queue", {}).get("name") == "jobs"]


def _connection_of(row: dict[str, Any]) -> str:
    details = row.get("channel_details")
    return str(details.get("connection_name")) if isinstance(details, dict) else ""


def _connection_names(vhost: str) -> dict[str, str]:
    """The broker's connection name -> the mqspec consumer it belongs to (from the client's connection_name)."""
    rows = httpx.get(f"{API}/vhosts/{quote(vhost, safe='')}/connections", auth=AUTH,
                     params={"columns": "name,client_properties"}).json()
    found = {}
    for row in rows:
        label = str((row.get("client_properties") or {}).get("connection_name", ""))
        if ":consumer:" in label:
            found[str(row["name"])] = label.rsplit(":consumer:", 1)[1].split("#")[0]
    return found


def _receiving(series: list[float]) -> list[int]:
    return [second for second, count in enumerate(series) if count > 0]


@pytest.mark.parametrize("kind", ["classic", "quorum"])
def test_one_consumer_of_a_single_active_queue_receives_and_the_other_takes_over(
        tmp_path: Path, url: str, vhost: str, kind: str) -> None:
    scenario = tmp_path / "sac.yaml"
    scenario.write_text(SCENARIO.format(kind=kind))
    report = tmp_path / "report.json"
    command = [str(ROOT / ".venv" / "bin" / "mqspec"), "--url", url, "apply", str(scenario), "--report", str(report)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listings: list[list[tuple[str, str]]] = []   # every listing of the queue's consumers the broker gave in full
    try:
        while process.poll() is None:
            listed = _consumers(vhost)
            if listed and "?" not in dict(listed):
                listings.append(listed)
            time.sleep(0.1)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    run = json.loads(report.read_text())
    if kind == "classic" and run["producers"]["p"]["nacked"]:
        # RabbitMQ 3.10 (and 3.11) sometimes crash a classic queue's process when its single active consumer
        # leaves (badmatch in rabbit_amqqueue_process:attempt_delivery, rabbitmq-server#5460): the publishes in
        # flight are nacked, the queue restarts empty and the waiting consumer never takes over
        pytest.xfail(f"the broker's classic queue crashed as the active consumer left (rabbitmq-server#5460): {out}")
    assert process.returncode == 0, out + err + f"the broker's listings: {list(dict.fromkeys(map(str, listings)))}"
    assert all([status for _, status in listed].count("single_active") <= 1 for listed in listings), listings
    both = next((sorted(listed) for listed in listings if len(listed) == 2), None)
    assert both is not None, f"the broker never listed both consumers in the 6 s before publishing: {listings}"
    assert sorted(status for _, status in both) == ["single_active", "waiting"], both
    first = next(name for name, status in both if status == "single_active")
    other = "b" if first == "a" else "a"
    consumers, series = run["consumers"], run["timeseries"]["consumers"]
    assert (consumers[first]["received"], consumers[other]["received"]) == (200, 100), consumers
    assert (consumers[first]["acked"], consumers[other]["acked"]) == (200, 100)
    first_seconds, other_seconds = _receiving(series[first]["received"]), _receiving(series[other]["received"])
    assert other_seconds[0] >= first_seconds[-1], f"{other} received only once {first} had left: {series}"
    assert queue_counts(url, "jobs") == (0, 0)
    stats = settled_queue_stats(vhost, "jobs", acks=300)
    redelivered = consumers["a"]["redelivered"] + consumers["b"]["redelivered"]
    # a copy the first consumer got after its 200th (prefetched before its basic.cancel) goes back, uncounted,
    # and comes to the other one redelivered; a classic queue counts both deliveries in deliver_get, a 3.10
    # quorum queue (observed) one of them
    assert (stats["ack"], stats["redeliver"]) == (300, redelivered), stats
    assert 300 <= stats["deliver_get"] <= 300 + redelivered, stats
