"""Expectations checked against what a run observed. Pure: a RunResult in, one result per check out.

Every result carries a description (the file's own, or one generated from the check), whether it
passed, and the expected and actual values as JSON-ready data, so a failure reads
"expected 10, got 7" in text, JSON and JUnit alike.

A check that depends on an instance whose counts are missing (its worker hung and was killed) is
*unknown*, never passed; so is the run. The run also fails, with a generated result, when a fault
never fired, when a producer or RPC client was still unfinished at the workload's timeout (unless
`timeout_ok`), and for every instance whose counts are missing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mqspec.core import model, outcomes
from mqspec.core.result import ConsumerResult, MissingCounts, ProducerResult, RouteObservation, RunResult
from mqspec.core.units import format_duration


@dataclass(frozen=True)
class ExpectationResult:
    description: str
    passed: bool
    expected: Any
    actual: Any
    detail: str = ""
    where: str = ""
    unknown: bool = False   # it depends on counts that are missing: neither passed nor failed on its own terms


def evaluate(expectations: tuple[model.Expectation, ...], run: RunResult, timeout_ok: bool = False) -> list[ExpectationResult]:
    results: list[ExpectationResult] = []
    for expectation in expectations:
        missing = _depends_on(expectation, run)
        results += [_unknown(r, missing) if missing else r for r in _evaluate(expectation, run)]
    return results + unfired_faults(run) + failed_faults(run) + unfinished(run, timeout_ok) + missing_counts(run)


def _unknown(found: ExpectationResult, missing: list[MissingCounts]) -> ExpectationResult:
    labels = ", ".join(m.label for m in missing)
    return dataclasses.replace(found, passed=False, unknown=True, actual=None,
                               detail=f"the counts of {labels} are missing")


def _depends_on(expectation: model.Expectation, run: RunResult) -> list[MissingCounts]:
    """The missing instances this check needs the counts of."""
    if not run.missing:
        return []
    return [m for m in run.missing if _needs(expectation, m, run)]


def _needs(expectation: model.Expectation, missing: MissingCounts, run: RunResult) -> bool:
    kind, name = missing.kind, missing.name
    if isinstance(expectation, model.CountExpectation):
        subject, measure = expectation.subject, expectation.measure
        if expectation.subject_kind == "queue":
            consumer = run.consumers.get(name)
            return measure != "depth" and kind == "consumer" and consumer is not None and consumer.queue == subject
        wanted = {"producer": "producer", "consumer": "consumer", "rpc": "rpc_client"}[expectation.subject_kind]
        return kind == wanted and name == subject
    if isinstance(expectation, model.RpcAnswered):
        return kind == "rpc_client" and name == expectation.client
    if isinstance(expectation, model.NoLoss):
        return kind in ("producer", "consumer")
    if isinstance(expectation, model.LatencyBound) and expectation.producer is not None:
        return kind == "producer" and name == expectation.producer
    if isinstance(expectation, (model.NoDuplicates, model.LatencyBound)):
        return kind == "consumer"
    if isinstance(expectation, model.Balanced):
        return kind == "consumer" and name in expectation.consumers
    if isinstance(expectation, model.EveryMessage):
        return kind == "producer" or (kind == "consumer" and name in expectation.consumers)
    return False


def missing_counts(run: RunResult) -> list[ExpectationResult]:
    """A run with an instance whose counts never arrived cannot pass: name each one."""
    return [ExpectationResult(f"counts of {m.label}", False, None, None, f"missing: {m.why}", "$.workload",
                              unknown=True) for m in run.missing]


def unfinished(run: RunResult, timeout_ok: bool = False) -> list[ExpectationResult]:
    """A run cut short by its timeout does not pass: every unfinished producer and RPC client fails it."""
    if run.ended != "timeout" or timeout_ok:
        return []
    hint = "(set workload.timeout_ok: true if stopping at the timeout is fine)"
    found = [ExpectationResult(
        f"producer '{p.name}' finished before the workload timeout", False, None, None,
        f"{_instances(p.instances - p.finished, p.instances)} still publishing when the timeout ended the run after "
        f"{run.elapsed:.1f}s ({_published(p)}) {hint}", "$.workload.timeout")
        for p in run.producers.values() if p.finished < p.instances]
    found += [ExpectationResult(
        f"RPC client '{c.name}' finished before the workload timeout", False, None, None,
        f"{c.sent:,} of {c.requests:,} requests sent, {c.answered:,} answered when the timeout ended the run after "
        f"{run.elapsed:.1f}s {hint}", "$.workload.timeout")
        for c in run.rpc_clients.values() if c.answered + c.timeouts < c.requests]
    return found


def _published(producer: ProducerResult) -> str:
    if producer.planned is None:
        return f"{producer.published:,} messages published"
    return f"{producer.published:,} of {producer.planned:,} messages published"


def _instances(count: int, of: int) -> str:
    return "it was" if of == 1 else f"{count} of {of} instances were"


def unfired_faults(run: RunResult) -> list[ExpectationResult]:
    """A scenario that claims to survive a fault does not pass when the fault never happened."""
    return [ExpectationResult(f"fault {fault}", False, None, None,
                              f"did not happen (the run ended after {run.elapsed:.1f}s)", "$.workload.faults")
            for fault in run.unfired_faults]


def failed_faults(run: RunResult) -> list[ExpectationResult]:
    """A fault that could not act proves nothing about surviving it: the run fails, saying why."""
    return [ExpectationResult(f"fault {failure.split(' failed: ')[0]}", False, None, None,
                              f"could not act: {failure.split(' failed: ', 1)[-1]}", "$.workload.faults")
            for failure in run.failed_faults]


def passed(results: list[ExpectationResult]) -> bool:
    return all(r.passed for r in results)


def _evaluate(expectation: model.Expectation, run: RunResult) -> list[ExpectationResult]:
    if isinstance(expectation, model.CountExpectation):
        return [_count(expectation, run)]
    if isinstance(expectation, model.RpcAnswered):
        return [_rpc_answered(expectation, run)]
    if isinstance(expectation, model.NoLoss):
        return [_no_loss(expectation, run)]
    if isinstance(expectation, model.NoDuplicates):
        return [_no_duplicates(expectation, run)]
    if isinstance(expectation, model.Balanced):
        return [_balanced(expectation, run)]
    if isinstance(expectation, model.EveryMessage):
        return [_every_message(expectation, run)]
    if isinstance(expectation, model.LatencyBound):
        return [_latency(expectation, run)]
    return [_route(expectation, route, run) for route in expectation.routes]


def _bounds_value(bounds: model.Bounds) -> Any:
    if bounds.low is not None and bounds.low == bounds.high:
        return bounds.low
    shown: dict[str, int] = {}
    if bounds.low is not None:
        shown["min"] = bounds.low
    if bounds.high is not None:
        shown["max"] = bounds.high
    return shown


def _count(expectation: model.CountExpectation, run: RunResult) -> ExpectationResult:
    kind, subject, measure = expectation.subject_kind, expectation.subject, expectation.measure
    named = measure.replace("_", " ") if kind == "outcomes" else f"{kind} '{subject}' {measure}"
    description = expectation.description or f"{named} {expectation.bounds.describe()}"
    actual, detail = _measure(kind, subject, measure, run)
    ok = actual is not None and expectation.bounds.holds(actual)
    return ExpectationResult(description, ok, _bounds_value(expectation.bounds), actual, detail, expectation.where)


def _measure(kind: str, subject: str, measure: str, run: RunResult) -> tuple[int | None, str]:
    if kind == "outcomes":
        return _outcome(measure, run)
    if kind == "consumer":
        consumer = run.consumers.get(subject)
        if consumer is None:
            return None, f"consumer '{subject}' did not run"
        return int(getattr(consumer, measure)), _foreign(consumer) if measure == "received" else ""
    if kind == "producer":
        producer = run.producers.get(subject)
        return (int(getattr(producer, measure)), "") if producer is not None else (None, f"producer '{subject}' did not run")
    if kind == "rpc":
        client = run.rpc_clients.get(subject)
        return (int(getattr(client, measure)), "") if client is not None else (None, f"RPC client '{subject}' did not run")
    return _queue_measure(subject, measure, run)


def _foreign(consumer: ConsumerResult) -> str:
    """`received` counts every delivery; say how many were not this run's own."""
    if not consumer.foreign:
        return ""
    return f"{consumer.foreign} foreign: left over from earlier runs or other publishers"


