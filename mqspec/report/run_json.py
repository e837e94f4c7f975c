"""The run report as JSON (`mqspec apply --report PATH`, or `--format json` on stdout): a stable shape.

Every field emitted (NAME keys are producer, consumer, RPC client/server or queue names):

    {"scenario": str,                     the scenario's name
     "passed": bool,                      every expectation held and the run was not interrupted
     "producers": {NAME: {
         "published": int,                messages published (first attempts; republishes not counted)
         "confirmed": int, "nacked": int, publisher confirms received (0 without `confirm`)
         "returned": int,                 returned as unroutable (`mandatory`)
         "rate": float,                   published per second (see Rates)
         "instances": int,
         "unconfirmed": int,              still unconfirmed when the run ended (counted as failed)
         "reconnects": int,               connections re-established after a loss
         "republished": int,              unconfirmed messages published again after a reconnect
         "blocked": int,                  times the broker blocked the connection (connection.blocked: an alarm)
         "blocked_seconds": float,        seconds spent blocked; never counted as loss
         "finished": int,                 instances that published everything they were to (and had it confirmed)
         "confirm_latency_ms": {"p50": float, "p95": float, "p99": float, "max": float, "count": int} | null}},
                                          publish to publisher confirm (basic.ack), per confirmed message; null
                                          without `confirm`
     "consumers": {NAME: {
         "received": int, "acked": int, "rejected": int, "nacked": int,
         "redelivered": int,              deliveries with the broker's redelivered flag
         "duplicates": int,               marked messages received twice with redelivered=false
         "lost": int,                     on this consumer's queue: expected, received by none of its consumers
         "expected": int,                 expected messages routed to this consumer's queue
         "missing": int,                  of those, how many this consumer never received
         "rate": float,                   received per second (see Rates)
         "queue": str, "instances": int,
         "per_instance": [int],           received by each instance, in instance order
         "dead_lettered": int,            deliveries carrying an x-death header (arrived by dead-lettering)
         "foreign": int,                  messages without a valid mark of this run (other runs or publishers)
         "discarded": int,                rejected or nacked with requeue: false, no dead-letter exchange: dropped
         "out_of_order": int,             first deliveries numbered below one already seen from the same producer
         "reconnects": int,
         "crashed": int}},                instances that died holding unacked messages (crash_after, kill_consumer)
     "latency_ms": {"p50": float, "p95": float, "p99": float, "max": float} | null,
                                          publish-to-delivery latency; null when no marked message was consumed
     "expectations": [{"description": str, "passed": bool,
                       "unknown": bool,                  it needs counts that are missing (never passed)
                       "expected": any, "actual": any,   JSON values, as shown in the text report
                       "detail": str,                    why it failed, or "" when nothing to add
                       "where": str}],                   path in the file: $.expect[i] (a route: $.expect[i].routes[j])
     "rpc_clients": {NAME: {"requests": int, "sent": int, "answered": int, "timeouts": int,
                            "stray": int,                replies matching no outstanding request
                            "rate": float}},             answered per second (see Rates)
     "rpc_servers": {NAME: {"instances": int, "handled": int}},
     "latency_samples": int,              messages behind latency_ms (0 when null)
     "latency_note": str | null,          set when a producer ran unthrottled (latency is mostly queueing), or
                                          consumers let bytes wait in their sockets (workload.read_wait)
     "messages": {"expected": int, "lost": int, "duplicates": int},   run-wide accounting
     "queues": {NAME: {"exists": bool, "depth": int | null, "consumers": int | null}},
                                          queues observed after the run for `depth` expectations
     "routes": [{"exchange": str, "key": str, "headers": {str: any}, "expected": [str],
                 "landed": [str], "returned": bool, "note": str}],
                                          live probes of `routes` expectations: where each probe message landed
     "ended": "done" | "drained" | "drain_timeout" | "duration" | "timeout" | "interrupted" | "terminated" | "failed",
     "interrupted": bool,                 Ctrl-C (exit 130) or SIGTERM (exit 143): counts are partial
     "error": str | null,                 the error that ended the workload or kept it from starting
                                          (topology refused, broker unreachable, NOT_FOUND): "failed"
     "left_over": {QUEUE: int},           after an error: messages left in the queues this run publishes to
     "missing_counts": [str],             instances whose counts never arrived (a hung worker, killed)
     "elapsed_s": float,                  seconds from the common start to the end of the run
     "workers": int,                      worker processes used
     "faults": [str],                     each fault that fired, with what happened
     "notes": [str],                      anything else worth knowing (worker trouble, fault errors)
     "outcomes": {"confirmed_consumed": int, "confirmed_lost": int, "unconfirmed_consumed": int,
                  "unconfirmed_lost": int, "redelivered": int, "duplicated": int} | null,
                                          the fate of every published message (mqspec/core/outcomes.py)
     "unavailable": [{"queue": str, "start_s": float, "end_s": float, "seconds": float, "open": bool}],
                                          silences of consumed queues while messages waited (not while
                                          their publishers were blocked by an alarm: see blocked_seconds)
     "unavailable_seconds": {QUEUE: float},  how long each queue was unavailable in all (its windows added up)
     "fault_series": [{"fault": str, "start_s": float, "end_s": float,
                       "seconds": [{"second": int, "published": int, "confirmed": int, "received": int}]}],
                                          per-second counts around each fault
     "timeseries": {                      the run second by second (see Time series)
         "t": [float],                    end of each second, in seconds from the common start
         "producers": {NAME: {"published": [float], "confirmed": [float]}},     per second
         "consumers": {NAME: {"received": [float], "acked": [float]}},          per second
         "latency_ms": {"p50": [float | null], "p95": [...], "p99": [...], "max": [...],
                        "count": [int | null]},      of the deliveries in each second; null: none
         "queues": {NAME: {"depth": [int | null]}},  ready messages; null: could not be read then
         "events": [{"t": float, "text": str}]}}     faults, when they fired

Every producer and consumer is aggregated over its instances. `expected` (run-wide) counts messages
that should reach some consumer: confirmed (or published, without confirms) minus returned and nacked.
`lost` of a consumer counts, on its queue, confirmed messages of the routing-key slots that reach
that queue which none of the queue's consumers received; broker redeliveries are `redelivered`, not
`duplicates`.

Time series: every list is aligned with `t`. The parent samples the workers' cumulative counters
(from the progress reports they send ten times a second anyway) once a second and takes the
difference; latency is the deliveries each worker recorded since its previous once-a-second report;
queue depths come from a passive queue.declare on the parent's own connection (exact and immediate,
where the management API's counts lag by its statistics interval). The last point covers the part
second up to the end of the run.

Rates are messages per second from the first to the last publish (producers), delivery (consumers)
or reply (RPC clients). When that span is under 0.5 s (a burst written in one batch) the rate is
taken over the whole run (`elapsed_s`) instead, and the text report shows "-".
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mqspec.core import outcomes
from mqspec.core.expect import ExpectationResult
from mqspec.core.result import Latency, RunResult
from mqspec.core.timeseries import columns
from mqspec.errors import OperationFailed

UNTHROTTLED_NOTE = ("producers ran unthrottled, so these latencies are mostly time spent waiting in the queue, not "
                    "transfer time; set a fixed `rate` below the consumers' capacity to measure end-to-end latency")


def latency_note(run: RunResult) -> str | None:
    """What the latencies measure: queueing when producers ran unthrottled, and any wait the consumers added."""
    if run.latency is None:
        return None
    notes = [note for note in (UNTHROTTLED_NOTE if run.unthrottled else "", run.read_wait) if note]
    return "; ".join(notes) or None


def _latency_ms(latency: Latency | None) -> dict[str, float] | None:
    if latency is None:
        return None
    return {"p50": latency.p50, "p95": latency.p95, "p99": latency.p99, "max": latency.max, "count": latency.count}


def as_dict(run: RunResult, results: list[ExpectationResult], passed: bool) -> dict[str, Any]:
    latency = run.latency
    return {
        "scenario": run.scenario,
        "passed": passed,
        "producers": {name: {"published": p.published, "confirmed": p.confirmed, "nacked": p.nacked, "returned": p.returned,
                             "rate": p.rate, "instances": p.instances, "unconfirmed": p.unconfirmed,
                             "reconnects": p.reconnects, "republished": p.republished, "finished": p.finished,
                             "blocked": p.blocked, "blocked_seconds": p.blocked_seconds,
                             "confirm_latency_ms": _latency_ms(p.confirm_latency)}
                      for name, p in run.producers.items()},
        "consumers": {name: {"received": c.received, "acked": c.acked, "redelivered": c.redelivered,
                             "duplicates": c.duplicates, "lost": c.lost, "expected": c.expected, "missing": c.missing,
                             "rate": c.rate, "queue": c.queue,
                             "instances": c.instances, "per_instance": list(c.per_instance), "rejected": c.rejected,
                             "nacked": c.nacked, "dead_lettered": c.dead_lettered, "foreign": c.foreign,
                             "discarded": c.discarded,
                             "out_of_order": c.out_of_order, "reconnects": c.reconnects, "crashed": c.crashed}
                      for name, c in run.consumers.items()},
        "latency_ms": None if latency is None else {"p50": latency.p50, "p95": latency.p95, "p99": latency.p99,
                                                      "max": latency.max},
        "expectations": [{"description": r.description, "passed": r.passed, "unknown": r.unknown, "expected": r.expected,
                          "actual": r.actual, "detail": r.detail, "where": r.where} for r in results],
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
        "error": run.error or None,
        "left_over": {left.queue: left.messages for left in run.left_over},
        "missing_counts": [f"{m.label}: {m.why}" for m in run.missing],
        "elapsed_s": run.elapsed,
        "workers": run.workers,
        "faults": list(run.faults),
        "notes": list(run.notes),
        "outcomes": asdict(run.outcomes) if run.outcomes is not None else None,
        "unavailable": [{"queue": w.queue, "start_s": w.start, "end_s": w.end, "seconds": w.seconds, "open": w.open}
                        for w in run.unavailable],
        "unavailable_seconds": outcomes.queue_seconds(run.unavailable),
        "fault_series": [{"fault": f.fault, "start_s": f.start, "end_s": f.end, "seconds": [asdict(s) for s in f.seconds]}
                         for f in run.fault_series],
        "timeseries": columns(run.timeseries),
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
