"""Load shapes in the pure core: rate profiles, size and processing time distributions, entity patterns."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

from mqspec.core.loader import load_bytes
from mqspec.core.model import Scenario
from mqspec.core.shapes import ProcessingTime, RateProfile, RateStep, SizeDistribution, expand

PROFILE = RateProfile((RateStep(2, 100, 100), RateStep(2, 100, 300), RateStep(0, 300, 300, 50)))


def _load(tmp_path: Path, workload: str, topology: str = "queues: [{name: q, durable: false}]") -> tuple[Scenario | None, str]:
    text = f"version: 1\nname: shapes\ntopology:\n  {topology}\nworkload:\n{workload}"
    loaded = load_bytes(text.encode(), str(tmp_path / "s.yaml"))
    return loaded.scenario, "\n".join(f"{p.line}:{p.col}: {p.path}: {p.message}" for p in loaded.problems
                                      if p.severity == "error")


# --- rate profiles ---------------------------------------------------------------------------------

def test_a_fixed_rate_schedules_message_n_at_n_over_rate_as_before() -> None:
    fixed = RateProfile.fixed(1000)
    assert [fixed.at(n) for n in (0, 1, 500)] == [0.0, 0.001, 0.5]
    assert [fixed.due(t) for t in (0, 0.0005, 0.5)] == [1, 1, 501]
    assert fixed.total is None and fixed.seconds is None


def test_a_profile_of_a_step_a_ramp_and_a_burst_publishes_their_sum_then_ends() -> None:
    assert (PROFILE.total, PROFILE.seconds) == (200 + 400 + 50, 4.0)
    assert [PROFILE.due(t) for t in (0, 1.999, 3.0, 4.0, 60.0)] == [1, 200, 200 + 150 + 1, 650, 650]
    assert PROFILE.at(650) is None


def test_a_ramp_schedules_each_message_at_the_inverse_of_its_cumulative_count() -> None:
    for n in range(0, 650, 7):
        when = PROFILE.at(n)
        assert when is not None
        assert PROFILE.due(when + 1e-9) > n, n
        assert PROFILE.due(when - 1e-3) <= n or when == 0, n


def test_a_burst_is_due_at_once_when_its_step_begins() -> None:
    burst_first = RateProfile((RateStep(0, 0, 0, 500), RateStep(1, 100, 100)))
    assert burst_first.due(0) == 501 and burst_first.at(499) == 0.0
    assert burst_first.total == 600


def test_a_stall_catches_up_at_most_a_second_of_the_schedule_including_a_burst() -> None:
    assert RateProfile.fixed(100).window(10, 1.0) == 101
    assert RateProfile((RateStep(1, 10, 10), RateStep(0, 10, 10, 5000), RateStep(None, 10, 10))).window(1.5, 1.0) >= 5000


# --- sizes and processing time -----------------------------------------------------------------------

def test_sizes_come_from_a_table_sampled_with_a_seeded_rng() -> None:
    uniform = SizeDistribution("uniform", 100, 10240)
    table = uniform.table(7)
    assert table == uniform.table(7) != uniform.table(8)
    assert min(table) >= 100 and max(table) <= 10240 and len(set(table)) > 1000
    weighted = SizeDistribution("weighted", 100, 1 << 20, ((100, 9), (1 << 20, 1)))
    share = weighted.table(1).count(1 << 20) / 4096
    assert 0.08 < share < 0.12
    assert SizeDistribution.fixed(512).table(1) == [512] and not SizeDistribution.fixed(512).varies


def test_processing_time_samples_fixed_uniform_exponential_and_normal() -> None:
    rng = random.Random(3)
    assert ProcessingTime(0.01, 0.01).sample(rng) == 0.01
    assert all(0.01 <= ProcessingTime(0.01, 0.02).sample(rng) <= 0.02 for _ in range(100))
    exponential = [ProcessingTime(kind="exponential", mean=0.01).sample(rng) for _ in range(5000)]
    assert abs(statistics.mean(exponential) - 0.01) < 0.001 and max(exponential) > 0.04
    normal = [ProcessingTime(kind="normal", mean=0.001, stddev=0.002).sample(rng) for _ in range(2000)]
    assert min(normal) == 0.0 and abs(statistics.mean(normal) - 0.0018) < 0.0005   # clamped at 0
    assert ProcessingTime(kind="exponential", mean=0.01).busy and not ProcessingTime().busy


# --- patterns ---------------------------------------------------------------------------------------

def test_count_expands_an_entry_with_i_from_1_and_keeps_its_index() -> None:
    entries = [{"name": "a"}, {"name": "q-{i}", "count": 3, "arguments": {"x-note": "n{i}"}}]
    assert list(expand(entries)) == [(0, {"name": "a"}), (1, {"name": "q-1", "arguments": {"x-note": "n1"}}),
                                     (1, {"name": "q-2", "arguments": {"x-note": "n2"}}),
                                     (1, {"name": "q-3", "arguments": {"x-note": "n3"}})]


def test_the_loader_expands_queues_bindings_producers_and_consumers_from_patterns(tmp_path: Path) -> None:
    scenario, errors = _load(tmp_path, """\
  producers: [{name: "p-{i}", queue: "q-{i}", count: 3, messages: 10, rate: [{for: 1s, rate: 10/s}, {burst: 5}],
               size: [{size: 100B, weight: 9}, {size: 1KiB}]}]
  consumers: [{name: "c-{i}", queue: "q-{i}", count: 3, processing_time: {distribution: exponential, mean: 5ms}}]
