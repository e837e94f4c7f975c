"""A definitions document (a whole cluster's, or one vhost's) as a scenario document you can commit. Pure.

- Every vhost is imported unless one is chosen; a chosen vhost the file does not have is an error listing those
  it has.
- Entities that name their vhost keep it (`vhost:` on each), so the file means the same whatever `--url` says;
  entities of a vhost-scoped export name none and follow the URL's vhost.
- Vhost entries keep description, tags, default queue type and limits; users keep password_hash, hashing
  algorithm, tags and limits; runtime parameters (federation upstreams and sets, shovels, others raw) and global
  parameters come in.
- Transient queues are left out, with their bindings, and counted: exclusive and server-named (amq.gen-*) queues,
  and auto-delete or expiring queues whose names end in a UUID or in .pidbox (Celery's per-worker queues).
- Output is sorted, and `$` is written `$$` where the loader would read it as ${VAR} or as an escape.
- What cannot be written is named in a warning, never dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from mqspec.core import definitions, model, parameters
from mqspec.core.vocabulary import is_server_named

# top-level keys of a definitions file that describe the export itself, not the topology
_METADATA = ("rabbit_version", "rabbitmq_version", "product_name", "product_version")
_SECTIONS = ("users", "vhosts", "permissions", "topic_permissions", "parameters", "global_parameters", "policies",
             "queues", "exchanges", "bindings")
_SCOPED = ("queues", "exchanges", "bindings", "policies", "parameters", "permissions", "topic_permissions")
_GENERATED = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\.pidbox)$", re.IGNORECASE)
_QUEUE_TYPES = ("classic", "quorum", "stream")


class UnknownVhost(Exception):
    """The vhost asked for is not in the file."""

    def __init__(self, vhost: str, present: list[str]) -> None:
        super().__init__(vhost)
        self.vhost = vhost
        self.present = present


@dataclass(frozen=True)
class Imported:
    document: dict[str, Any]           # the scenario's `topology:` section
    counts: Mapping[str, int]
    transient: tuple[str, ...] = ()    # names of the transient queues left out
    warnings: tuple[str, ...] = ()


def vhosts_of(data: Mapping[str, Any]) -> list[str]:
    """Every vhost a definitions document declares or names, sorted."""
    named = {str(v["name"]) for v in _entries(data, "vhosts") if "name" in v}
    named |= {str(e["vhost"]) for key in _SCOPED for e in _entries(data, key) if "vhost" in e}
    return sorted(named)


def import_definitions(data: Mapping[str, Any], only: str | None = None) -> Imported:
    """The scenario topology of a definitions document: all its vhosts, or only one."""
    present = vhosts_of(data)
    if only is not None and only not in present and (present or only != "/"):
        raise UnknownVhost(only, present)
    warnings = [f"'{key}' is not imported: mqspec has no such section" for key in data
                if key not in _SECTIONS and key not in _METADATA]
    kept, transient = _without_transient(data)
    scoped = sorted({e.get("vhost") for key in _SCOPED for e in _entries(kept, key)}, key=lambda v: (v is not None, v or ""))
    chosen = [v for v in scoped if only is None or v in (only, None)]
    sections: dict[str, list[dict[str, Any]]] = {}
    for vhost in chosen:
        for section, entries in _vhost_sections(kept, vhost).items():
            sections.setdefault(section, []).extend(entries)
    vhost_entries = [v for v in _entries(data, "vhosts") if only is None or v.get("name") == only]
    sections["vhosts"] = [_vhost_doc(v, data, warnings) for v in vhost_entries]
    users = _users(data, sections, only)
    sections["users"] = [_user_doc(u, e, warnings) for u, e in users]
    if only is None:
        sections["global_parameters"] = [{"name": p.name, "value": p.value}
                                         for p in parameters.globals_from_definitions(_entries(data, "global_parameters"))]
    warnings += _undeclared(sections, {str(v.get("name")) for v in _entries(data, "vhosts")})
    document = {key: escape(_sorted(key, sections[key])) for key in _ORDER if sections.get(key)}
    counts = {key: len(value) for key, value in document.items()}
    return Imported(document, counts, tuple(transient), tuple(warnings))


_ORDER = ("vhosts", "users", "permissions", "topic_permissions", "global_parameters", "policies", "operator_policies",
          "exchanges", "queues", "bindings", *parameters.SECTIONS, "parameters")


def _entries(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def is_transient(entry: Mapping[str, Any]) -> bool:
    """Exclusive, server-named, or auto-deleting or expiring with a generated name."""
    name = str(entry.get("name", ""))
    if entry.get("exclusive") or is_server_named(name):
        return True
    expiring = bool(entry.get("auto_delete")) or "x-expires" in (entry.get("arguments") or {})
    return expiring and bool(_GENERATED.search(name))


def _without_transient(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    queues = _entries(data, "queues")
    gone = {(q.get("vhost"), q["name"]) for q in queues if "name" in q and is_transient(q)}
    kept = dict(data)
    kept["queues"] = [q for q in queues if (q.get("vhost"), q.get("name")) not in gone]
    kept["bindings"] = [b for b in _entries(data, "bindings")
                        if not (b.get("destination_type") != "exchange" and (b.get("vhost"), b.get("destination")) in gone)]
    return kept, sorted(name for _, name in gone)


def _vhost_sections(data: Mapping[str, Any], vhost: str | None) -> dict[str, list[dict[str, Any]]]:
    """The sections of one vhost's entities, each entry naming the vhost (none for a vhost-scoped export)."""
    def mine(entry: Mapping[str, Any]) -> bool:
        return entry.get("vhost") == vhost

    part = {key: [e for e in _entries(data, key) if mine(e)] for key in _SCOPED}
    topology = definitions.from_definitions(part, vhost or "")
    sections = definitions.scenario_topology(replace(topology, users=(), vhosts=()))
    for key in ("permissions", "topic_permissions"):
        sections[key] = [{**e, "vhost": e.get("vhost", vhost)} for e in sections.get(key, [])]
    for parameter in topology.parameters:
        section, entry = parameters.document_of(parameter)
        sections.setdefault(section, []).append(entry)
    if vhost is None:
        return sections
    return {key: [_with_vhost(e, vhost) if key not in ("permissions", "topic_permissions") else e for e in entries]
            for key, entries in sections.items()}


