"""The plan: a pure diff of the file against the live state, ordered, with reasons and guards."""

from __future__ import annotations

import base64
import hashlib

from mqspec.core import model
from mqspec.core.definitions import SHA256
from mqspec.core.plan import (
    FieldDiff,
    Key,
    Live,
    Plan,
    QueueStats,
    destroy,
    diff,
    make_change,
    queues_needing_stats,
    refusals,
    with_stats,
)
from mqspec.report import plan as render

V = "shop"


def topology(**parts: object) -> model.Topology:
    return model.Topology(vhost=V, **parts)  # type: ignore[arg-type]


def live(**parts: object) -> Live:
    return Live(topology(**parts))


def summary(plan: Plan) -> list[tuple[str, str, str]]:
    return [(c.action, c.kind, c.name) for c in plan.changes]


ORDERS_X = model.Exchange("orders", "topic")
ORDERS_Q = model.Queue("orders.q", arguments={"x-message-ttl": 60000})
ORDERS_B = model.Binding("orders", "orders.q", "queue", "order.#")


def test_plan_is_empty_when_the_broker_has_what_the_file_declares() -> None:
    desired = topology(exchanges=(ORDERS_X,), queues=(ORDERS_Q,), bindings=(ORDERS_B,))
    plan = diff(desired, Live(desired))
    assert plan.empty
    assert render.text(plan) == "No changes. Topology is up to date."


def test_creates_run_in_dependency_order_whatever_the_file_order() -> None:
    desired = topology(
        bindings=(ORDERS_B,), queues=(ORDERS_Q,), exchanges=(ORDERS_X,),
        policies=(model.Policy("ttl", "^orders", {"message-ttl": 1000}),),
        permissions=(model.Permission("app", V, ".*", ".*", ".*"),),
        users=(model.User("app", "s3cret"),), vhosts=(model.VHost(V),),
    )
    plan = diff(desired, Live(topology(), vhost_exists=False))
    assert [c.kind for c in plan.changes] == ["vhost", "user", "permission", "policy", "exchange", "queue", "binding"]
    assert {c.action for c in plan.changes} == {"create"}


def test_plan_shows_replace_when_queue_ttl_changes() -> None:
    desired = topology(queues=(model.Queue("orders.q", arguments={"x-message-ttl": 120000}),))
    plan = diff(desired, live(queues=(ORDERS_Q,)))
    assert summary(plan) == [("replace", "queue", "orders.q")]
    assert plan.changes[0].reasons == ("x-message-ttl 60000 → 120000",)


def test_every_immutable_queue_property_is_a_replace_with_its_own_reason() -> None:
    wanted = model.Queue("q", "quorum", durable=True, auto_delete=False, arguments={"x-max-length": 10})
    found = model.Queue("q", "classic", durable=False, auto_delete=True, arguments={"x-overflow": "drop-head"})
    plan = diff(topology(queues=(wanted,)), live(queues=(found,)))
    assert plan.changes[0].reasons == (
        'type "classic" → "quorum"', "durable false → true", "auto_delete true → false",
        "x-max-length (absent) → 10", 'x-overflow "drop-head" → (absent)',
    )


def test_every_immutable_exchange_property_is_a_replace() -> None:
    wanted = model.Exchange("x", "topic", durable=True, internal=True, arguments={"alternate-exchange": "ae"})
    found = model.Exchange("x", "direct", durable=False, internal=False)
    plan = diff(topology(exchanges=(wanted,)), live(exchanges=(found,)))
    assert plan.changes[0].action == "replace"
    assert plan.changes[0].reasons == ('type "direct" → "topic"', "durable false → true", "internal false → true",
                                       'alternate-exchange (absent) → "ae"')


def test_arguments_the_broker_does_not_compare_still_show_as_drift() -> None:
    wanted = model.Queue("q", arguments={"x-consumer-timeout": 60000, "team": "billing"})
    plan = diff(topology(queues=(wanted,)), live(queues=(model.Queue("q"),)))
    assert plan.changes[0].reasons == ("team (absent) → \"billing\"", "x-consumer-timeout (absent) → 60000")


def test_argument_types_are_compared_exactly() -> None:
    wanted = model.Queue("q", arguments={"x-max-length": 5, "x-single-active-consumer": True})
    found = model.Queue("q", arguments={"x-max-length": "5", "x-single-active-consumer": 1})
    plan = diff(topology(queues=(wanted,)), live(queues=(found,)))
    assert plan.changes[0].reasons == ('x-max-length "5" → 5', "x-single-active-consumer 1 → true")


