"""plan / apply / destroy / export / import against the real broker, each test in its own vhost."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from mqspec.broker.management import Management, q
from tests.conftest import AMQP_ROOT, mqspec, vhost_url

ORDERS = """\
version: 1
name: orders
topology:
  exchanges:
    - {name: orders, type: topic}
    - {name: audit, type: fanout}
    - {name: match, type: headers}
  queues:
    - {name: orders.q, message_ttl: TTL, dead_letter: {exchange: audit}}
    - {name: audit.q, max_length: 1000, overflow: reject-publish}
    - {name: votes, type: quorum, delivery_limit: 3}
  bindings:
    - {exchange: orders, queue: orders.q, keys: ["order.#", "refund.*"]}
    - {exchange: orders, to_exchange: audit}
    - {exchange: audit, queue: audit.q}
    - {exchange: match, queue: votes, match: any, headers: {kind: vote, weight: 2}}
  policies:
    - {name: audit-limit, pattern: "^audit", apply_to: queues, definition: {max-length: 5000}}
  operator_policies:
    - {name: cap, pattern: ".*", apply_to: queues, priority: 1, definition: {max-length: 100000}}
"""


def scenario(tmp_path: Path, text: str, name: str = "scenario.yaml", ttl: str = "60s") -> str:
    path = tmp_path / name
    path.write_text(text.replace("TTL", ttl))
    return str(path)


def definitions(management: Management, vhost: str) -> dict[str, Any]:
    result: dict[str, Any] = management.get(f"/definitions/{q(vhost)}", "definitions")
    return result


def publish(url: str, queue: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    for i in range(count):
        channel.basic_publish("", queue, f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
    connection.close()


def ready(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    count: int = connection.channel().queue_declare(queue, passive=True).method.message_count
    connection.close()
    return count


@pytest.fixture
def other_vhost(management: Management, vhost: str) -> Iterator[str]:
    name = f"{vhost}-copy"
    management.create_vhost(name)
    management.set_permissions("guest", name)
    yield name
    management.delete_vhost(name)


def test_plan_apply_plan_round_trip_ends_with_no_changes(url: str, tmp_path: Path) -> None:
    file = scenario(tmp_path, ORDERS)
    before = mqspec("--url", url, "plan", file, "--detailed-exitcode")
    assert before.exit_code == 2, before.output
    assert "Plan: 13 to create, 0 to update, 0 to replace, 0 to delete." in before.stdout
    applied = mqspec("--url", url, "apply", file, "--topology-only")
    assert applied.exit_code == 0, applied.output
    assert applied.stdout.endswith("Apply complete: 13 created.\n")
    again = mqspec("--url", url, "apply", file, "--topology-only")
    assert (again.exit_code, again.stdout) == (0, "No changes. Topology is up to date.\n")
    after = mqspec("--url", url, "plan", file, "--detailed-exitcode")
    assert (after.exit_code, after.stdout) == (0, "No changes. Topology is up to date.\n")


def test_numbers_and_booleans_reach_the_broker_with_their_types(url: str, vhost: str, management: Management,
                                                                tmp_path: Path) -> None:
    file = scenario(tmp_path, """\
version: 1
name: types
topology:
  queues:
    - {name: typed, message_ttl: 1500ms, single_active_consumer: true, arguments: {x-priority-hint: 2.5, team: "7"}}
