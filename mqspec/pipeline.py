"""The one way a command reads a scenario: read at the edge, load, check every rule, lint.

validate, plan, apply, destroy, export, route and graph all go through `load_valid` or `check_file`, so a
file is valid for one exactly when it is valid for all, and an invalid file is refused (exit 2) before any
broker is touched. Lint adds warnings only; `--strict` makes warnings fail everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from mqspec.context import Context
from mqspec.core import lint
from mqspec.core.document import DocumentError
from mqspec.core.loader import Loaded, Overrides, load_bytes
from mqspec.core.model import Scenario
from mqspec.core.problems import Problem, errors, warnings
from mqspec.errors import InvalidInput
from mqspec.files import read_bounded
from mqspec.report import problems as problem_report

INSECURE_WARNING = "TLS certificate verification is off (tls.insecure: true); the broker's identity is not checked"


def load(path: str, overrides: Overrides = Overrides(), env: Mapping[str, str] | None = None) -> Loaded:
    """Read the file (bounded), then load it; lint warnings are added to a valid scenario's problems."""
    try:
        raw = read_bounded(path)
    except DocumentError as exc:
        return Loaded(None, exc.problems)
    loaded = load_bytes(raw, path, overrides, os.environ if env is None else env)
    if loaded.scenario is None:
        return loaded
    return loaded._replace(problems=[*loaded.problems, *lint.check(loaded.scenario)])


def check_file(ctx: Context, path: str) -> Loaded:
    """Every problem of one file, in file order; the file's secrets join the invocation's redactor."""
    loaded = load(path, ctx.overrides, ctx.env)
    for secret in loaded.secrets:
        ctx.redactor.add(secret)
    return loaded._replace(problems=sorted(loaded.problems, key=lambda p: (p.line, p.col)))


def failing(problems: list[Problem], strict: bool) -> list[Problem]:
    return errors(problems) + (warnings(problems) if strict else [])


def load_valid(ctx: Context, path: str, strict: bool = False) -> Scenario:
    """The scenario, or every problem printed and InvalidInput raised (exit 2) before any broker is touched."""
    loaded = check_file(ctx, path)
    if loaded.problems:
        ctx.err(problem_report.text(loaded.problems))
    refused = failing(loaded.problems, strict)
    if loaded.scenario is None or refused:
        count = len(refused) or 1
        what = "warning" if strict and not errors(loaded.problems) else "problem"
        raise InvalidInput(f"{path}: {count} {what}{'' if count == 1 else 's'} found; nothing was changed "
                           f"(mqspec validate {path} lists them)")
    if loaded.scenario.broker.tls.insecure:
        ctx.warn_once("insecure", INSECURE_WARNING)
    return loaded.scenario
