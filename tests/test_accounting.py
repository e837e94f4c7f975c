"""Message accounting without a broker: bitmaps, loss, duplicates, slots, merging across processes, latency."""

from __future__ import annotations

import pickle
import tracemalloc

import hypothesis

from mqspec.core import accounting, marks, model
from mqspec.core.accounting import ConsumerTally, ProducerTally, Streams


def _producer(published: int, keys: int = 1, order: str = "round_robin", index: int = 0, instance: int = 0) -> ProducerTally:
    tally = ProducerTally("p", index, instance, keys, order, confirm=True)
    tally.published = tally.confirmed = published
    return tally


def _consumer(queue: str, seqs: list[int], sid: int = 0, redelivered: bool = False, dead: bool = False,
              name: str = "c", instance: int = 0) -> ConsumerTally:
    tally = ConsumerTally(name, queue, instance)
    for seq in seqs:
        tally.received += 1
        tally.see(sid, seq, 0, 1_000_000, redelivered, dead)
    return tally


def test_a_second_first_delivery_of_the_same_message_is_a_duplicate() -> None:
    tally = _consumer("q", [0, 1, 2, 1])
    assert (tally.duplicates, accounting.duplicates_on_queue([tally])) == (1, 1)


def test_a_redelivered_copy_of_a_message_already_received_is_a_duplicate() -> None:
    first = _consumer("q", [0, 1, 2], instance=0)
    again = _consumer("q", [1, 2], redelivered=True, instance=1)
    assert accounting.duplicates_on_queue([first, again]) == 2


def test_a_redelivery_of_a_message_never_received_is_not_a_duplicate() -> None:
    tally = _consumer("q", [0, 1, 2], redelivered=True)
    assert (tally.duplicates, accounting.duplicates_on_queue([tally])) == (0, 0)


def test_a_redelivery_within_one_instance_is_a_duplicate() -> None:
    tally = _consumer("q", [0, 1, 2])
    tally.see(0, 1, 0, 1_000_000, True, False)
    assert (tally.duplicates, accounting.duplicates_on_queue([tally])) == (1, 1)


def _acked(tally: ConsumerTally, seqs: list[int], sid: int = 0) -> ConsumerTally:
    for seq in seqs:
        tally.acked += 1
        tally.track(sid).acked[seq >> 3] |= 1 << (seq & 7)
    return tally


def test_a_redelivered_copy_of_an_acked_message_takes_the_ack_back() -> None:
    tally = _acked(_consumer("q", [0, 1, 2]), [0, 1, 2])
    tally.see(0, 2, 0, 1_000_000, True, False)   # the ack of 2 never reached the broker
    assert (tally.acked, tally.duplicates) == (2, 1)
    _acked(tally, [2])
    assert accounting.acked_by([tally]) == 3


def test_a_message_acked_by_two_instances_after_a_redelivery_counts_one_ack() -> None:
    one = _acked(_consumer("q", [0, 1, 2], instance=0), [0, 1, 2])
    two = _acked(_consumer("q", [2], redelivered=True, instance=1), [2])
    assert accounting.acked_by([one, two]) == 3


def test_two_copies_acked_by_two_instances_without_a_redelivery_are_two_acks() -> None:
    one = _acked(_consumer("q", [0, 1], instance=0), [0, 1])
    two = _acked(_consumer("q", [1], instance=1), [1])
    assert accounting.acked_by([one, two]) == 3


def test_duplicates_across_consumer_instances_of_one_queue_are_found_when_merged() -> None:
    one = _consumer("q", [0, 1, 2, 3], instance=0)
    two = _consumer("q", [2, 3, 4], instance=1)
    assert accounting.duplicates_on_queue([one, two]) == 2


def test_the_same_message_on_two_queues_is_not_a_duplicate() -> None:
    assert accounting.duplicates_everywhere([_consumer("a", [0, 1]), _consumer("b", [0, 1])]) == 0


