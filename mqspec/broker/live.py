"""The live state of the target vhost, read through the management API in as few requests as possible.

One `GET /api/definitions/{vhost}` gives exchanges, queues, bindings, policies, operator policies and limits.
Users, permissions, topic permissions and vhosts are read only when the file declares some. Message and
consumer counts are counted (broker/counts.py) only for the queues a plan would replace or delete. A user without the
administrator tag cannot read definitions; the per-type listings (which need only the management tag)
are used instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from mqspec.broker.management import AccessRefused, Management, ManagementUnreachable, q
from mqspec.core import definitions, model, parameters
from mqspec.core.plan import Live, QueueStats
from mqspec.errors import OperationFailed

_QUEUE_COLUMNS = "name,type,durable,auto_delete,exclusive,arguments,messages,consumers"


def read(management: Management, desired: model.Topology) -> Live:
    """Everything the plan compares with; a missing target vhost reads as empty with vhost_exists False."""
    vhost = desired.vhost
    topology, stats, exists = _vhost_topology(management, vhost)
    users, hashes = _users(management, desired)
    vhosts, unsupported = _vhosts(management, desired)
    topology = replace(
        topology,
        vhosts=vhosts,
        users=users,
        permissions=_permissions(management, desired),
        topic_permissions=_topic_permissions(management, desired),
        global_parameters=_global_parameters(management, desired),
    )
    return Live(topology, exists, hashes, stats, unsupported)


def _global_parameters(management: Management, desired: model.Topology) -> tuple[model.GlobalParameter, ...]:
    if not desired.global_parameters:
        return ()
    return parameters.globals_from_definitions(management.get("/global-parameters", "the global parameters") or [])


def _user_limits(management: Management, desired: model.Topology) -> dict[str, dict[str, int]]:
    if not any(u.limits for u in desired.users):
        return {}
    entries = management.get("/user-limits", "the user limits", missing_ok=True) or []
    return {e["user"]: definitions.user_limits(e.get("value", {})) for e in entries if "user" in e}


def queue_types(management: Management, vhost: str) -> dict[str, model.QueueType]:
    """The type of every queue in a vhost."""
    listing = management.get(f"/queues/{q(vhost)}?columns=name,type", f"the queues of vhost '{vhost}'",
                             missing_ok=True) or []
    return {entry["name"]: _queue_type(entry.get("type")) for entry in listing}


def _queue_type(reported: Any) -> model.QueueType:
    return reported if reported in ("quorum", "stream") else "classic"


def binding_properties(management: Management, vhost: str) -> dict[tuple[str, str, str, str, str], str]:
    """Binding identity -> the properties key the management API uses in a binding's URL."""
    listing = management.get(f"/bindings/{q(vhost)}", f"the bindings of vhost '{vhost}'", missing_ok=True) or []
    return {definitions.binding_from(entry).key(): entry["properties_key"] for entry in listing if entry.get("source")}


# --- the target vhost ----------------------------------------------------------------------------------------

def _vhost_topology(management: Management, vhost: str) -> tuple[model.Topology, dict[str, QueueStats], bool]:
    what = f"the definitions of vhost '{vhost}'"
    try:
        data = management.get(f"/definitions/{q(vhost)}", what)
    except ManagementUnreachable:
        raise
    except OperationFailed:
        if management.vhost_exists(vhost):
            raise
        return model.Topology(vhost), {}, False
    except AccessRefused as exc:
        if exc.not_management_user:     # no listing is open to it either
            raise
        return _listed_topology(management, vhost)     # not an administrator: the per-type listings may be read
    return definitions.from_definitions(data, vhost), {}, True


def _listed_topology(management: Management, vhost: str) -> tuple[model.Topology, dict[str, QueueStats], bool]:
    """The same state from the per-type listings, for users who may not read definitions."""
    def listing(path: str, what: str) -> list[dict[str, Any]] | None:
        result: list[dict[str, Any]] | None = management.get(path, f"the {what} of vhost '{vhost}'", missing_ok=True)
        return result

    exchanges = listing(f"/exchanges/{q(vhost)}", "exchanges")
    if exchanges is None:
        return model.Topology(vhost), {}, False
    queues = listing(f"/queues/{q(vhost)}?columns={_QUEUE_COLUMNS}", "queues") or []
    data = {
        "exchanges": exchanges,
        "queues": queues,
        "bindings": listing(f"/bindings/{q(vhost)}", "bindings") or [],
        "policies": listing(f"/policies/{q(vhost)}", "policies") or [],
        "parameters": [{"component": "operator_policy", "name": p["name"], "value": p}
                       for p in listing(f"/operator-policies/{q(vhost)}", "operator policies") or []],
    }
    stats = {entry["name"]: _stats(entry) for entry in queues}
    return definitions.from_definitions(data, vhost), stats, True


