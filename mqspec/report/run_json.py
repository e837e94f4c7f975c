"""The run report as JSON (`mqspec apply --report PATH`): a stable, documented shape.

    {"scenario": str, "passed": bool,
     "producers": {NAME: {"published": int, "confirmed": int, "nacked": int, "returned": int, "rate": float,
                          "instances": int, "unconfirmed": int, "reconnects": int, "republished": int}},
     "consumers": {NAME: {"received": int, "acked": int, "redelivered": int, "duplicates": int, "lost": int, "rate": float,
                          "queue": str, "instances": int, "per_instance": [int], "rejected": int, "nacked": int,
                          "dead_lettered": int, "foreign": int, "out_of_order": int, "reconnects": int, "crashed": int}},
     "latency_ms": {"p50": float, "p95": float, "p99": float, "max": float},
     "expectations": [{"description": str, "passed": bool, "expected": ..., "actual": ..., "detail": str, "where": str}],
     ...extra fields below}

Every producer and consumer is aggregated over its instances. Rates are messages per second:
producers over their publishing window, consumers from their first to their last delivery.
`lost` of a consumer counts, on its queue, confirmed messages of the routing-key slots that reach
that queue which none of the queue's consumers received; `duplicates` counts messages received
twice by this consumer's instances with redelivered=false (broker redeliveries are `redelivered`).
`latency_ms` is null when no marked message was consumed.

Extra top-level fields (beyond issue 4's minimum):
    "rpc_clients": {NAME: {"requests", "sent", "answered", "timeouts", "stray", "rate"}},
    "rpc_servers": {NAME: {"instances", "handled"}},
    "latency_samples": int, "latency_note": str | null (set when a producer ran unthrottled),
    "messages": {"expected": int, "lost": int, "duplicates": int}  (run-wide accounting),
    "queues": {NAME: {"exists": bool, "depth": int | null, "consumers": int | null}},
    "routes": [{"exchange", "key", "headers", "expected": [str], "landed": [str], "returned": bool, "note"}],
    "ended": "done" | "drained" | "drain_timeout" | "duration" | "timeout" | "interrupted",
    "interrupted": bool, "elapsed_s": float, "workers": int, "faults": [str], "notes": [str].
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mqspec.errors import OperationFailed
from mqspec.expect import ExpectationResult
from mqspec.workload.result import RunResult

UNTHROTTLED_NOTE = ("producers ran unthrottled, so these latencies are mostly time spent waiting in the queue, not "
                    "transfer time; set a fixed `rate` below the consumers' capacity to measure end-to-end latency")


def latency_note(run: RunResult) -> str | None:
    return UNTHROTTLED_NOTE if run.unthrottled and run.latency is not None else None


def as_dict(run: RunResult, results: list[ExpectationResult], passed: bool) -> dict[str, Any]:
    latency = run.latency
    return {
        "scenario": run.scenario,
        "passed": passed,
        "producers": {name: {"published": p.published, "confirmed": p.confirmed, "nacked": p.nacked, "returned": p.returned,
                             "rate": p.rate, "instances": p.instances, "unconfirmed": p.unconfirmed,
                             "reconnects": p.reconnects, "republished": p.republished}
                      for name, p in run.producers.items()},
        "consumers": {name: {"received": c.received, "acked": c.acked, "redelivered": c.redelivered,
                             "duplicates": c.duplicates, "lost": c.lost, "rate": c.rate, "queue": c.queue,
                             "instances": c.instances, "per_instance": list(c.per_instance), "rejected": c.rejected,
                             "nacked": c.nacked, "dead_lettered": c.dead_lettered, "foreign": c.foreign,
                             "out_of_order": c.out_of_order, "reconnects": c.reconnects, "crashed": c.crashed}
                      for name, c in run.consumers.items()},
        "latency_ms": None if latency is None else {"p50": latency.p50, "p95": latency.p95, "p99": latency.p99,
                                                      "max": latency.max},
        "expectations": [{"description": r.description, "passed": r.passed, "expected": r.expected, "actual": r.actual,
                          "detail": r.detail, "where": r.where} for r in results],
        "rpc_clients": {name: {"requests": c.requests, "sent": c.sent, "answered": c.answered, "timeouts": c.timeouts,
                               "stray": c.stray, "rate": c.rate} for name, c in run.rpc_clients.items()},
        "rpc_servers": {name: {"instances": s.instances, "handled": s.handled} for name, s in run.rpc_servers.items()},
        "latency_samples": latency.count if latency is not None else 0,
        "latency_note": latency_note(run),
        "messages": {"expected": run.expected, "lost": run.lost, "duplicates": run.duplicates},
        "queues": {name: {"exists": o.exists, "depth": o.depth, "consumers": o.consumers} for name, o in run.queues.items()},
        "routes": [{"exchange": o.route.exchange, "key": o.route.key, "headers": dict(o.route.headers),
                    "expected": sorted(o.route.to), "landed": list(o.landed), "returned": o.returned, "note": o.note}
                   for o in run.routes],
        "ended": run.ended,
        "interrupted": run.interrupted,
        "elapsed_s": run.elapsed,
        "workers": run.workers,
        "faults": list(run.faults),
        "notes": list(run.notes),
    }


def render(run: RunResult, results: list[ExpectationResult], passed: bool) -> str:
    return json.dumps(as_dict(run, results, passed), indent=2, ensure_ascii=False, default=_default) + "\n"


def write(path: str, run: RunResult, results: list[ExpectationResult], passed: bool) -> None:
    try:
        Path(path).write_text(render(run, results, passed), encoding="utf-8")
    except OSError as exc:
        raise OperationFailed(f"cannot write report to {path}: {exc.strerror or exc}") from None


def _default(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)
