"""Results people look at: the time series, the HTML report, live progress, Prometheus metrics, JUnit."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from lxml import etree

from mqspec.core.expect import ExpectationResult
from mqspec.core.result import RunResult
from mqspec.core.timeseries import Recorder, percentiles
from mqspec.report import junit
from tests.conftest import mqspec, queue_counts

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).with_name("junit-10.xsd"))))
MQSPEC = str(Path(sys.executable).with_name("mqspec"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]

PRODUCER_ONLY = """\
version: 1
name: depth-grows
broker: {{url: "{url}"}}
topology:
  queues: [{{name: backlog, durable: false}}]
workload:
  producers:
    - {{name: shop, queue: backlog, rate: {rate}/s, duration: {seconds}s, confirm: 50}}
expect:
  - {{producer: shop, published: {{min: 100}}}}
  - {{queue: backlog, depth: {{min: 1}}}}
"""

WITH_CONSUMER = """\
version: 1
name: orders-flow
broker: {{url: "{url}"}}
topology:
  queues: [{{name: orders, durable: false}}]
workload:
  producers:
    - {{name: shop, queue: orders, rate: 300/s, duration: {seconds}s, confirm: 50}}
  consumers:
    - {{name: billing, queue: orders, prefetch: 50}}
  faults:
    - {{action: close_connections, at: 1500ms}}
expect:
  - {{consumer: billing, received: {{min: 100}}}}
  - {{no_loss: true}}
