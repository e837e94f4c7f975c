"""A whole cluster in one file: several vhosts, users with hashes and limits, federation, shovels, cluster_name."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest

from tests.conftest import mqspec

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
                {{user: guest, vhost: {a}, configure: ".*", write: ".*", read: ".*"}}]
  global_parameters: [{{name: cluster_name, value: {prefix}-cluster}}]
  exchanges: [{{name: ex, vhost: {a}, type: fanout}}, {{name: fed.ex, vhost: {b}, type: topic}}]
  queues: [{{name: in, vhost: {a}}}, {{name: out, vhost: {a}}}, {{name: q, vhost: {c}}}]
  bindings: [{{exchange: ex, queue: in, vhost: {a}}}]
  federation_upstreams: [{{name: up, vhost: {b}, uri: "amqp:///{a}", prefetch_count: 100, ack_mode: on-confirm}}]
  policies: [{{name: fed, vhost: {b}, pattern: "^fed\\\\.", apply_to: exchanges, definition: {{federation-upstream: up}}}}]
  shovels: [{{name: mover, vhost: {a}, src_uri: "amqp:///{a}", src_queue: in, dest_uri: "amqp:///{a}", dest_queue: out}}]
"""
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def api() -> Iterator[httpx.Client]:
    with httpx.Client(base_url="http://127.0.0.1:15672", auth=("guest", "guest"), timeout=30) as client:
        yield client


@pytest.fixture
def prefix(api: httpx.Client) -> Iterator[str]:
    name = f"cl{uuid.uuid4().hex[:8]}"
    before = api.get("/api/global-parameters/cluster_name")
    original = before.json().get("value") if before.status_code == 200 else None
    yield name
    for v in ("a", "b", "c"):
        api.delete(f"/api/vhosts/{name}-{v}")
    api.delete(f"/api/users/{name}-u")
    if original is None:
        api.delete("/api/global-parameters/cluster_name")
    else:
        api.put("/api/global-parameters/cluster_name", json={"name": "cluster_name", "value": original})


def _running(api: httpx.Client, name: str) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        states = [s.get("state") for s in api.get("/api/shovels").json() if s.get("name") == name]
        if states == ["running"]:
            return True
        time.sleep(0.5)
    return False


def test_three_vhost_file_applies_shows_no_changes_and_exports_stably(
        api: httpx.Client, tmp_path: Path, prefix: str) -> None:
    path = _file(tmp_path, prefix)
    applied = mqspec("apply", str(path))
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert f"Applying to vhost '{prefix}-b':" in applied.stdout
    plan = mqspec("plan", str(path), "--detailed-exitcode")
    assert plan.exit_code == 0, plan.stdout
    assert plan.stdout.strip() == "No changes. Topology is up to date."
    assert api.get(f"/api/users/{prefix}-u").json()["password_hash"] == HASH
    assert any(e["user"] == f"{prefix}-u" and e["value"] == {"max-connections": 5}
               for e in api.get("/api/user-limits").json())
    assert api.get(f"/api/vhost-limits/{prefix}-a").json()[0]["value"] == {"max-queues": 50, "max-connections": 20}
    assert api.get("/api/global-parameters/cluster_name").json()["value"] == f"{prefix}-cluster"
    upstream = api.get(f"/api/parameters/federation-upstream/{prefix}-b/up").json()["value"]
    assert upstream == {"uri": f"amqp:///{prefix}-a", "prefetch-count": 100, "ack-mode": "on-confirm"}
    assert _running(api, "mover")
    _publish(f"{prefix}-a", "ex", 5)
    assert _depth_eventually(api, f"{prefix}-a", "out", 5)
    first = mqspec("export", str(path)).stdout
    assert first == mqspec("export", str(path)).stdout
    exported = json.loads(first)
    assert exported["users"][0]["password_hash"] == HASH
    assert {v["name"] for v in exported["vhosts"]} == {f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"}
    assert {(p["vhost"], p["component"], p["name"]) for p in exported["parameters"]} >= {
        (f"{prefix}-b", "federation-upstream", "up"), (f"{prefix}-a", "shovel", "mover")}


def test_policy_naming_an_undeclared_upstream_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fed.yaml"
    path.write_text("version: 1\nname: f\ntopology:\n  policies: [{name: p, pattern: x, definition: {federation-upstream: nope}}]\n")
    result = mqspec("validate", str(path))
    assert result.exit_code == 2
    assert ("policy 'p' names federation-upstream 'nope', which is not declared in vhost '/' (hint: declare it under "
            "topology.federation_upstreams, or as {name: nope, external: true} when it is managed elsewhere)") in result.output


def _publish(vhost: str, exchange: str, count: int) -> None:
    params = pika.URLParameters(f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
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