def _outcome(measure: str, run: RunResult) -> tuple[int | None, str]:
    if measure == "unavailable_seconds":
        longest = outcomes.longest(run.unavailable)
        detail = "; ".join(f"queue '{w.queue}' {w.start:.1f}s..{w.end:.1f}s" for w in run.unavailable)
        return round(longest), detail
    if run.outcomes is None:
        return None, "no message was published"
    return int(getattr(run.outcomes, measure)), ""


def _queue_measure(queue: str, measure: str, run: RunResult) -> tuple[int | None, str]:
    if measure == "unavailable_seconds":
        windows = [w for w in run.unavailable if w.queue == queue]
        detail = "; ".join(f"{w.start:.1f}s..{w.end:.1f}s" for w in windows)
        return round(outcomes.queue_seconds(windows).get(queue, 0.0)), detail
    if measure == "depth":
        seen = run.queues.get(queue)
        if seen is None:
            return None, f"queue '{queue}' was not observed"
        if not seen.exists:
            return 0, f"queue '{queue}' does not exist (counted as empty)"
        return seen.depth, seen.note
    consumers = [c for c in run.consumers.values() if c.queue == queue]
    if not consumers:
        return 0, f"no consumer reads queue '{queue}'"
    return sum(int(getattr(c, measure)) for c in consumers), ""