"""


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return str(path)


def _validate(xml: str) -> None:
    document = etree.fromstring(xml.encode())
    if not SCHEMA.validate(document):
        raise AssertionError(str(SCHEMA.error_log))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the time series -------------------------------------------------------------------------------

def test_percentiles_of_quantised_counts_pick_the_value_where_the_share_is_reached() -> None:
    point = percentiles({1000: 50, 2000: 45, 9000: 4, 50000: 1})
    assert point is not None
    assert (point.p50, point.p95, point.p99, point.max, point.count) == (1.0, 2.0, 9.0, 50.0, 100)
    assert percentiles({}) is None


def test_recorder_turns_cumulative_counts_into_rates_per_second() -> None:
    recorder = Recorder()
    recorder.sample(1.0, {"p": {"published": 100, "confirmed": 90}}, {}, {"q": 10})
    second = recorder.sample(1.5, {"p": {"published": 400, "confirmed": 390}}, {}, {"q": None})
    assert second.producers == {"p": {"published": 600.0, "confirmed": 600.0}}
    assert second.queues == {"q": None}


def test_time_series_adds_up_to_what_the_broker_holds(url: str, tmp_path: Path) -> None:
    report = tmp_path / "run.json"
    result = mqspec("apply", _write(tmp_path, PRODUCER_ONLY.format(url=url, rate=200, seconds=3)), "--report", str(report))
    assert result.exit_code == 0, result.output
    series = json.loads(report.read_text())["timeseries"]
    ready, _consumers = queue_counts(url, "backlog")   # a plain pika client, not mqspec
    t = [0.0, *series["t"]]
    published = sum(rate * (t[i + 1] - t[i]) for i, rate in enumerate(series["producers"]["shop"]["published"]))
    assert round(published) == ready == 600
    depths = series["queues"]["backlog"]["depth"]
    assert depths[-1] == ready
    assert depths == sorted(depths), "with no consumer the sampled depth only grows"
    assert len(series["t"]) >= 3


# --- the HTML report ---------------------------------------------------------------------------------

def test_html_report_draws_its_charts_in_headless_chromium(url: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is required (make test installs it: scripts/ensure-tools)"
    page = tmp_path / "report.html"
    result = mqspec("apply", _write(tmp_path, WITH_CONSUMER.format(url=url, seconds=3)), "--html", str(page))
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, "self-contained"
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    for chart in ("chart-rates", "chart-latency", "chart-queue-depth"):
        assert f'id="{chart}"' in dom
    drawn = re.findall(r'<path class="series" data-label="([^"]+)"[^>]*d="(M[^"]*L[^"]*)"', dom)
    assert {"shop published", "billing received", "p99"} <= {label for label, _d in drawn}
    assert 'class="event"' in dom and "close_connections at 1.5s" in dom
    assert "PASS consumer 'billing' received &gt;= 100" in dom
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 20_000


# --- live progress -----------------------------------------------------------------------------------

def test_live_progress_prints_a_line_a_second_on_a_terminal(url: str, tmp_path: Path) -> None:
    path = _write(tmp_path, PRODUCER_ONLY.format(url=url, rate=200, seconds=3))
    leader, follower = pty.openpty()
    process = subprocess.Popen([MQSPEC, "apply", path], stdin=follower, stdout=follower, stderr=follower,
                               env={**os.environ, "COLUMNS": "200", "TERM": "xterm"})
    os.close(follower)
    screen = b""
    while True:
        ready, _w, _x = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    assert process.wait(30) == 0
    text = screen.decode(errors="replace")
    lines = re.findall(r"\s+(\d)s  shop published ([\d,]+)/s  in flight: [\d,]+ unconfirmed|\s+(\d)s  shop published", text)
    assert len(lines) >= 2, text
    assert "in flight:" in text and "expectations: 1 met" in text


def test_live_progress_stays_off_when_output_is_not_a_terminal(url: str, tmp_path: Path) -> None:
    result = mqspec("apply", _write(tmp_path, PRODUCER_ONLY.format(url=url, rate=200, seconds=2)))
    assert result.exit_code == 0
    assert "in flight:" not in result.output


# --- Prometheus ----------------------------------------------------------------------------------------

def test_metrics_endpoint_serves_the_counts_while_the_run_goes(url: str, tmp_path: Path) -> None:
    port = _free_port()
    path = _write(tmp_path, PRODUCER_ONLY.format(url=url, rate=200, seconds=4))
    process = subprocess.Popen([MQSPEC, "apply", path, "--metrics", f":{port}"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    published = 0.0
    depth = None
    deadline = time.monotonic() + 30
    body = ""
    while time.monotonic() < deadline and process.poll() is None:
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        found = re.search(r'^mqspec_messages_published_total\{producer="shop"\} ([\d.e+]+)$', body, re.M)
        queue = re.search(r'^mqspec_queue_depth_messages\{queue="backlog"\} ([\d.e+]+)$', body, re.M)
        if found and float(found.group(1)) > 0 and queue:
            published, depth = float(found.group(1)), float(queue.group(1))
            break
        time.sleep(0.2)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, output
    assert 0 < published < 800, body
    assert depth is not None
    assert "# TYPE mqspec_messages_published_total counter" in body
    assert "# TYPE mqspec_end_to_end_latency_seconds gauge" in body
    assert queue_counts(url, "backlog")[0] == 800   # the run's total, from a plain pika client
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_metrics_address_that_is_not_host_port_is_refused_before_the_run(tmp_path: Path) -> None:
    path = _write(tmp_path, PRODUCER_ONLY.format(url="amqp://guest:guest@127.0.0.1:1/x", rate=1, seconds=1))
    result = mqspec("apply", path, "--metrics", "nine")
    assert result.exit_code == 2
    assert "error: --metrics expects [HOST]:PORT, e.g. :9464 or 0.0.0.0:9464, got 'nine'" in result.stderr


# --- JUnit ---------------------------------------------------------------------------------------------

def test_junit_passes_and_failures_validate_against_the_junit_10_schema() -> None:
    results = [ExpectationResult("consumer 'c' received 10", True, 10, 10, "", "$.expect[0]"),
               ExpectationResult("no loss", False, 0, 3, "3 lost", "$.expect[1]")]
    xml = junit.render(RunResult(scenario="s", elapsed=1.5), results)
    _validate(xml)
    assert 'tests="2" failures="1" errors="0"' in xml
    assert "<system-out>where: $.expect[1]</system-out>" in xml


def test_junit_10_schema_refuses_properties_inside_a_test_case() -> None:
    old = ('<testsuites><testsuite name="s" tests="1" failures="0" errors="0"><testcase name="x">'
           '<properties><property name="where" value="$.expect[0]"/></properties></testcase></testsuite></testsuites>')
    with pytest.raises(AssertionError, match="properties"):
        _validate(old)


def test_interrupted_run_writes_an_error_case_not_zero_tests() -> None:
    xml = junit.render(RunResult(scenario="s", ended="interrupted", elapsed=2.0), [])
    _validate(xml)
    assert 'tests="1" failures="0" errors="1"' in xml
    assert 'type="Interrupted"' in xml


def test_unreachable_broker_still_writes_report_and_junit_with_an_error_case(tmp_path: Path) -> None:
    path = _write(tmp_path, PRODUCER_ONLY.format(url="amqp://guest:guest@127.0.0.1:1/x", rate=10, seconds=1))
    report, xml = tmp_path / "run.json", tmp_path / "run.xml"
    result = mqspec("apply", path, "--report", str(report), "--junit", str(xml))
    assert result.exit_code != 0
    body = json.loads(report.read_text())
    assert body["passed"] is False and body["ended"] == "failed"
    assert body["error"].startswith("the topology could not be applied: ")
    text = xml.read_text()
    _validate(text)
    assert 'errors="1"' in text and 'type="SetupError"' in text


def test_not_found_queue_in_the_workload_still_writes_the_junit_error(url: str, tmp_path: Path) -> None:
    scenario = f"""\
version: 1
name: missing-queue
broker: {{url: "{url}"}}
topology:
  queues: [{{name: nowhere, external: true}}]
workload:
  consumers:
    - {{name: reader, queue: nowhere, messages: 1}}
  duration: 2s
"""
    xml = tmp_path / "run.xml"
    result = mqspec("apply", _write(tmp_path, scenario), "--junit", str(xml))
    assert result.exit_code != 0, result.output
    text = xml.read_text()
    _validate(text)
    assert 'type="SetupError"' in text and "not found: queue 'nowhere'" in text


def test_time_series_rates_give_back_the_counts_however_short_the_last_span() -> None:
    from mqspec.core.timeseries import Recorder

    recorder = Recorder()
    for t, published in ((1.0004, 199), (2.0011, 398), (2.0123, 600)):   # the last span is 11 ms long
        recorder.sample(t, {"p": {"published": published, "confirmed": 0}}, {}, {})
    points = recorder.series().points
    starts = [0.0, *(p.t for p in points[:-1])]
    spans = [point.t - start for start, point in zip(starts, points, strict=True)]
    total = sum(p.producers["p"]["published"] * span for p, span in zip(points, spans, strict=True))
    assert round(total) == 600
