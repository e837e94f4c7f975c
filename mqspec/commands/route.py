"""mqspec route: where a message would go, answered from the file alone."""

from __future__ import annotations

import math
from typing import Any

from mqspec.context import Context
from mqspec.core import routing, scalars
from mqspec.core.model import Scenario
from mqspec.core.semantics import suggest
from mqspec.errors import EXIT_FAILED, EXIT_OK, InvalidInput
from mqspec.pipeline import load_valid
from mqspec.report import route as render


def run(ctx: Context, path: str, exchange: str, key: str, headers: list[str], mandatory: bool, output: str,
        strict: bool = False) -> int:
    message_headers = dict(parse_header(text) for text in headers)
    scenario = load_valid(ctx, path, strict)
    _check_exchange(scenario, exchange)
    result = routing.route(scenario.topology, exchange, key, message_headers)
    if output == "json":
        ctx.echo(render.as_json(result, mandatory))
    else:
        ctx.echo(render.text(result, mandatory))
        for note in render.notes(result):
            ctx.echo(note, err=True)
    return EXIT_OK if render.status(result) in ("routed", "unroutable") else EXIT_FAILED


def _check_exchange(scenario: Scenario, exchange: str) -> None:
    if routing.resolve(scenario.topology, exchange) is None:
        declared = [e.name for e in scenario.topology.exchanges]
        raise InvalidInput(f"exchange '{exchange}' is not declared in {scenario.path}{suggest(exchange, declared)}")


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
