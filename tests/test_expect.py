"""Expectations against run results, without a broker: each check passes and fails for the right reason."""

from __future__ import annotations

from mqspec.core import model
from mqspec.core.expect import ExpectationResult, evaluate, passed
from mqspec.core.outcomes import Window
from mqspec.core.result import (
    ConsumerResult,
    Latency,
    MissingCounts,
    ProducerResult,
    QueueObservation,
    RouteObservation,
    RpcClientResult,
    RunResult,
)
from mqspec.report.run_text import expectation_line


def _run(**fields: object) -> RunResult:
    base: dict[str, object] = {
        "scenario": "s",
        "producers": {"p": ProducerResult("p", published=10, confirmed=10, returned=2)},
        "consumers": {"a": ConsumerResult("a", "qa", received=10, dead_lettered=3, expected=10),
                      "b": ConsumerResult("b", "qb", received=7, missing=3, expected=10),
                      "c": ConsumerResult("c", "qa", received=4, expected=10, missing=6)},
        "expected": 10,
    }
    base.update(fields)
    return RunResult(**base)  # type: ignore[arg-type]


def _one(expectation: model.Expectation, run: RunResult | None = None) -> ExpectationResult:
    (result,) = evaluate((expectation,), run or _run())
    return result


def _count(kind: model.SubjectKind, subject: str, measure: str, low: int | None, high: int | None) -> model.CountExpectation:
    return model.CountExpectation(kind, subject, measure, model.Bounds(low, high))


def test_exact_count_passes_and_shows_expected_and_actual() -> None:
    result = _one(_count("consumer", "a", "received", 10, 10))
    assert (result.description, result.passed, result.expected, result.actual) == ("consumer 'a' received 10", True, 10, 10)


def test_count_below_range_fails_with_expected_against_actual() -> None:
    result = _one(_count("consumer", "b", "received", 8, None))
    assert expectation_line(result) == "FAIL consumer 'b' received >= 8: expected {\"min\": 8}, got 7"


def test_producer_measure_reads_the_producer() -> None:
    assert _one(_count("producer", "p", "returned", 2, 2)).passed


def test_queue_received_sums_every_consumer_of_the_queue() -> None:
    result = _one(_count("queue", "qa", "received", 14, 14))
    assert (result.passed, result.actual) == (True, 14)


def test_queue_unavailable_seconds_adds_up_that_queue_s_windows_only() -> None:
    windows = (Window("qa", 1.0, 3.2), Window("qb", 1.0, 9.0), Window("qa", 5.0, 6.0))
    run = _run(unavailable=windows)
    result = _one(_count("queue", "qa", "unavailable_seconds", None, 3), run)   # 2.2s + 1.0s
    assert (result.passed, result.actual, result.detail) == (True, 3, "1.0s..3.2s; 5.0s..6.0s")
    longer = _one(_count("queue", "qb", "unavailable_seconds", None, 3), run)
    assert expectation_line(longer) == 'FAIL queue \'qb\' unavailable_seconds <= 3: expected {"max": 3}, got 8 (1.0s..9.0s)'
    assert _one(_count("queue", "qc", "unavailable_seconds", 0, 0), run).passed   # never silent
    assert _one(_count("outcomes", "", "unavailable_seconds", None, None), run).actual == 8   # alone: the longest


def test_queue_depth_uses_the_observation_and_a_missing_queue_counts_as_empty() -> None:
    run = _run(queues={"gone": QueueObservation("gone", False, None, None, "queue does not exist"),
                       "full": QueueObservation("full", True, 5, 0)})
    gone = _one(_count("queue", "gone", "depth", 0, 0), run)
    full = _one(_count("queue", "full", "depth", 0, 0), run)
    assert (gone.passed, gone.detail) == (True, "queue 'gone' does not exist (counted as empty)")
    assert (full.passed, full.actual) == (False, 5)


def test_a_description_from_the_file_replaces_the_generated_one() -> None:
    expectation = model.CountExpectation("consumer", "a", "received", model.Bounds(10, 10), "ten arrive")
    assert _one(expectation).description == "ten arrive"


def test_no_loss_fails_with_the_count_of_lost_messages() -> None:
    result = _one(model.NoLoss(), _run(lost=2))
    assert (result.passed, result.actual, result.detail) == (False, 2, "2 of 10 expected messages were never consumed")


def test_no_duplicates() -> None:
    assert _one(model.NoDuplicates(), _run(duplicates=0)).passed
    assert not _one(model.NoDuplicates(), _run(duplicates=1)).passed


def test_balanced_compares_the_spread_with_the_tolerance() -> None:
    result = _one(model.Balanced(("a", "b"), tolerance=2))
    assert (result.passed, result.expected, result.actual, result.detail) == (False, "within 2", {"a": 10, "b": 7}, "spread 3")
    assert _one(model.Balanced(("a", "b"), tolerance=3)).passed


def test_every_message_reports_what_each_consumer_got_of_the_expected() -> None:
    result = _one(model.EveryMessage(("a", "b")))
    assert (result.passed, result.expected, result.actual) == (False, 10, {"a": 10, "b": 7})
    assert result.detail == "'b' got 7 of the 10 expected messages routed to queue 'qb'"