def test_two_consumers_of_one_stream_each_reading_every_message_see_no_duplicates() -> None:
    readers = [_consumer("events", [0, 1, 2], name="a"), _consumer("events", [0, 1, 2], name="b"),
               _consumer("events", [0, 1, 2], name="b", instance=1)]
    assert accounting.duplicates_everywhere(readers, frozenset({"events"})) == 0
    assert accounting.duplicates_everywhere(readers) == 6   # the same reads on a shared queue: copies beyond the first
    assert accounting.duplicates_on_queue(readers[1:], stream=True) == 0


def test_one_stream_consumer_reading_a_message_twice_is_a_duplicate() -> None:
    readers = [_consumer("events", [0, 1, 2, 1], name="a"), _consumer("events", [0, 1, 2], name="b")]
    assert accounting.duplicates_everywhere(readers, frozenset({"events"})) == 1


def test_consumer_results_count_duplicates_and_acks_per_instance_on_a_stream() -> None:
    workload = model.Workload(consumers=(model.Consumer("a", "events", instances=2),))
    one, two = _consumer("events", [0, 1, 2], name="a"), _consumer("events", [0, 1, 2], name="a", instance=1)
    one.acked = two.acked = 3
    streams = Streams.of([_producer(3)])
    (shared,) = accounting.consumer_results(workload, streams, [one, two]).values()
    (stream,) = accounting.consumer_results(workload, streams, [one, two], stream_names=frozenset({"events"})).values()
    assert (shared.duplicates, stream.duplicates, stream.acked, stream.received) == (3, 0, 6, 6)


def test_out_of_order_counts_first_deliveries_below_the_highest_seen() -> None:
    assert _consumer("q", [0, 2, 1, 3, 5, 4]).out_of_order == 2


def test_lost_counts_confirmed_messages_nobody_received() -> None:
    streams = Streams.of([_producer(10)])
    assert accounting.lost_everywhere(streams, [_consumer("q", [0, 1, 2, 3, 4, 6, 7, 8, 9])]) == 1


def test_nacked_and_returned_messages_are_not_expected() -> None:
    producer = _producer(10)
    producer.fail(3)
    producer.fail(9)
    streams = Streams.of([producer])
    assert (streams.total(), accounting.lost_everywhere(streams, [_consumer("q", [0, 1, 2, 4, 5, 6, 7, 8])])) == (8, 0)


def test_a_dead_lettered_delivery_counts_as_consumed_but_not_for_its_queues_gaps() -> None:
    streams = Streams.of([_producer(4)])
    worker = _consumer("work", [0, 1, 2, 3])
    dead = _consumer("dlq", [1], dead=True)
    assert accounting.lost_on_queue(streams, [dead]) == 0
    assert accounting.lost_everywhere(streams, [worker, dead]) == 0


def test_loss_is_counted_across_processes_by_merging_bitmaps() -> None:
    streams = Streams.of([_producer(6)])
    in_one_process = _consumer("q", [0, 2, 4], instance=0)
    in_another = pickle.loads(pickle.dumps(_consumer("q", [1, 5], instance=1)))
    assert accounting.lost_on_queue(streams, [in_one_process, in_another]) == 1


def test_a_queue_bound_to_one_of_three_keys_is_only_charged_for_that_key() -> None:
    streams = Streams.of([_producer(30, keys=3)])
    errors_only = _consumer("errors", [seq for seq in range(30) if seq % 3 == 2 and seq != 14])
    assert accounting.lost_on_queue(streams, [errors_only]) == 1


def test_random_key_order_uses_a_fixed_hash_so_slots_are_known_after_the_run() -> None:
    keys, length = 4, 200
    masks = [accounting.slot_mask(slot, keys, "random", length) for slot in range(keys)]
    for seq in range(length):
        slot = accounting.slot_of(seq, keys, "random")
        assert [bool(mask >> seq & 1) for mask in masks] == [s == slot for s in range(keys)]


