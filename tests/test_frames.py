"""The hot path's own AMQP framing, on byte streams marshalled by pika itself: what goes out, what comes in."""

from __future__ import annotations

from typing import Any

import pika
import pytest
from pika import frame, spec

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
            channel: int = CHANNEL) -> bytes:
    """One Basic.Deliver with its content, as the broker sends it (pika's marshalling, BODY_MAX per body frame)."""
    method = frame.Method(channel, spec.Basic.Deliver(consumer_tag="ctag-1", delivery_tag=tag, redelivered=redelivered,
                                                      exchange="x", routing_key="k")).marshal()
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