def test_every_message_compares_each_consumer_with_what_routes_to_its_queue() -> None:
    consumers = {"a": ConsumerResult("a", "qa", received=10, expected=10),
                 "other": ConsumerResult("other", "qo", received=5, expected=5)}
    result = _one(model.EveryMessage(("a", "other")), _run(consumers=consumers, expected=15))
    assert (result.passed, result.expected, result.actual, result.detail) == (
        True, {"a": 10, "other": 5}, {"a": 10, "other": 5}, "")


def test_every_message_fails_when_nothing_was_expected() -> None:
    result = _one(model.EveryMessage(("a",)), _run(expected=0))
    assert (result.passed, result.detail) == (False, "no message was expected (nothing published and confirmed)")


def test_latency_bounds_are_seconds_and_results_milliseconds() -> None:
    run = _run(latency=Latency(p50=2.0, p95=8.0, p99=30.0, max=120.0, count=100))
    ok = _one(model.LatencyBound({"p99": 0.05}), run)
    slow = _one(model.LatencyBound({"p50": 0.001, "max": 1.0}), run)
    assert (ok.description, ok.passed) == ("latency p99 <= 50ms", True)
    assert (slow.passed, slow.detail) == (False, "p50 was 2ms")


def test_latency_fails_when_nothing_was_measured() -> None:
    assert not _one(model.LatencyBound({"p99": 1.0}), _run(latency=None)).passed


def test_rpc_all_answered_compares_with_the_number_of_requests() -> None:
    run = _run(rpc_clients={"r": RpcClientResult("r", requests=10, sent=10, answered=9, timeouts=1)})
    result = _one(model.RpcAnswered("r"), run)
    assert expectation_line(result) == ("FAIL RPC client 'r' got a reply to every request: expected 10, got 9 "
                                        "(1 timed out, 0 stray replies)")


def test_routes_give_one_result_per_route_naming_missing_and_extra_queues() -> None:
    right = model.Route("logs", "error", {}, ("disk", "screen"))
    wrong = model.Route("logs", "info", {}, ("disk",))
    run = _run(routes=(RouteObservation(right, ("disk", "screen")), RouteObservation(wrong, ("screen",))))
    first, second = evaluate((model.Routes((right, wrong)),), run)
    assert (first.description, first.passed) == ("route: 'error' on logs reaches disk, screen", True)
    assert expectation_line(second) == ("FAIL route: 'info' on logs reaches disk: expected [\"disk\"], got [\"screen\"] "
                                        "(did not reach disk; also reached screen)")


def test_an_unroutable_route_expects_nothing_and_mentions_the_return() -> None:
    route = model.Route("", "nowhere", {}, ())
    result = _one(model.Routes((route,)), _run(routes=(RouteObservation(route, (), returned=True),)))
    assert (result.description, result.passed, result.detail) == (
        "route: 'nowhere' on (default exchange) reaches nowhere (returned as unroutable)", True, "returned as unroutable")


def test_passed_is_false_when_any_check_fails() -> None:
    results = evaluate((model.NoLoss(), _count("consumer", "a", "received", 1, 1)), _run())
    assert [r.passed for r in results] == [True, False]
    assert not passed(results)


def test_a_fault_that_never_happened_is_a_failed_check() -> None:
    results = evaluate((), _run(unfired_faults=("close_connections at 30s",), elapsed=2.14))
    assert [expectation_line(r) for r in results] == [
        "FAIL fault close_connections at 30s did not happen (the run ended after 2.1s)"]
    assert not passed(results)


def test_an_expectation_that_needs_missing_counts_is_unknown_and_the_run_fails_naming_the_instance() -> None:
    missing = MissingCounts("producer", "p", 0, "worker 1 did not report its counters within 10s and was killed")
    run = _run(missing=(missing,), queues={"qa": QueueObservation("qa", True, 0, 0)})
    results = evaluate((model.NoLoss(), _count("queue", "qa", "depth", 0, 0), _count("consumer", "a", "received", 10, 10)), run)
    assert [(r.passed, r.unknown) for r in results] == [(False, True), (True, False), (True, False), (False, True)]
    assert [expectation_line(r) for r in (results[0], results[3])] == [
        "UNKNOWN no loss: every confirmed (or published, without confirms) message was consumed "
        "(the counts of producer 'p' instance 0 are missing)",
        "UNKNOWN counts of producer 'p' instance 0 (missing: worker 1 did not report its counters within 10s and was killed)"]
    assert not passed(results)


def test_a_run_ended_by_its_timeout_fails_for_each_unfinished_producer_unless_timeout_ok() -> None:
    run = _run(ended="timeout", elapsed=60.0,
               producers={"p": ProducerResult("p", published=8208, finished=0, planned=100000),
                          "q": ProducerResult("q", published=5, finished=1)})
    (result,) = evaluate((), run)
    assert expectation_line(result) == (
        "FAIL producer 'p' finished before the workload timeout it was still publishing when the timeout ended the run "
        "after 60.0s (8,208 of 100,000 messages published) (set workload.timeout_ok: true if stopping at the timeout is fine)")
    assert evaluate((), run, timeout_ok=True) == []
    assert evaluate((), _run(ended="drained", producers=run.producers)) == []


def test_a_fault_that_could_not_act_fails_the_run_saying_why() -> None:
    run = _run(failed_faults=("delay 'c2' at 1s for 2s failed: tc: Specified qdisc kind is unknown",))
    results = evaluate((), run)
    assert [(r.description, r.passed, r.detail) for r in results] == [
        ("fault delay 'c2' at 1s for 2s", False, "could not act: tc: Specified qdisc kind is unknown")]
    assert not passed(results)