def test_round_robin_slot_masks_match_seq_modulo_keys() -> None:
    for keys in (2, 3, 5, 8, 12):
        for slot in range(keys):
            mask = accounting.slot_mask(slot, keys, "round_robin", 100)
            assert [seq for seq in range(100) if mask >> seq & 1] == list(range(slot, 100, keys))


def test_every_message_counts_only_the_streams_that_route_to_the_queue() -> None:
    streams = Streams.of([_producer(5, index=0), _producer(5, index=1)])
    consumer = _consumer("q", [0, 1, 3], sid=marks.stream_id(0, 0))
    routed = accounting.expected_on_queue(streams, [consumer])
    assert routed == {marks.stream_id(0, 0): 0b11111}
    assert accounting.missing_for(routed, [consumer]) == 2


def test_a_queue_that_received_nothing_is_expected_to_get_every_message() -> None:
    streams = Streams.of([_producer(5, index=0), _producer(5, index=1)])
    nothing = ConsumerTally("c", "q", 0)
    assert accounting.missing_for(accounting.expected_on_queue(streams, [nothing]), [nothing]) == 10


def test_consumer_results_give_each_consumer_the_expected_count_of_its_queue() -> None:
    workload = model.Workload(producers=(model.Producer(name="p", exchange="x"), model.Producer(name="q", exchange="x")),
                              consumers=(model.Consumer(name="a", queue="qa"), model.Consumer(name="b", queue="qb")))
    streams = Streams.of([_producer(5, index=0), _producer(3, index=1)])
    a = _consumer("qa", [0, 1, 2, 3, 4], sid=marks.stream_id(0, 0), name="a")
    b = _consumer("qb", [0, 2], sid=marks.stream_id(1, 0), name="b")
    results = accounting.consumer_results(workload, streams, [a, b])
    assert [(r.expected, r.missing) for r in results.values()] == [(5, 0), (3, 1)]


