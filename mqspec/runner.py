"""The second half of `mqspec apply`: run the workload, observe the broker, check expectations, report.

Exit codes: 0 every expectation held, 1 one failed or is unknown, 2 a --report, --junit or --html path
cannot be written, or --metrics is not [HOST]:PORT (checked before the run starts), 3 (or 1) the workload stopped on a broker error, 130
interrupted by Ctrl-C, 143 ended by SIGTERM. The report (text, --report, --junit, --html) is written in
every case, partial or with the error, and every output is scrubbed of secrets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any, cast

from mqspec.core import expect, model, provisional, reach
from mqspec.core.result import LeftOver, Live, RunResult
from mqspec.core.timeseries import Point
from mqspec.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, InvalidInput, MqspecError, Terminated, redact
from mqspec.options import ApplyOptions
from mqspec.report import run_json, run_text
from mqspec.report.scrub import scrub_run
from mqspec.workload import dask_engine, engine, probes

Redact = Callable[[str], str]


class Observers:
    """Hands the engine's progress to each observer, with the expectations decided so far filled in."""

    def __init__(self, expectations: tuple[model.Expectation, ...], observers: list[Any]) -> None:
        self.expectations = expectations
        self.observers = observers

    def progress(self, live: Live) -> None:
        if self.expectations:
            live.expectations = provisional.tally(self.expectations, live)
        for observer in self.observers:
            observer.progress(live)

    def second(self, point: Point) -> None:
        for observer in self.observers:
            observer.second(point)

    def note(self, text: str) -> None:
        for observer in self.observers:
            observer.note(text)


def run(scenario: model.Scenario, options: ApplyOptions, redactor: Redact = redact) -> int:
    """Run against scenario.broker (overrides are already merged into it); vhost from the URL."""
    check_outputs(options)
    out = run_text.console(cast(IO[str], run_text.Scrubbed(sys.stdout, redactor)))
    observers: list[Any] = []
    if options.output != "json" and out.is_terminal:
        observers.append(run_text.LiveProgress(out, scenario.name))
    if options.metrics:
        from mqspec.report import prometheus  # prometheus_client only for --metrics: 20 ms of every run's imports

        observers.append(prometheus.MetricsServer(options.metrics))
    with _sigterm_ends_the_run():
        with contextlib.ExitStack() as stack:
            for observer in observers:
                stack.enter_context(observer)
            result = run_workload(scenario, options, Observers(scenario.expectations, observers))
        results: list[expect.ExpectationResult] = []
        if result.error:
            result = left_over(scenario, result)
        elif not result.interrupted:
            try:
                result = observe(scenario, result)
                results = expect.evaluate(scenario.expectations, result, scenario.workload.timeout_ok)
            except Terminated:
                result = dataclasses.replace(result, ended="terminated")
            except KeyboardInterrupt:
                result = dataclasses.replace(result, ended="interrupted")
        passed = not result.interrupted and not result.error and expect.passed(results)
        report(out, scenario, result, results, passed, options, redactor)
    if result.error:
        raise _error(result)
    if result.interrupted:
        return EXIT_TERMINATED if result.ended == "terminated" else EXIT_INTERRUPTED
    return EXIT_OK if passed else EXIT_FAILED


def chosen_engine(scenario: model.Scenario, options: ApplyOptions) -> str:
    """--engine (or MQSPEC_ENGINE, which typer reads into it), else workload.engine; 'local' or dask://HOST:PORT."""
    chosen = (options.engine or scenario.workload.engine or "local").strip()
    if chosen != "local" and not dask_engine.is_dask(chosen):
        raise InvalidInput(f"unknown engine '{chosen}': use 'local' or 'dask://HOST:PORT' (a Dask scheduler)")
    return chosen


def run_workload(scenario: model.Scenario, options: ApplyOptions, observer: engine.Observer | None) -> RunResult:
    chosen = chosen_engine(scenario, options)
    if dask_engine.is_dask(chosen):
        return dask_engine.run(scenario, chosen, options.workers, observer)
    return engine.run(scenario, options.workers, observer)


@contextlib.contextmanager
def _sigterm_ends_the_run() -> Iterator[None]:
    """SIGTERM raises Terminated in the main thread, so a run ends as on Ctrl-C: a partial report, exit 143."""
    def terminated(_signum: int, _frame: FrameType | None) -> None:
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminated)
    except ValueError:   # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _error(result: RunResult) -> MqspecError:
    error = MqspecError(result.error)
    error.exit_code = result.error_code or EXIT_FAILED
    return error


def check_outputs(options: ApplyOptions) -> None:
    """Refuse a --report, --junit or --html path that cannot be written, or a bad --metrics, before running."""
    for path, what in ((options.report, "report"), (options.junit, "JUnit report"), (options.html, "HTML report")):
        problem = unwritable(path) if path else None
        if problem:
            raise InvalidInput(f"cannot write {what} to {path}: {problem}")
    if options.metrics:
        from mqspec.report import prometheus

        prometheus.parse_address(options.metrics)


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
    """Queue depths first, then live route probes (unless the engine ran them): probes must not disturb what is counted."""
    depths = [e.subject for e in scenario.expectations
              if isinstance(e, model.CountExpectation) and e.subject_kind == "queue" and e.measure == "depth"]
    routes = tuple(route for e in scenario.expectations if isinstance(e, model.Routes) for route in e.routes)
    queues = probes.observe_queues(scenario.broker, depths)
    # with consumers, the engine probed the routes before the start, while every queue existed
    observed = result.routes if result.routes else probes.observe_routes(scenario.broker, scenario.topology, routes)
    return dataclasses.replace(result, queues=queues, routes=observed)


def left_over(scenario: model.Scenario, result: RunResult) -> RunResult:
    """After an error: how many messages sit in the queues this run publishes to or consumes from."""
    names = reach.queues_reached(scenario.topology, scenario.workload) + [c.queue for c in scenario.workload.consumers]
    exclusive = {q.name for q in scenario.topology.queues if q.exclusive or q.server_named}
    try:
        seen = probes.observe_queues(scenario.broker, [n for n in dict.fromkeys(names) if n not in exclusive])
    except MqspecError as exc:
        return dataclasses.replace(result, notes=(*result.notes, f"could not count the messages left behind: {exc.message}"))
    left = tuple(LeftOver(name, o.depth) for name, o in seen.items() if o.exists and o.depth)
    return dataclasses.replace(result, left_over=left)


def write_failure(scenario: str, options: ApplyOptions, message: str, redactor: Redact = redact) -> None:
    """The run could not be set up (the topology refused or failed): still write the requested files, saying why."""
    failed = RunResult(scenario=scenario, ended="failed", error=message)
    _write_files(*scrub_run(failed, [], redactor), False, options)


def _write_files(result: RunResult, results: list[expect.ExpectationResult], passed: bool, options: ApplyOptions) -> None:
    if options.report:
        run_json.write(options.report, result, results, passed)
    if options.junit:
        from mqspec.report import junit  # xml.etree only for --junit

        junit.write(options.junit, result, results)
    if options.html:
        from mqspec.report import html

        html.write(options.html, result, results, passed)


def report(out: run_text.Console, scenario: model.Scenario, result: RunResult, results: list[expect.ExpectationResult],
           passed: bool, options: ApplyOptions, redactor: Redact = redact) -> None:
    result, results = scrub_run(result, results, redactor)
    _write_files(result, results, passed, options)
    if options.output == "json":
        sys.stdout.write(run_json.render(result, results, passed))
    else:
        run_text.print_summary(out, result, results, passed)
