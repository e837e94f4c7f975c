"""RabbitMQ's definitions format: a Topology to the JSON the broker imports, and definitions back to a Topology.

Pure: no I/O. The JSON written here is accepted both by `POST /api/definitions/{vhost}` (which uses the vhost of
the URL and ignores users, vhosts and permissions) and by `rabbitmqctl import_definitions` (which uses the `vhost`
key of every entry). Numbers stay numbers and booleans stay booleans.

Left out in both directions: the default exchange and `amq.*` exchanges (built in), server-named queues
(`amq.gen-*`) and exclusive queues (they belong to the connection that declared them).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, cast

from mqspec.core import model, parameters, vocabulary
from mqspec.core.vocabulary import is_builtin_exchange as is_builtin_exchange
from mqspec.core.vocabulary import is_server_named as is_server_named

# Vhost limits: the scenario's friendly names and the broker's.
LIMIT_NAMES: Mapping[str, str] = MappingProxyType({"max_connections": "max-connections", "max_queues": "max-queues"})
_LIMIT_FRIENDLY = MappingProxyType({v: k for k, v in LIMIT_NAMES.items()})

SHA256 = "rabbit_password_hashing_sha256"
_HASHES = MappingProxyType({
    SHA256: hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
    "rabbit_password_hashing_md5": hashlib.md5,
})


# --- passwords ---------------------------------------------------------------------------------------------

def password_hash(password: str, salt: bytes, algorithm: str = SHA256) -> str:
    """RabbitMQ's salted hash: base64(salt + H(salt + utf-8 password)), as rabbit_password_hashing_* computes it."""
    digest = _HASHES[algorithm](salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def password_matches(password: str, stored_hash: str, algorithm: str) -> bool | None:
    """Whether a stored hash is of this password; None when the algorithm is one we cannot compute."""
    if algorithm not in _HASHES:
        return None
    try:
        raw = base64.b64decode(stored_hash, validate=True)
    except ValueError:
        return False
    if len(raw) < 4:
        return False
    return password_hash(password, raw[:4], algorithm) == stored_hash


# --- Topology -> definitions ---------------------------------------------------------------------------------

def to_definitions(topology: model.Topology, salt: bytes | None = None) -> dict[str, Any]:
    """The whole topology as a definitions document.

    Users with a password get a salted hash (`salt` must then be 4 random bytes); users without one are
    left out, because a definitions import would clear the password of an existing user (see `left_out`).
    """
    vhost = topology.vhost
    topology = topology.public()
    return {
        "vhosts": [_vhost(v) for v in _vhosts_with_target(topology)],
        "users": [_user(u, salt) for u in topology.users if u.password is not None and salt is not None],
        "permissions": [_permission(p) for p in topology.permissions],
        "topic_permissions": [_topic_permission(p) for p in topology.topic_permissions],
        "parameters": [*(_operator_policy(p, vhost) for p in topology.policies if p.operator), *_limits(topology)],
        "policies": [_policy(p, vhost) for p in topology.policies if not p.operator],
        "exchanges": [exchange_definition(e, vhost) for e in declarable_exchanges(topology.exchanges)],
        "queues": [queue_definition(q, vhost) for q in declarable_queues(topology.queues)],
        "bindings": [binding_definition(b, vhost) for b in topology.bindings],
    }


def left_out(topology: model.Topology) -> list[str]:
    """What `to_definitions` cannot express, one sentence each (for a warning)."""
    notes = [f"user '{u.name}' has no password in the file; left out (importing it would clear an existing password)"
             for u in topology.users if u.password is None]
    notes += [f"queue '{q.name}' is exclusive; left out with its bindings (an exclusive queue belongs to the connection "
              "that declares it)" for q in topology.queues if q.exclusive and not q.external]
    notes += [f"queue '{q.name}' is declared by consumer '{q.owner}'; left out with its bindings"
              for q in topology.queues if q.owner is not None and not q.exclusive]
    notes += [f"limits of vhost '{v.name}' are left out: importing the file into one vhost would apply them there"
              for v in topology.vhosts if v.limits and v.name != topology.vhost]
    return notes


def declarable_exchanges(exchanges: Iterable[model.Exchange]) -> list[model.Exchange]:
    return [e for e in exchanges if not e.external and not is_builtin_exchange(e.name)]


def declarable_queues(queues: Iterable[model.Queue]) -> list[model.Queue]:
    return [q for q in queues if not q.external and not q.exclusive and not is_server_named(q.name)]


def exchange_definition(exchange: model.Exchange, vhost: str) -> dict[str, Any]:
    return {"name": exchange.name, "vhost": vhost, **vocabulary.exchange_body(exchange)}


def queue_definition(queue: model.Queue, vhost: str) -> dict[str, Any]:
    return {"name": queue.name, "vhost": vhost, **vocabulary.queue_body(queue)}


def binding_definition(binding: model.Binding, vhost: str) -> dict[str, Any]:
    return {"source": binding.source, "vhost": vhost, "destination": binding.destination,
            "destination_type": binding.destination_type, "routing_key": binding.routing_key,
            "arguments": dict(binding.arguments)}


def policy_value(policy: model.Policy) -> dict[str, Any]:
    """The body of PUT /api/policies/{vhost}/{name} (and of an operator policy)."""
    return vocabulary.policy_body(policy)


def _vhosts_with_target(topology: model.Topology) -> list[model.VHost]:
    declared = list(topology.vhosts)
    if all(v.name != topology.vhost for v in declared):
        declared.insert(0, model.VHost(topology.vhost))
    return declared


def _vhost(vhost: model.VHost) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": vhost.name}
    if vhost.description:
        entry["description"] = vhost.description
    if vhost.tags:
        entry["tags"] = list(vhost.tags)
    if vhost.default_queue_type:
        entry["default_queue_type"] = vhost.default_queue_type
    return entry


def _user(user: model.User, salt: bytes | None) -> dict[str, Any]:
    assert user.password is not None and salt is not None
    return {"name": user.name, "password_hash": password_hash(user.password, salt), "hashing_algorithm": SHA256,
            "tags": list(user.tags), "limits": {}}


def _permission(permission: model.Permission) -> dict[str, Any]:
    return {"user": permission.user, "vhost": permission.vhost, "configure": permission.configure,
            "write": permission.write, "read": permission.read}


def _topic_permission(permission: model.TopicPermission) -> dict[str, Any]:
    return {"user": permission.user, "vhost": permission.vhost, "exchange": permission.exchange,
            "write": permission.write, "read": permission.read}


def _policy(policy: model.Policy, vhost: str) -> dict[str, Any]:
    return {"vhost": vhost, "name": policy.name, **policy_value(policy)}


def _operator_policy(policy: model.Policy, vhost: str) -> dict[str, Any]:
    return {"vhost": vhost, "component": "operator_policy", "name": policy.name, "value": policy_value(policy)}


def _limits(topology: model.Topology) -> list[dict[str, Any]]:
    return [{"vhost": v.name, "component": "vhost-limits", "name": "limits", "value": broker_limits(v.limits)}
            for v in topology.vhosts if v.limits and v.name == topology.vhost]


def broker_limits(limits: Mapping[str, int]) -> dict[str, int]:
    return {LIMIT_NAMES.get(k, k): v for k, v in limits.items()}


def friendly_limits(limits: Mapping[str, Any]) -> dict[str, int]:
    return {_LIMIT_FRIENDLY.get(k, k): v for k, v in limits.items() if isinstance(v, int)}


# --- definitions -> Topology ---------------------------------------------------------------------------------

def from_definitions(data: Mapping[str, Any], vhost: str) -> model.Topology:
    """The part of a definitions document (vhost-scoped or whole-cluster) that belongs to one vhost."""
    mine = _in_vhost(vhost)
    entries = [e for e in data.get("queues", []) if mine(e)]
    queues = tuple(q for q in (queue_from(e) for e in entries) if q is not None)
    left = {e["name"] for e in entries} - {q.name for q in queues}
    return model.Topology(
        vhost=vhost,
        vhosts=tuple(vhost_from(v, data.get("parameters", [])) for v in data.get("vhosts", [])),
        users=tuple(user_from(u) for u in data.get("users", [])),
        permissions=tuple(_permission_from(p) for p in data.get("permissions", []) if mine(p)),
        topic_permissions=tuple(_topic_permission_from(p) for p in data.get("topic_permissions", []) if mine(p)),
        policies=tuple(policy_from(p, False) for p in data.get("policies", []) if mine(p))
        + tuple(policy_from({"name": p["name"], **p.get("value", {})}, True) for p in data.get("parameters", [])
                if mine(p) and p.get("component") == "operator_policy"),
        exchanges=tuple(exchange_from(e) for e in data.get("exchanges", []) if mine(e) and not is_builtin_exchange(e["name"])),
        queues=queues,
        bindings=tuple(binding_from(b) for b in data.get("bindings", []) if mine(b) and _kept_binding(b, left)),
        parameters=parameters.from_definitions(data.get("parameters", []), vhost),
        global_parameters=parameters.globals_from_definitions(data.get("global_parameters", [])),
    )


def user_from(entry: Mapping[str, Any]) -> model.User:
    """A user entry with its stored hash and limits (a definitions file's, or GET /api/users')."""
    limits = entry.get("limits") if isinstance(entry.get("limits"), dict) else {}
    return model.User(entry["name"], None, tags_of(entry.get("tags")), "", entry.get("password_hash") or None,
                      entry.get("hashing_algorithm") or None, user_limits(limits or {}))


USER_LIMIT_NAMES: Mapping[str, str] = MappingProxyType({"max_connections": "max-connections", "max_channels": "max-channels"})


def broker_user_limits(limits: Mapping[str, int]) -> dict[str, int]:
    return {USER_LIMIT_NAMES.get(k, k): v for k, v in limits.items()}


def user_limits(limits: Mapping[str, Any]) -> dict[str, int]:
    friendly = {v: k for k, v in USER_LIMIT_NAMES.items()}
    return {friendly.get(k, k): v for k, v in limits.items() if isinstance(v, int)}


def vhosts_named(data: Mapping[str, Any]) -> set[str]:
    """Every vhost the entities of a definitions document name (empty for a vhost-scoped export)."""
    keys = ("queues", "exchanges", "bindings", "policies", "parameters")
    return {e["vhost"] for key in keys for e in data.get(key, []) if isinstance(e, dict) and "vhost" in e}


def _in_vhost(vhost: str) -> Callable[[Mapping[str, Any]], bool]:
    def mine(entry: Mapping[str, Any]) -> bool:
        return bool(entry.get("vhost", vhost) == vhost)
    return mine


def exchange_from(entry: Mapping[str, Any]) -> model.Exchange:
    return model.Exchange(entry["name"], entry.get("type", "direct"), bool(entry.get("durable", True)),
                          bool(entry.get("auto_delete", False)), bool(entry.get("internal", False)),
                          dict(entry.get("arguments") or {}))


def queue_from(entry: Mapping[str, Any]) -> model.Queue | None:
    """A queue entry as a Queue; None for server-named and exclusive queues."""
    if is_server_named(entry["name"]) or entry.get("exclusive"):
        return None
    args = dict(entry.get("arguments") or {})
    queue_type = cast(model.QueueType, args.pop("x-queue-type", None) or entry.get("type") or "classic")
    return model.Queue(entry["name"], queue_type, bool(entry.get("durable", True)), False,
                       bool(entry.get("auto_delete", False)), args)


def binding_from(entry: Mapping[str, Any]) -> model.Binding:
    kind: model.DestinationType = "exchange" if entry.get("destination_type") == "exchange" else "queue"
    return model.Binding(entry["source"], entry["destination"], kind, entry.get("routing_key", ""),
                         dict(entry.get("arguments") or {}))


def policy_from(entry: Mapping[str, Any], operator: bool) -> model.Policy:
    return model.Policy(entry["name"], entry.get("pattern", ""), dict(entry.get("definition") or {}),
                        entry.get("apply-to", "all"), int(entry.get("priority", 0)), operator)


def tags_of(value: Any) -> tuple[str, ...]:
    """User and vhost tags arrive as a list or as 'a,b'."""
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    if isinstance(value, list):
        return tuple(str(t) for t in value)
    return ()


def _kept_binding(entry: Mapping[str, Any], left_queues: set[str]) -> bool:
    """Default-exchange bindings are implicit; bindings of left-out queues go with them."""
    if entry.get("source", "") == "":
        return False
    if entry.get("destination_type") == "exchange":
        return True
    return entry["destination"] not in left_queues and not is_server_named(entry["destination"])


def vhost_from(entry: Mapping[str, Any], parameters: Iterable[Mapping[str, Any]]) -> model.VHost:
    metadata = entry.get("metadata") or {}
    limits: Mapping[str, Any] = next((p.get("value", {}) for p in parameters
                   if p.get("component") == "vhost-limits" and p.get("vhost") == entry["name"]), {})
    queue_type = entry.get("default_queue_type") or metadata.get("default_queue_type")
    return model.VHost(entry["name"], entry.get("description") or metadata.get("description") or "",
                       tags_of(entry.get("tags", metadata.get("tags"))),
                       queue_type if queue_type in ("classic", "quorum", "stream") else None, friendly_limits(limits))


def _permission_from(entry: Mapping[str, Any]) -> model.Permission:
    return model.Permission(entry["user"], entry["vhost"], entry.get("configure", ""), entry.get("write", ""),
                            entry.get("read", ""))


def _topic_permission_from(entry: Mapping[str, Any]) -> model.TopicPermission:
    return model.TopicPermission(entry["user"], entry["vhost"], entry.get("exchange", ""), entry.get("write", ""),
                                 entry.get("read", ""))


# --- Topology -> scenario document (for `mqspec import`) ------------------------------------------------------

_OVERFLOW = ("drop-head", "reject-publish", "reject-publish-dlx")
_MATCH = ("all", "any", "all-with-x", "any-with-x")
_KNOWN_EXCHANGES = frozenset(vocabulary.BUILTIN_EXCHANGES)


def scenario_topology(topology: model.Topology) -> dict[str, Any]:
    """The `topology:` section of a scenario, with friendly field names wherever they say exactly the same.

    Exchanges and queues that are referenced but not part of the topology are written as `external: true`.
    Permissions in the topology's own vhost are written without a vhost, so the file applies to any vhost.
    """
    exchanges = declarable_exchanges(topology.exchanges)
    queues = declarable_queues(topology.queues)
    sections: dict[str, list[dict[str, Any]]] = {
        "vhosts": [vhost_doc(v) for v in topology.vhosts],
        "users": [{"name": u.name, **({"tags": list(u.tags)} if u.tags else {})} for u in topology.users],
        "permissions": [_permission_doc(p, topology.vhost) for p in topology.permissions],
        "topic_permissions": [_topic_permission_doc(p, topology.vhost) for p in topology.topic_permissions],
        "policies": [_policy_doc(p) for p in topology.policies if not p.operator],
        "operator_policies": [_policy_doc(p) for p in topology.policies if p.operator],
        "exchanges": [_exchange_doc(e) for e in exchanges] + _external_exchanges(topology, exchanges, queues),
        "queues": [_queue_doc(q) for q in queues] + _external_queues(topology, queues),
        "bindings": _binding_docs(topology.bindings, {e.name: e.type for e in exchanges}),
    }
    return {key: value for key, value in sections.items() if value}


def vhost_doc(vhost: model.VHost) -> dict[str, Any]:
    """The scenario's vhost entry: the definitions entry plus its limits."""
    doc = _vhost(vhost)
    limits = {k: v for k, v in vhost.limits.items() if k in LIMIT_NAMES}
    if limits:
        doc["limits"] = limits
    return doc


def _permission_doc(permission: model.Permission, vhost: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"user": permission.user}
    if permission.vhost != vhost:
        doc["vhost"] = permission.vhost
    return {**doc, "configure": permission.configure, "write": permission.write, "read": permission.read}


def _topic_permission_doc(permission: model.TopicPermission, vhost: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"user": permission.user}
    if permission.vhost != vhost:
        doc["vhost"] = permission.vhost
    return {**doc, "exchange": permission.exchange, "write": permission.write, "read": permission.read}


def _policy_doc(policy: model.Policy) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": policy.name, "pattern": policy.pattern}
    if policy.apply_to != "all":
        doc["apply_to"] = policy.apply_to
    if policy.priority:
        doc["priority"] = policy.priority
    doc["definition"] = dict(policy.definition)
    return doc


def _exchange_doc(exchange: model.Exchange) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": exchange.name, "type": exchange.type}
    if not exchange.durable:
        doc["durable"] = False
    if exchange.auto_delete:
        doc["auto_delete"] = True
    if exchange.internal:
        doc["internal"] = True
    args = dict(exchange.arguments)
    if isinstance(args.get("alternate-exchange"), str):
        doc["alternate_exchange"] = args.pop("alternate-exchange")
    if args:
        doc["arguments"] = args
    return doc


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _duration(ms: int) -> str:
    """Milliseconds in the largest unit that keeps them whole: 3600000 is "1h", 90000 "90s", 1500 "1500ms"."""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _queue_doc(queue: model.Queue) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": queue.name}
    if queue.type != "classic":
        doc["type"] = queue.type
    if not queue.durable:
        doc["durable"] = False
    if queue.auto_delete:
        doc["auto_delete"] = True
    args = dict(queue.arguments)
    # Durations are written in milliseconds with their unit: a bare number would mean seconds.
    for friendly in ("message_ttl", "expires"):
        key = model.QUEUE_ARGUMENT_NAMES[friendly]
        if _whole(args.get(key)):
            doc[friendly] = _duration(args.pop(key))
    for friendly in ("max_length", "max_length_bytes", "max_priority", "delivery_limit"):
        key = model.QUEUE_ARGUMENT_NAMES[friendly]
        if _whole(args.get(key)):
            doc[friendly] = args.pop(key)
    if args.get("x-overflow") in _OVERFLOW:
        doc["overflow"] = args.pop("x-overflow")
    if isinstance(args.get("x-single-active-consumer"), bool):
        doc["single_active_consumer"] = args.pop("x-single-active-consumer")
    if isinstance(args.get("x-dead-letter-exchange"), str):
        dead_letter = {"exchange": args.pop("x-dead-letter-exchange")}
        if isinstance(args.get("x-dead-letter-routing-key"), str):
            dead_letter["routing_key"] = args.pop("x-dead-letter-routing-key")
        doc["dead_letter"] = dead_letter
    if args:
        doc["arguments"] = args
    return doc


def _external_exchanges(topology: model.Topology, exchanges: list[model.Exchange],
                        queues: list[model.Queue]) -> list[dict[str, Any]]:
    known = {e.name for e in exchanges} | _KNOWN_EXCHANGES
    wanted = [b.source for b in topology.bindings]
    wanted += [b.destination for b in topology.bindings if b.destination_type == "exchange"]
    wanted += [e.alternate_exchange for e in exchanges if e.alternate_exchange is not None]
    wanted += [q.dead_letter_exchange for q in queues if q.dead_letter_exchange is not None]
    missing = [name for name in dict.fromkeys(wanted) if name not in known and not vocabulary.is_reserved(name)]
    return [{"name": name, "external": True} for name in missing]


def _external_queues(topology: model.Topology, queues: list[model.Queue]) -> list[dict[str, Any]]:
    known = {q.name for q in queues}
    wanted = [b.destination for b in topology.bindings if b.destination_type == "queue"]
    return [{"name": name, "external": True} for name in dict.fromkeys(wanted) if name not in known]


def _binding_docs(bindings: Iterable[model.Binding], exchange_types: Mapping[str, str]) -> list[dict[str, Any]]:
    """One entry per source, destination and arguments, with all its routing keys."""
    grouped: dict[tuple[str, str, str, str], list[model.Binding]] = {}
    for binding in bindings:
        key = binding.key()
        grouped.setdefault((key[0], key[1], key[2], key[4]), []).append(binding)
    return [_binding_doc(group, exchange_types) for group in grouped.values()]


def _binding_doc(group: list[model.Binding], exchange_types: Mapping[str, str]) -> dict[str, Any]:
    first = group[0]
    doc: dict[str, Any] = {"exchange": first.source}
    doc["to_exchange" if first.destination_type == "exchange" else "queue"] = first.destination
    keys = [b.routing_key for b in group]
    if keys != [""]:
        doc["keys"] = keys
    args = dict(first.arguments)
    headers_exchange = exchange_types.get(first.source) == "headers" or vocabulary.BUILTIN_EXCHANGES.get(first.source) == "headers"
    if headers_exchange and args.get("x-match") in _MATCH and all(
            isinstance(v, (str, int, float, bool)) for k, v in args.items() if k != "x-match"):
        doc["match"] = args.pop("x-match")
        if args:
            doc["headers"] = args
    elif args:
        doc["arguments"] = args
    return doc


# --- a whole cluster -> definitions ----------------------------------------------------------------------------

def stable_salt(user: model.User) -> bytes:
    """The same 4 bytes for the same user and password, so that exporting twice writes the same file."""
    assert user.password is not None
    return hashlib.sha256(f"mqspec\0{user.name}\0{user.password}".encode()).digest()[:4]


def cluster_definitions(scenario: model.Scenario) -> dict[str, Any]:
    """Every vhost of the scenario in one definitions document, as `rabbitmqctl import_definitions` and
    `POST /api/definitions` take it. A user keeps the file's password_hash; a password is hashed with a salt
    derived from the user and the password, so the output does not change from one export to the next."""
    merged: dict[str, list[Any]] = {key: [] for key in ("users", "vhosts", "permissions", "topic_permissions",
                                                        "parameters", "global_parameters", "policies", "queues",
                                                        "exchanges", "bindings")}
    primary = scenario.topology
    for topology in scenario.every_vhost():
        part = to_definitions(replace(topology, users=(), vhosts=()))
        for key in ("policies", "queues", "exchanges", "bindings", "parameters"):
            merged[key] += part.get(key, [])
        merged["parameters"] += [{"vhost": topology.vhost, "component": p.component, "name": p.name, "value": p.value}
                                 for p in topology.parameters if not p.external]
    declared = {v.name for v in primary.vhosts}
    merged["vhosts"] = [_vhost(v) for v in primary.vhosts]
    merged["vhosts"] += [{"name": t.vhost} for t in scenario.every_vhost()
                         if t.vhost not in declared and (scenario.prunes(t.vhost) or _has_entities(t))]
    merged["parameters"] += [{"vhost": v.name, "component": "vhost-limits", "name": "limits",
                              "value": broker_limits(v.limits)} for v in primary.vhosts if v.limits]
    merged["permissions"] = [_permission(p) for p in primary.permissions]
    merged["topic_permissions"] = [_topic_permission(p) for p in primary.topic_permissions]
    merged["users"] = [_stable_user(u) for u in primary.users if u.password is not None or u.password_hash is not None]
    merged["global_parameters"] = [{"name": p.name, "value": p.value} for p in primary.global_parameters]
    return merged


def cluster_left_out(scenario: model.Scenario) -> list[str]:
    notes = [f"user '{u.name}' has neither password nor password_hash in the file; left out (importing it would "
             "clear an existing password)" for u in scenario.topology.users if u.password is None and u.password_hash is None]
    for topology in scenario.every_vhost():
        notes += [f"queue '{q.name}' in vhost '{topology.vhost}' is exclusive; left out (an exclusive queue belongs to "
                  "the connection that declares it)" for q in topology.queues if q.exclusive and not q.external]
    return notes


def _has_entities(topology: model.Topology) -> bool:
    return bool(topology.exchanges or topology.queues or topology.bindings or topology.policies or topology.parameters)


def _stable_user(user: model.User) -> dict[str, Any]:
    if user.password is not None:
        password_hash_, algorithm = password_hash(user.password, stable_salt(user)), SHA256
    else:
        password_hash_, algorithm = user.password_hash or "", user.hashing_algorithm or SHA256
    return {"name": user.name, "password_hash": password_hash_, "hashing_algorithm": algorithm, "tags": list(user.tags),
            "limits": broker_user_limits(user.limits)}