def _stats(entry: Mapping[str, Any]) -> QueueStats:
    messages, consumers = entry.get("messages"), entry.get("consumers")
    return QueueStats(messages if isinstance(messages, int) else None, consumers if isinstance(consumers, int) else None)


def _queue_what(name: str, vhost: str) -> str:
    return f"queue '{name}' in vhost '{vhost}'"


# --- around the vhost: only what the file declares ----------------------------------------------------------

def _users(management: Management, desired: model.Topology) -> tuple[tuple[model.User, ...], dict[str, tuple[str, str]]]:
    if not desired.users:
        return (), {}
    declared = {u.name for u in desired.users}
    entries = [u for u in management.get("/users", "the list of users") if u["name"] in declared]
    limits = _user_limits(management, desired)
    users = tuple(model.User(u["name"], None, definitions.tags_of(u.get("tags")), limits=limits.get(u["name"], {}))
                  for u in entries)
    hashes = {u["name"]: (str(u.get("hashing_algorithm", "")), str(u.get("password_hash", ""))) for u in entries}
    return users, hashes


def _permissions(management: Management, desired: model.Topology) -> tuple[model.Permission, ...]:
    if not desired.permissions:
        return ()
    return tuple(model.Permission(p["user"], p["vhost"], p.get("configure", ""), p.get("write", ""), p.get("read", ""))
                 for p in management.get("/permissions", "the list of permissions"))


def _topic_permissions(management: Management, desired: model.Topology) -> tuple[model.TopicPermission, ...]:
    if not desired.topic_permissions:
        return ()
    return tuple(model.TopicPermission(p["user"], p["vhost"], p.get("exchange", ""), p.get("write", ""), p.get("read", ""))
                 for p in management.get("/topic-permissions", "the list of topic permissions"))


def _vhosts(management: Management, desired: model.Topology) -> tuple[tuple[model.VHost, ...], frozenset[str]]:
    if not desired.vhosts:
        return (), frozenset()
    declared = {v.name for v in desired.vhosts}
    limits = {entry["vhost"]: entry.get("value", {}) for entry in management.get("/vhost-limits", "the vhost limits")}
    vhosts = tuple(_vhost(entry, limits.get(entry["name"], {}))
                   for entry in management.get("/vhosts", "the list of vhosts") if entry["name"] in declared)
    unsupported: frozenset[str] = frozenset()
    if any(v.default_queue_type for v in desired.vhosts) and not _keeps_default_queue_type(management):
        unsupported = frozenset({"default_queue_type"})
    return vhosts, unsupported


def _vhost(entry: Mapping[str, Any], limits: Mapping[str, Any]) -> model.VHost:
    queue_type = entry.get("default_queue_type")
    return model.VHost(entry["name"], entry.get("description") or "", definitions.tags_of(entry.get("tags")),
                       queue_type if queue_type in ("classic", "quorum", "stream") else None,
                       definitions.friendly_limits(limits))


def _keeps_default_queue_type(management: Management) -> bool:
    """RabbitMQ keeps a vhost's default queue type from 3.11 on; 3.10 accepts and drops it."""
    version = str(management.overview().get("rabbitmq_version", "0"))
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return True
    return (major, minor) >= (3, 11)


def vhost_permissions(management: Management, vhost: str) -> tuple[tuple[model.Permission, ...], tuple[model.TopicPermission, ...]]:
    """Who may do what in one vhost (for import)."""
    permissions = management.get(f"/vhosts/{q(vhost)}/permissions", f"the permissions of vhost '{vhost}'") or []
    topics = management.get(f"/vhosts/{q(vhost)}/topic-permissions", f"the topic permissions of vhost '{vhost}'") or []
    return (tuple(model.Permission(p["user"], vhost, p.get("configure", ""), p.get("write", ""), p.get("read", ""))
                  for p in permissions),
            tuple(model.TopicPermission(p["user"], vhost, p.get("exchange", ""), p.get("write", ""), p.get("read", ""))
                  for p in topics))
