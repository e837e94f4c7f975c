"""mqspec validate: every problem in every file, then one exit code."""

from __future__ import annotations

import typer

from mqspec import lint
from mqspec.errors import EXIT_INVALID, EXIT_OK, SECRETS
from mqspec.loader import Overrides, load
from mqspec.problems import Problem, errors, warnings
from mqspec.report import problems as render


def check_file(path: str, overrides: Overrides) -> list[Problem]:
    """Every problem in one file; a bug in a check becomes a problem of that file, not the end of the run."""
    try:
        return _check(path, overrides)
    except Exception as exc:  # noqa: BLE001 - the other files still get their results
        return [Problem(path, 1, 1, "$", f"mqspec failed while checking this file ({type(exc).__name__}: {SECRETS(str(exc))})",
                        "this is a bug in mqspec; please report it with the file")]


def _check(path: str, overrides: Overrides) -> list[Problem]:
    loaded = load(path, overrides)
    found = list(loaded.problems)
    if loaded.scenario is not None:
        found += lint.check(loaded.scenario)
    return sorted(found, key=lambda p: (p.line, p.col))


def run(paths: list[str], output: str, strict: bool, overrides: Overrides) -> int:
    results = {path: check_file(path, overrides) for path in paths}
    every = [p for found in results.values() for p in found]
    failing = errors(every) + (warnings(every) if strict else [])
    if output == "json":
        typer.echo(render.as_json(results))
    else:
        _print_text(results)
    return EXIT_INVALID if failing else EXIT_OK


def _print_text(results: dict[str, list[Problem]]) -> None:
    for path, found in results.items():
        if found:
            typer.echo(render.text(found), err=bool(errors(found)))
        if not errors(found):
            note = f" ({len(found)} warning{'s' if len(found) != 1 else ''})" if found else ""
            typer.echo(f"{path}: valid{note}")
