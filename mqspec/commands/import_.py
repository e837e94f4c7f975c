"""mqspec import: existing topology (a live vhost, or a definitions file) as a scenario file that validates.

Built-in exchanges, server-named and exclusive queues are left out. Users are left out too: their passwords
cannot be read back, and a user without a password in a file would be created unable to log in. Permissions
of the vhost are kept, written without a vhost so the file applies to whichever vhost --url names, except
(with --from-broker) those of the user mqspec imports as: that is the operator's access, not the application's.
Durations are written in the largest unit that keeps them whole (3600000 ms is "1h").
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from mqspec.broker import live
from mqspec.broker.management import Management
from mqspec.context import Context
from mqspec.core import model
from mqspec.core.definitions import from_definitions, scenario_topology, vhosts_named
from mqspec.core.loader import DEFAULT_URL, Overrides, load_bytes, vhost_of
from mqspec.core.problems import Problem, errors
from mqspec.errors import EXIT_FAILED, EXIT_OK, InvalidInput, OperationFailed
from mqspec.report import problems as problem_report


def run(ctx: Context, from_broker: bool, from_definitions_file: str | None, output: str | None, name: str) -> int:
    overrides = ctx.overrides
    if from_broker == (from_definitions_file is not None):
        raise InvalidInput("give exactly one of --from-broker or --from-definitions FILE")
    if from_definitions_file is not None:
        topology, source = _from_file(from_definitions_file, overrides)
    else:
        topology, source = _from_broker(overrides)
    text = scenario_text(topology, name, source)
    problems = _check(text)
    if output is None:
        ctx.echo(text, nl=False)
    else:
        _write(output, text)
        ctx.echo(f"Wrote {output}: {_counts(topology)} from {source}", err=True)
    if errors(problems):
        ctx.echo(problem_report.text(problems), err=True)
        ctx.echo("error: the imported scenario does not validate; edit it before applying it", err=True)
        return EXIT_FAILED
    return EXIT_OK


def scenario_text(topology: model.Topology, name: str, source: str) -> str:
    document: dict[str, Any] = {"version": 1, "name": name, "description": f"Imported by mqspec from {source}."}
    section = scenario_topology(replace(topology, users=(), vhosts=()))
    if section:
        document["topology"] = section
    header = "# Imported by `mqspec import`. Users are not imported: their passwords cannot be read back.\n"
    if topology.permissions or topology.topic_permissions:
        header += "# The permissions below need their users to exist where this file is applied.\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)


def _from_broker(overrides: Overrides) -> tuple[model.Topology, str]:
    settings = model.BrokerSettings(urls=(overrides.url or DEFAULT_URL,), management_url=overrides.management_url)
    vhost = vhost_of(settings.url)
    with Management(settings) as management:
        found = live.read(management, model.Topology(vhost))
        if not found.vhost_exists:
            raise OperationFailed(f"vhost '{vhost}' not found (NOT_FOUND)")
        permissions, topic_permissions = live.vhost_permissions(management, vhost)
        importer = management.user
    # The importing user's own access is the operator's, not the application's: applying it elsewhere would
    # fail where that user does not exist, or change an administrator's permissions.
    topology = replace(found.topology, permissions=tuple(p for p in permissions if p.user != importer),
                       topic_permissions=tuple(p for p in topic_permissions if p.user != importer))
    return topology, f"vhost '{vhost}' at {management.base}"


def _from_file(path: str, overrides: Overrides) -> tuple[model.Topology, str]:
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
    vhost = _vhost_for(path, data, overrides)
    try:
        return from_definitions(data, vhost), f"{Path(path).name} (vhost '{vhost}')"
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InvalidInput(f"{path} is not a definitions file RabbitMQ would accept: {type(exc).__name__} {exc}") from None


# The keys each entry of a definitions section needs for mqspec to read it.
_REQUIRED = {
    "vhosts": ("name",), "users": ("name",), "permissions": ("user",), "topic_permissions": ("user", "exchange"),
    "policies": ("name", "pattern", "definition"), "parameters": ("component", "name"), "exchanges": ("name", "type"),
    "queues": ("name",), "bindings": ("source", "destination", "destination_type"),
}


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


def _vhost_for(path: str, data: dict[str, Any], overrides: Overrides) -> str:
    if overrides.url:
        return vhost_of(overrides.url)
    named = sorted(vhosts_named(data))
    if len(named) > 1:
        raise InvalidInput(f"{path} holds definitions of several vhosts ({', '.join(named)}); "
                           "choose one with --url amqp://HOST/VHOST")
    return named[0] if named else "/"


def _check(text: str) -> list[Problem]:
    return load_bytes(text.encode("utf-8"), "<imported>").problems


def _write(output: str, text: str) -> None:
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror or exc}") from None


def _counts(topology: model.Topology) -> str:
    return (f"{len(topology.exchanges)} exchanges, {len(topology.queues)} queues, {len(topology.bindings)} bindings, "
            f"{len(topology.policies)} policies")
