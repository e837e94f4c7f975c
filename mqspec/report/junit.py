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
    failures = sum(1 for r in results if not r.passed)
    errors = 1 if run.error else 0
    suite = ET.Element("testsuite", {
        "name": run.scenario, "tests": str(len(results) + errors), "failures": str(failures), "errors": str(errors),
        "skipped": "0", "time": f"{run.elapsed:.3f}"})
    if run.interrupted:
        ET.SubElement(suite, "system-err").text = "the run was interrupted; counts are partial"
    if run.error:
        case = ET.SubElement(suite, "testcase", {"classname": f"mqspec.{run.scenario}", "name": "workload", "time": "0"})
        ET.SubElement(case, "error", {"message": run.error, "type": "WorkloadFailed"}).text = "\n".join(
            [run.error, *left_over_lines(run)])
    for result in results:
        case = ET.SubElement(suite, "testcase", {"classname": f"mqspec.{run.scenario}", "name": result.description,
                                                 "time": "0"})
        if result.where:
            properties = ET.SubElement(case, "properties")
            ET.SubElement(properties, "property", {"name": "where", "value": result.where})
        if not result.passed:
            message = failure_message(result)
            ET.SubElement(case, "failure", {"message": message, "type": "ExpectationFailed"}).text = message
    root = ET.Element("testsuites", {"name": "mqspec", "tests": str(len(results) + errors), "failures": str(failures),
                                     "errors": str(errors)})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(path: str, run: RunResult, results: list[ExpectationResult]) -> None:
    try:
        Path(path).write_text(render(run, results), encoding="utf-8")
    except OSError as exc:
        raise OperationFailed(f"cannot write JUnit report to {path}: {exc.strerror or exc}") from None
