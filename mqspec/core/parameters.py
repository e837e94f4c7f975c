"""Runtime and global parameters: federation upstreams and upstream sets, dynamic shovels, cluster_name.

A scenario writes their fields in snake_case (`prefetch_count`, `src_queue`); the broker stores the same fields
in kebab-case (`prefetch-count`, `src-queue`). The mapping is one to one, so a value imported from a definitions
file comes back byte for byte. A value with a key that has no friendly name stays a raw `parameters:` entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from mqspec.core import model

FEDERATION_UPSTREAM = "federation-upstream"
FEDERATION_UPSTREAM_SET = "federation-upstream-set"
SHOVEL = "shovel"

# section of the scenario's topology -> component
SECTIONS: Mapping[str, str] = MappingProxyType({
    "federation_upstreams": FEDERATION_UPSTREAM,
    "federation_upstream_sets": FEDERATION_UPSTREAM_SET,
    "shovels": SHOVEL,
})
COMPONENT_SECTIONS = MappingProxyType({v: k for k, v in SECTIONS.items()})

UPSTREAM_FIELDS = ("uri", "exchange", "queue", "prefetch_count", "reconnect_delay", "ack_mode", "trust_user_id",
                   "max_hops", "expires", "message_ttl", "ha_policy", "consumer_tag", "bind_nowait",
                   "channel_use_mode", "resource_cleanup_mode", "queue_type")
SHOVEL_FIELDS = ("src_protocol", "src_uri", "src_queue", "src_exchange", "src_exchange_key", "src_address",
                 "src_prefetch_count", "src_delete_after", "src_consumer_args", "src_queue_args",
                 "dest_protocol", "dest_uri", "dest_queue", "dest_exchange", "dest_exchange_key", "dest_address",
                 "dest_add_forward_headers", "dest_add_timestamp_header", "dest_publish_properties",
                 "dest_application_properties", "dest_properties", "dest_message_annotations", "dest_queue_args",
                 "ack_mode", "reconnect_delay", "delete_after", "prefetch_count", "add_forward_headers",
                 "publish_properties")
SET_MEMBER_FIELDS = ("upstream", *UPSTREAM_FIELDS)
FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType({FEDERATION_UPSTREAM: UPSTREAM_FIELDS, SHOVEL: SHOVEL_FIELDS})

# components the broker keeps for itself inside a vhost's parameters: mqspec models them elsewhere
MODELLED_ELSEWHERE = ("vhost-limits", "operator_policy")
# global parameters the broker writes itself
BROKER_OWNED_GLOBALS = ("internal_cluster_id",)

# the plugin each component (or entity) needs
PLUGINS: Mapping[str, str] = MappingProxyType({
    FEDERATION_UPSTREAM: "rabbitmq_federation",
    FEDERATION_UPSTREAM_SET: "rabbitmq_federation",
    SHOVEL: "rabbitmq_shovel",
    "x-consistent-hash": "rabbitmq_consistent_hash_exchange",
})


def kebab(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key.replace("_", "-"): value for key, value in fields.items()}


def snake(value: Mapping[str, Any]) -> dict[str, Any]:
    return {key.replace("-", "_"): v for key, v in value.items()}


def friendly(component: str, value: Any) -> bool:
    """Whether a stored value can be written with the friendly fields (and come back the same)."""
    if component == FEDERATION_UPSTREAM_SET:
        return isinstance(value, list) and all(_friendly_fields(m, SET_MEMBER_FIELDS) for m in value)
    fields = FIELDS.get(component)
    return fields is not None and _friendly_fields(value, fields)


def _friendly_fields(value: Any, fields: tuple[str, ...]) -> bool:
    return isinstance(value, dict) and all("_" not in k and k.replace("-", "_") in fields for k in value)


def value_of(section: str, entry: Mapping[str, Any]) -> Any:
    """The broker's value of one friendly entry."""
    if section == "federation_upstream_sets":
        return [kebab(member) for member in entry.get("upstreams", [])]
    return kebab({k: v for k, v in entry.items() if k not in ("name", "vhost", "external")})


def document_of(parameter: model.Parameter) -> tuple[str, dict[str, Any]]:
    """(section, entry) of a parameter in a scenario, without its vhost."""
    if friendly(parameter.component, parameter.value):
        section = COMPONENT_SECTIONS[parameter.component]
        if parameter.component == FEDERATION_UPSTREAM_SET:
            return section, {"name": parameter.name, "upstreams": [snake(m) for m in parameter.value]}
        return section, {"name": parameter.name, **snake(parameter.value)}
    return "parameters", {"component": parameter.component, "name": parameter.name, "value": parameter.value}


def from_document(data: Mapping[str, Any], mine: Callable[[Mapping[str, Any]], bool]) -> tuple[model.Parameter, ...]:
    """Every runtime parameter of the topology section that belongs to one vhost (`mine`)."""
    found: list[model.Parameter] = []
    for section, component in SECTIONS.items():
        found += [model.Parameter(component, e["name"], None if e.get("external") else value_of(section, e),
                                  bool(e.get("external", False)), f"$.topology.{section}[{i}]")
                  for i, e in enumerate(data.get(section, [])) if mine(e)]
    found += [model.Parameter(e["component"], e["name"], e.get("value"), False, f"$.topology.parameters[{i}]")
              for i, e in enumerate(data.get("parameters", [])) if mine(e)]
    return tuple(found)


def globals_from_document(data: Mapping[str, Any]) -> tuple[model.GlobalParameter, ...]:
    return tuple(model.GlobalParameter(e["name"], e.get("value"), f"$.topology.global_parameters[{i}]")
                 for i, e in enumerate(data.get("global_parameters", [])))


def from_definitions(entries: Iterable[Mapping[str, Any]], vhost: str) -> tuple[model.Parameter, ...]:
    return tuple(model.Parameter(str(e["component"]), str(e["name"]), e.get("value"))
                 for e in entries if e.get("vhost", vhost) == vhost and e.get("component") not in MODELLED_ELSEWHERE)


def globals_from_definitions(entries: Iterable[Mapping[str, Any]]) -> tuple[model.GlobalParameter, ...]:
    return tuple(model.GlobalParameter(str(e["name"]), e.get("value")) for e in entries
                 if e.get("name") not in BROKER_OWNED_GLOBALS)


def referenced_upstreams(policy: model.Policy) -> list[tuple[str, str]]:
    """(component, name) of the federation upstream or upstream set a policy's definition names."""
    found = []
    upstream = policy.definition.get("federation-upstream")
    if isinstance(upstream, str):
        found.append((FEDERATION_UPSTREAM, upstream))
    upstream_set = policy.definition.get("federation-upstream-set")
    if isinstance(upstream_set, str) and upstream_set != "all":
        found.append((FEDERATION_UPSTREAM_SET, upstream_set))
    return found


def required_plugins(topology: model.Topology) -> dict[str, list[str]]:
    """plugin -> the labels of the entities that need it."""
    needs: dict[str, list[str]] = {}
    for parameter in topology.parameters:
        if parameter.component in PLUGINS and not parameter.external:
            needs.setdefault(PLUGINS[parameter.component], []).append(f"{parameter.component} '{parameter.name}'")
    for policy in topology.policies:
        if referenced_upstreams(policy) or any(k.startswith("federation-") for k in policy.definition):
            needs.setdefault("rabbitmq_federation", []).append(f"policy '{policy.name}'")
    for exchange in topology.exchanges:
        if exchange.type in PLUGINS and not exchange.external:
            needs.setdefault(PLUGINS[exchange.type], []).append(f"exchange '{exchange.name}'")
    return needs