def _with_vhost(entry: Mapping[str, Any], vhost: str) -> dict[str, Any]:
    """`vhost:` right after the entry's name (or first)."""
    items = list(entry.items())
    at = 1 if items and items[0][0] in ("name", "exchange") else 0
    return dict([*items[:at], ("vhost", vhost), *items[at:]])


def _vhost_doc(entry: Mapping[str, Any], data: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    vhost = definitions.vhost_from(entry, _entries(data, "parameters"))
    queue_type = entry.get("default_queue_type") or (entry.get("metadata") or {}).get("default_queue_type")
    if queue_type and queue_type not in _QUEUE_TYPES:
        warnings.append(f"vhost '{vhost.name}': default queue type {queue_type!r} is not imported (not one of "
                        f"{', '.join(_QUEUE_TYPES)})")
    limits = next((p.get("value") for p in _entries(data, "parameters")
                   if p.get("component") == "vhost-limits" and p.get("vhost") == vhost.name), None) or {}
    dropped = sorted(k for k, v in limits.items() if definitions.friendly_limits({k: v}) == {}
                     or k not in definitions.LIMIT_NAMES.values())
    if dropped:
        warnings.append(f"vhost '{vhost.name}': limits {', '.join(dropped)} are not imported (not a whole number, "
                        "or not max-connections / max-queues)")
    return definitions.vhost_doc(vhost)


def _users(data: Mapping[str, Any], sections: Mapping[str, list[dict[str, Any]]],
           only: str | None) -> list[tuple[model.User, Mapping[str, Any]]]:
    """Every user (with one vhost: those with permissions in it)."""
    entries = [u for u in _entries(data, "users") if "name" in u]
    if only is not None:
        wanted = {p["user"] for key in ("permissions", "topic_permissions") for p in sections.get(key, [])}
        entries = [u for u in entries if u["name"] in wanted]
    return [(definitions.user_from(u), u) for u in entries]


def _user_doc(user: model.User, entry: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": user.name}
    if isinstance(entry.get("password"), str) and entry["password"]:
        doc["password"] = entry["password"]         # a template's plain password (Amazon MQ's format)
    elif user.password_hash:
        doc["password_hash"] = user.password_hash
        doc["hashing_algorithm"] = user.hashing_algorithm or definitions.SHA256
    else:
        warnings.append(f"user '{user.name}' has no password_hash in the file: it is imported without a password "
                        "(it cannot log in with one until you set it)")
    if user.tags:
        doc["tags"] = list(user.tags)
    if user.limits:
        doc["limits"] = dict(user.limits)
    raw = entry.get("limits") if isinstance(entry.get("limits"), dict) else {}
    dropped = sorted(set(raw or {}) - set(definitions.broker_user_limits(user.limits)))
    if dropped:
        warnings.append(f"user '{user.name}': limits {', '.join(dropped)} are not imported (not a whole number)")
    return doc


def _undeclared(sections: Mapping[str, list[dict[str, Any]]], declared: set[str]) -> list[str]:
    named: dict[str, int] = {}
    for key, entries in sections.items():
        if key in ("vhosts", "users", "global_parameters"):
            continue
        for entry in entries:
            if isinstance(entry.get("vhost"), str) and entry["vhost"] not in declared:
                named[entry["vhost"]] = named.get(entry["vhost"], 0) + 1
    return [f"vhost '{name}' is named by {count} entit{'y' if count == 1 else 'ies'} but not declared in the file; "
            "it must exist where the file is applied" for name, count in sorted(named.items())]


def _sorted(key: str, entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    def order(entry: Mapping[str, Any]) -> tuple[str, ...]:
        vhost = str(entry.get("vhost", ""))
        if key == "bindings":
            return (vhost, str(entry.get("exchange", "")), str(entry.get("queue", entry.get("to_exchange", ""))),
                    repr(entry.get("keys", [])), repr(entry.get("arguments", entry.get("headers", {}))))
        if key in ("permissions", "topic_permissions"):
            return (vhost, str(entry.get("user", "")), str(entry.get("exchange", "")))
        if key == "parameters":
            return (vhost, str(entry.get("component", "")), str(entry.get("name", "")))
        return (vhost, str(entry.get("name", "")))
    return sorted(entries, key=order)


_DOLLARS = re.compile(r"\$+(?=\{)|\$\$+")


def escape(value: Any) -> Any:
    """`$` as `$$` in every key and text wherever the loader would read it otherwise (before `{`, or doubled), so that
    a queue named ${HOME} stays ${HOME}; a lone `$` (a regular expression's end) needs no escape and keeps none."""
    if isinstance(value, str):
        return _DOLLARS.sub(lambda m: m.group(0) * 2, value)
    if isinstance(value, dict):
        return {escape(k): escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape(v) for v in value]
    return value


def topology_definitions(topology: model.Topology) -> dict[str, Any]:
    """A live vhost's topology (read by mqspec) as a definitions document naming that vhost."""
    data = definitions.to_definitions(topology)
    data["parameters"] = [*data["parameters"], *({"vhost": topology.vhost, "component": p.component, "name": p.name,
                                                  "value": p.value} for p in topology.parameters)]
    return data