def test_replace_recreates_every_binding_of_the_queue_in_the_same_plan() -> None:
    undeclared = model.Binding("audit", "orders.q", "queue", "#")
    desired = topology(exchanges=(ORDERS_X,), queues=(model.Queue("orders.q"),), bindings=(ORDERS_B,))
    plan = diff(desired, live(exchanges=(ORDERS_X, model.Exchange("audit", "topic")), queues=(ORDERS_Q,),
                              bindings=(ORDERS_B, undeclared)))
    assert summary(plan) == [
        ("replace", "queue", "orders.q"),
        ("create", "binding", "'orders' → queue 'orders.q' (key 'order.#')"),
        ("create", "binding", "'audit' → queue 'orders.q' (key '#')"),
    ]
    assert plan.changes[1].reasons == ("restored after replacing queue 'orders.q'",)
    assert plan.changes[2].reasons == ("not in the file, but it exists: restored after replacing queue 'orders.q'",)


def test_exchange_replace_recreates_bindings_from_and_to_it() -> None:
    e2e = model.Binding("front", "orders", "exchange", "#")
    desired = topology(exchanges=(model.Exchange("front", "topic"), model.Exchange("orders", "direct")),
                       queues=(model.Queue("orders.q"),), bindings=(e2e, ORDERS_B))
    plan = diff(desired, live(exchanges=(model.Exchange("front", "topic"), ORDERS_X), queues=(model.Queue("orders.q"),),
                              bindings=(e2e, ORDERS_B)))
    assert [(c.action, c.kind) for c in plan.changes] == [("replace", "exchange"), ("create", "binding"), ("create", "binding")]
    assert {c.reasons for c in plan.changes[1:]} == {("restored after replacing exchange 'orders'",)}


def test_binding_deleted_behind_the_files_back_is_planned_again() -> None:
    desired = topology(exchanges=(ORDERS_X,), queues=(ORDERS_Q,), bindings=(ORDERS_B,))
    plan = diff(desired, live(exchanges=(ORDERS_X,), queues=(ORDERS_Q,)))
    assert summary(plan) == [("create", "binding", "'orders' → queue 'orders.q' (key 'order.#')")]


def test_bindings_differing_only_in_arguments_are_different_bindings() -> None:
    wanted = model.Binding("h", "q", "queue", "", {"x-match": "all", "kind": "a"})
    found = model.Binding("h", "q", "queue", "", {"x-match": "all", "kind": "b"})
    plan = diff(topology(bindings=(wanted,)), live(bindings=(found,)), prune=True)
    assert [(c.action, c.kind) for c in plan.changes] == [("create", "binding"), ("delete", "binding")]
    assert plan.changes[0].name == "'h' → queue 'q' (key '', arguments {\"kind\": \"a\", \"x-match\": \"all\"})"


def test_entities_the_file_does_not_declare_are_left_alone_without_prune() -> None:
    extra = dict(exchanges=(model.Exchange("old"),), queues=(model.Queue("old.q"),),
                 bindings=(model.Binding("old", "old.q"),), policies=(model.Policy("old", ".*", {"max-length": 1}),))
    assert diff(topology(), live(**extra)).empty


def test_prune_deletes_in_reverse_dependency_order() -> None:
    extra = dict(exchanges=(model.Exchange("old"),), queues=(model.Queue("old.q"),),
                 bindings=(model.Binding("old", "old.q"),), policies=(model.Policy("old", ".*", {"max-length": 1}),))
    plan = diff(topology(), live(**extra), prune=True)
    assert [(c.action, c.kind) for c in plan.changes] == [
        ("delete", "binding"), ("delete", "queue"), ("delete", "exchange"), ("delete", "policy")]
    assert {c.reasons for c in plan.changes} == {("not in the file",)}


def test_prune_never_touches_built_in_exchanges_or_external_entities() -> None:
    desired = topology(queues=(model.Queue("shared", external=True),), exchanges=(model.Exchange("bus", external=True),))
    found = live(exchanges=(model.Exchange("amq.topic", "topic"), model.Exchange("bus")), queues=(model.Queue("shared"),))
    assert diff(desired, found, prune=True).empty


def test_external_entities_are_never_declared_and_missing_ones_are_noted() -> None:
    desired = topology(queues=(model.Queue("shared", external=True),))
    plan = diff(desired, live())
    assert plan.empty
    assert plan.notes == ("external queue 'shared' does not exist on the broker",)


