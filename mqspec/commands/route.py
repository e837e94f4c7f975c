"""mqspec route: where a message would go, answered from the file alone."""

from __future__ import annotations

from typing import Any

import typer
import yaml

from mqspec import routing
from mqspec.errors import EXIT_FAILED, EXIT_OK, InvalidInput
from mqspec.loader import load
from mqspec.model import Scenario
from mqspec.problems import errors
from mqspec.report import problems as render_problems
from mqspec.report import route as render
from mqspec.semantics import suggest


def run(path: str, exchange: str, key: str, headers: list[str], mandatory: bool, output: str) -> int:
    message_headers = dict(parse_header(text) for text in headers)
    scenario = load_valid(path)
    _check_exchange(scenario, exchange)
    result = routing.route(scenario.topology, exchange, key, message_headers)
    if output == "json":
        typer.echo(render.as_json(result, mandatory))
    else:
        typer.echo(render.text(result, mandatory))
        for note in render.notes(result):
            typer.echo(note, err=True)
    return EXIT_OK if render.status(result) in ("routed", "unroutable") else EXIT_FAILED


def load_valid(path: str) -> Scenario:
    """The scenario, or the file's errors on stderr and an InvalidInput."""
    loaded = load(path)
    if loaded.scenario is None:
        typer.echo(render_problems.text(errors(loaded.problems)), err=True)
        raise InvalidInput(f"{path} is not valid; fix it first (mqspec validate {path})")
    return loaded.scenario


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
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return value if isinstance(value, bool | int | float) else raw