""")
    assert mqspec("--url", url, "apply", file, "--topology-only").exit_code == 0
    [queue] = definitions(management, vhost)["queues"]
    assert queue["arguments"] == {"x-message-ttl": 1500, "x-single-active-consumer": True, "x-priority-hint": 2.5,
                                  "team": "7"}


def test_binding_deleted_behind_mqspecs_back_is_drift_and_apply_restores_it(url: str, vhost: str,
                                                                             management: Management, tmp_path: Path) -> None:
    file = scenario(tmp_path, ORDERS)
    assert mqspec("--url", url, "apply", file, "--topology-only").exit_code == 0
    management.delete(f"/bindings/{q(vhost)}/e/orders/q/orders.q/{q('refund.*')}", "binding")
    drift = mqspec("--url", url, "plan", file, "--detailed-exitcode")
    assert drift.exit_code == 2
    assert "  + binding 'orders' → queue 'orders.q' (key 'refund.*')\n" in drift.stdout
    assert "Plan: 1 to create, 0 to update, 0 to replace, 0 to delete." in drift.stdout
    assert mqspec("--url", url, "apply", file, "--topology-only").exit_code == 0
    assert mqspec("--url", url, "plan", file, "--detailed-exitcode").exit_code == 0


def test_replace_of_a_queue_holding_messages_is_refused_and_the_messages_stay(url: str, tmp_path: Path) -> None:
    assert mqspec("--url", url, "apply", scenario(tmp_path, ORDERS), "--topology-only").exit_code == 0
    publish(url, "orders.q", 3)
    changed = scenario(tmp_path, ORDERS, "changed.yaml", ttl="120s")
    plan = mqspec("--url", url, "plan", changed)
    assert "-/+ queue 'orders.q' (holds 3 messages, 0 consumers)\n      x-message-ttl 60000 → 120000\n" in plan.stdout
    refused = mqspec("--url", url, "apply", changed, "--topology-only")
    assert refused.exit_code == 1
    assert ("error: refusing to replace queue 'orders.q' (x-message-ttl 60000 → 120000): replacing deletes it and "
            "declares it again; rerun with --allow-replace") in refused.stderr
    consented = mqspec("--url", url, "apply", changed, "--topology-only", "--allow-replace")
    assert consented.exit_code == 1
    assert consented.stderr_without_warnings == ("error: refusing to replace queue 'orders.q': it holds 3 messages that would be lost; "
                                "rerun with --migrate to move them to the new queue, or with --force to discard them\n"
                                "Nothing was changed.\n")
    assert ready(url, "orders.q") == 3


def test_consented_replace_restores_every_binding_in_the_same_run(url: str, vhost: str, management: Management,
                                                                  tmp_path: Path) -> None:
    assert mqspec("--url", url, "apply", scenario(tmp_path, ORDERS), "--topology-only").exit_code == 0
    # A binding made outside the file: a replace must not drop it either.
    management.post(f"/bindings/{q(vhost)}/e/amq.topic/q/orders.q", "binding", {"routing_key": "legacy.#", "arguments": {}})
    publish(url, "orders.q", 2)
    changed = scenario(tmp_path, ORDERS, "changed.yaml", ttl="120s")
    result = mqspec("--url", url, "apply", changed, "--topology-only", "--allow-replace", "--force")
    assert result.exit_code == 0, result.output
    assert "  + binding 'amq.topic' → queue 'orders.q' (key 'legacy.#')\n" \
           "      not in the file, but it exists: restored after replacing queue 'orders.q'\n" in result.stdout
    assert result.stdout.endswith("Apply complete: 3 created, 1 replaced.\n")
    live = definitions(management, vhost)
    assert [x["arguments"]["x-message-ttl"] for x in live["queues"] if x["name"] == "orders.q"] == [120000]
    assert sorted(b["routing_key"] for b in live["bindings"] if b["destination"] == "orders.q") == [
        "legacy.#", "order.#", "refund.*"]
    assert mqspec("--url", url, "plan", changed, "--detailed-exitcode").exit_code == 0


def test_arguments_the_broker_does_not_compare_show_as_drift(url: str, tmp_path: Path) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_declare("jobs", durable=True)
    connection.close()
    file = scenario(tmp_path, "version: 1\nname: t\ntopology:\n  queues:\n"
                              "    - {name: jobs, arguments: {x-consumer-timeout: 60000, owner: billing}}\n")
    plan = mqspec("--url", url, "plan", file)
    assert "-/+ queue 'jobs' (holds 0 messages, 0 consumers)\n" \
           "      owner (absent) → \"billing\"\n      x-consumer-timeout (absent) → 60000\n" in plan.stdout


def test_prune_deletes_undeclared_entities_but_not_queues_holding_messages(url: str, vhost: str, management: Management,
                                                                          tmp_path: Path) -> None:
    file = scenario(tmp_path, "version: 1\nname: t\ntopology:\n  queues:\n    - {name: kept}\n")
    assert mqspec("--url", url, "apply", file, "--topology-only").exit_code == 0
    for name in ("stray", "empty-stray"):
        management.put(f"/queues/{q(vhost)}/{name}", "queue", {"durable": True})
    publish(url, "stray", 2)
    assert mqspec("--url", url, "plan", file, "--detailed-exitcode").exit_code == 0
    pruning = mqspec("--url", url, "plan", file, "--prune")
    assert "  - queue 'stray' (holds 2 messages, 0 consumers)\n" in pruning.stdout
    refused = mqspec("--url", url, "apply", file, "--topology-only", "--prune")
    assert (refused.exit_code, refused.stderr) == (
        1, "error: refusing to delete queue 'stray': it holds 2 messages that would be lost; "
           "rerun with --force to discard them\nNothing was changed.\n")
    assert ready(url, "stray") == 2
    forced = mqspec("--url", url, "apply", file, "--topology-only", "--prune", "--force")
    assert forced.exit_code == 0, forced.output
    assert [x["name"] for x in definitions(management, vhost)["queues"]] == ["kept"]


def test_destroy_deletes_exactly_what_the_file_declares(url: str, vhost: str, management: Management,
                                                        tmp_path: Path) -> None:
    file = scenario(tmp_path, ORDERS)
    assert mqspec("--url", url, "apply", file, "--topology-only").exit_code == 0
    management.put(f"/queues/{q(vhost)}/not-mine", "queue", {"durable": True})
    publish(url, "audit.q", 1)
    dry = mqspec("--url", url, "destroy", file, "--dry-run")
    assert dry.exit_code == 0
    assert dry.stdout.startswith("Would delete from vhost '")
    assert dry.stdout.endswith("Plan: 0 to create, 0 to update, 0 to replace, 13 to delete.\nDry run: nothing was deleted.\n")
    refused = mqspec("--url", url, "destroy", file)
    assert refused.exit_code == 1
    assert "error: refusing to delete queue 'audit.q': it holds 1 message that would be lost; " \
           "rerun with --force to discard them\n" in refused.stderr
    assert len(definitions(management, vhost)["queues"]) == 4
    done = mqspec("--url", url, "destroy", file, "--force")
    assert done.exit_code == 0, done.output
    assert done.stdout.endswith("Destroy complete: 13 deleted.\n")
    live = definitions(management, vhost)
    assert ([x["name"] for x in live["queues"]], live["exchanges"], live["bindings"], live["policies"]) == (
        ["not-mine"], [], [], [])
    exchanges = management.get(f"/exchanges/{q(vhost)}", "exchanges")
    assert {"", "amq.direct", "amq.topic", "amq.fanout", "amq.headers", "amq.match"} <= {e["name"] for e in exchanges}
    assert mqspec("--url", url, "destroy", file).stdout == "Nothing to destroy: none of the entities the file declares exist.\n"


def test_declared_vhost_user_and_permissions_are_created_compared_and_destroyed(management: Management,
                                                                                tmp_path: Path) -> None:
    name = f"mqspec-test-owned-{uuid.uuid4().hex[:8]}"
    user = f"mqspec-test-app-{uuid.uuid4().hex[:8]}"
    file = scenario(tmp_path, f"""\
