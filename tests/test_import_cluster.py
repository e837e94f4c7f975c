"""import --from-definitions of a whole cluster's file: every vhost, users with hashes, parameters, stable output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mqspec.core.loader import load_bytes
from tests.conftest import mqspec

HASH = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
CLUSTER: dict[str, Any] = {
    "rabbit_version": "3.10.8",
    "vhosts": [{"name": "orders", "description": "order intake", "tags": ["team-a"]}, {"name": "audit"}],
    "users": [{"name": "app", "password_hash": HASH, "hashing_algorithm": "rabbit_password_hashing_sha256",
               "tags": ["monitoring"], "limits": {"max-connections": 10}}],
    "permissions": [{"user": "app", "vhost": "orders", "configure": "", "write": ".*", "read": "^$"}],
    "global_parameters": [{"name": "cluster_name", "value": "east"}, {"name": "internal_cluster_id", "value": "x"}],
    "parameters": [
        {"vhost": "orders", "component": "vhost-limits", "name": "limits", "value": {"max-queues": 100}},
        {"vhost": "audit", "component": "federation-upstream", "name": "up", "value": {"uri": "amqp://remote"}},
    ],
    "policies": [{"vhost": "audit", "name": "fed", "pattern": "^fed", "apply-to": "exchanges",
                  "definition": {"federation-upstream": "up"}, "priority": 0}],
    "exchanges": [{"name": "in", "vhost": "orders", "type": "topic", "durable": True, "auto_delete": False,
                   "internal": False, "arguments": {}},
                  {"name": "fed.x", "vhost": "audit", "type": "fanout", "durable": True, "auto_delete": False,
                   "internal": False, "arguments": {}}],
    "queues": [
        {"name": "work", "vhost": "orders", "durable": True, "auto_delete": False, "arguments": {"x-max-length": 5}},
        {"name": "${HOME}", "vhost": "orders", "durable": True, "auto_delete": False, "arguments": {}},
        {"name": "celeryev.05337a16-8a3c-4c2e-9f7e-0123456789ab", "vhost": "orders", "durable": False,
         "auto_delete": True, "arguments": {"x-message-ttl": 5000}},
        {"name": "worker1.celery.pidbox", "vhost": "orders", "durable": False, "auto_delete": False,
         "arguments": {"x-expires": 10000}},
        {"name": "amq.gen-abc", "vhost": "audit", "durable": False, "auto_delete": True, "arguments": {}},
    ],
    "bindings": [
        {"source": "in", "vhost": "orders", "destination": "work", "destination_type": "queue", "routing_key": "a.#",
         "arguments": {}},
        {"source": "in", "vhost": "orders", "destination": "worker1.celery.pidbox", "destination_type": "queue",
         "routing_key": "", "arguments": {}},
    ],
}


def write(tmp_path: Path, data: dict[str, Any], name: str = "defs.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def imported(tmp_path: Path, *args: str, data: dict[str, Any] = CLUSTER) -> tuple[dict[str, Any], str]:
    result = mqspec(*args, "import", "--from-definitions", write(tmp_path, data))
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)["topology"], result.stderr


def test_a_whole_definitions_file_comes_in_with_every_vhost_named_on_its_entities(tmp_path: Path) -> None:
    topology, _ = imported(tmp_path)
    assert topology["vhosts"] == [{"name": "audit"}, {"name": "orders", "description": "order intake",
                                                      "tags": ["team-a"], "limits": {"max_queues": 100}}]
    assert topology["users"] == [{"name": "app", "password_hash": HASH, "hashing_algorithm": "rabbit_password_hashing_sha256",
                                  "tags": ["monitoring"], "limits": {"max_connections": 10}}]
    assert topology["permissions"] == [{"user": "app", "configure": "", "write": ".*", "read": "^$", "vhost": "orders"}]
    assert topology["global_parameters"] == [{"name": "cluster_name", "value": "east"}]
    assert topology["federation_upstreams"] == [{"name": "up", "vhost": "audit", "uri": "amqp://remote"}]
    assert topology["policies"][0]["vhost"] == "audit"
    assert [(e["vhost"], e["name"]) for e in topology["exchanges"]] == [("audit", "fed.x"), ("orders", "in")]
    assert [(q["vhost"], q["name"]) for q in topology["queues"]] == [("orders", "$${HOME}"), ("orders", "work")]
    assert topology["bindings"] == [{"exchange": "in", "vhost": "orders", "queue": "work", "keys": ["a.#"]}]


def test_the_url_does_not_choose_what_is_imported(tmp_path: Path) -> None:
    plain, _ = imported(tmp_path)
    elsewhere, _ = imported(tmp_path, "--url", "amqp://guest:guest@127.0.0.1/orders")
    from_env = mqspec("import", "--from-definitions", write(tmp_path, CLUSTER),
                      env={"MQSPEC_URL": "amqp://guest:guest@127.0.0.1/somevhost"})
    assert plain == elsewhere == yaml.safe_load(from_env.stdout)["topology"]


def test_one_vhost_is_picked_with_vhost_and_a_missing_one_lists_those_the_file_has(tmp_path: Path) -> None:
    topology, _ = imported(tmp_path, data=CLUSTER)
    result = mqspec("import", "--from-definitions", write(tmp_path, CLUSTER), "--vhost", "orders")
    only = yaml.safe_load(result.stdout)["topology"]
    assert [v["name"] for v in only["vhosts"]] == ["orders"]
    assert {e["vhost"] for key in ("exchanges", "queues", "bindings", "permissions") for e in only[key]} == {"orders"}
    assert "federation_upstreams" not in only and "global_parameters" not in only
    assert [u["name"] for u in only["users"]] == ["app"]
    path = write(tmp_path, CLUSTER)
    missing = mqspec("import", "--from-definitions", path, "--vhost", "nope")
    assert (missing.exit_code, missing.stdout, missing.stderr) == (
        2, "", f"error: {path} has no vhost 'nope'; it has vhosts 'audit', 'orders'\n")
    assert topology != only


def test_transient_queues_are_left_out_with_their_bindings_and_counted(tmp_path: Path) -> None:
    topology, stderr = imported(tmp_path)
    names = {q["name"] for q in topology["queues"]}
    assert not names & {"amq.gen-abc", "worker1.celery.pidbox", "celeryev.05337a16-8a3c-4c2e-9f7e-0123456789ab"}
    assert ("note: left out 3 transient queues and their bindings (exclusive, server-named, or auto-deleting or "
            "expiring with generated names): amq.gen-abc, celeryev.05337a16-8a3c-4c2e-9f7e-0123456789ab, "
            "worker1.celery.pidbox\n") in stderr


def test_the_output_is_the_same_whatever_the_order_of_the_file(tmp_path: Path) -> None:
    shuffled = {key: list(reversed(value)) if isinstance(value, list) else value for key, value in reversed(CLUSTER.items())}
    first = mqspec("import", "--from-definitions", write(tmp_path, CLUSTER, "a.json"), "--name", "n")
    second = mqspec("import", "--from-definitions", write(tmp_path, shuffled, "b.json"), "--name", "n")
    assert first.stdout.replace("a.json", "x") == second.stdout.replace("b.json", "x")


def test_a_dollar_in_a_name_loads_back_as_itself(tmp_path: Path) -> None:
    result = mqspec("import", "--from-definitions", write(tmp_path, CLUSTER))
    loaded = load_bytes(result.stdout.encode(), "imported.yaml", env={"HOME": "/root"})
    assert loaded.scenario is not None, loaded.problems
    queues = {q.name for t in loaded.scenario.every_vhost() for q in t.queues}
    assert queues == {"${HOME}", "work"}
    users = loaded.scenario.topology.users
    assert (users[0].password_hash, dict(users[0].limits)) == (HASH, {"max_connections": 10})


def test_what_mqspec_cannot_represent_is_named_in_a_warning(tmp_path: Path) -> None:
    data = {**CLUSTER, "extras": [], "users": [*CLUSTER["users"], {"name": "nohash", "tags": ""}],
            "vhosts": [*CLUSTER["vhosts"], {"name": "odd", "default_queue_type": "weird"}]}
    _, stderr = imported(tmp_path, data=data)
    assert "warning: 'extras' is not imported: mqspec has no such section\n" in stderr
    assert ("warning: user 'nohash' has no password_hash in the file: it is imported without a password (it cannot log "
            "in with one until you set it)\n") in stderr
    assert "warning: vhost 'odd': default queue type 'weird' is not imported (not one of classic, quorum, stream)\n" in stderr
