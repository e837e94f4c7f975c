"""The second half of `mqspec apply`: run the workload, observe the broker, check expectations, report.

Exit codes: 0 every expectation held, 1 one failed, 2 a --report or --junit path cannot be written
(checked before the run starts), 130 interrupted (the partial report is still printed and written).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import sys
from pathlib import Path

from mqspec.core import expect, model
from mqspec.core.result import RunResult
from mqspec.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, InvalidInput
from mqspec.options import ApplyOptions
from mqspec.report import junit, run_json, run_text
from mqspec.workload import engine, probes


def run(scenario: model.Scenario, options: ApplyOptions) -> int:
    """Run against scenario.broker (overrides are already merged into it); vhost from the URL."""
    check_outputs(options)
    out = run_text.console(sys.stdout)
    live = run_text.LiveProgress(out, scenario.name) if options.output != "json" and out.is_terminal else None
    with live if live is not None else contextlib.nullcontext():
        result = engine.run(scenario, options.workers, live)
    results: list[expect.ExpectationResult] = []
    if not result.interrupted:
        try:
            result = observe(scenario, result)
            results = expect.evaluate(scenario.expectations, result)
        except KeyboardInterrupt:
            result = dataclasses.replace(result, ended="interrupted")
    passed = not result.interrupted and expect.passed(results)
    report(out, scenario, result, results, passed, options)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if passed else EXIT_FAILED


def check_outputs(options: ApplyOptions) -> None:
    """Refuse a --report or --junit path that cannot be written before running, not after."""
    for path, what in ((options.report, "report"), (options.junit, "JUnit report")):
        problem = unwritable(path) if path else None
        if problem:
            raise InvalidInput(f"cannot write {what} to {path}: {problem}")


def unwritable(path: str) -> str | None:
    """Why a file could not be written at path (the operating system's words), or None."""
    target = Path(path)
    if target.is_dir():
        return "it is a directory"
    folder = target.parent
    if not folder.exists():
        return os.strerror(errno.ENOENT)
    if not folder.is_dir():
        return os.strerror(errno.ENOTDIR)
    if not os.access(target if target.exists() else folder, os.W_OK):
        return os.strerror(errno.EACCES)
    return None


def observe(scenario: model.Scenario, result: RunResult) -> RunResult:
    """Queue depths first, then live route probes: probes must not disturb what is counted."""
    depths = [e.subject for e in scenario.expectations
              if isinstance(e, model.CountExpectation) and e.subject_kind == "queue" and e.measure == "depth"]
    routes = tuple(route for e in scenario.expectations if isinstance(e, model.Routes) for route in e.routes)
    queues = probes.observe_queues(scenario.broker, depths)
    observed = probes.observe_routes(scenario.broker, scenario.topology, routes)
    return dataclasses.replace(result, queues=queues, routes=observed)


def report(out: run_text.Console, scenario: model.Scenario, result: RunResult, results: list[expect.ExpectationResult],
           passed: bool, options: ApplyOptions) -> None:
    if options.report:
        run_json.write(options.report, result, results, passed)
    if options.junit:
        junit.write(options.junit, result, results)
    if options.output == "json":
        sys.stdout.write(run_json.render(result, results, passed))
    else:
        run_text.print_summary(out, result, results, passed)
