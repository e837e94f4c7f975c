"""The run as one self-contained HTML file (`mqspec apply --html PATH`).

Everything is inline: CSS in a <style>, charts as SVG drawn here in Python, no script, no font,
no image and no link to fetch, so the file opens the same offline, in a CI artifact viewer or
from a mail. Charts: rates per producer and consumer, latency percentiles and queue depths, second
by second, with the faults that fired marked as dashed vertical lines.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from mqspec.core.expect import ExpectationResult
from mqspec.core.result import RunResult
from mqspec.core.timeseries import Event, TimeSeries, columns
from mqspec.errors import OperationFailed
from mqspec.report.junit import failure_message

WIDTH, HEIGHT = 1000, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 30, 40
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")

Line = tuple[str, Sequence[float | None]]

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1040px;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{padding:.2em .7em;text-align:right;border-bottom:1px solid #eee}
td:first-child,th:first-child{text-align:left}.pass{color:#17803d}.fail{color:#c62828}
.verdict{font-weight:bold;font-size:1.2em}ul.expect{list-style:none;padding-left:0}ul.expect li{margin:.25em 0}
svg{background:#fcfcfc;border:1px solid #e5e5e5}svg text{font-size:11px;fill:#444}
.grid{stroke:#e8e8e8}.axis{stroke:#888}.event{stroke:#c62828;stroke-dasharray:4 3}.muted{color:#777}
"""


def render(run: RunResult, results: list[ExpectationResult], passed: bool) -> str:
    title = f"mqspec: {run.scenario}"
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{_e(title)}</h1>", _summary(run, passed),
             _expectations(results, run), *_charts(run.timeseries), _counts(run), _notes(run), "</body></html>\n"]
    return "\n".join(part for part in parts if part)


def write(path: str, run: RunResult, results: list[ExpectationResult], passed: bool) -> None:
    try:
        Path(path).write_text(render(run, results, passed), encoding="utf-8")
    except OSError as exc:
        raise OperationFailed(f"cannot write HTML report to {path}: {exc.strerror or exc}") from None


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _summary(run: RunResult, passed: bool) -> str:
    verdict = "PASSED" if passed else ("INTERRUPTED" if run.interrupted else "FAILED")
    rows = [("ended", run.ended), ("elapsed", f"{run.elapsed:.1f} s"), ("worker processes", run.workers),
            ("messages expected", f"{run.expected:,}"), ("lost", f"{run.lost:,}"), ("duplicates", f"{run.duplicates:,}")]
    if run.latency is not None:
        lat = run.latency
        rows.append(("latency ms", f"p50 {lat.p50:g} · p95 {lat.p95:g} · p99 {lat.p99:g} · max {lat.max:g} ({lat.count:,} messages)"))
    if run.error:
        rows.append(("error", run.error))
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return (f"<p class=\"verdict {'pass' if passed else 'fail'}\" id=\"verdict\">{verdict}</p>"
            f"<h2>Summary</h2><table id=\"summary\">{body}</table>")


def _expectations(results: list[ExpectationResult], run: RunResult) -> str:
    if not results:
        note = "the run was interrupted; expectations were not checked" if run.interrupted else "no expectations"
        return f"<h2>Expectations</h2><p class=\"muted\">{_e(note)}</p>"
    items = []
    for result in results:
        if result.passed:
            items.append(f"<li class=\"pass\">PASS {_e(result.description)}</li>")
        else:
            items.append(f"<li class=\"fail\">FAIL {_e(result.description)}: {_e(failure_message(result))}</li>")
    failed = sum(1 for r in results if not r.passed)
    head = f"{len(results) - failed} of {len(results)} passed"
    return f"<h2>Expectations <span class=\"muted\">({head})</span></h2><ul class=\"expect\" id=\"expectations\">{''.join(items)}</ul>"


def _charts(series: TimeSeries) -> list[str]:
    if series.empty:
        return ["<h2>Over time</h2><p class=\"muted\">the run was shorter than a second: no time series</p>"]
    data = columns(series)
    t: list[float] = data["t"]
    rates: list[Line] = []
    for name, row in data["producers"].items():
        rates.append((f"{name} published", row["published"]))
        if any(row["confirmed"]):
            rates.append((f"{name} confirmed", row["confirmed"]))
    for name, row in data["consumers"].items():
        rates.append((f"{name} received", row["received"]))
    latency = [(m, data["latency_ms"][m]) for m in ("p50", "p95", "p99", "max")]
    depths = [(name, row["depth"]) for name, row in data["queues"].items()]
    out = ["<h2>Over time</h2>", _chart("rates", "messages/s", t, rates, series.events)]
    if any(v is not None for _n, values in latency for v in values):
        out.append(_chart("latency", "ms", t, latency, series.events))
    if depths:
        out.append(_chart("queue-depth", "ready messages", t, depths, series.events))
    if series.events:
        out.append("<ul id=\"events\">" + "".join(f"<li>{e.t:.1f}s: {_e(e.text)}</li>" for e in series.events) + "</ul>")
    return out


def _nice(top: float) -> float:
    """A round upper bound for an axis: 1, 2 or 5 times a power of ten."""
    if top <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(top))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= top)


