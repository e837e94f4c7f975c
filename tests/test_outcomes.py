"""Unavailability windows from the sampled timeline (pure: mqspec/core/outcomes.py)."""

from __future__ import annotations

from mqspec.core import outcomes
from mqspec.core.outcomes import FaultSpan, Sample, Window


def _timeline(rows: list[tuple[float, int, dict[str, int], dict[str, int], frozenset[str]]]) -> list[Sample]:
    return [Sample(at, published, published, received, routed, idle) for at, published, received, routed, idle in rows]


FAULT = [FaultSpan("kill_node 'c1' at 1s", 1.0, 2.0)]


def test_a_queue_that_received_all_that_was_routed_to_it_is_not_unavailable_while_another_queue_gets_the_rest() -> None:
    # 'fast' gets 10 of every 100 messages (direct routing) and all of them at once; 'slow' gets the other 90
    rows = [(t / 10, 100 * t, {"fast": 10 * t, "slow": 90 * t}, {"fast": 10 * t, "slow": 90 * t}, frozenset())
            for t in range(0, 11)]
    rows += [(1.1 + t / 10, 1000, {"fast": 100, "slow": 900}, {"fast": 100, "slow": 900}, frozenset()) for t in range(20)]
    assert outcomes.unavailable(_timeline(rows), ["fast", "slow"], FAULT) == ()


def test_a_queue_silent_while_its_routed_messages_wait_is_unavailable_until_its_next_delivery() -> None:
    rows = [(0.0, 100, {"a": 50, "b": 0}, {"a": 50, "b": 50}, frozenset()),
            (0.5, 200, {"a": 100, "b": 0}, {"a": 100, "b": 100}, frozenset()),
            (1.5, 300, {"a": 150, "b": 0}, {"a": 150, "b": 150}, frozenset()),
            (2.0, 300, {"a": 150, "b": 150}, {"a": 150, "b": 150}, frozenset())]
    assert outcomes.unavailable(_timeline(rows), ["a", "b"], FAULT) == (Window("b", 0.0, 2.0),)


def test_a_queue_whose_consumer_stopped_on_its_own_is_not_unavailable_until_the_run_ends() -> None:
    # the consumer took its `messages: 100` and stopped; 900 more wait in the queue while a node is killed
    rows = [(t / 10, 100 * t, {"q": min(100 * t, 100)}, {"q": 100 * t}, frozenset() if t < 2 else frozenset({"q"}))
            for t in range(0, 11)]
    rows += [(1.1 + t / 10, 1000, {"q": 100}, {"q": 1000}, frozenset({"q"})) for t in range(30)]
    assert outcomes.unavailable(_timeline(rows), ["q"], FAULT) == ()


def test_without_known_routes_every_published_message_waits_on_each_queue() -> None:
    rows = [(0.0, 100, {"q": 100}, None, frozenset()), (0.2, 200, {"q": 100}, None, frozenset()),
            (1.5, 200, {"q": 100}, None, frozenset())]
    samples = [Sample(at, p, p, r, routed, idle) for at, p, r, routed, idle in rows]
    assert outcomes.unavailable(samples, ["q"], FAULT) == (Window("q", 0.2, 1.5, open=True),)


def test_routed_count_counts_the_round_robin_slots_exactly() -> None:
    assert outcomes.routed_count(10, frozenset({0}), 3, "round_robin") == 4     # 0, 3, 6, 9
    assert outcomes.routed_count(10, frozenset({1, 2}), 3, "round_robin") == 6
    assert outcomes.routed_count(2, frozenset({2}), 3, "round_robin") == 0
    assert outcomes.routed_count(10, frozenset({0, 1, 2}), 3, "round_robin") == 10
    assert outcomes.routed_count(1000, frozenset({0}), 4, "random") == 250


def test_a_queue_is_not_unavailable_while_its_publisher_is_blocked_by_an_alarm() -> None:
    # 200 msg/s, confirms on; a memory alarm blocks the producer from 1.0s to 3.0s: 100 more publishes wait in
    # its socket, unread and unconfirmed, and the consumer (which has everything the broker took) gets nothing
    def at(t: float, published: int, confirmed: int, received: int, blocked: bool) -> Sample:
        routed = outcomes.taken(published, confirmed, blocked, confirms=True)
        return Sample(t, published, confirmed, {"q": received}, {"q": routed})
    samples = [at(t / 10, 20 * t, 20 * t, 20 * t, False) for t in range(11)]
    samples += [at(1.0 + t / 10, 300, 200, 200, True) for t in range(1, 21)]
    samples += [at(3.1, 320, 320, 300, False), at(3.2, 340, 340, 340, False)]
    assert outcomes.unavailable(samples, ["q"], [FaultSpan("memory_alarm 'c2' at 1s for 2s", 1.0, 3.0)]) == ()
    # counted by what was published, the same silence would be two seconds of unavailability
    unblocked = [Sample(s.at, s.published, s.confirmed, s.received, {"q": s.published}) for s in samples]
    assert outcomes.unavailable(unblocked, ["q"], []) == (Window("q", 1.1, 3.1),)


def test_without_confirms_a_blocked_publisher_s_queue_is_not_unavailable_until_it_is_unblocked() -> None:
    samples = [Sample(0.0, 100, 100, {"q": 100}, {"q": 100}), Sample(0.5, 150, 150, {"q": 100}, {"q": 150}),
               *(Sample(0.5 + t / 10, 150, 150, {"q": 100}, {"q": 150}, blocked=frozenset({"q"})) for t in range(1, 20)),
               Sample(2.5, 150, 150, {"q": 100}, {"q": 150}), Sample(3.5, 160, 160, {"q": 160}, {"q": 160})]
    # waiting before the block (0.0..0.5 is under the gap), blocked 0.6..2.4, then silent again from 2.5 to 3.5
    assert outcomes.unavailable(samples, ["q"], []) == (Window("q", 2.5, 3.5),)


def test_queue_seconds_adds_up_each_queue_s_windows() -> None:
    windows = [Window("a", 1.0, 2.5), Window("b", 1.0, 1.6), Window("a", 4.0, 4.75)]
    assert outcomes.queue_seconds(windows) == {"a": 2.3, "b": 0.6}
