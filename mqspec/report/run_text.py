"""The run on a terminal: a live progress display while it runs, then a summary and the expectations."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import IO, Any

from rich import box
from rich.console import Console, Group

__all__ = ["Console", "LiveProgress", "Scrubbed", "console", "print_summary"]
from types import MappingProxyType

from rich.live import Live as RichLive
from rich.table import Table
from rich.text import Text

from mqspec.core import outcomes
from mqspec.core.accounting import MIN_RATE_WINDOW
from mqspec.core.expect import ExpectationResult
from mqspec.core.result import Live, RunResult
from mqspec.core.timeseries import Point
from mqspec.report.junit import left_over_lines, shown
from mqspec.report.run_json import latency_note

ENDINGS = MappingProxyType({
    "done": "every producer and consumer finished",
    "drained": "producers finished and the queues drained",
    "drain_timeout": "drain_timeout reached before the queues drained",
    "duration": "duration reached",
    "timeout": "workload timeout reached",
    "interrupted": "interrupted (Ctrl-C); counts are partial",
    "terminated": "terminated (SIGTERM); counts are partial",
    "failed": "stopped by an error; counts are partial",
})


class Scrubbed(io.TextIOBase):
    """A text stream that removes secrets from everything written through it (rich writes whole lines)."""

    def __init__(self, file: IO[str], redact: Callable[[str], str]) -> None:
        super().__init__()
        self.file = file
        self.redact = redact

    def write(self, text: str) -> int:
        self.file.write(self.redact(text))
        return len(text)

    def flush(self) -> None:
        self.file.flush()

    def isatty(self) -> bool:
        return self.file.isatty()

    def fileno(self) -> int:
        return self.file.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.file, "encoding", None) or "utf-8"


def console(file: IO[str] | None = None) -> Console:
    made = Console(file=file, highlight=False, soft_wrap=True)
    if not made.is_terminal:
        made = Console(file=file, highlight=False, soft_wrap=True, width=160)
    return made


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _rate(rate: float, span: float) -> str:
    """A rate, or '-' when the first-to-last span is too short to measure one."""
    return _n(rate) if span >= MIN_RATE_WINDOW else "-"


def producers_table(run: RunResult) -> Table | None:
    if not run.producers:
        return None
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, title="producers", title_justify="left", pad_edge=False)
    for column in ("producer", "inst", "published", "confirmed", "nacked", "returned", "unconfirmed", "reconnects",
                   "republished", "msg/s"):
        table.add_column(column, justify="left" if column == "producer" else "right")
    for p in run.producers.values():
        table.add_row(p.name, str(p.instances), _n(p.published), _n(p.confirmed), _n(p.nacked), _n(p.returned),
                      _n(p.unconfirmed), _n(p.reconnects), _n(p.republished), _rate(p.rate, p.span))
    return table


def consumers_table(run: RunResult) -> Table | None:
    if not run.consumers:
        return None
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, title="consumers", title_justify="left", pad_edge=False)
    for column in ("consumer", "queue", "inst", "received", "acked", "rejected", "nacked", "redelivered", "duplicates",
                   "lost", "dead-lettered", "foreign", "reconnects", "msg/s"):
        table.add_column(column, justify="left" if column in ("consumer", "queue") else "right")
    for c in run.consumers.values():
        table.add_row(c.name, c.queue, str(c.instances), _n(c.received), _n(c.acked), _n(c.rejected), _n(c.nacked),
                      _n(c.redelivered), _n(c.duplicates), _n(c.lost), _n(c.dead_lettered), _n(c.foreign),
                      _n(c.reconnects), _rate(c.rate, c.span))
    return table


def rpc_table(run: RunResult) -> Table | None:
    if not run.rpc_clients:
        return None
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, title="RPC clients", title_justify="left", pad_edge=False)
    for column in ("client", "requests", "answered", "timeouts", "stray", "req/s"):
        table.add_column(column, justify="left" if column == "client" else "right")
    for c in run.rpc_clients.values():
        table.add_row(c.name, _n(c.requests), _n(c.answered), _n(c.timeouts), _n(c.stray), _rate(c.rate, c.span))
    return table


def truth_lines(run: RunResult) -> list[str]:
    """Outcomes, blocked publishers, unavailability and the seconds around each fault (runs with faults or alarms)."""
    blocked = [p for p in run.producers.values() if p.blocked]
    if not (run.faults or blocked) or run.outcomes is None:
        return []
    o = run.outcomes
    lines = [f"outcomes: {o.confirmed_consumed:,} confirmed and consumed, {o.confirmed_lost:,} confirmed and lost, "
             f"{o.unconfirmed_consumed:,} unconfirmed and consumed, {o.unconfirmed_lost:,} unconfirmed and lost, "
             f"{o.redelivered:,} redelivered, {o.duplicated:,} duplicated"]
    lines += [f"blocked: producer '{p.name}' blocked {p.blocked} time(s), {p.blocked_seconds:g}s in all (a resource alarm; "
              "not loss)" for p in blocked]
    lines += [f"unavailable: queue '{w.queue}' delivered nothing from {w.start:.1f}s to {w.end:.1f}s ({w.seconds:g}s"
              f"{', until the run ended' if w.open else ''})" for w in run.unavailable]
    totals = outcomes.queue_seconds(run.unavailable)
    if len(run.unavailable) > len(totals):   # a queue with more than one window: how long in all
        lines += [f"unavailable: queue '{queue}' {seconds:g}s in all" for queue, seconds in totals.items()]
    if run.faults and not run.unavailable:
        lines.append("unavailable: no consumed queue stopped delivering for 0.5s or more")
    for series in run.fault_series:
        cells = "  ".join(f"{s.second}s:{s.published}/{s.confirmed}/{s.received}" for s in series.seconds)
        lines.append(f"around {series.fault} ({series.start:.1f}s..{series.end:.1f}s), published/confirmed/received per "
                     f"second: {cells}")
    return lines


def expectation_line(result: ExpectationResult) -> str:
    if result.passed:
        return f"PASS {result.description}"
    if result.unknown:
        return f"UNKNOWN {result.description} ({result.detail})"
    if result.expected is None and result.actual is None:
        return f"FAIL {result.description} {result.detail}"
    text = f"FAIL {result.description}: expected {shown(result.expected)}, got {shown(result.actual)}"
    return f"{text} ({result.detail})" if result.detail else text


def print_summary(out: Console, run: RunResult, results: list[ExpectationResult], passed: bool) -> None:
    out.print(f"Workload '{run.scenario}': {ENDINGS.get(run.ended, run.ended)} after {run.elapsed:.1f}s "
              f"({run.workers} worker process{'es' if run.workers != 1 else ''})")
    for table in (producers_table(run), consumers_table(run), rpc_table(run)):
        if table is not None:
            out.print(table)
    latency = run.latency
    if latency is not None:
        out.print(f"latency ms: p50 {latency.p50:g}  p95 {latency.p95:g}  p99 {latency.p99:g}  max {latency.max:g}  "
                  f"({latency.count:,} messages)")
        note = latency_note(run)
        if note:
            out.print(f"note: {note}")
    for name, producer in run.producers.items():
        confirm = producer.confirm_latency
        if confirm is not None:
            out.print(f"confirm latency ms ({name}): p50 {confirm.p50:g}  p95 {confirm.p95:g}  p99 {confirm.p99:g}  "
                      f"max {confirm.max:g}  ({confirm.count:,} messages)")
    if run.expected:
        discarded = sum(c.discarded for c in run.consumers.values())
        dropped = f", {discarded:,} discarded (rejected without requeue or dead-letter exchange)" if discarded else ""
        out.print(f"accounting: {run.expected:,} messages expected, {run.lost:,} lost, {run.duplicates:,} duplicates{dropped}")
    for fault in run.faults:
        out.print(f"fault: {fault}")
    for line in truth_lines(run):
        out.print(line)
    for note in run.notes:
        out.print(f"note: {note}")
    if run.error:
        for missing in run.missing:
            out.print(f"unknown: the counts of {missing.label} ({missing.why}): messages it published or consumed are "
                      "neither counted as delivered nor as lost")
    for line in left_over_lines(run):
        out.print(f"left behind: {line}")
    if results:
        out.print("expectations:")
        for result in results:
            line = expectation_line(result)
            out.print(Text("  " + line, style="green" if result.passed else "yellow" if result.unknown else "red"))
        failed = sum(1 for r in results if not r.passed)
        unknown = sum(1 for r in results if r.unknown)
        tail = f", {unknown} unknown" if unknown else ""
        out.print(f"{len(results) - failed} of {len(results)} expectations passed{tail}." if failed else
                  f"all {len(results)} expectations passed.")
    elif run.interrupted:
        out.print("expectations were not checked: the run was interrupted.")
    elif run.error:
        out.print("expectations were not checked: the workload failed.")


class LiveProgress:
    """An Observer for terminals: a table redrawn four times a second, and one line kept per second.

    The line gives each producer's and consumer's rate over the last second, what is in flight
    (published but not yet confirmed, delivered but not yet acknowledged, ready in the sampled
    queues), the latency of the second's deliveries, and the expectations decided so far.
    """

    def __init__(self, out: Console, scenario: str) -> None:
        self.out = out
        self.scenario = scenario
        self.live: RichLive | None = None
        self.previous: dict[str, int] = {}
        self.previous_at = time.monotonic()
        self.notes: list[str] = []
        self.latest = Live()

    def __enter__(self) -> LiveProgress:
        self.live = RichLive(console=self.out, refresh_per_second=4, transient=True)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def note(self, text: str) -> None:
        self.notes.append(text)
        if self.live is not None:
            self.live.console.print(text)

    def second(self, point: Point) -> None:
        if self.live is not None:
            self.live.console.print(second_line(point, self.latest), highlight=False, markup=False)

    def progress(self, live: Live) -> None:
        self.latest = live
        if self.live is None:
            return
        now = time.monotonic()
        span = max(now - self.previous_at, 1e-6)
        title = f"{self.scenario}: {live.phase} {live.elapsed:.1f}s"
        if live.expectations:
            title += f"  expectations: {expectations_so_far(live.expectations)}"
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=title, title_justify="left")
        for column in ("", "name", "count", "msg/s", "detail"):
            table.add_column(column, justify="right" if column in ("count", "msg/s") else "left")
        current: dict[str, int] = {}
        for name, row in live.producers.items():
            key = f"p:{name}"
            current[key] = row["published"]
            rate = (row["published"] - self.previous.get(key, 0)) / span
            table.add_row("producer", name, _n(row["published"]), _n(rate),
                          f"confirmed {_n(row['confirmed'])}" + (" done" if row["done"] else ""))
        for name, row in live.consumers.items():
            key = f"c:{name}"
            current[key] = row["received"]
            rate = (row["received"] - self.previous.get(key, 0)) / span
            table.add_row("consumer", name, _n(row["received"]), _n(rate),
                          f"held {_n(row['held'])}" + (f", {row['stopped']} stopped" if row["stopped"] else ""))
        for name, row in live.rpc.items():
            table.add_row("rpc", name, _n(row["answered"]), "", f"sent {_n(row['sent'])}, timeouts {_n(row['timeouts'])}")
        self.previous, self.previous_at = current, now
        self.live.update(Group(table))


def expectations_so_far(counts: dict[str, int]) -> str:
    return f"{counts.get('met', 0)} met, {counts.get('failed', 0)} failed, {counts.get('open', 0)} open"


def second_line(point: Point, live: Live) -> str:
    """One second of the run on one line, e.g. `3s  published 1,000/s  received 998/s  in flight: ...`."""
    parts = [f"{point.t:5.0f}s"]
    parts += [f"{name} published {_n(row['published'])}/s" for name, row in point.producers.items()]
    parts += [f"{name} received {_n(row['received'])}/s" for name, row in point.consumers.items()]
    flight = []
    unconfirmed = sum(max(r["published"] - r["confirmed"] - r["nacked"], 0) for r in live.producers.values() if r["confirmed"])
    if unconfirmed:
        flight.append(f"{_n(unconfirmed)} unconfirmed")
    flight.append(f"{_n(sum(r['held'] for r in live.consumers.values()))} unacked")
    ready = sum(v for v in point.queues.values() if v is not None)
    if point.queues:
        flight.append(f"{_n(ready)} ready")
    parts.append("in flight: " + ", ".join(flight))
    if point.latency is not None:
        parts.append(f"latency p50 {point.latency.p50:g} p99 {point.latency.p99:g} max {point.latency.max:g} ms")
    if live.expectations:
        parts.append(f"expectations: {expectations_so_far(live.expectations)}")
    return "  ".join(parts)
