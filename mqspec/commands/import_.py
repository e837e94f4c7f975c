"""mqspec import: existing topology (a definitions file, or a live vhost) as a scenario file you can commit.

A definitions file comes in whole, every vhost (`--vhost V` picks one); each entity keeps the vhost it names,
so the file means the same whatever `--url` says. See core/importing.py for what is kept, what is left out
(transient queues, with a count) and what is warned about. With --from-broker, the `--url` vhost is read, with
its description, tags and limits; users are not read (their permissions are kept, except those of the user
mqspec imports as: that is the operator's access, not the application's).
Durations are written in the largest unit that keeps them whole (3600000 ms is "1h").
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from mqspec.broker import live
from mqspec.broker.management import Management
from mqspec.context import Context
from mqspec.core import model
from mqspec.core.importing import Imported, UnknownVhost, import_definitions, topology_definitions
from mqspec.core.loader import DEFAULT_URL, Overrides, load_bytes, vhost_of
from mqspec.core.problems import Problem, errors
from mqspec.errors import EXIT_FAILED, EXIT_OK, InvalidInput, OperationFailed
from mqspec.report import problems as problem_report


def run(ctx: Context, from_broker: bool, from_definitions_file: str | None, output: str | None, name: str,
        vhost: str | None = None) -> int:
    overrides = ctx.overrides
    if from_broker == (from_definitions_file is not None):
        raise InvalidInput("give exactly one of --from-broker or --from-definitions FILE")
    if from_definitions_file is not None:
        imported, source = _from_file(from_definitions_file, vhost)
    else:
        if vhost is not None:
            raise InvalidInput("--vhost goes with --from-definitions; with --from-broker the vhost is --url's")
        imported, source = _from_broker(overrides)
    text = scenario_text(imported, name, source)
    problems = _check(text)
    if output is None:
        ctx.echo(text, nl=False)
    else:
        _write(output, text)
        ctx.echo(f"Wrote {output}: {_counts(imported)} from {source}", err=True)
    if imported.transient:
        ctx.echo(f"note: left out {len(imported.transient)} transient queue{'s' if len(imported.transient) != 1 else ''} "
                 f"and their bindings (exclusive, server-named, or auto-deleting or expiring with generated names): "
                 f"{_few(imported.transient)}", err=True)
    for warning in imported.warnings:
        ctx.echo(f"warning: {warning}", err=True)
    if errors(problems):
        ctx.echo(problem_report.text(problems), err=True)
        ctx.echo("error: the imported scenario does not validate; edit it before applying it", err=True)
        return EXIT_FAILED
    return EXIT_OK


def scenario_text(imported: Imported, name: str, source: str) -> str:
    document: dict[str, Any] = {"version": 1, "name": name, "description": f"Imported by mqspec from {source}."}
    if imported.document:
        document["topology"] = imported.document
    header = "# Imported by `mqspec import`.\n"
    if "users" not in imported.document and ("permissions" in imported.document or "topic_permissions" in imported.document):
        header += "# The permissions below need their users to exist where this file is applied.\n"
    return header + yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
                              width=120)


class _Dumper(yaml.SafeDumper):
    """PyYAML's emitter is YAML 1.1: it writes NEL, U+2028 and U+2029 as line breaks inside a quoted scalar,
    which a YAML 1.2 reader (mqspec's) keeps as text with the continuation's indentation. Such strings, and any
    with other control characters, are written double-quoted with escapes instead, which every reader agrees on."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = '"' if any(ch in _BREAKS_IN_YAML11 or (ord(ch) < 32 and ch != "\n") or 127 <= ord(ch) < 160 for ch in text) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BREAKS_IN_YAML11 = frozenset("\x85\u2028\u2029")
_Dumper.add_representer(str, _represent_text)


def _from_broker(overrides: Overrides) -> tuple[Imported, str]:
    settings = model.BrokerSettings(urls=(overrides.url or DEFAULT_URL,), management_url=overrides.management_url)
    vhost = vhost_of(settings.url)
    with Management(settings) as management:
        found = live.read(management, model.Topology(vhost, vhosts=(model.VHost(vhost),)))
        if not found.vhost_exists:
            raise OperationFailed(f"vhost '{vhost}' not found (NOT_FOUND)")
        permissions, topic_permissions = live.vhost_permissions(management, vhost)
        importer = management.user
    # The importing user's own access is the operator's, not the application's: applying it elsewhere would
    # fail where that user does not exist, or change an administrator's permissions.
    topology = replace(found.topology, permissions=tuple(p for p in permissions if p.user != importer),
                       topic_permissions=tuple(p for p in topic_permissions if p.user != importer))
    return import_definitions(topology_definitions(topology), vhost), f"vhost '{vhost}' at {management.base}"


def _from_file(path: str, vhost: str | None) -> tuple[Imported, str]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path} is not a JSON definitions file: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} is not a definitions file: expected a JSON object at the top, found {_json_type(data)}")
    wrong = _shape_problems(data)
    if wrong:
        raise InvalidInput(f"{path} is not a definitions file RabbitMQ would accept: {'; '.join(wrong)}")
    try:
        imported = import_definitions(data, vhost)
    except UnknownVhost as exc:
        raise InvalidInput(f"{path} has no vhost '{exc.vhost}'; it has {_names(exc.present)}") from None
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InvalidInput(f"{path} is not a definitions file RabbitMQ would accept: {type(exc).__name__} {exc}") from None
    return imported, Path(path).name if vhost is None else f"{Path(path).name} (vhost '{vhost}')"


def _names(vhosts: list[str]) -> str:
    return "no vhosts (entities that name none apply to --url's vhost)" if not vhosts else \
        "vhosts " + ", ".join(f"'{v}'" for v in vhosts)


def _few(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


# The keys each entry of a definitions section needs for mqspec to read it.
_REQUIRED = MappingProxyType({
    "vhosts": ("name",), "users": ("name",), "permissions": ("user",), "topic_permissions": ("user", "exchange"),
    "policies": ("name", "pattern", "definition"), "parameters": ("component", "name"), "exchanges": ("name", "type"),
    "queues": ("name",), "bindings": ("source", "destination", "destination_type"),
})


def _shape_problems(data: dict[str, Any]) -> list[str]:
    """What is wrong with the shape of each section: a list of objects, each with the keys it needs."""
    found: list[str] = []
    for section, keys in _REQUIRED.items():
        entries = data.get(section, [])
        if not isinstance(entries, list):
            found.append(f"'{section}' must be a list of objects, found {_json_type(entries)}")
            continue
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                found.append(f"{section}[{index}] must be an object, found {_json_type(entry)} {json.dumps(entry)[:40]}")
                continue
            missing = [key for key in keys if key not in entry]
            if missing:
                found.append(f"{section}[{index}] has no {' or '.join(repr(k) for k in missing)}")
    return found


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _check(text: str) -> list[Problem]:
    return load_bytes(text.encode("utf-8"), "<imported>").problems


def _write(output: str, text: str) -> None:
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror or exc}") from None


def _counts(imported: Imported) -> str:
    shown = [(key, key.replace("_", " ")) for key in ("vhosts", "users", "exchanges", "queues", "bindings", "policies")]
    parts = [f"{imported.counts.get(key, 0)} {label}" for key, label in shown]
    others = sum(n for key, n in imported.counts.items() if key not in dict(shown))
    return ", ".join(parts) + (f", {others} other entities" if others else "")
