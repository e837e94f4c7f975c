"""The hot path's own AMQP framing, on byte streams marshalled by pika itself: what goes out, what comes in."""

from __future__ import annotations

import collections
import functools
import socket
from typing import Any

import pika
import pytest
from pika import frame, spec

from mqspec.core import marks
from mqspec.workload import frames

CHANNEL = 1
FRAME_MAX = 4096
BODY_MAX = FRAME_MAX - 8   # what pika puts in one body frame (frame header and end take 8 bytes)


class RecordingConnection:
    """Just the attributes InboundParser touches; frames it does not handle are recorded for pika."""

    def __init__(self, pending: bytes = b"") -> None:
        self._frame_buffer = pending
        self.bytes_received = 0
        self.handed_to_pika: list[bytes] = []

    def _on_data_available(self, data: bytes) -> None:
        self.handed_to_pika.append(data)


Delivery = tuple[int, bool, Any, bytes]


def deliver(tag: int, body: bytes, redelivered: bool = False, headers: dict[str, Any] | None = None,
            channel: int = CHANNEL, routing_key: str = "k") -> bytes:
    """One Basic.Deliver with its content, as the broker sends it (pika's marshalling, BODY_MAX per body frame)."""
    method = frame.Method(channel, spec.Basic.Deliver(consumer_tag="ctag-1", delivery_tag=tag, redelivered=redelivered,
                                                      exchange="x", routing_key=routing_key)).marshal()
    properties = spec.BasicProperties(content_type="application/octet-stream", headers=headers)
    header = frame.Header(channel, len(body), properties).marshal()
    chunks = [frame.Body(channel, body[start:start + BODY_MAX]).marshal() for start in range(0, len(body), BODY_MAX)]
    return method + header + b"".join(chunks)


HEARTBEAT = frame.Heartbeat().marshal()
CANCEL_OK = frame.Method(CHANNEL, spec.Basic.CancelOk(consumer_tag="ctag-1")).marshal()


def recorded() -> tuple[bytes, list[Delivery], list[bytes]]:
    """A stream the parser must split into deliveries (for us) and whole frames (for pika)."""
    large = bytes(range(256)) * 40            # 10,240 bytes: three body frames
    expected: list[Delivery] = [
        (1, False, None, b"MQs\x02" + b"m" * 96),
        (2, True, None, b"again"),
        (3, False, {"x-mqspec": "1:2:3:4", "n": 7}, b"with headers"),
        (4, False, None, b""),
        (5, False, None, large),
    ]
    other_channel = deliver(99, b"not ours", channel=2)
    stream = (deliver(1, expected[0][3]) + HEARTBEAT + deliver(2, b"again", redelivered=True)
              + other_channel + deliver(3, b"with headers", headers={"x-mqspec": "1:2:3:4", "n": 7})
              + deliver(4, b"") + HEARTBEAT + deliver(5, large) + CANCEL_OK)
    split = frame_list(other_channel)
    return stream, expected, [HEARTBEAT, *split, HEARTBEAT, CANCEL_OK]


def frame_list(data: bytes) -> list[bytes]:
    found, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at + 3:at + 7], "big")
        found.append(data[at:at + size + 8])
        at += size + 8
    return found


def parse(chunks: list[bytes], pending: bytes = b"") -> tuple[list[Delivery], list[bytes], RecordingConnection]:
    connection = RecordingConnection(pending)
    got: list[Delivery] = []
    parser = frames.InboundParser(connection, CHANNEL, lambda tag, again, headers, body: got.append((tag, again, headers, body)))
    parser.install()
    for chunk in chunks:
        connection._on_data_available(chunk)  # type: ignore[operator]  # now the parser
    return got, connection.handed_to_pika, connection


def test_the_parser_yields_every_delivery_and_hands_every_other_frame_whole_to_pika() -> None:
    stream, expected, for_pika = recorded()
    got, handed, connection = parse([stream])
    assert got == expected
    assert handed == for_pika
    assert connection.bytes_received == len(stream)


def test_a_stream_split_at_every_offset_parses_the_same() -> None:
    stream, expected, for_pika = recorded()
    for offset in range(len(stream) + 1):
        got, handed, _ = parse([stream[:offset], stream[offset:]])
        assert (got, handed) == (expected, for_pika), offset


def test_a_stream_arriving_a_byte_at_a_time_parses_the_same() -> None:
    stream, expected, for_pika = recorded()
    got, handed, _ = parse([stream[i:i + 1] for i in range(len(stream))])
    assert (got, handed) == (expected, for_pika)


def test_bytes_pika_had_buffered_before_the_parser_took_over_are_parsed_first() -> None:
    stream, expected, for_pika = recorded()
    got, handed, _ = parse([stream[500:]], pending=stream[:500])
    assert (got, handed) == (expected, for_pika)


def test_a_bad_frame_end_is_refused() -> None:
    broken = bytearray(HEARTBEAT)
    broken[-1] = 0
    with pytest.raises(ValueError, match="invalid frame end"):
        parse([bytes(broken) + HEARTBEAT])