""", 'queues: [{name: "q-{i}", count: 3, durable: false}]\n  bindings: [{exchange: amq.direct, queue: "q-{i}", count: 3}]')
    assert errors == "" and scenario is not None
    assert [q.name for q in scenario.topology.queues] == ["q-1", "q-2", "q-3"]
    assert {q.where for q in scenario.topology.queues} == {"$.topology.queues[0]"}
    assert [(b.destination, b.routing_key) for b in scenario.topology.bindings] == [("q-1", ""), ("q-2", ""), ("q-3", "")]
    producers = scenario.workload.producers
    assert [(p.name, p.queue) for p in producers] == [("p-1", "q-1"), ("p-2", "q-2"), ("p-3", "q-3")]
    assert producers[0].rate_profile is not None and producers[0].rate_profile.total == 15
    assert producers[0].size_distribution().choices == ((100, 9.0), (1024, 1.0))
    assert [c.processing_time.kind for c in scenario.workload.consumers] == ["exponential"] * 3


def test_a_name_the_pattern_repeats_is_a_duplicate_at_the_template_line(tmp_path: Path) -> None:
    _scenario, errors = _load(tmp_path, "  producers: []\n",
                              'queues:\n    - {name: "q-{i}", count: 3}\n    - {name: q-2}')
    assert errors == "6:8: $.topology.queues[1].name: duplicate queue 'q-2' (first declared at line 5)"


def test_count_without_i_is_an_error_at_count(tmp_path: Path) -> None:
    _scenario, errors = _load(tmp_path, "  producers: []\n", 'bindings: [{exchange: amq.direct, queue: q, count: 2}]\n'
                              '  queues: [{name: q}]')
    assert errors == ("4:47: $.topology.bindings[0].count: count: 2 makes 2 copies of the same entry: "
                      "none of its strings has {i}")


def test_rate_profile_mistakes_are_reported_once_at_their_step(tmp_path: Path) -> None:
    _scenario, errors = _load(tmp_path, """\
  producers: [{name: "p-{i}", queue: q, count: 2, messages: 5,
               rate: [{rate: 5/s}, {ramp_to: 20/s}], size: {min: 10KiB, max: 1KiB}}]
""")
    assert errors.splitlines() == [
        "7:23: $.workload.producers[0].rate[0]: only the last part of a rate profile may leave out `for` "
        "(it lasts until the producer stops)",
        "7:37: $.workload.producers[0].rate[1].ramp_to: a ramp needs `for`: how long it takes to reach ramp_to",
        "7:54: $.workload.producers[0].size: size min is greater than max",
    ]


def test_a_finite_rate_profile_is_an_end_for_a_producer(tmp_path: Path) -> None:
    scenario, errors = _load(tmp_path, "  producers: [{name: p, queue: q, rate: [{for: 2s, rate: 10/s}]}]\n")
    assert errors == "" and scenario is not None


def test_confirm_latency_needs_confirms(tmp_path: Path) -> None:
    _scenario, errors = _load(tmp_path, "  producers: [{name: p, queue: q, messages: 5}]\nexpect:\n"
                              "  - {producer: p, confirm_latency: {p99: 50ms}}\n")
    assert errors == ("8:19: $.expect[0].confirm_latency: producer 'p' does not use publisher confirms, "
                      "so there is no confirm latency")