def _chart(name: str, unit: str, t: Sequence[float], lines: Sequence[Line], events: Sequence[Event]) -> str:
    """A line chart as inline SVG: one <path class="series"> per line, gaps where a value is None."""
    x_max = max(t[-1], 1.0)
    y_max = _nice(max((v for _l, values in lines for v in values if v is not None), default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(value: float) -> float:
        return LEFT + value / x_max * plot_w

    def y(value: float) -> float:
        return TOP + plot_h - value / y_max * plot_h

    height = HEIGHT + 20 * _legend_rows(lines)
    svg = [f"<svg id=\"chart-{name}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" "
           f"viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{_e(name)}\">",
           f"<text x=\"{LEFT}\" y=\"18\" font-weight=\"bold\">{_e(name.replace('-', ' '))} ({_e(unit)})</text>"]
    for i in range(6):
        value = y_max * i / 5
        svg.append(f"<line class=\"grid\" x1=\"{LEFT}\" x2=\"{WIDTH - RIGHT}\" y1=\"{y(value):.1f}\" y2=\"{y(value):.1f}\"/>"
                   f"<text x=\"{LEFT - 6}\" y=\"{y(value) + 4:.1f}\" text-anchor=\"end\">{_tick(value)}</text>")
    step = _nice(x_max / 10)
    tick = 0.0
    while tick <= x_max + 1e-9:
        svg.append(f"<text x=\"{x(tick):.1f}\" y=\"{TOP + plot_h + 16}\" text-anchor=\"middle\">{_tick(tick)}s</text>")
        tick += step
    svg.append(f"<line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{TOP + plot_h}\"/>"
               f"<line class=\"axis\" x1=\"{LEFT}\" x2=\"{WIDTH - RIGHT}\" y1=\"{TOP + plot_h}\" y2=\"{TOP + plot_h}\"/>")
    for event in events:
        svg.append(f"<line class=\"event\" x1=\"{x(event.t):.1f}\" x2=\"{x(event.t):.1f}\" y1=\"{TOP}\" y2=\"{TOP + plot_h}\">"
                   f"<title>{_e(event.text)}</title></line>"
                   f"<text x=\"{x(event.t) + 3:.1f}\" y=\"{TOP + 10}\" fill=\"#c62828\">{_e(_short(event.text))}</text>")
    for index, (label, values) in enumerate(lines):
        color = COLORS[index % len(COLORS)]
        svg.append(f"<path class=\"series\" data-label=\"{_e(label)}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" "
                   f"d=\"{_path(t, values, x, y)}\"/>")
    svg.extend(_legend(lines))
    svg.append("</svg>")
    return "".join(svg)


def _path(t: Sequence[float], values: Sequence[float | None], x: Callable[[float], float], y: Callable[[float], float]) -> str:
    commands: list[str] = []
    pen_down = False
    for when, value in zip(t, values, strict=False):
        if value is None:
            pen_down = False
            continue
        commands.append(f"{'L' if pen_down else 'M'}{x(when):.1f} {y(value):.1f}")
        pen_down = True
    return " ".join(commands) or "M0 0"


def _legend_rows(lines: Sequence[Line]) -> int:
    return (len(lines) + 3) // 4


def _legend(lines: Sequence[Line]) -> list[str]:
    out = []
    for index, (label, _values) in enumerate(lines):
        row, column = divmod(index, 4)
        lx, ly = LEFT + column * 230, HEIGHT + row * 20
        out.append(f"<rect x=\"{lx}\" y=\"{ly - 9}\" width=\"12\" height=\"4\" fill=\"{COLORS[index % len(COLORS)]}\"/>"
                   f"<text x=\"{lx + 18}\" y=\"{ly - 4}\">{_e(label)}</text>")
    return out


def _tick(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:39] + "…"


def _counts(run: RunResult) -> str:
    parts = []
    if run.producers:
        head = "<tr><th>producer</th><th>published</th><th>confirmed</th><th>nacked</th><th>returned</th><th>msg/s</th></tr>"
        rows = "".join(f"<tr><td>{_e(p.name)}</td><td>{p.published:,}</td><td>{p.confirmed:,}</td><td>{p.nacked:,}</td>"
                       f"<td>{p.returned:,}</td><td>{p.rate:,.0f}</td></tr>" for p in run.producers.values())
        parts.append(f"<h2>Producers</h2><table id=\"producers\">{head}{rows}</table>")
    if run.consumers:
        head = ("<tr><th>consumer</th><th>queue</th><th>received</th><th>acked</th><th>redelivered</th><th>duplicates</th>"
                "<th>lost</th><th>msg/s</th></tr>")
        rows = "".join(f"<tr><td>{_e(c.name)}</td><td>{_e(c.queue)}</td><td>{c.received:,}</td><td>{c.acked:,}</td>"
                       f"<td>{c.redelivered:,}</td><td>{c.duplicates:,}</td><td>{c.lost:,}</td><td>{c.rate:,.0f}</td></tr>"
                       for c in run.consumers.values())
        parts.append(f"<h2>Consumers</h2><table id=\"consumers\">{head}{rows}</table>")
    return "".join(parts)


def _notes(run: RunResult) -> str:
    lines = [f"fault: {f}" for f in run.faults] + [f"note: {n}" for n in run.notes]
    if not lines:
        return ""
    return "<h2>Notes</h2><ul>" + "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>"
