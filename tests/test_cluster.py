"""A whole cluster in one file: several vhosts, users with hashes and limits, federation, shovels, cluster_name."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest

from scripts import localcluster
from tests import nodes
from tests.conftest import ROOT, mqspec

pytestmark = pytest.mark.broker

HASH = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"


def _file(tmp_path: Path, prefix: str) -> Path:
    a, b, c = f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"
    text = f"""
version: 1
name: cluster
topology:
  vhosts: [{{name: {a}, description: first, tags: [t1], limits: {{max_queues: 50, max_connections: 20}}}}, {{name: {b}}}, {{name: {c}}}]
  users: [{{name: {prefix}-u, password_hash: "{HASH}", tags: [management], limits: {{max_connections: 5}}}}]
  permissions: [{{user: {prefix}-u, vhost: {a}, configure: ".*", write: ".*", read: ".*"}},
                {{user: guest, vhost: {a}, configure: ".*", write: ".*", read: ".*"}},
                {{user: guest, vhost: {b}, configure: ".*", write: ".*", read: ".*"}},
                {{user: guest, vhost: {c}, configure: ".*", write: ".*", read: ".*"}}]
  global_parameters: [{{name: cluster_name, value: {prefix}-cluster}}]
  exchanges: [{{name: ex, vhost: {a}, type: fanout}}, {{name: fed.ex, vhost: {a}, type: topic}}, {{name: fed.ex, vhost: {b}, type: topic}}]
  queues: [{{name: in, vhost: {a}}}, {{name: out, vhost: {a}}}, {{name: q, vhost: {c}}}]
  bindings: [{{exchange: ex, queue: in, vhost: {a}}}]
  federation_upstreams: [{{name: up, vhost: {b}, uri: "amqp:///{a}", prefetch_count: 100, ack_mode: on-confirm}}]
  policies: [{{name: fed, vhost: {b}, pattern: "^fed\\\\.", apply_to: exchanges, definition: {{federation-upstream: up}}}}]
  shovels: [{{name: mover, vhost: {a}, src_uri: "amqp:///{a}", src_queue: in, dest_uri: "amqp:///{a}", dest_queue: out}}]
"""
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def empty_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[nodes.Node]:
    """A private node of its own, empty, with the federation and shovel plugins: cluster_name may change on it."""
    try:
        with nodes.private_cluster(tmp_path_factory.mktemp("empty-broker"), 1, "cluster",
                                   plugins=localcluster.CLUSTER_PLUGINS) as cluster:
            yield cluster.nodes[0]
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def api(empty_broker: nodes.Node) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=empty_broker.management_url, auth=("guest", "guest"), timeout=30) as client:
        yield client


def _running(api: httpx.Client, name: str) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = [s.get("state") for s in api.get("/api/shovels").json() if s.get("name") == name]
        if states == ["running"]:
            return True
        time.sleep(0.5)
    return False


def test_three_vhost_file_applies_to_an_empty_broker_shows_no_changes_and_exports_what_the_broker_holds(
        empty_broker: nodes.Node, api: httpx.Client, tmp_path: Path) -> None:
    prefix = f"cl{uuid.uuid4().hex[:8]}"
    path = _file(tmp_path, prefix)
    on = ("--url", nodes.vhost_url(empty_broker, "/"), "--management-url", empty_broker.management_url)
    assert {v["name"] for v in api.get("/api/vhosts").json()} == {"/"}          # empty: nothing but the default vhost
    applied = mqspec(*on, "apply", str(path))
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert f"Applying to vhost '{prefix}-b':" in applied.stdout
    plan = mqspec(*on, "plan", str(path), "--detailed-exitcode")
    assert (plan.exit_code, plan.stdout.strip()) == (0, "No changes. Topology is up to date."), plan.output
    assert api.get(f"/api/users/{prefix}-u").json()["password_hash"] == HASH
    assert any(e["user"] == f"{prefix}-u" and e["value"] == {"max-connections": 5}
               for e in api.get("/api/user-limits").json())
    assert api.get(f"/api/vhost-limits/{prefix}-a").json()[0]["value"] == {"max-queues": 50, "max-connections": 20}
    assert api.get("/api/global-parameters/cluster_name").json()["value"] == f"{prefix}-cluster"
    upstream = api.get(f"/api/parameters/federation-upstream/{prefix}-b/up").json()["value"]
    assert upstream == {"uri": f"amqp:///{prefix}-a", "prefetch-count": 100, "ack-mode": "on-confirm"}
    assert _running(api, "mover")
    _publish(nodes.vhost_url(empty_broker, f"{prefix}-a"), "ex", 5)
    assert _depth_eventually(api, f"{prefix}-a", "out", 5)
    first = mqspec(*on, "export", str(path)).stdout
    assert first == mqspec(*on, "export", str(path)).stdout
    exported, held = json.loads(first), api.get("/api/definitions").json()
    assert _semantic(exported, prefix) == _semantic(held, prefix, api.get("/api/vhosts").json())
    assert exported["global_parameters"] == [{"name": "cluster_name", "value": f"{prefix}-cluster"}]


def _semantic(definitions: dict[str, Any], prefix: str, vhosts: list[dict[str, Any]] | None = None) -> dict[str, list[str]]:
    """The file's part of a definitions document, each section sorted, defaults filled in (scripts/conformance.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import conformance
    finally:
        sys.path.pop(0)
    if vhosts is not None:
        definitions = conformance.with_vhost_metadata(definitions, vhosts)
    found: dict[str, list[str]] = conformance.normalized(definitions, f"{prefix}-")
    return found


def test_policy_naming_an_undeclared_upstream_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fed.yaml"
    path.write_text("version: 1\nname: f\ntopology:\n  policies: [{name: p, pattern: x, definition: {federation-upstream: nope}}]\n")
    result = mqspec("validate", str(path))
    assert result.exit_code == 2
    assert ("policy 'p' names federation-upstream 'nope', which is not declared in vhost '/' (hint: declare it under "
            "topology.federation_upstreams, or as {name: nope, external: true} when it is managed elsewhere)") in result.output


def _publish(url: str, exchange: str, count: int) -> None:
    params = pika.URLParameters(url)
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        for i in range(count):
            channel.basic_publish(exchange, "", f"m{i}".encode())


def _depth_eventually(api: httpx.Client, vhost: str, queue: str, expected: int) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found: dict[str, Any] = api.get(f"/api/queues/{vhost}/{queue}").json()
        if found.get("messages") == expected:
            return True
        time.sleep(0.5)
    return False
