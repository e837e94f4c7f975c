"""RabbitMQ's definitions format and the scenario format, both ways, without a broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mqspec.commands.import_ import scenario_text
from mqspec.core import model
from mqspec.core.definitions import (
    from_definitions,
    left_out,
    password_hash,
    password_matches,
    scenario_topology,
    to_definitions,
    vhosts_named,
)
from mqspec.core.importing import import_definitions, topology_definitions
from mqspec.core.problems import errors
from mqspec.pipeline import load

V = "shop"


def test_password_hash_is_the_one_rabbitmq_stores() -> None:
    # guest/guest as a RabbitMQ 3.10 broker stored it (rabbit_password_hashing_sha256).
    stored = "dlMFJVnZ20PUGoFMD50NNy9GS6kFALbjZNBVD9CLpbDp2U9z"
    assert password_matches("guest", stored, "rabbit_password_hashing_sha256") is True
    assert password_matches("Guest", stored, "rabbit_password_hashing_sha256") is False
    assert password_matches("guest", stored, "rabbit_password_hashing_bcrypt") is None
    assert password_hash("guest", b"vS\x05%") == stored


def test_export_keeps_types_and_names_the_vhost_of_every_entry() -> None:
    topology = model.Topology(
        vhost=V,
        exchanges=(model.Exchange("orders", "topic", arguments={"alternate-exchange": "lost"}),),
        queues=(model.Queue("orders.q", arguments={"x-message-ttl": 60000, "x-single-active-consumer": True}),
                model.Queue("votes", "quorum", arguments={"x-delivery-limit": 3})),
        bindings=(model.Binding("orders", "orders.q", "queue", "order.#"),),
    )
    data = to_definitions(topology)
    assert data["vhosts"] == [{"name": V}]
    assert data["exchanges"] == [{"name": "orders", "vhost": V, "type": "topic", "durable": True, "auto_delete": False,
                                  "internal": False, "arguments": {"alternate-exchange": "lost"}}]
    assert data["queues"] == [
        {"name": "orders.q", "vhost": V, "durable": True, "auto_delete": False,
         "arguments": {"x-message-ttl": 60000, "x-single-active-consumer": True}},
        {"name": "votes", "vhost": V, "durable": True, "auto_delete": False,
         "arguments": {"x-delivery-limit": 3, "x-queue-type": "quorum"}},
    ]
    assert data["bindings"] == [{"source": "orders", "vhost": V, "destination": "orders.q", "destination_type": "queue",
                                 "routing_key": "order.#", "arguments": {}}]


def test_export_leaves_out_what_definitions_cannot_hold() -> None:
    topology = model.Topology(
        vhost=V,
        users=(model.User("app", "pw", ("monitoring",)), model.User("ops")),
        exchanges=(model.Exchange("bus", external=True), model.Exchange("amq.topic", "topic")),
        queues=(model.Queue("mine", exclusive=True, durable=False), model.Queue("shared", external=True)),
    )
    data = to_definitions(topology, salt=b"\x00\x01\x02\x03")
    assert data["exchanges"] == [] and data["queues"] == []
    assert [(u["name"], u["tags"], u["hashing_algorithm"]) for u in data["users"]] == [
        ("app", ["monitoring"], "rabbit_password_hashing_sha256")]
    assert password_matches("pw", data["users"][0]["password_hash"], data["users"][0]["hashing_algorithm"])
    assert left_out(topology) == [
        "user 'ops' has no password in the file; left out (importing it would clear an existing password)",
        "queue 'mine' is exclusive; left out with its bindings (an exclusive queue belongs to the connection that declares it)",
    ]


def test_export_writes_policies_operator_policies_and_the_target_vhosts_limits() -> None:
    topology = model.Topology(
        vhost=V,
        vhosts=(model.VHost(V, "the shop", ("prod",), limits={"max_queues": 100}),),
        policies=(model.Policy("ttl", "^orders", {"message-ttl": 1000}, "queues", 1),
                  model.Policy("cap", ".*", {"max-length": 50000}, operator=True)),
        permissions=(model.Permission("app", V, "^app", ".*", ".*"),),
    )
    data = to_definitions(topology)
    assert data["vhosts"] == [{"name": V, "description": "the shop", "tags": ["prod"]}]
    assert data["policies"] == [{"vhost": V, "name": "ttl", "pattern": "^orders", "definition": {"message-ttl": 1000},
                                 "priority": 1, "apply-to": "queues"}]
    assert data["parameters"] == [
        {"vhost": V, "component": "operator_policy", "name": "cap",
         "value": {"pattern": ".*", "definition": {"max-length": 50000}, "priority": 0, "apply-to": "all"}},
        {"vhost": V, "component": "vhost-limits", "name": "limits", "value": {"max-queues": 100}},
    ]
    assert data["permissions"] == [{"user": "app", "vhost": V, "configure": "^app", "write": ".*", "read": ".*"}]


BROKER_EXPORT: dict[str, Any] = {
    "queues": [
        {"name": "orders.q", "vhost": V, "durable": True, "auto_delete": False, "arguments": {"x-message-ttl": 60000}},
        {"name": "votes", "vhost": V, "durable": True, "auto_delete": False, "arguments": {"x-queue-type": "quorum"}},
        {"name": "amq.gen-abc", "vhost": V, "durable": False, "auto_delete": True, "arguments": {}},
        {"name": "elsewhere", "vhost": "other", "durable": True, "auto_delete": False, "arguments": {}},
    ],
    "exchanges": [
        {"name": "orders", "vhost": V, "type": "topic", "durable": True, "auto_delete": False, "internal": False,
         "arguments": {}},
        {"name": "amq.topic", "vhost": V, "type": "topic", "durable": True, "auto_delete": False, "internal": False,
         "arguments": {}},
    ],
    "bindings": [
        {"source": "orders", "vhost": V, "destination": "orders.q", "destination_type": "queue", "routing_key": "o.#",
         "arguments": {}},
        {"source": "orders", "vhost": V, "destination": "amq.gen-abc", "destination_type": "queue", "routing_key": "",
         "arguments": {}},
        {"source": "", "vhost": V, "destination": "orders.q", "destination_type": "queue", "routing_key": "orders.q",
         "arguments": {}},
    ],
    "policies": [{"vhost": V, "name": "ttl", "pattern": "^o", "apply-to": "queues", "definition": {"max-length": 1},
                  "priority": 0}],
    "parameters": [{"vhost": V, "component": "operator_policy", "name": "cap",
                    "value": {"pattern": ".*", "definition": {"max-length": 9}, "priority": 0, "apply-to": "queues"}}],
    "users": [{"name": "app", "password_hash": "x", "hashing_algorithm": "rabbit_password_hashing_sha256",
               "tags": "monitoring,management"}],
}


def test_definitions_become_a_topology_without_built_in_and_server_named_entities() -> None:
    topology = from_definitions(BROKER_EXPORT, V)
    assert topology.exchanges == (model.Exchange("orders", "topic"),)
    assert topology.queues == (model.Queue("orders.q", arguments={"x-message-ttl": 60000}), model.Queue("votes", "quorum"))
    assert topology.bindings == (model.Binding("orders", "orders.q", "queue", "o.#"),)
    assert topology.policies == (model.Policy("ttl", "^o", {"max-length": 1}, "queues"),
                                 model.Policy("cap", ".*", {"max-length": 9}, "queues", operator=True))
    assert topology.users == (model.User("app", None, ("monitoring", "management"), password_hash="x",
                                         hashing_algorithm="rabbit_password_hashing_sha256"),)
    assert vhosts_named(BROKER_EXPORT) == {V, "other"}


def test_exported_topology_reads_back_the_same() -> None:
    topology = model.Topology(
        vhost=V,
        exchanges=(model.Exchange("orders", "headers", durable=False, auto_delete=True, internal=True),),
        queues=(model.Queue("s", "stream", arguments={"x-max-age": "7D"}), model.Queue("c", auto_delete=True)),
        bindings=(model.Binding("orders", "c", "queue", "", {"x-match": "any", "n": 1}),
                  model.Binding("orders", "orders2", "exchange", "k")),
        policies=(model.Policy("p", ".*", {"max-length": 5}, "queues", 2),),
    )
    back = from_definitions(to_definitions(topology), V)
    assert (back.exchanges, back.queues, back.bindings, back.policies) == (
        topology.exchanges, topology.queues, topology.bindings, topology.policies)


def test_scenario_topology_uses_friendly_field_names() -> None:
    topology = model.Topology(
        vhost=V,
        exchanges=(model.Exchange("orders", "topic", arguments={"alternate-exchange": "lost"}),
                   model.Exchange("match", "headers")),
        queues=(model.Queue("orders.q", arguments={
            "x-message-ttl": 60000, "x-max-length": 10, "x-overflow": "reject-publish", "x-dead-letter-exchange": "dlx",
            "x-dead-letter-routing-key": "dead", "x-consumer-timeout": 5000}),),
        bindings=(model.Binding("orders", "orders.q", "queue", "a"), model.Binding("orders", "orders.q", "queue", "b"),
                  model.Binding("match", "orders.q", "queue", "", {"x-match": "all", "kind": "x"})),
        permissions=(model.Permission("app", V, ".*", ".*", ".*"),),
    )
    assert scenario_topology(topology) == {
        "permissions": [{"user": "app", "configure": ".*", "write": ".*", "read": ".*"}],
        "exchanges": [{"name": "orders", "type": "topic", "alternate_exchange": "lost"}, {"name": "match", "type": "headers"},
                      {"name": "lost", "external": True}, {"name": "dlx", "external": True}],
        "queues": [{"name": "orders.q", "message_ttl": "1m", "max_length": 10, "overflow": "reject-publish",
                    "dead_letter": {"exchange": "dlx", "routing_key": "dead"}, "arguments": {"x-consumer-timeout": 5000}}],
        "bindings": [{"exchange": "orders", "queue": "orders.q", "keys": ["a", "b"]},
                     {"exchange": "match", "queue": "orders.q", "match": "all", "headers": {"kind": "x"}}],
    }


_ARGUMENTS = st.fixed_dictionaries({}, optional={
    "x-message-ttl": st.integers(0, 10**10),
    "x-expires": st.integers(1, 10**10),
    "x-max-length": st.integers(0, 10**9),
    "x-max-length-bytes": st.integers(0, 10**12),
    "x-overflow": st.sampled_from(["drop-head", "reject-publish", "reject-publish-dlx"]),
    "x-max-priority": st.integers(1, 255),
    "x-single-active-consumer": st.booleans(),
    "x-dead-letter-exchange": st.sampled_from(["", "dlx"]),
    "x-consumer-timeout": st.integers(1, 10**7),
    "team": st.one_of(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1), st.booleans()),
})


@settings(max_examples=60, deadline=None)
@given(arguments=_ARGUMENTS, durable=st.booleans())
def test_imported_queue_arguments_load_back_exactly(tmp_path_factory: Any, arguments: dict[str, Any], durable: bool) -> None:
    queue = model.Queue("q", durable=durable, arguments=arguments)
    exchanges = (model.Exchange("dlx"),) if arguments.get("x-dead-letter-exchange") == "dlx" else ()
    definitions = topology_definitions(model.Topology(vhost=V, queues=(queue,), exchanges=exchanges))
    text = scenario_text(import_definitions(definitions, V), "round-trip", "a test")
    path = Path(tmp_path_factory.mktemp("import")) / "imported.yaml"
    path.write_text(text)
    loaded = load(str(path))
    assert errors(loaded.problems) == []  # a warning (e.g. a TTL past the 32-bit timer) still loads
    assert loaded.scenario is not None
    assert {t.vhost: t for t in loaded.scenario.every_vhost()}[V].queues == (queue,)