def test_exclusive_queues_are_left_to_the_workload() -> None:
    plan = diff(topology(queues=(model.Queue("mine", exclusive=True, durable=False),)), live())
    assert plan.empty
    assert "exclusive" in plan.notes[0]


def test_policies_update_in_place_with_each_difference() -> None:
    wanted = model.Policy("limits", "^orders\\.", {"max-length": 2000, "overflow": "reject-publish"}, "queues", 5)
    found = model.Policy("limits", "^orders", {"max-length": 1000}, "all", 0)
    plan = diff(topology(policies=(wanted,)), live(policies=(found,)))
    assert summary(plan) == [("update", "policy", "limits")]
    assert plan.changes[0].reasons == ('pattern "^orders" → "^orders\\\\."', 'apply-to "all" → "queues"', "priority 0 → 5",
                                       "definition max-length 1000 → 2000",
                                       'definition overflow (absent) → "reject-publish"')


def test_operator_policies_and_policies_of_the_same_name_are_separate() -> None:
    desired = topology(policies=(model.Policy("cap", ".*", {"max-length": 1}, operator=True),))
    plan = diff(desired, live(policies=(model.Policy("cap", ".*", {"max-length": 1}),)))
    assert summary(plan) == [("create", "operator_policy", "cap")]


def _rabbit_hash(password: str, salt: bytes = b"\x01\x02\x03\x04") -> str:
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def test_user_password_is_compared_through_rabbitmqs_salted_hash() -> None:
    desired = topology(users=(model.User("app", "right", ("monitoring",)),))
    found = model.User("app", None, ("monitoring",))
    same = Live(topology(users=(found,)), password_hashes={"app": (SHA256, _rabbit_hash("right"))})
    other = Live(topology(users=(found,)), password_hashes={"app": (SHA256, _rabbit_hash("wrong"))})
    assert diff(desired, same).empty
    assert diff(desired, other).changes[0].reasons == ("password differs",)


def test_a_password_hashed_some_other_way_is_set_and_said_so() -> None:
    desired = topology(users=(model.User("app", "pw"),))
    found = Live(topology(users=(model.User("app"),)), password_hashes={"app": ("rabbit_password_hashing_bcrypt", "x")})
    assert diff(desired, found).changes[0].reasons == (
        "password (cannot compare: the broker hashes it with rabbit_password_hashing_bcrypt; set)",)


def test_user_without_password_in_the_file_compares_tags_only() -> None:
    desired = topology(users=(model.User("ops", None, ("administrator",)),))
    found = Live(topology(users=(model.User("ops", None, ("management",)),)), password_hashes={"ops": (SHA256, "abc")})
    assert diff(desired, found).changes[0].reasons == ("tags [management] → [administrator]",)


def test_permissions_and_vhost_limits_update_in_place() -> None:
    desired = topology(permissions=(model.Permission("app", V, "^app\\.", ".*", ".*"),),
                       vhosts=(model.VHost(V, "shop", ("prod",), limits={"max_queues": 100}),))
    found = live(permissions=(model.Permission("app", V, ".*", ".*", ".*"),),
                 vhosts=(model.VHost(V, "shop", ("prod",), limits={"max_queues": 50, "max_connections": 9}),))
    plan = diff(desired, found)
    assert [(c.action, c.kind, c.reasons) for c in plan.changes] == [
        ("update", "vhost", ("limit max_queues 50 → 100",)),
        ("update", "permission", ('configure ".*" → "^app\\\\."',)),
    ]


def test_replace_needs_consent() -> None:
    plan = diff(topology(exchanges=(model.Exchange("x", "fanout"),)), live(exchanges=(model.Exchange("x"),)))
    assert refusals(plan, allow_replace=False, force=False) == [
        "refusing to replace exchange 'x' (type \"direct\" → \"fanout\"): replacing deletes it and declares it again; "
        "rerun with --allow-replace"]
    assert refusals(plan, allow_replace=True, force=False) == []


def test_queue_holding_messages_is_not_replaced_without_force() -> None:
    desired = topology(queues=(model.Queue("orders.q"),))
    found = Live(topology(queues=(ORDERS_Q,)), queue_stats={"orders.q": QueueStats(5, 1)})
    plan = diff(desired, found)
    assert (plan.changes[0].messages, plan.changes[0].consumers) == (5, 1)
    assert refusals(plan, allow_replace=True, force=False) == [
        "refusing to replace queue 'orders.q': it holds 5 messages that would be lost; rerun with --migrate to move "
        "them to the new queue, or with --force to discard them"]
    assert refusals(plan, allow_replace=True, force=True) == []
    assert refusals(plan, allow_replace=False, force=False, migrate=True) == []