version: 1
name: owned
topology:
  vhosts:
    - {{name: {name}, description: owned by a test, tags: [test], limits: {{max_queues: 50}}}}
  users:
    - {{name: {user}, password: "${{APP_PASSWORD}}", tags: [monitoring]}}
  permissions:
    - {{user: {user}, configure: "^app", write: ".*", read: ".*"}}
  queues:
    - {{name: app.q}}
""")
    env = {"APP_PASSWORD": "correct horse"}
    try:
        created = mqspec("--url", vhost_url(name), "apply", file, "--topology-only", env=env)
        assert created.exit_code == 0, created.output
        assert "correct horse" not in created.output
        assert management.get(f"/vhost-limits/{q(name)}", "limits") == [{"vhost": name, "value": {"max-queues": 50}}]
        assert mqspec("--url", vhost_url(name), "plan", file, "--detailed-exitcode", env=env).exit_code == 0
        changed = mqspec("--url", vhost_url(name), "plan", file, env={"APP_PASSWORD": "battery staple"})
        assert f"  ~ user '{user}'\n      password differs\n" in changed.stdout
        gone = mqspec("--url", vhost_url(name), "destroy", file, env=env)
        assert gone.exit_code == 0, gone.output
        assert gone.stdout.endswith("Destroy complete: 4 deleted.\n")
        assert not management.vhost_exists(name)
        assert management.get(f"/users/{q(user)}", "user", missing_ok=True) is None
    finally:
        management.delete_vhost(name)
        management.delete(f"/users/{q(user)}", "user")


def test_restricted_user_applies_inside_its_permissions_and_is_refused_by_name_outside(
        url: str, vhost: str, management: Management, tmp_path: Path) -> None:
    user = f"mqspec-test-restricted-{uuid.uuid4().hex[:8]}"
    management.put(f"/users/{q(user)}", "user", {"password": "pw-restricted", "tags": "management"})
    management.set_permissions(user, vhost, r"^app\.", r"^app\.", r"^app\.")
    restricted = f"amqp://{user}:pw-restricted@127.0.0.1:5672/{q(vhost)}"
    file = scenario(tmp_path, """\