# --- runs of plain marked deliveries, handed over in bulk -------------------------------------------------

def marked_body(seq: int, size: int = 100) -> bytes:
    return marks.PREFIX.pack(marks.MAGIC, 7, 1, seq, 1_000 + seq // 3) + bytes(size - marks.PREFIX_SIZE)


def marked_stream() -> tuple[bytes, list[Delivery], list[bytes]]:
    """Plain marked deliveries broken up by everything that must not be taken in bulk."""
    expected: list[Delivery] = []
    parts: list[bytes] = []

    def add(tag: int, body: bytes, **extra: Any) -> None:
        parts.append(deliver(tag, body, **extra))
        expected.append((tag, bool(extra.get("redelivered")), extra.get("headers"), body[:marks.PREFIX_SIZE]))

    for tag in range(1, 8):
        add(tag, marked_body(tag))
    parts.append(HEARTBEAT)
    add(8, marked_body(8), redelivered=True)
    add(9, marked_body(9))
    add(10, marked_body(10), headers={"n": 1})
    add(11, marked_body(11), routing_key="other")
    add(12, marked_body(12), routing_key="other")
    add(13, marked_body(13, size=300))
    add(14, b"not marked at all")
    for tag in range(15, 20):
        add(tag, marked_body(tag))
    parts.append(CANCEL_OK)
    return b"".join(parts), expected, [HEARTBEAT, CANCEL_OK]


def parse_marked(chunks: list[bytes]) -> tuple[list[Delivery], list[bytes], int]:
    """Deliveries from both callbacks, in the order they came, each body cut to its mark; and how many in bulk."""
    connection = RecordingConnection()
    got: list[Delivery] = []
    bulk = [0]

    def one(tag: int, again: bool, headers: Any, body: bytes) -> None:
        got.append((tag, again, headers, body[:marks.PREFIX_SIZE]))

    def rows(found: list[Any]) -> None:
        bulk[0] += len(found)
        got.extend((row[1], False, None, marks.PREFIX.pack(*row[3:8])) for row in found)

    frames.InboundParser(connection, CHANNEL, one, rows).install()
    for chunk in chunks:
        connection._on_data_available(chunk)  # type: ignore[operator]
    return got, connection.handed_to_pika, bulk[0]


def test_runs_of_plain_marked_deliveries_are_handed_over_in_bulk_in_arrival_order() -> None:
    stream, expected, for_pika = marked_stream()
    got, handed, bulk = parse_marked([stream])
    assert (got, handed) == (expected, for_pika)
    assert bulk >= 12   # 1-7, 9, 11-12, 13 and 15-19 have shapes of their own runs; 8, 10 and 14 go one by one


def test_a_stream_of_marked_deliveries_split_at_every_offset_parses_the_same() -> None:
    stream, expected, for_pika = marked_stream()
    for offset in range(0, len(stream) + 1, 7):
        got, handed, _ = parse_marked([stream[:offset], stream[offset:]])
        assert (got, handed) == (expected, for_pika), offset
    got, handed, _ = parse_marked([stream[i:i + 1] for i in range(len(stream))])
    assert (got, handed) == (expected, for_pika)


def test_shapes_that_change_at_every_delivery_stop_being_learned_for_a_while() -> None:
    keys = ["a", "b"]
    stream = b"".join(deliver(tag, marked_body(tag), routing_key=keys[tag % 2]) for tag in range(1, 200))
    got, _, bulk = parse_marked([stream])
    assert [d[0] for d in got] == list(range(1, 200))
    assert bulk <= frames.SHORT_RUNS + 1


def test_a_publish_template_is_exactly_what_pika_marshals() -> None:
    body = b"MQs\x02" + bytes(96)
    properties = spec.BasicProperties(delivery_mode=2, headers={"a": "b"})
    template = frames.PublishTemplate(CHANNEL, "x", "key", properties, True, body, BODY_MAX)
    method = frame.Method(CHANNEL, spec.Basic.Publish(exchange="x", routing_key="key", mandatory=True)).marshal()
    expected = method + frame.Header(CHANNEL, len(body), properties).marshal() + frame.Body(CHANNEL, body).marshal()
    assert bytes(template.message) == expected
    assert template.message[template.mark_offset:template.mark_offset + 4] == b"MQs\x02"


def test_a_large_publish_template_splits_its_body_like_pika() -> None:
    body = b"MQs\x02" + bytes(10_000)
    template = frames.PublishTemplate(CHANNEL, "", "q", spec.BasicProperties(), False, body, BODY_MAX)
    kinds = [f[0] for f in frame_list(bytes(template.message))]
    assert kinds == [1, 2, 3, 3, 3]


def test_a_prebuilt_ack_is_exactly_what_pika_marshals() -> None:
    assert frames.ack_frame(3, 123_456, True) == frame.Method(3, spec.Basic.Ack(delivery_tag=123_456, multiple=True)).marshal()


# --- which pika the fast path runs on -----------------------------------------------------------------

def test_the_fast_path_runs_only_on_the_pika_release_it_was_written_for() -> None:
    assert pika.__version__ == frames.WRITTEN_FOR   # the installed one: update WRITTEN_FOR after checking frames.py
    assert frames.fast_path({}, frames.WRITTEN_FOR) == frames.FastPath(True)
    assert frames.fast_path({}, "1.5.0") == frames.FastPath(False, (
        f"pika 1.5.0 is not the release mqspec's fast path was written for ({frames.WRITTEN_FOR}): publishing and "
        "consuming through pika's own code, which is slower"))
    assert frames.fast_path({"MQSPEC_PLAIN_PIKA": "1"}, frames.WRITTEN_FOR) == frames.FastPath(False)


def test_the_fast_path_follows_the_installed_pika(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQSPEC_PLAIN_PIKA", raising=False)
    monkeypatch.setattr(pika, "__version__", "1.5.0")
    assert frames.fast_path().enabled is False


# --- publisher confirms read from the bytes -----------------------------------------------------------

def _append(found: list[tuple[int, bool, bool]], *confirm: Any) -> None:
    found.append(confirm)


def test_the_confirm_parser_takes_acks_and_nacks_of_its_channel_and_hands_the_rest_to_pika() -> None:
    ack = frame.Method(CHANNEL, spec.Basic.Ack(delivery_tag=5, multiple=True)).marshal()
    single = frame.Method(CHANNEL, spec.Basic.Ack(delivery_tag=6, multiple=False)).marshal()
    nack = frame.Method(CHANNEL, spec.Basic.Nack(delivery_tag=9, multiple=True, requeue=True)).marshal()
    elsewhere = frame.Method(2, spec.Basic.Ack(delivery_tag=1, multiple=False)).marshal()
    returned = deliver(1, b"back")   # a method frame and content of our channel that are not confirms
    stream = ack + HEARTBEAT + single + returned + elsewhere + nack + CANCEL_OK
    for offset in range(len(stream) + 1):
        connection = RecordingConnection()
        confirms: list[tuple[int, bool, bool]] = []
        frames.ConfirmParser(connection, CHANNEL, functools.partial(_append, confirms)).install()
        connection._on_data_available(stream[:offset])  # type: ignore[operator]
        connection._on_data_available(stream[offset:])  # type: ignore[operator]
        assert confirms == [(5, True, False), (6, False, False), (9, True, True)], offset
        assert connection.handed_to_pika == [HEARTBEAT, *frame_list(returned), elsewhere, CANCEL_OK], offset
        assert connection.bytes_received == len(stream)


def test_multiple_acks_that_arrive_together_are_one_confirm_of_the_last_tag_in_their_place() -> None:
    def ack(tag: int, multiple: bool = True) -> bytes:
        return frame.Method(CHANNEL, spec.Basic.Ack(delivery_tag=tag, multiple=multiple)).marshal()

    nack = frame.Method(CHANNEL, spec.Basic.Nack(delivery_tag=12, multiple=False, requeue=True)).marshal()
    stream = ack(3) + ack(7) + ack(8, multiple=False) + ack(10) + ack(11) + nack + ack(20) + ack(25)
    connection = RecordingConnection()
    confirms: list[tuple[int, bool, bool]] = []
    frames.ConfirmParser(connection, CHANNEL, functools.partial(_append, confirms)).install()
    connection._on_data_available(stream)  # type: ignore[operator]
    assert confirms == [(7, True, False), (8, False, False), (11, True, False), (12, False, True), (25, True, False)]
    assert connection.handed_to_pika == []


# --- writes that go out at once ---------------------------------------------------------------------------

class _AsyncPlaintextTransport:   # named as pika's plain TCP transport, which is all emit() writes through
    _STATE_ACTIVE = 1

    def __init__(self, sock: socket.socket) -> None:
        self._sock, self._state, self._tx_buffers = sock, 1, collections.deque[bytes]()


class QueueingConnection:
    def __init__(self, sock: socket.socket) -> None:
        self._transport = _AsyncPlaintextTransport(sock)

    def _adapter_emit_data(self, data: bytes) -> None:
        self._transport._tx_buffers.append(bytes(data))


def test_a_write_goes_out_at_once_when_nothing_waits_before_it_and_queues_behind_what_does() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        connection = QueueingConnection(ours)
        frames.emit(connection, b"first")
        assert (theirs.recv(100), list(connection._transport._tx_buffers)) == (b"first", [])
        connection._transport._tx_buffers.append(b"queued")
        frames.emit(connection, b"second")
        assert list(connection._transport._tx_buffers) == [b"queued", b"second"]   # order kept: pika sends both


def test_what_the_socket_does_not_take_waits_for_pikas_writer() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        connection = QueueingConnection(ours)
        data = bytes(range(256)) * 4096
        frames.emit(connection, data)
        queued = b"".join(connection._transport._tx_buffers)
        assert 0 < len(queued) < len(data)
        received = b""
        while len(received) < len(data) - len(queued):
            received += theirs.recv(65536)
        assert received + queued == data
