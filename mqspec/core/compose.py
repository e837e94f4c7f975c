"""One scenario from several files: the root file and those it includes (or every file of a folder). Pure.

The root file gives everything but the topology; each included file adds to the topology's lists, in order.
An included file holds `topology:` (and may say `version`, `name`, `description`); anything else in it is an
error, since it would be ignored. The same entity declared in two files is an error naming both places. Every
problem found later in an included file's entries is reported at that file's line (see `origin_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from mqspec.core.document import Document, PathKey, json_path
from mqspec.core.problems import Problem

_ALLOWED_IN_PART = ("version", "name", "description", "topology", "include", "$schema")
# section -> the fields that identify an entry of it (with its vhost)
_IDENTITY: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "vhosts": ("name",), "users": ("name",), "global_parameters": ("name",),
    "exchanges": ("vhost", "name"), "queues": ("vhost", "name"), "policies": ("vhost", "name"),
    "operator_policies": ("vhost", "name"), "federation_upstreams": ("vhost", "name"),
    "federation_upstream_sets": ("vhost", "name"), "shovels": ("vhost", "name"),
    "parameters": ("vhost", "component", "name"), "permissions": ("vhost", "user"),
    "topic_permissions": ("vhost", "user", "exchange"),
})
_NOUN = MappingProxyType({"vhosts": "vhost", "users": "user", "global_parameters": "global parameter", "exchanges": "exchange",
         "queues": "queue", "policies": "policy", "operator_policies": "operator policy",
         "federation_upstreams": "federation upstream", "federation_upstream_sets": "federation upstream set",
         "shovels": "shovel", "parameters": "parameter", "permissions": "permissions", "topic_permissions":
         "topic permissions"})


def compose(root: Document, parts: list[Document]) -> tuple[Document, dict[str, str], list[Problem]]:
    """The merged document, which file each merged entry comes from (json path -> file), and the problems."""
    data: dict[str, Any] = dict(root.data) if isinstance(root.data, dict) else {}
    topology: dict[str, Any] = {k: list(v) if isinstance(v, list) else v
                                for k, v in (data.get("topology") or {}).items()} if isinstance(data.get("topology"), dict) else {}
    merged = Document(root.path, data, dict(root.marks), set(root.interpolated), list(root.problems), set(root.secrets),
                      list(root.disputed))
    origins: dict[str, str] = {}
    problems: list[Problem] = []
    for part in parts:
        problems += _unexpected_keys(part)
        merged.problems += part.problems
        merged.secrets |= part.secrets
        section_data = part.data.get("topology") if isinstance(part.data, dict) else None
        if not isinstance(section_data, dict):
            continue
        for section, entries in section_data.items():
            if not isinstance(entries, list):
                problems.append(part.problem(("topology", section), f"topology.{section} must be a list to be merged",
                                             "write it as a list of entries"))
                continue
            target = topology.setdefault(section, [])
            if not isinstance(target, list):
                continue
            for index, entry in enumerate(entries):
                new = len(target)
                target.append(entry)
                _move(part, merged, ("topology", section, index), ("topology", section, new))
                origins[json_path(("topology", section, new))] = part.path
    if topology:
        data["topology"] = topology
    data.pop("include", None)
    merged.data = data
    problems += _duplicates(merged, origins)
    return merged, origins, problems


def _move(part: Document, merged: Document, old: PathKey, new: PathKey) -> None:
    size = len(old)
    for path, mark in part.marks.items():
        if path[:size] == old:
            merged.marks[new + path[size:]] = mark
    merged.interpolated |= {new + path[size:] for path in part.interpolated if path[:size] == old}


def _unexpected_keys(part: Document) -> list[Problem]:
    if not isinstance(part.data, dict):
        return [part.problem((), "an included file must be a mapping with a topology: section", "write topology: ...")]
    return [part.problem((key,), f"'{key}' has no effect in an included file: only the root file's counts",
                         "move it to the root file, or remove it") for key in part.data if key not in _ALLOWED_IN_PART]


def origin_of(path: str, origins: Mapping[str, str]) -> str | None:
    """The file of the merged entry a problem's json path lies in, if it came from an included file."""
    for end in range(len(path), 0, -1):
        if end == len(path) or path[end] in ".[":
            found = origins.get(path[:end])
            if found is not None:
                return found
    return None


def _duplicates(merged: Document, origins: Mapping[str, str]) -> list[Problem]:
    """The same entity in two different files (within one file the semantic checks already say so)."""
    found: list[Problem] = []
    topology = merged.data.get("topology") or {}
    for section, fields in _IDENTITY.items():
        seen: dict[tuple[str, ...], tuple[str, PathKey]] = {}
        for index, entry in enumerate(topology.get(section) or []):
            if not isinstance(entry, dict):
                continue
            path: PathKey = ("topology", section, index)
            identity = tuple(str(entry.get(f, "")) for f in fields)
            where = origins.get(json_path(path), merged.path)
            first = seen.get(identity)
            if first is None:
                seen[identity] = (where, path)
                continue
            if first[0] == where:
                continue
            line = merged.mark(first[1])[0]
            line2, col2 = merged.mark(path)
            found.append(Problem(where, line2, col2, json_path(path),
                                 f"{_NOUN[section]} {_label(entry, fields)} is declared twice: {first[0]}:{line} and "
                                 f"{where}:{line2}", "keep one of them: each entity belongs to one file"))
    return found


def _label(entry: Mapping[str, Any], fields: tuple[str, ...]) -> str:
    named = [f"'{entry.get(f)}'" for f in fields if f not in ("vhost",) and f in entry]
    text = " ".join(named)
    return text + (f" in vhost '{entry['vhost']}'" if "vhost" in entry else "")
