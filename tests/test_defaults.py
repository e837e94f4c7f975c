"""Defaults are declared once: what the schema says a missing key means is what the loader builds and what the
model's dataclass holds."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mqspec.core import units
from mqspec.core.loader import load_bytes
from mqspec.core.schema import schema

# Each schema definition with defaults: a minimal file holding one such entry, and where the built value is.
MINIMAL: dict[str, tuple[str, Any]] = {
    "tls": ("broker: {tls: {}}", lambda s: s.broker.tls),
    "broker": ("broker: {}", lambda s: s.broker),
    "permission": ("topology: {permissions: [{user: u}]}", lambda s: s.topology.permissions[0]),
    "topic_permission": ("topology: {topic_permissions: [{user: u, exchange: x}]}", lambda s: s.topology.topic_permissions[0]),
    "policy": ("topology: {policies: [{name: p, pattern: '.*', definition: {max-length: 1}}]}", lambda s: s.topology.policies[0]),
    "exchange": ("topology: {exchanges: [{name: x}]}", lambda s: s.topology.exchanges[0]),
    "queue": ("topology: {queues: [{name: q}]}", lambda s: s.topology.queues[0]),
    "producer": ("topology: {queues: [{name: q}]}\nworkload: {producers: [{name: p, queue: q, messages: 1}]}",
                 lambda s: s.workload.producers[0]),
    "consumer": ("topology: {queues: [{name: q}]}\nworkload: {consumers: [{name: c, queue: q}]}", lambda s: s.workload.consumers[0]),
    "rpc_server": ("topology: {queues: [{name: q}]}\nworkload: {rpc_servers: [{name: s, queue: q}]}",
                   lambda s: s.workload.rpc_servers[0]),
    "rpc_client": ("topology: {queues: [{name: q}]}\nworkload: {rpc_clients: [{name: c, queue: q}]}",
                   lambda s: s.workload.rpc_clients[0]),
    "workload": ("workload: {}", lambda s: s.workload),
    "route": ("expect: [{routes: [{to: []}]}]", lambda s: s.expectations[0].routes[0]),
    "private_queue": ("topology: {exchanges: [{name: x, type: fanout}]}\n"
                      "workload: {consumers: [{name: c, queue: {bind: [{exchange: x}]}}]}",
                      lambda s: next(q for q in s.topology.queues if q.name in s.topology.private_queues())),
    "super_stream": ("topology: {super_streams: [{name: s, partitions: 2}]}", lambda s: s.topology.super_streams[0]),
}
# Definitions built into a dataclass shared with entries whose defaults differ: a consumer's own queue is a
# model.Queue (whose defaults are a topology queue's: durable, not exclusive).
SHARED_DATACLASS = {"private_queue"}
# Schema keys whose model field has another name or unit.
FIELD = {("rpc_client", "timeout"): "timeout", ("broker", "restart_command"): "restart_command"}
DURATIONS = {"timeout", "drain_timeout", "connect_timeout", "start_after"}


def _defaults() -> list[tuple[str, str, Any]]:
    found = []
    for definition, node in schema()["$defs"].items():
        for key, prop in node.get("properties", {}).items():
            if "default" in prop:
                found.append((definition, key, prop["default"]))
    return found


def test_every_schema_default_is_checked_here() -> None:
    assert {definition for definition, _, _ in _defaults()} <= set(MINIMAL)


@pytest.mark.parametrize(("definition", "key", "default"), _defaults(), ids=[f"{d}.{k}" for d, k, _ in _defaults()])
def test_the_loader_and_the_model_mean_what_the_schema_says_a_missing_key_means(definition: str, key: str, default: Any) -> None:
    text, where = MINIMAL[definition]
    loaded = load_bytes(f"version: 1\nname: t\n{text}\n".encode(), "s.yaml", env={})
    assert loaded.scenario is not None, loaded.problems
    built = where(loaded.scenario)
    field_name = FIELD.get((definition, key), key)
    expected = units.seconds(default) if key in DURATIONS else default
    assert getattr(built, field_name) == expected, "the loader builds another default than the schema declares"
    declared = {f.name: f for f in dataclasses.fields(built)}[field_name]
    if declared.default is not dataclasses.MISSING and definition not in SHARED_DATACLASS:
        assert declared.default == expected, "the model's dataclass declares another default than the schema"