def test_bitmaps_stay_small_for_a_million_messages() -> None:
    tally = ConsumerTally("c", "q", 0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    track = tally.track(0)
    for seq in range(0, 1_000_000, 997):
        track.see(seq, False, False)
    track.see(999_999, False, False)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert used < 3 * 2 * 131_072  # three bitmaps, one bit per message, at most doubled by growth


def test_latency_quantisation_keeps_percentiles_within_one_percent() -> None:
    latency = accounting.Latency()
    for us in range(1, 100_001):
        latency.record_us(us)
    merged = accounting.latency([latency])
    assert merged is not None
    assert merged.count == 100_000
    assert abs(merged.p50 - 50.0) / 50.0 < 0.01
    assert abs(merged.p99 - 99.0) / 99.0 < 0.01


def test_latency_histograms_merge_after_pickling() -> None:
    fast, slow = accounting.Latency(), accounting.Latency()
    for _ in range(99):
        fast.record_us(1_000)
    slow.record_us(500_000)
    merged = accounting.latency([pickle.loads(pickle.dumps(fast)), pickle.loads(pickle.dumps(slow))])
    assert merged is not None
    assert merged.count == 100
    assert abs(merged.p50 - 1.0) <= 0.01 and abs(merged.max - 500) <= 5  # within the histogram's 1% resolution


@hypothesis.given(hypothesis.strategies.lists(hypothesis.strategies.lists(
    hypothesis.strategies.integers(-10, 70_000_000), max_size=30), max_size=12))
def test_latency_folded_at_every_tick_encodes_as_recorded_at_once(ticks: list[list[int]]) -> None:
    ticked, once = accounting.Latency(), accounting.Latency()
    for tick in ticks:
        for us in tick:
            ticked.record_us(us)
            once.record_us(us)
        ticked.fold()
    assert pickle.loads(pickle.dumps(ticked)).encode() == once.encode()
    assert ticked.histogram.get_total_count() == sum(map(len, ticks))


def test_producer_results_sum_instances_and_rate_uses_the_publishing_window() -> None:
    workload = model.Workload(producers=(model.Producer("p", queue="q", messages=10, instances=2),))
    one, two = _producer(10, instance=0), _producer(10, instance=1)
    one.first_ns, one.last_ns = 1_000_000_000, 2_000_000_000
    two.first_ns, two.last_ns = 1_500_000_000, 3_000_000_000
    result = accounting.producer_results(workload, [one, two])["p"]
    assert (result.published, result.confirmed, result.rate) == (20, 20, 10.0)


def test_marks_round_trip_in_body_and_header() -> None:
    buffer = marks.body_buffer(100)
    marks.PREFIX.pack_into(buffer, 0, marks.MAGIC, 99, marks.stream_id(3, 2), 41, 123)
    assert marks.PREFIX_SIZE == 24
    assert marks.read_mark(bytes(buffer), None) == (99, marks.stream_id(3, 2), 41, 123)
    header = {marks.HEADER: marks.header_mark(6, 7, 8, 9)}
    assert marks.read_mark(b"hello", header) == (6, 7, 8, 9)


def test_messages_without_marks_are_foreign() -> None:
    assert marks.read_mark(b"plain body from another program", {"x-mqspec": "garbage"}) is None
    assert marks.read_mark(b"MQs\x01short", None) is None


def test_header_marks_without_a_run_id_or_with_absurd_numbers_are_foreign() -> None:
    assert marks.read_mark(b"x", {"x-mqspec": "0:1073741824:1700000000000000000"}) is None
    assert marks.read_mark(b"x", {"x-mqspec": f"1:0:{2**32}:5"}) is None
    assert marks.read_mark(b"x", {"x-mqspec": "1:0:" + "9" * 400 + ":5"}) is None


def test_every_producer_stream_of_the_run_has_a_sequence_bound() -> None:
    from mqspec.workload.worker import stream_caps
    workload = model.Workload(producers=(model.Producer(name="a", exchange="x", messages=10, instances=2),
                                         model.Producer(name="b", exchange="x")))
    assert stream_caps(workload) == {marks.stream_id(0, 0): 10, marks.stream_id(0, 1): 10,
                                     marks.stream_id(1, 0): 2**32}


def test_a_consumer_that_never_heard_from_a_producer_routed_to_its_queue_is_charged_with_all_of_it() -> None:
    topology = model.Topology(exchanges=(model.Exchange("x", "fanout"),), queues=(model.Queue("q"),),
                              bindings=(model.Binding("x", "q"),))
    workload = model.Workload(producers=(model.Producer(name="fresh", exchange="x"), model.Producer(name="stale", exchange="x")),
                              consumers=(model.Consumer(name="c", queue="q"),))
    streams = Streams.of([_producer(40, index=0), _producer(500, index=1)])
    consumer = _consumer("q", list(range(40)), sid=marks.stream_id(0, 0))
    routes = accounting.routes_of(topology, workload)
    assert accounting.lost_on_queue(streams, [consumer]) == 0          # what it saw alone says nothing of 'stale'
    assert accounting.lost_on_queue(streams, [consumer], "q", routes) == 500
    (result,) = accounting.consumer_results(workload, streams, [consumer], routes=routes).values()
    assert (result.lost, result.expected, result.missing) == (500, 540, 500)


def test_the_routing_oracle_charges_a_queue_only_with_the_key_slots_bound_to_it() -> None:
    topology = model.Topology(exchanges=(model.Exchange("x", "direct"),), queues=(model.Queue("q"),),
                              bindings=(model.Binding("x", "q", routing_key="b"),))
    workload = model.Workload(producers=(model.Producer(name="p", exchange="x", routing_keys=("a", "b", "c")),),
                              consumers=(model.Consumer(name="c", queue="q"),))
    streams = Streams.of([_producer(30, keys=3, index=0)])
    nothing = ConsumerTally("c", "q", 0)
    routes = accounting.routes_of(topology, workload)
    assert routes == {0: {"q": frozenset({1})}}
    assert accounting.lost_on_queue(streams, [nothing], "q", routes) == 10
    assert accounting.lost_on_queue(streams, [nothing], "elsewhere", routes) == 0


def test_templated_keys_fall_back_to_what_the_queue_was_seen_to_receive() -> None:
    workload = model.Workload(producers=(model.Producer(name="p", exchange="x", routing_keys=("k.{seq}",)),))
    assert accounting.routes_of(model.Topology(), workload) == {0: None}


def test_a_copy_the_consumer_asked_for_by_requeueing_is_a_redelivery_not_a_duplicate() -> None:
    from mqspec.core.accounting import DUPLICATE, Track

    track = Track()
    assert track.see(5, redelivered=False, dead=False) == 0
    track.requeue(5)                                          # nack with requeue: the consumer asked for it again
    assert track.see(5, redelivered=True, dead=False) == 0    # the retry
    assert track.see(5, redelivered=True, dead=False) == DUPLICATE   # not asked for: a duplicate


# --- deliveries accounted in bulk (ConsumerTally.see_batch) -----------------------------------------------

RUN = 77


def _row(sid: int, seq: int, ts: int, run: int = RUN) -> accounting.Row:
    return (b"", seq + 1, b"", marks.MAGIC, run, sid, seq, ts, 0xCE)


def _state(tally: ConsumerTally) -> tuple[object, ...]:
    tally.latency.fold()
    streams = {sid: (bytes(t.first), bytes(t.again), t.top) for sid, t in sorted(tally.streams.items())}
    return (tally.received, tally.duplicates, tally.out_of_order, tally.foreign, tally.first_ns, tally.last_ns, streams,
            tally.latency.histogram.get_total_count(), tally.latency.histogram.get_value_at_percentile(50))


def _one_by_one(rows: list[accounting.Row], now_ns: int, caps: dict[int, int]) -> tuple[ConsumerTally, list[object]]:
    tally, settled = ConsumerTally("c", "q", 0, earliest_ns=1_000), []
    for _, _, _, _, run, sid, seq, ts, _ in rows:   # what Consumer._deliver and _account do for each
        tally.received += 1
        if tally.received == 1:
            tally.first_ns = now_ns
        tally.last_ns = now_ns
        if run != RUN or seq >= caps.get(sid, 0):
            tally.foreign += 1
            settled.append((None, seq))
            continue
        tally.see(sid, seq, ts, now_ns, False, False)
        settled.append((tally.last_track, seq))
    return tally, settled


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(hypothesis.strategies.lists(hypothesis.strategies.tuples(
    hypothesis.strategies.sampled_from([1, 2, 3]), hypothesis.strategies.integers(0, 700),
    hypothesis.strategies.sampled_from([0, 500, 2_000, 900_000, 3_000_000_000]),
    hypothesis.strategies.sampled_from([RUN, RUN, RUN, 5])), max_size=60))
def test_deliveries_accounted_in_bulk_count_exactly_as_one_by_one(found: list[tuple[int, int, int, int]]) -> None:
    rows = [_row(sid, seq, ts, run) for sid, seq, ts, run in found]
    caps, now_ns = {1: 1_000, 2: 300}, 2_000_000_000   # stream 3 is not this run's; stream 2 stops at 300
    expected, expected_settled = _one_by_one(rows, now_ns, caps)
    bulk, settled = ConsumerTally("c", "q", 0, earliest_ns=1_000), []
    half = len(rows) // 2
    bulk.see_batch(rows[:half], now_ns, RUN, caps, settled)
    bulk.see_batch(rows[half:], now_ns, RUN, caps, settled)
    assert _state(bulk) == _state(expected)
    assert [(None if t is None else id(t), s) for t, s in settled] == \
        [(None if t is None else id(bulk.streams[sid]), s) for (t, s), (_, _, _, _, _, sid, _, _, _) in
         zip(expected_settled, rows, strict=True)]
