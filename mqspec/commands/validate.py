"""mqspec validate: every problem in every file, then one exit code."""

from __future__ import annotations

from mqspec.context import Context
from mqspec.core.problems import Problem, errors
from mqspec.errors import EXIT_INVALID, EXIT_OK
from mqspec.pipeline import check_file, failing
from mqspec.report import problems as render


def problems_of(ctx: Context, path: str) -> list[Problem]:
    """Every problem in one file; a bug in a check becomes a problem of that file, not the end of the run."""
    try:
        return check_file(ctx, path).problems
    except Exception as exc:  # noqa: BLE001 - the other files still get their results
        return [Problem(path, 1, 1, "$", f"mqspec failed while checking this file ({type(exc).__name__}: {ctx.redactor(str(exc))})",
                        "this is a bug in mqspec; please report it with the file")]


def run(ctx: Context, paths: list[str], output: str, strict: bool) -> int:
    results = {path: problems_of(ctx, path) for path in paths}
    every = [p for found in results.values() for p in found]
    if output == "json":
        ctx.out(render.as_json(results))
    else:
        _print_text(ctx, results)
    return EXIT_INVALID if failing(every, strict) else EXIT_OK


def _print_text(ctx: Context, results: dict[str, list[Problem]]) -> None:
    for path, found in results.items():
        if found:
            ctx.echo(render.text(found), err=bool(errors(found)))
        if not errors(found):
            note = f" ({len(found)} warning{'s' if len(found) != 1 else ''})" if found else ""
            ctx.out(f"{path}: valid{note}")