version: 1
name: restricted
topology:
  exchanges: [{name: app.x, type: direct}]
  queues: [{name: app.q}, {name: other.q}]
  bindings:
    - {exchange: app.x, queue: app.q, keys: [a]}
    - {exchange: app.x, queue: other.q, keys: [o]}
""")
    try:
        partial = mqspec("--url", restricted, "apply", file, "--topology-only")
        assert partial.exit_code == 3
        assert partial.stderr == (f"error: access refused: user '{user}' may not declare queue 'other.q' in vhost "
                                  f"'{vhost}' (Access refused.)\n")
        assert "Apply incomplete: 3 of 5 changes done.\n" in partial.stdout
        assert "  not attempted: + binding 'app.x' → queue 'other.q' (key 'o'): skipped because queue 'other.q' failed\n" \
               in partial.stdout
        management.set_permissions(user, vhost, ".*", ".*", ".*")
        rerun = mqspec("--url", restricted, "apply", file, "--topology-only")
        assert rerun.exit_code == 0, rerun.output
        assert rerun.stdout.endswith("Apply complete: 2 created.\n")
        assert mqspec("--url", restricted, "plan", file, "--detailed-exitcode").exit_code == 0
    finally:
        management.delete(f"/users/{q(user)}", "user")


def test_many_new_entities_go_in_bulk_and_a_refused_one_is_named(url: str, vhost: str, management: Management,
                                                                 tmp_path: Path) -> None:
    queues = "".join(f"    - {{name: bulk.{i}, message_ttl: 60s}}\n" for i in range(30))
    bindings = "".join(f"    - {{exchange: bulk, queue: bulk.{i}, keys: ['k.{i}']}}\n" for i in range(30))
    bad = "    - {name: bad, arguments: {x-max-length: -1}}\n"     # valid to mqspec, refused by the broker
    text = f"version: 1\nname: bulk\ntopology:\n  exchanges: [{{name: bulk, type: topic}}]\n  queues:\n{queues}{bad}" \
           f"  bindings:\n{bindings}"
    file = scenario(tmp_path, text)
    first = mqspec("--url", url, "apply", file, "--topology-only")
    assert first.exit_code == 1
    assert first.stderr == (f"error: precondition failed (while trying to declare queue 'bad') in vhost '{vhost}': "
                            f"PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'bad' in vhost '{vhost}': "
                            "{value_negative,-1}\n")
    assert "Apply incomplete: 61 of 62 changes done.\n" in first.stdout
    live = definitions(management, vhost)
    assert (len(live["queues"]), len(live["bindings"])) == (30, 30)
    fixed = scenario(tmp_path, text.replace("x-max-length: -1", "x-max-length: 1000"), "fixed.yaml")
    assert mqspec("--url", url, "apply", fixed, "--topology-only").stdout.endswith("Apply complete: 1 created.\n")
    assert mqspec("--url", url, "plan", fixed, "--detailed-exitcode").exit_code == 0


def test_export_imported_into_a_fresh_vhost_plans_no_changes(url: str, vhost: str, management: Management,
                                                             tmp_path: Path) -> None:
    file = scenario(tmp_path, ORDERS)
    out = tmp_path / "definitions.json"
    exported = mqspec("export", file, "-o", str(out))
    assert exported.exit_code == 0, exported.output
    management.post(f"/definitions/{q(vhost)}", "definitions", json.loads(out.read_text()))
    plan = mqspec("--url", url, "plan", file, "--detailed-exitcode")
    assert (plan.exit_code, plan.stdout) == (0, "No changes. Topology is up to date.\n")


def test_import_from_broker_reproduces_the_vhost_with_its_metadata_once_it_is_gone(url: str, vhost: str,
                                                                                 management: Management,
                                                                                 tmp_path: Path) -> None:
    management.put(f"/queues/{q(vhost)}/plain", "queue", {"durable": False, "auto_delete": True, "arguments": {}})
    management.put(f"/vhost-limits/{q(vhost)}/max-queues", "limit", {"value": 50})
    assert mqspec("--url", url, "apply", scenario(tmp_path, ORDERS), "--topology-only").exit_code == 0
    source = definitions(management, vhost)
    imported = tmp_path / "imported.yaml"
    result = mqspec("--url", url, "import", "--from-broker", "-o", str(imported), "--name", "copy")
    assert result.exit_code == 0, result.output
    text = imported.read_text()
    assert "message_ttl: 1m" in text and "dead_letter:" in text and "amq." not in text
    assert (f"  vhosts:\n  - name: {vhost}\n    description: throwaway vhost for one mqspec test\n"
            "    limits:\n      max_queues: 50\n") in text
    management.delete_vhost(vhost)
    applied = mqspec("apply", str(imported), "--topology-only")       # the default URL: the file names its vhost
    assert applied.exit_code == 0, applied.output
    management.set_permissions("guest", vhost)
    assert mqspec("plan", str(imported), "--detailed-exitcode").exit_code == 0
    assert mqspec("--url", url, "plan", scenario(tmp_path, ORDERS), "--detailed-exitcode").exit_code == 0
    copy = definitions(management, vhost)
    for key in ("queues", "exchanges", "bindings", "policies", "parameters"):
        assert _without_vhost(source[key]) == _without_vhost(copy[key])
    assert management.get(f"/vhost-limits/{q(vhost)}", "limits")[0]["value"] == {"max-queues": 50}


def _without_vhost(entries: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps({k: v for k, v in entry.items() if k != "vhost"}, sort_keys=True) for entry in entries)


def test_import_from_definitions_file_round_trips(url: str, vhost: str, management: Management,
                                                  tmp_path: Path) -> None:
    assert mqspec("--url", url, "apply", scenario(tmp_path, ORDERS), "--topology-only").exit_code == 0
    exported = definitions(management, vhost)
    for key in ("queues", "exchanges", "bindings", "policies"):
        for entry in exported[key]:
            entry["vhost"] = vhost
    exported["queues"].append({"name": "elsewhere", "vhost": "another", "durable": True, "auto_delete": False,
                               "arguments": {}})
    defs = tmp_path / "defs.json"
    defs.write_text(json.dumps(exported))
    imported = tmp_path / "imported.yaml"
    whole = mqspec("import", "--from-definitions", str(defs))
    assert whole.exit_code == 0 and "name: elsewhere\n    vhost: another\n" in whole.stdout
    assert ("warning: vhost 'another' is named by 1 entity but not declared in the file; it must exist where the file "
            "is applied\n") in whole.stderr
    result = mqspec("--url", "amqp://guest:guest@127.0.0.1/another", "import", "--from-definitions", str(defs),
                    "--vhost", vhost, "-o", str(imported))
    assert result.exit_code == 0, result.output
    assert "elsewhere" not in imported.read_text()
    assert mqspec("validate", str(imported)).exit_code == 0
    management.delete_vhost(vhost)
    management.create_vhost(vhost)
    management.set_permissions("guest", vhost)
    assert mqspec("apply", str(imported), "--topology-only").exit_code == 0
    assert mqspec("--url", url, "plan", scenario(tmp_path, ORDERS), "--detailed-exitcode").exit_code == 0


def test_json_plan_shape(url: str, tmp_path: Path) -> None:
    result = mqspec("--url", url, "plan", scenario(tmp_path, ORDERS), "--format", "json")
    plan = json.loads(result.stdout)
    assert set(plan) == {"vhost", "changes", "summary", "notes"}
    assert plan["summary"] == {"create": 13, "update": 0, "replace": 0, "delete": 0}
    first = plan["changes"][0]
    assert set(first) == {"vhost", "action", "kind", "name", "key", "diffs", "reasons", "messages", "consumers", "migrate",
                          "desired", "live"}
    assert first["vhost"] == plan["vhost"]
    assert first["key"] == {"kind": "policy", "vhost": plan["vhost"], "identity": ["audit-limit"]}
    assert (first["action"], first["kind"], first["name"]) == ("create", "policy", "audit-limit")
    queue = next(c for c in plan["changes"] if c["name"] == "orders.q")
    assert queue["desired"]["arguments"] == {"x-message-ttl": 60000, "x-dead-letter-exchange": "audit"}


def test_detailed_exitcode_is_one_for_any_error(tmp_path: Path) -> None:
    file = scenario(tmp_path, ORDERS)
    missing = mqspec("--url", f"{AMQP_ROOT}/mqspec-test-no-such-vhost", "plan", file, "--detailed-exitcode")
    assert (missing.exit_code, missing.stderr.splitlines()[-1]) == (
        1, "error: vhost 'mqspec-test-no-such-vhost' not found (NOT_FOUND); create it, or declare it under "
           "topology.vhosts so that apply creates it")
    broken = scenario(tmp_path, "version: 1\nname: x\ntopology: {queues: [{name: q, durabel: true}]}\n", "broken.yaml")
    assert mqspec("--url", f"{AMQP_ROOT}/%2F", "plan", broken, "--detailed-exitcode").exit_code == 1
    assert mqspec("--url", f"{AMQP_ROOT}/%2F", "plan", broken).exit_code == 2


DECLARED_OVER_AMQP = ("Declared 1 exchange and 1 queue over AMQP (arguments the broker does not compare, like "
                      "x-consumer-timeout, cannot be checked without the management API).\n")


def test_without_management_api_apply_declares_over_amqp_and_plan_says_it_needs_it(url: str, vhost: str,
                                                                                  tmp_path: Path) -> None:
    no_api = ("--url", url, "--management-url", "http://127.0.0.1:1")
    file = scenario(tmp_path, "version: 1\nname: t\ntopology:\n  exchanges: [{name: e, type: fanout}]\n"
                              "  queues: [{name: q, message_ttl: 60s}]\n  bindings: [{exchange: e, queue: q}]\n")
    first = mqspec(*no_api, "apply", file, "--topology-only")
    assert first.exit_code == 0, first.output
    assert first.stdout == ("note: cannot reach the management API at http://127.0.0.1:1 ([Errno 111] Connection refused); "
                            "is the rabbitmq_management plugin enabled?\n"
                            "note: declaring exchanges, queues and bindings over AMQP instead\n"
                            "Apply complete: 2 created.\n" + DECLARED_OVER_AMQP +
                            "Declared 1 binding (over AMQP a new binding cannot be told apart from an existing one).\n")
    again = mqspec(*no_api, "apply", file, "--topology-only")
    assert again.stdout.endswith("instead\n" + DECLARED_OVER_AMQP +
                                 "Declared 1 binding (over AMQP a new binding cannot be told apart from an existing one).\n")
    changed = scenario(tmp_path, "version: 1\nname: t\ntopology:\n  queues: [{name: q, message_ttl: 90s}]\n"
                                 "  policies: [{name: p, pattern: x, definition: {max-length: 1}}]\n", "changed.yaml")
    refused = mqspec(*no_api, "apply", changed, "--topology-only")
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"error: queue 'q' in vhost '{vhost}' exists with a different 'x-message-ttl'")
    assert "error: policy 'p' was not applied: users, permissions, policies and vhosts need the management plugin\n" \
           in refused.stderr
    plan = mqspec(*no_api, "plan", file)
    assert plan.exit_code == 3
    assert plan.stderr.endswith("(plan reads the live state through the management API)\n")


def test_user_without_password_in_the_file_keeps_its_password_when_its_tags_change(url: str, management: Management,
                                                                                   tmp_path: Path) -> None:
    user, fresh = f"mqspec-test-keep-{uuid.uuid4().hex[:8]}", f"mqspec-test-new-{uuid.uuid4().hex[:8]}"
    management.put(f"/users/{q(user)}", "user", {"password": "keep-me", "tags": ""})
    before = management.get(f"/users/{q(user)}", "user")["password_hash"]
    file = scenario(tmp_path, f"version: 1\nname: t\ntopology:\n  users:\n    - {{name: {user}, tags: [monitoring]}}\n"
                              f"    - {{name: {fresh}}}\n")
    try:
        result = mqspec("--url", url, "apply", file, "--topology-only")
        assert result.exit_code == 0, result.output
        assert f"  ~ user '{user}'\n      tags [] → [monitoring]\n" in result.stdout
        assert f"  + user '{fresh}'\n      no password: it cannot log in with a password\n" in result.stdout
        after = management.get(f"/users/{q(user)}", "user")
        assert (after["password_hash"], after["tags"]) == (before, ["monitoring"])
        assert mqspec("--url", url, "plan", file, "--detailed-exitcode").exit_code == 0
    finally:
        management.delete(f"/users/{q(user)}", "user")
        management.delete(f"/users/{q(fresh)}", "user")


def test_destroy_of_a_declared_vhost_counts_a_message_published_a_moment_before(management: Management,
                                                                               tmp_path: Path) -> None:
    name = f"mqspec-test-fresh-{uuid.uuid4().hex[:8]}"
    file = scenario(tmp_path, f"version: 1\nname: t\ntopology:\n  vhosts: [{{name: {name}}}]\n  queues: [{{name: mine}}]\n")
    try:
        assert mqspec("--url", vhost_url(name), "apply", file, "--topology-only").exit_code == 0
        management.put(f"/queues/{q(name)}/extra", "queue", {"durable": True})
        management.put(f"/exchanges/{q(name)}/side", "exchange", {"type": "fanout"})
        _until_management_counts(management, name, "extra")    # it reports 0 now, and lags ~5 s behind from here
        publish(vhost_url(name), "extra", 1)
        dry = mqspec("--url", vhost_url(name), "destroy", file, "--dry-run")
        assert dry.stdout == (
            f"Would delete from vhost '{name}':\n\n"
            "  - queue 'mine' (holds 0 messages, 0 consumers)\n"
            f"  - vhost '{name}' (its queues hold 1 message)\n\n"
            f"note: deleting vhost '{name}' also deletes queue 'extra', which the file does not declare "
            "(holds 1 message; blocks the destroy without --force)\n"
            f"note: deleting vhost '{name}' also deletes exchange 'side', which the file does not declare\n"
            "Plan: 0 to create, 0 to update, 0 to replace, 2 to delete.\n"
            "Dry run: nothing was deleted.\n")
        refused = mqspec("--url", vhost_url(name), "destroy", file)
        assert refused.exit_code == 1
        assert refused.stderr == (f"error: refusing to delete vhost '{name}' with all its queues: it holds 1 message "
                                  "that would be lost; rerun with --force to discard them\nNothing was deleted.\n")
        assert ready(vhost_url(name), "extra") == 1
        forced = mqspec("--url", vhost_url(name), "destroy", file, "--force")
        assert forced.stdout.endswith("Destroy complete: 2 deleted.\n"), forced.output
        assert not management.vhost_exists(name)
    finally:
        management.delete_vhost(name)


def _until_management_counts(management: Management, vhost: str, queue: str) -> None:
    deadline = time.monotonic() + 15
    while management.get(f"/queues/{q(vhost)}/{q(queue)}", "queue").get("messages") is None:
        assert time.monotonic() < deadline, "the management API never reported a message count"
        time.sleep(0.2)


def test_management_api_refusal_is_one_readable_line(url: str, vhost: str, tmp_path: Path) -> None:
    file = scenario(tmp_path, "version: 1\nname: t\ntopology:\n"
                              "  policies: [{name: p, pattern: x, definition: {max-length: \"abc\"}}]\n")
    result = mqspec("--url", url, "apply", file, "--topology-only")
    assert result.exit_code == 1
    assert result.stderr == (f"error: broker refused policy 'p' in vhost '{vhost}': Validation failed "
                             "<<\"abc\">> is not a valid maximum length (HTTP 400)\n")


def test_replace_whose_new_definition_is_refused_says_the_queue_is_gone_and_the_file_must_change(
        url: str, vhost: str, tmp_path: Path) -> None:
    old = scenario(tmp_path, "version: 1\nname: t\ntopology:\n  queues: [{name: q1, message_ttl: 60s}]\n")
    new = scenario(tmp_path, "version: 1\nname: t\ntopology:\n  queues: [{name: q1, arguments: {x-max-length: -1}}]\n",
                   "new.yaml")
    assert mqspec("--url", url, "apply", old, "--topology-only").exit_code == 0
    result = mqspec("--url", url, "apply", new, "--topology-only", "--allow-replace")
    assert result.exit_code == 1
    assert result.stderr == (f"error: queue 'q1' in vhost '{vhost}' was deleted but its new definition was refused: "
                             f"invalid arg 'x-max-length' for queue 'q1' in vhost '{vhost}': {{value_negative,-1}} "
                             "(HTTP 400); fix the file and apply again to create it\n")


def test_without_management_api_a_differing_queue_is_a_replace_that_needs_the_management_api(
        url: str, vhost: str, tmp_path: Path) -> None:
    no_api = ("--url", url, "--management-url", "http://127.0.0.1:1")
    assert mqspec(*no_api, "apply", scenario(tmp_path, "version: 1\nname: t\ntopology:\n  queues: [{name: q, message_ttl: 60s}]\n"),
                  "--topology-only").exit_code == 0
    publish(url, "q", 2)
    changed = scenario(tmp_path, "version: 1\nname: t\ntopology:\n  queues: [{name: q, message_ttl: 90s}]\n", "changed.yaml")
    mismatch = (f"queue 'q' in vhost '{vhost}' exists with a different 'x-message-ttl' (while trying to declare queue 'q') "
                f"(PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '{vhost}': received "
                "'90000' but current is '60000')")
    refused = mqspec(*no_api, "apply", changed, "--topology-only")
    assert refused.exit_code == 1
    assert f"  failed:        -/+ queue 'q' (holds 2 messages, 0 consumers): {mismatch}" in refused.stdout
    assert refused.stderr == f"error: {mismatch}; replacing it needs --allow-replace and the management API\n"
    allowed = mqspec(*no_api, "apply", changed, "--topology-only", "--allow-replace")
    assert (allowed.exit_code, allowed.stderr) == (1, f"error: {mismatch}; not replaced: replacing needs the management API\n")
    assert ready(url, "q") == 2


def test_without_management_api_an_existing_queue_the_user_may_not_declare_is_not_called_a_replace(
        url: str, vhost: str, management: Management, tmp_path: Path) -> None:
    user = f"mqspec-test-amqp-{uuid.uuid4().hex[:8]}"
    management.put(f"/users/{q(user)}", "user", {"password": "pw-amqp", "tags": ""})
    management.set_permissions(user, vhost, r"^app\.", ".*", ".*")
    management.put(f"/queues/{q(vhost)}/q", "queue", {"durable": True})
    file = scenario(tmp_path, "version: 1\nname: t\ntopology:\n  queues: [{name: q}, {name: app.q}]\n")
    try:
        result = mqspec("--url", f"amqp://{user}:pw-amqp@127.0.0.1:5672/{q(vhost)}",
                        "--management-url", "http://127.0.0.1:1", "apply", file, "--topology-only")
    finally:
        management.delete(f"/users/{q(user)}", "user")
    assert result.exit_code == 3
    assert "-/+" not in result.stdout
    assert result.stdout.endswith("Apply complete: 1 created.\nDeclared 0 exchanges and 1 queue over AMQP (arguments the "
                                  "broker does not compare, like x-consumer-timeout, cannot be checked without the "
                                  "management API).\n")
    assert result.stderr == (f"error: queue 'q' exists but could not be checked: access refused: user '{user}' may not "
                             f"declare queue 'q' in vhost '{vhost}' (ACCESS_REFUSED - access to queue 'q' in vhost "
                             f"'{vhost}' refused for user '{user}')\n")


@pytest.mark.parametrize(("content", "message"), [
    ('{"queues": ["x"]}', "is not a definitions file RabbitMQ would accept: queues[0] must be an object, found a string \"x\""),
    ('[{"name": "q"}]', "is not a definitions file: expected a JSON object at the top, found a list"),
    ('{"queues": [', "is not a JSON definitions file: Expecting value: line 1 column 13 (char 12)"),
    ('{"exchanges": [{"name": "e"}], "bindings": {}}',
     "is not a definitions file RabbitMQ would accept: exchanges[0] has no 'type'; 'bindings' must be a list of objects, "
     "found an object"),
])
def test_malformed_definitions_file_is_an_input_error_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "defs.json"
    path.write_text(content)
    result = mqspec("import", "--from-definitions", str(path))
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"error: {path} {message}\n")


def test_import_from_broker_leaves_out_the_importing_users_permissions_and_writes_whole_units(
        url: str, vhost: str, management: Management, tmp_path: Path) -> None:
    user = f"mqspec-test-reader-{uuid.uuid4().hex[:8]}"
    management.put(f"/users/{q(user)}", "user", {"password": "pw-reader", "tags": ""})
    management.set_permissions(user, vhost, "", "", ".*")
    management.put(f"/queues/{q(vhost)}/timed", "queue", {"durable": True, "arguments": {
        "x-message-ttl": 3600000, "x-expires": 90000}})
    try:
        result = mqspec("--url", url, "import", "--from-broker", "--name", "copy")
    finally:
        management.delete(f"/users/{q(user)}", "user")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Imported by `mqspec import`.\n# The permissions below need their users to exist "
                                    "where this file is applied.\n")
    assert (f"  permissions:\n  - user: {user}\n    configure: ''\n    write: ''\n    read: .*\n    vhost: {vhost}\n"
            f"  queues:\n  - name: timed\n    vhost: {vhost}\n    message_ttl: 1h\n    expires: 90s\n") in result.stdout
    assert "guest" not in result.stdout