def test_queue_with_unknown_message_count_is_not_removed_without_force() -> None:
    plan = diff(topology(), live(queues=(model.Queue("old"),)), prune=True)
    assert queues_needing_stats(plan) == ["old"]
    assert refusals(plan, allow_replace=False, force=False) == [
        "refusing to delete queue 'old': the broker has not reported how many messages it holds yet; "
        "rerun in a few seconds, or with --force to discard whatever it holds"]
    counted = with_stats(plan, {"old": QueueStats(0, 0)})
    assert refusals(counted, allow_replace=False, force=False) == []


def test_destroy_deletes_only_what_the_file_declares_and_the_broker_has_in_reverse_order() -> None:
    desired = topology(
        users=(model.User("app"), model.User("guest")), permissions=(model.Permission("app", V),),
        exchanges=(ORDERS_X, model.Exchange("bus", external=True), model.Exchange("gone")),
        queues=(ORDERS_Q,), bindings=(ORDERS_B,),
    )
    found = Live(topology(users=(model.User("app"), model.User("guest")), permissions=(model.Permission("app", V),),
                          exchanges=(ORDERS_X, model.Exchange("bus"), model.Exchange("other")),
                          queues=(ORDERS_Q, model.Queue("other.q")), bindings=(ORDERS_B,)),
                 queue_stats={"orders.q": QueueStats(3, 0)})
    plan = destroy(desired, found, acting_user="guest")
    assert summary(plan) == [
        ("delete", "binding", "'orders' → queue 'orders.q' (key 'order.#')"),
        ("delete", "queue", "orders.q"),
        ("delete", "exchange", "orders"),
        ("delete", "permission", "user 'app' in vhost 'shop'"),
        ("delete", "user", "app"),
    ]
    assert plan.notes == ("user 'guest' is kept: mqspec is logged in as this user",)
    assert refusals(plan, allow_replace=True, force=False) == [
        "refusing to delete queue 'orders.q': it holds 3 messages that would be lost; rerun with --force to discard them"]


def test_destroying_a_vhost_counts_the_messages_of_all_its_queues() -> None:
    desired = topology(vhosts=(model.VHost(V),))
    plan = destroy(desired, live(vhosts=(model.VHost(V),)), vhost_messages={V: QueueStats(7)})
    assert refusals(plan, allow_replace=True, force=False) == [
        "refusing to delete vhost 'shop' with all its queues: it holds 7 messages that would be lost; "
        "rerun with --force to discard them"]


def test_plain_text_plan_uses_terraform_symbols_and_counts() -> None:
    desired = topology(exchanges=(ORDERS_X,), queues=(model.Queue("orders.q"),), bindings=(ORDERS_B,),
                       policies=(model.Policy("p", ".*", {"max-length": 2}),))
    found = Live(topology(queues=(ORDERS_Q,), bindings=(), policies=(model.Policy("p", ".*", {"max-length": 1}),),
                          exchanges=(model.Exchange("old"),)),
                 queue_stats={"orders.q": QueueStats(0, 2)})
    plan = diff(desired, found, prune=True)
    assert render.text(plan) == "\n".join([
        "Changes to vhost 'shop':",
        "",
        "  ~ policy 'p'",
        "      definition max-length 1 → 2",
        "  + exchange 'orders'",
        "-/+ queue 'orders.q' (holds 0 messages, 2 consumers)",
        "      x-message-ttl 60000 → (absent)",
        "  + binding 'orders' → queue 'orders.q' (key 'order.#')",
        "  - exchange 'old'",
        "      not in the file",
        "",
        "Plan: 2 to create, 1 to update, 1 to replace, 1 to delete.",
    ])


def test_json_plan_never_contains_a_password() -> None:
    plan = diff(topology(users=(model.User("app", "hunter22"),)), live())
    text = render.as_json(plan)
    assert "hunter22" not in text
    assert render.as_dict(plan)["changes"][0]["desired"] == {"name": "app", "password": "***", "tags": [],
                                                             "password_hash": None, "hashing_algorithm": None,
                                                             "limits": {}}


def test_change_labels_name_the_entity() -> None:
    assert make_change("create", V, model.Permission("a", "v")).label == "permissions of user 'a' in vhost 'v'"
    assert make_change("create", V, model.Policy("cap", ".*", {}, operator=True)).label == "operator policy 'cap'"