def _rpc_answered(expectation: model.RpcAnswered, run: RunResult) -> ExpectationResult:
    client = run.rpc_clients.get(expectation.client)
    if expectation.bounds is None:
        wanted: Any = client.requests if client is not None else "all"
        description = expectation.description or f"RPC client '{expectation.client}' got a reply to every request"
    else:
        wanted = _bounds_value(expectation.bounds)
        description = expectation.description or f"RPC client '{expectation.client}' answered {expectation.bounds.describe()}"
    if client is None:
        return ExpectationResult(description, False, wanted, None, f"RPC client '{expectation.client}' did not run",
                                 expectation.where)
    ok = client.answered == client.requests if expectation.bounds is None else expectation.bounds.holds(client.answered)
    detail = f"{client.timeouts} timed out, {client.stray} stray replies" if client.timeouts or client.stray else ""
    return ExpectationResult(description, ok, wanted, client.answered, detail, expectation.where)


def _no_loss(expectation: model.NoLoss, run: RunResult) -> ExpectationResult:
    description = expectation.description or "no loss: every confirmed (or published, without confirms) message was consumed"
    details = [f"{run.lost} of {run.expected} expected messages were never consumed"] if run.lost else []
    discarded = 0 if expectation.allow_discarded else sum(c.discarded for c in run.consumers.values())
    if discarded:
        who = ", ".join(f"'{c.name}' {c.discarded}" for c in run.consumers.values() if c.discarded)
        details.append(f"{discarded} discarded by the broker: rejected with requeue: false on a queue without a dead-letter "
                       f"exchange ({who}); allow them with no_loss: {{allow_discarded: true}}")
    return ExpectationResult(description, not run.lost and not discarded, 0, run.lost + discarded, "; ".join(details),
                             expectation.where)


def _no_duplicates(expectation: model.NoDuplicates, run: RunResult) -> ExpectationResult:
    description = expectation.description or "no duplicates: no message was consumed twice from the same queue"
    return ExpectationResult(description, run.duplicates == 0, 0, run.duplicates, "", expectation.where)


def _balanced(expectation: model.Balanced, run: RunResult) -> ExpectationResult:
    names = expectation.consumers
    description = expectation.description or (
        f"balanced: {', '.join(repr(n) for n in names)} received within {expectation.tolerance} of each other")
    counts = {name: run.consumers[name].received if name in run.consumers else 0 for name in names}
    spread = max(counts.values()) - min(counts.values()) if counts else 0
    detail = f"spread {spread}" if spread > expectation.tolerance else ""
    return ExpectationResult(description, spread <= expectation.tolerance, f"within {expectation.tolerance}", counts,
                             detail, expectation.where)


