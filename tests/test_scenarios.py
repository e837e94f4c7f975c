"""Every shipped scenario passes on the real broker; deliberately wrong ones fail with exit 1 and say why.

Each scenario runs in its own throwaway vhost through the real CLI (`mqspec --url URL apply FILE`).
A scenario that restarts its broker runs on a private node (tests/nodes.py), never on the shared one.
The files under tests/wrong_expectations/ carry their exact failure lines in `# expect-fail:`
comments (and lines that must still pass in `# expect-pass:`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pika
import pytest
import yaml

from tests.conftest import ROOT, SCENARIOS, mqspec

WRONG = ROOT / "tests" / "wrong_expectations"


def _scenarios() -> list[Path]:
    return sorted(SCENARIOS.glob("*.yaml"))


def _single_broker_scenarios() -> list[Path]:
    """The cluster scenarios (broker.nodes) run in tests/test_cluster_faults.py, with independent counts."""
    return [path for path in _scenarios() if not _on_a_cluster(path)]


def test_all_tutorials_are_shipped() -> None:
    names = [path.name[:2] for path in _scenarios()]
    assert names[:9] == ["01", "02", "03", "04", "05", "06", "07", "08", "09"]


def _restarts_the_broker(path: Path) -> bool:
    return "action: restart_broker" in path.read_text()


def _on_a_cluster(path: Path) -> bool:
    return "broker" in (data := yaml.safe_load(path.read_text())) and "nodes" in data["broker"]


def _broker_for(path: Path, request: pytest.FixtureRequest) -> list[str]:
    """--url (and --management-url) of a fresh vhost: on the private node if the scenario restarts its broker."""
    if _restarts_the_broker(path):
        node = request.getfixturevalue("private_node")
        return ["--url", request.getfixturevalue("private_url"), "--management-url", node.management_url]
    return ["--url", request.getfixturevalue("url")]


@pytest.mark.broker
@pytest.mark.parametrize("path", _single_broker_scenarios(), ids=lambda p: p.stem)
def test_scenario_passes_on_the_real_broker(path: Path, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    result = mqspec(*_broker_for(path, request), "apply", str(path), "--report", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["passed"] is True
    assert report["expectations"] and all(e["passed"] for e in report["expectations"])
    assert "expectations passed." in result.stdout
    if path.stem == "09-durability":
        # the restart really happened mid-run: both sides of the order flow reconnected
        assert report["faults"][0].startswith("restart_broker at 0.5s: broker back after")
        assert report["producers"]["order-writer"]["reconnects"] >= 1
        assert report["consumers"]["order-reader"]["reconnects"] >= 1
        assert report["consumers"]["order-reader"]["lost"] == 0


def _lines(path: Path, tag: str) -> list[str]:
    prefix = f"# {tag}: "
    return [line[len(prefix):] for line in path.read_text().splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("path", sorted(WRONG.glob("*.yaml")), ids=lambda p: p.stem)
def test_wrong_expectation_fails_with_a_precise_explanation(path: Path, url: str) -> None:
    result = mqspec("--url", url, "apply", str(path))
    assert result.exit_code == 1, result.output
    shown = [line.strip() for line in result.stdout.splitlines()]
    for line in _lines(path, "expect-fail") + _lines(path, "expect-pass"):
        assert line in shown, f"missing line: {line}\n{result.stdout}"
    assert _lines(path, "expect-fail")


def test_routes_through_bindings_made_elsewhere_are_checked_live(url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare("topic_logs", "topic", durable=False)
    for queue in ("Q1", "Q2"):
        channel.queue_declare(queue, durable=False)
    channel.queue_bind("Q1", "topic_logs", "*.orange.*")
    channel.queue_bind("Q2", "topic_logs", "*.*.rabbit")
    channel.queue_bind("Q2", "topic_logs", "lazy.#")
    connection.close()
    result = mqspec("--url", url, "apply", str(ROOT / "tests" / "wrong_route_external.yaml"))
    assert result.exit_code == 1, result.output
    shown = [line.strip() for line in result.stdout.splitlines()]
    assert "PASS route: 'quick.orange.rabbit' on topic_logs reaches Q1, Q2" in shown
    assert ("FAIL route: 'lazy.brown.fox' on topic_logs reaches Q1: expected [\"Q1\"], got [\"Q2\"] "
            "(did not reach Q1; also reached Q2)") in shown
    assert ("FAIL route: 'quick.brown.fox' on topic_logs reaches Q2: expected [\"Q2\"], got [] "
            "(did not reach Q2; returned as unroutable)") in shown
    assert "1 of 3 expectations passed." in shown


def test_route_probes_leave_no_message_behind(url: str, tmp_path: Path) -> None:
    scenario = tmp_path / "named.yaml"
    scenario.write_text("""version: 1
name: named-queues
topology:
  exchanges: [{name: topic_logs, type: topic, durable: false}]
  queues: [{name: Q1, durable: false}, {name: Q2, durable: false}]
  bindings:
    - {exchange: topic_logs, queue: Q1, keys: ["*.orange.*"]}
    - {exchange: topic_logs, queue: Q2, keys: ["*.*.rabbit", "lazy.#"]}
workload:
  producers: [{name: emit, exchange: topic_logs, routing_keys: [quick.orange.fox], messages: 10, confirm: 10}]
  consumers: [{name: q1-reader, queue: Q1}]
expect:
  - {consumer: q1-reader, received: 10}
  - routes:
      - {exchange: topic_logs, key: quick.orange.rabbit, to: [Q1, Q2]}
      - {exchange: topic_logs, key: lazy.brown.fox, to: [Q2]}
""")
    result = mqspec("--url", url, "apply", str(scenario))
    assert result.exit_code == 0, result.output
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    depths = [channel.queue_declare(queue, passive=True).method.message_count for queue in ("Q1", "Q2")]
    connection.close()
    assert depths == [0, 0]
