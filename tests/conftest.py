"""Shared fixtures: the real broker, a throwaway vhost per test, and the CLI run in-process.

Tests that stop, restart or cut off a broker use `private_node` or `private_cluster` (tests/nodes.py),
never the shared broker on 5672.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pika
import pytest
from typer.testing import CliRunner

from mqspec.broker.management import Management
from mqspec.cli import app
from mqspec.core.model import BrokerSettings
from mqspec.errors import MqspecError
from tests import nodes

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
AMQP_ROOT = "amqp://guest:guest@127.0.0.1:5672"


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def stderr_without_warnings(self) -> str:
        """stderr less the file's lint warnings, which every command prints (validate, plan and apply agree)."""
        return "".join(line for line in self.stderr.splitlines(keepends=True) if ": warning: " not in line)


def mqspec(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run the real CLI in-process and capture what a user would see."""
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Wait until `condition()` is true; fail naming `what` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(interval)


def queue_counts(url: str, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of a queue, straight from the broker (no statistics delay)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        method = connection.channel().queue_declare(queue, passive=True).method
        return method.message_count, method.consumer_count
    finally:
        connection.close()


def settled_queue_stats(vhost: str, queue: str, acks: int = 0) -> dict[str, int]:
    """deliver_get, redeliver and ack of a queue from the broker's statistics, once two reads 6 s apart agree
    and show at least `acks` acks: the statistics trail the deliveries by a few seconds (a cleanly closed
    channel's last ones by up to a whole emission interval). Only for channels that close cleanly: a killed
    channel's statistics since its last emission are dropped, never counted (test_counts_after_reconnects.py
    counts through the firehose instead). Fails after 60 s, with both reads."""
    path = f"http://127.0.0.1:15672/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}"

    def read() -> dict[str, int]:
        stats = httpx.get(path, auth=("guest", "guest")).json().get("message_stats", {})
        return {key: int(stats.get(key, 0)) for key in ("deliver_get", "redeliver", "ack")}

    previous = read()
    deadline = time.monotonic() + 60
    while True:
        time.sleep(6)
        current = read()
        if current == previous and current["ack"] >= acks:
            return current
        assert time.monotonic() < deadline, f"the broker's statistics did not settle: {previous} then {current}"
        previous = current


def vhost_url(vhost: str) -> str:
    return f"{AMQP_ROOT}/{quote(vhost, safe='')}"


@pytest.fixture(scope="session")
def management() -> Iterator[Management]:
    """The real broker's management API; a missing broker fails loudly (never skips)."""
    client = Management(BrokerSettings(urls=(vhost_url("/"),)))
    try:
        client.overview()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"RabbitMQ with the management plugin is required on 127.0.0.1 (run scripts/ensure-broker): {exc}",
                    pytrace=False)
    yield client
    client.close()