def _every_message(expectation: model.EveryMessage, run: RunResult) -> ExpectationResult:
    """Each consumer against the expected messages of the producers that route to its queue."""
    names = expectation.consumers
    description = expectation.description or f"every message reached each of {', '.join(repr(n) for n in names)}"
    consumers = {name: run.consumers.get(name) for name in names}
    wanted = {name: run.expected if c is None else c.expected for name, c in consumers.items()}
    got = {name: 0 if c is None else c.expected - c.missing for name, c in consumers.items()}
    short = [f"'{name}' got {got[name]} of the {wanted[name]} expected messages routed to "
             f"{_queue_of(consumers[name])}" if wanted[name] else
             f"no expected message routes to {_queue_of(consumers[name])} of '{name}': check its bindings"
             for name in names if got[name] != wanted[name] or not wanted[name]]
    ok = run.expected > 0 and not short
    detail = "; ".join(short) if run.expected else "no message was expected (nothing published and confirmed)"
    shown: Any = run.expected if all(value in (0, run.expected) for value in wanted.values()) else wanted
    return ExpectationResult(description, ok, shown, got, detail, expectation.where)


def _queue_of(consumer: ConsumerResult | None) -> str:
    return "its queue" if consumer is None else f"queue '{consumer.queue}'"


def _latency(expectation: model.LatencyBound, run: RunResult) -> ExpectationResult:
    shown = ", ".join(f"{key} <= {format_duration(value)}" for key, value in expectation.bounds.items())
    wanted = {key: f"<= {format_duration(value)}" for key, value in expectation.bounds.items()}
    if expectation.producer is not None:
        description = expectation.description or f"producer '{expectation.producer}' confirm latency {shown}"
        producer = run.producers.get(expectation.producer)
        latency = producer.confirm_latency if producer is not None else None
        missing = "no message was confirmed"
    else:
        description = expectation.description or f"latency {shown}"
        latency, missing = run.latency, "no marked message was consumed"
    if latency is None:
        return ExpectationResult(description, False, wanted, None, missing, expectation.where)
    actual = {key: getattr(latency, key) for key in expectation.bounds}
    over = [key for key, bound in expectation.bounds.items() if actual[key] > bound * 1000]
    detail = ", ".join(f"{key} was {actual[key]:g}ms" for key in over)
    return ExpectationResult(description, not over, wanted, {k: f"{v:g}ms" for k, v in actual.items()}, detail,
                             expectation.where)


def _route(expectation: model.Routes, route: model.Route, run: RunResult) -> ExpectationResult:
    exchange = route.exchange or "(default exchange)"
    headers = f" headers {dict(route.headers)}" if route.headers else ""
    target = ", ".join(sorted(route.to)) if route.to else "nowhere (returned as unroutable)"
    generated = f"route: '{route.key}' on {exchange}{headers} reaches {target}"
    description = f"{expectation.description}: {generated}" if expectation.description else generated
    wanted = sorted(route.to)
    seen = next((o for o in run.routes if o.route == route), None)
    if seen is None:
        return ExpectationResult(description, False, wanted, None, "the route was not checked on the broker", route.where)
    actual = sorted(seen.landed)
    ok = actual == wanted and not seen.note.startswith("error")
    return ExpectationResult(description, ok, wanted, actual, _route_detail(seen, wanted, actual), route.where)


def _route_detail(seen: RouteObservation, wanted: list[str], actual: list[str]) -> str:
    parts = []
    missing = [q for q in wanted if q not in actual]
    extra = [q for q in actual if q not in wanted]
    if missing:
        parts.append(f"did not reach {', '.join(missing)}")
    if extra:
        parts.append(f"also reached {', '.join(extra)}")
    if seen.returned:
        parts.append("returned as unroutable")
    if seen.note:
        parts.append(seen.note)
    return "; ".join(parts)
