"""mqspec route: where a message would go, answered from the file alone."""

from __future__ import annotations

import math
from typing import Any

from mqspec.context import Context
from mqspec.core import routing, scalars
from mqspec.core.model import Scenario, Topology
from mqspec.core.semantics import suggest
from mqspec.errors import EXIT_FAILED, EXIT_OK, InvalidInput
from mqspec.pipeline import load_valid
from mqspec.report import route as render


def run(ctx: Context, path: str, exchange: str, key: str, headers: list[str], mandatory: bool, output: str,
        strict: bool = False, vhost: str | None = None) -> int:
    message_headers = dict(parse_header(text) for text in headers)
    scenario = load_valid(ctx, path, strict)
    topology = _topology(scenario, vhost)
    _check_exchange(scenario, topology, exchange)
    result = routing.route(topology, exchange, key, message_headers)
    if output == "json":
        ctx.echo(render.as_json(result, mandatory))
    else:
        ctx.echo(render.text(result, mandatory))
        for note in render.notes(result):
            ctx.echo(note, err=True)
    return EXIT_OK if render.status(result) in ("routed", "unroutable") else EXIT_FAILED


def _topology(scenario: Scenario, vhost: str | None) -> Topology:
    """The vhost to route in: --vhost, else the default vhost (the broker URL's)."""
    by_vhost = {t.vhost: t for t in scenario.every_vhost()}
    if vhost is None:
        return scenario.topology
    if vhost not in by_vhost:
        raise InvalidInput(f"vhost '{vhost}' is not in {scenario.path}; it has "
                           + ", ".join(f"'{v}'" for v in by_vhost) + suggest(vhost, list(by_vhost)))
    return by_vhost[vhost]


def _check_exchange(scenario: Scenario, topology: Topology, exchange: str) -> None:
    if routing.resolve(topology, exchange) is None:
        declared = [e.name for e in topology.exchanges]
        elsewhere = [t.vhost for t in scenario.every_vhost() if t is not topology and routing.resolve(t, exchange)
                     and any(e.name == exchange for e in t.exchanges)]
        where = f" vhost '{topology.vhost}' of" if len(scenario.every_vhost()) > 1 else ""
        hint = f" (it is declared in vhost '{elsewhere[0]}': give --vhost {elsewhere[0]})" if elsewhere else \
            suggest(exchange, declared)
        raise InvalidInput(f"exchange '{exchange}' is not declared in{where} {scenario.path}{hint}")


def parse_header(text: str) -> tuple[str, Any]:
    """NAME=VALUE, the value typed as YAML types it (1 is a number, true a boolean); quote it to keep a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise InvalidInput(f"--header '{text}' is not NAME=VALUE (e.g. --header format=pdf)")
    return name, header_value(raw)


def header_value(raw: str) -> Any:
    """Typed as a plain value in the file is (YAML 1.2: `01234` is 1234, `NO` is text); quotes keep a string."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    value = scalars.resolve(raw.strip())
    if isinstance(value, float):
        return scalars.whole(value) if math.isfinite(value) else raw
    return value if isinstance(value, bool | int) else raw