@pytest.fixture
def vhost(management: Management, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh vhost for this test alone, deleted afterwards."""
    name = f"mqspec-test-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
    management.create_vhost(name, "throwaway vhost for one mqspec test")
    management.set_permissions("guest", name)
    yield name
    management.delete_vhost(name)


@pytest.fixture
def url(vhost: str) -> str:
    return vhost_url(vhost)


@pytest.fixture(scope="session")
def private_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[nodes.Node]:
    """One private RabbitMQ node for this session, which a test may stop and restart (~10 s to boot)."""
    try:
        with nodes.private_cluster(tmp_path_factory.mktemp("private-node"), 1, "node") as cluster:
            yield cluster.nodes[0]
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@dataclass
class SessionCluster:
    cluster: nodes.Cluster
    baseline: dict[str, nodes.Limits]   # each node's memory watermark and disk limit as booted


@pytest.fixture(scope="session")
def session_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionCluster]:
    """Three private RabbitMQ nodes joined into one cluster for this session (~30 s to boot).

    Each node runs in its own network namespace (partition, delay and loss act on its link), with
    a 4 s net_ticktime so a cut-off node is noticed within seconds, and pauses while in a minority.
    """
    try:
        with nodes.private_cluster(tmp_path_factory.mktemp("private-cluster"), 3, "cluster", netns=True,
                                   net_ticktime=4) as cluster:
            yield SessionCluster(cluster, {n.name: nodes.limits(cluster, n) for n in cluster.nodes})
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def private_cluster(session_cluster: SessionCluster, request: pytest.FixtureRequest) -> nodes.Cluster:
    """The session's cluster, brought back before this test to the state every test starts from.

    A test may leave a node killed, stopped, still recovering, cut off or alarmed (it failed half-way, or
    its undo had not finished): `nodes.settle` repairs that (every node booted and in the cluster, no
    partition, no alarm, limits as booted, links healed); when it cannot, the cluster is built again.
    What was repaired is printed, so a failing test shows it, and logged in settle.log beside the node logs.
    """
    cluster, baseline = session_cluster.cluster, session_cluster.baseline
    began = time.monotonic()
    try:
        repaired = nodes.settle(cluster, baseline)
    except (nodes.localcluster.ClusterError, subprocess.TimeoutExpired) as exc:
        nodes.rebuild(cluster)
        repaired = [f"could not settle ({exc}): built again", *nodes.settle(cluster, baseline)]
    line = f"private cluster: settled in {time.monotonic() - began:.1f}s; repaired: {'; '.join(repaired) or 'nothing'}"
    print(line)
    with open(Path(cluster.base) / "settle.log", "a") as log:   # one line per test, kept with the node logs
        log.write(f"{request.node.nodeid}: {line}\n")
    _delete_vhosts(cluster, "mqspec-faults-")
    return cluster


def _cluster_admin(cluster: nodes.Cluster) -> Management:
    first = cluster.nodes[0]
    return Management(BrokerSettings(urls=(nodes.vhost_url(first, "/"),), management_url=first.management_url))


def _delete_vhosts(cluster: nodes.Cluster, prefix: str) -> None:
    """Throwaway vhosts an earlier test could not delete (a node was down when it ended)."""
    with _cluster_admin(cluster) as client:
        for found in client.get("/vhosts", "vhosts"):
            if str(found["name"]).startswith(prefix):
                client.delete_vhost(str(found["name"]))


@pytest.fixture
def private_url(private_node: nodes.Node, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh vhost on the private node for this test alone, as an AMQP URL."""
    name = f"mqspec-test-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
    with Management(BrokerSettings(urls=(nodes.vhost_url(private_node, "/"),),
                                   management_url=private_node.management_url)) as client:
        client.create_vhost(name, "throwaway vhost for one mqspec test")
        client.set_permissions("guest", name)
    yield nodes.vhost_url(private_node, name)
    with Management(BrokerSettings(urls=(nodes.vhost_url(private_node, "/"),),
                                   management_url=private_node.management_url)) as client:
        client.delete_vhost(name)


@pytest.fixture
def cluster_vhost(private_cluster: nodes.Cluster, session_cluster: SessionCluster) -> Iterator[str]:
    """A fresh vhost on the private cluster for this test alone (its nodes see it at once)."""
    name = f"mqspec-faults-{uuid.uuid4().hex[:8]}"
    with _cluster_admin(private_cluster) as client:
        client.create_vhost(name, "throwaway vhost for one cluster test")
        client.set_permissions("guest", name)
    yield name
    try:
        with _cluster_admin(private_cluster) as client:
            client.delete_vhost(name)
    except MqspecError:
        pass   # node 1 is still down or cut off: the next test's private_cluster deletes it once the cluster is whole


BROKER_FIXTURES = {"management", "vhost", "url", "private_node", "session_cluster", "private_cluster", "private_url",
                   "cluster_vhost"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if BROKER_FIXTURES & set(fixtures):
            item.add_marker(pytest.mark.broker)
