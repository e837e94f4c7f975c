"""Expectations as JUnit XML (`--junit PATH`): one test case per expectation, for CI systems."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from mqspec.core.expect import ExpectationResult
from mqspec.core.result import RunResult
from mqspec.errors import OperationFailed


def shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def failure_message(result: ExpectationResult) -> str:
    if result.unknown or (result.expected is None and result.actual is None):
        return f"unknown: {result.detail}" if result.unknown else result.detail
    text = f"expected {shown(result.expected)}, got {shown(result.actual)}"
    return f"{text} ({result.detail})" if result.detail else text


def left_over_lines(run: RunResult) -> list[str]:
    """What an error left behind, one line per queue holding messages."""
    return [f"{left.messages:,} message{'s' if left.messages != 1 else ''} left in queue '{left.queue}'"
            for left in run.left_over]


def render(run: RunResult, results: list[ExpectationResult]) -> str:
    """One suite; a run that did not complete (setup error, interrupted) adds an <error> case, so never 0 tests."""
    cases = [_case(run, result) for result in results]
    trouble = _trouble(run)
    if trouble is not None:
        cases.insert(0, trouble)
    failures = sum(1 for r in results if not r.passed)
    errors = int(trouble is not None)
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": str(errors)}
    suite = ET.Element("testsuite", {"name": run.scenario, **counts, "skipped": "0", "time": f"{run.elapsed:.3f}"})
    suite.extend(cases)
    root = ET.Element("testsuites", {"name": "mqspec", **counts, "time": f"{run.elapsed:.3f}"})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _case(run: RunResult, result: ExpectationResult) -> ET.Element:
    case = ET.Element("testcase", {"classname": f"mqspec.{run.scenario}", "name": result.description, "time": "0"})
    if not result.passed:
        message = failure_message(result)
        ET.SubElement(case, "failure", {"message": message, "type": "ExpectationFailed"}).text = message
    if result.where:
        # junit-10 allows no <properties> in a test case; where the expectation sits goes to its output
        ET.SubElement(case, "system-out").text = f"where: {result.where}"
    return case


def _trouble(run: RunResult) -> ET.Element | None:
    if run.error:
        # the run could not be set up or ended on an error: one line, then what it left in which queues
        message, kind = run.error, "SetupError"
        text = "\n".join([run.error, *left_over_lines(run)])
    elif run.interrupted:
        message, kind = "the run was interrupted; counts are partial and the expectations were not checked", "Interrupted"
        text = message
    else:
        return None
    case = ET.Element("testcase", {"classname": f"mqspec.{run.scenario}", "name": "workload run", "time": f"{run.elapsed:.3f}"})
    ET.SubElement(case, "error", {"message": message, "type": kind}).text = text
    return case


def write(path: str, run: RunResult, results: list[ExpectationResult]) -> None:
    try:
        Path(path).write_text(render(run, results), encoding="utf-8")
    except OSError as exc:
        raise OperationFailed(f"cannot write JUnit report to {path}: {exc.strerror or exc}") from None
