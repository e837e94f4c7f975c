"""no_loss counts what the broker discards, and `received` says how many deliveries were foreign."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pika

from tests.conftest import Result, mqspec, queue_counts


def apply(tmp_path: Path, url: str, text: str) -> tuple[Result, dict[str, Any]]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(text)
    report = tmp_path / "report.json"
    result = mqspec("--url", url, "apply", str(scenario), "--report", str(report))
    return result, json.loads(report.read_text()) if report.exists() else {}


REJECTING = """version: 1
name: rejecting
topology:
  queues: [{name: work, durable: false}]
workload:
  producers: [{name: p, queue: work, messages: 20, confirm: 10}]
  consumers: [{name: picky, queue: work, reject: 0.25}]
expect:
  - {no_loss: NO_LOSS}
"""


def test_no_loss_fails_on_messages_the_broker_discarded_after_a_reject(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, REJECTING.replace("NO_LOSS", "true"))
    assert result.exit_code == 1, result.output
    # independent: nothing is left in the queue, so the 5 rejected messages are gone for good
    assert queue_counts(url, "work")[0] == 0
    assert report["consumers"]["picky"]["discarded"] == 5
    assert ("FAIL no loss: every confirmed (or published, without confirms) message was consumed: expected 0, got 5 "
            "(5 discarded by the broker: rejected with requeue: false on a queue without a dead-letter exchange "
            "('picky' 5); allow them with no_loss: {allow_discarded: true})") in [line.strip() for line in result.stdout.splitlines()]
    assert "accounting: 20 messages expected, 0 lost, 0 duplicates, 5 discarded" in result.stdout


def test_no_loss_can_allow_discarded_messages(tmp_path: Path, url: str) -> None:
    result, report = apply(tmp_path, url, REJECTING.replace("NO_LOSS", "{allow_discarded: true}"))
    assert result.exit_code == 0, result.output
    assert report["consumers"]["picky"]["discarded"] == 5


def test_rejects_into_a_dead_letter_exchange_are_not_discarded(tmp_path: Path, url: str) -> None:
    text = REJECTING.replace("NO_LOSS", "true").replace(
        "  queues: [{name: work, durable: false}]",
        "  exchanges: [{name: dlx, type: fanout, durable: false}]\n"
        "  queues: [{name: work, durable: false, dead_letter: {exchange: dlx}}, {name: dead, durable: false}]\n"
        "  bindings: [{exchange: dlx, queue: dead}]")
    result, report = apply(tmp_path, url, text)
    assert result.exit_code == 0, result.output
    assert report["consumers"]["picky"]["discarded"] == 0
    assert queue_counts(url, "dead")[0] == 5


def test_a_received_count_off_by_foreign_messages_says_so(tmp_path: Path, url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare("inbox", durable=False)
    for n in range(6):
        channel.basic_publish("", "inbox", f"left over {n}".encode())
    connection.close()
    result, report = apply(tmp_path, url, """version: 1
name: leftovers
topology:
  queues: [{name: inbox, durable: false}]
workload:
  producers: [{name: p, queue: inbox, messages: 10, confirm: 10}]
  consumers: [{name: reader, queue: inbox}]
expect:
  - {consumer: reader, received: 10}
""")
    assert result.exit_code == 1, result.output
    assert report["consumers"]["reader"]["foreign"] == 6
    assert ("FAIL consumer 'reader' received 10: expected 10, got 16 (6 foreign: left over from earlier runs or other "
            "publishers)") in [line.strip() for line in result.stdout.splitlines()]