def test_every_change_has_a_stable_key_of_kind_vhost_and_identity() -> None:
    binding = model.Binding("h", "q", arguments={"x-match": "all", "kind": "a"})
    desired = topology(users=(model.User("app"),), permissions=(model.Permission("app", V),),
                       vhosts=(model.VHost(V),), queues=(model.Queue("q"),), bindings=(binding,))
    keys = {c.kind: c.key for c in diff(desired, Live(topology(), vhost_exists=False)).changes}
    assert keys == {
        "vhost": Key("vhost", V), "user": Key("user", "", ("app",)), "permission": Key("permission", V, ("app",)),
        "queue": Key("queue", V, ("q",)), "binding": Key("binding", V, binding.key()),
    }


def test_a_binding_is_identified_by_its_key_not_by_how_it_is_shown() -> None:
    declared = model.Binding("x", "b' (key 'c", routing_key="d")
    other = model.Binding("x", "b", routing_key="c' (key 'd")
    assert make_change("create", V, declared).name == make_change("create", V, other).name  # shown alike
    plan = destroy(topology(bindings=(declared,)), live(bindings=(other,)))
    assert plan.empty


def test_field_diffs_say_which_fields_force_a_replace() -> None:
    desired = topology(queues=(model.Queue("q", durable=False, arguments={"x-max-length": 5}),),
                       policies=(model.Policy("p", "^q", {"max-length": 2}),))
    found = live(queues=(model.Queue("q", arguments={"x-message-ttl": 1000}),),
                 policies=(model.Policy("p", "^q", {"max-length": 1}),))
    changes = {c.kind: c for c in diff(desired, found).changes}
    assert changes["queue"].diffs == (
        FieldDiff("durable", True, False, True),
        FieldDiff("arguments.x-max-length", "(absent)", 5, True, "x-max-length"),
        FieldDiff("arguments.x-message-ttl", 1000, "(absent)", True, "x-message-ttl"),
    )
    assert changes["policy"].diffs == (FieldDiff("definition.max-length", 1, 2, False, "definition max-length"),)
    assert (changes["queue"].action, changes["policy"].action) == ("replace", "update")


def test_json_plan_carries_keys_and_field_diffs_without_absent_sides() -> None:
    desired = topology(queues=(model.Queue("q", arguments={"x-max-length": 5}),), users=(model.User("app", "pw"),))
    found = Live(topology(queues=(model.Queue("q"),), users=(model.User("app"),)),
                 password_hashes={"app": (SHA256, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")})
    changes = {c["kind"]: c for c in render.as_dict(diff(desired, found))["changes"]}
    assert changes["queue"]["key"] == {"kind": "queue", "vhost": V, "identity": ["q"]}
    assert changes["queue"]["diffs"] == [{"field": "arguments.x-max-length", "after": 5, "immutable": True}]
    assert changes["user"]["diffs"] == [{"field": "password", "immutable": False}]
    assert changes["user"]["reasons"] == ["password differs"]


def test_keys_of_another_vhosts_plan_carry_that_vhost_and_parameters_key_by_component_and_name() -> None:
    desired = model.Topology("b", queues=(model.Queue("q"),),
                             parameters=(model.Parameter("federation-upstream", "up", {"uri": "amqp://x"}),),
                             global_parameters=(model.GlobalParameter("cluster_name", "c"),))
    plan = diff(desired, Live(model.Topology("b")))
    keys = {c.kind: c.key for c in plan.changes}
    assert keys["queue"] == Key("queue", "b", ("q",))
    assert keys["parameter"] == Key("parameter", "b", ("federation-upstream", "up"))
    assert keys["global_parameter"] == Key("global_parameter", "", ("cluster_name",))
    assert [c.kind for c in plan.changes] == ["global_parameter", "queue", "parameter"]


def test_parameter_value_drift_is_one_diff_per_key() -> None:
    live = model.Topology("/", parameters=(model.Parameter("shovel", "s", {"src-queue": "a", "dest-queue": "b"}),))
    desired = model.Topology("/", parameters=(model.Parameter("shovel", "s", {"src-queue": "a", "dest-queue": "c"}),))
    (change,) = diff(desired, Live(live)).changes
    assert (change.action, change.reasons) == ("update", ('dest-queue "b" → "c"',))
    assert change.diffs[0].field == "value.dest-queue"
