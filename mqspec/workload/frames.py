"""The hot path in AMQP 0-9-1 frames: publish from prebuilt frames, parse deliveries without pika's objects.

pika builds a Publish, a Header and a Body frame object for every message it sends, and a Method,
Header and Body object plus several dispatch steps for every message it receives. That is most of
the CPU a Python client spends. Here:

* `PublishTemplate` asks pika to marshal one complete message (method, header and body frames)
  once; every later message is that byte string with the 24-byte accounting mark rewritten in
  place, so a batch of messages is one bytearray handed to the transport in one write. What
  goes on the wire is exactly what pika would send.
* `InboundParser` takes over a consuming connection's incoming bytes. It parses Basic.Deliver,
  the content header and the body frames of its channel itself (decoding properties with pika
  only when the message has headers) and hands every other frame, whole, to pika, so channel
  and connection control (close, cancel, heartbeats, flow) keep working as before.

Both reach into pika's private attributes, so they run only on the pika release they were written
and tested for (WRITTEN_FOR) and when the connection object looks as expected; on any other
version, or with MQSPEC_PLAIN_PIKA=1, the plain pika path runs (the run's report says so once).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import pika
from pika import frame, spec

FRAME_END = 0xCE
FRAME_HEADER = struct.Struct(">BHI")
DELIVER_ID = (60 << 16) | 60  # Basic.Deliver
METHOD_ID = struct.Struct(">I")
CONTENT_HEADER = struct.Struct(">HHQH")  # class id, weight, body size, property flags
DELIVERY_TAG = struct.Struct(">QB")  # Basic.Deliver's delivery tag and the octet whose low bit is redelivered
ACK = struct.Struct(">BHIHHQBB")  # frame type, channel, size, class, method, delivery tag, multiple, frame end
HEADERS_FLAG = 0x2000
CONTENT_TYPE_FLAG = 0x8000
CONTENT_ENCODING_FLAG = 0x4000

Deliver = Callable[[int, bool, Any, bytes], None]
WRITTEN_FOR = "1.4.4"   # the pika release whose private attributes this module uses


class FastPath(NamedTuple):
    enabled: bool
    note: str = ""   # why not, when the file or the user did not ask for the plain path


def fast_path(env: Mapping[str, str] | None = None, version: str | None = None) -> FastPath:
    """May this run use prebuilt frames and the inbound parser? Only on the pika it was written for."""
    if (os.environ if env is None else env).get("MQSPEC_PLAIN_PIKA", ""):
        return FastPath(False)
    installed = pika.__version__ if version is None else version
    if installed != WRITTEN_FOR:
        return FastPath(False, f"pika {installed} is not the release mqspec's fast path was written for ({WRITTEN_FOR}): "
                               "publishing and consuming through pika's own code, which is slower")
    return FastPath(True)


def supported(connection: Any) -> bool:
    """The private pieces of pika this module relies on are present."""
    return (hasattr(connection, "_adapter_emit_data") and hasattr(connection, "_body_max_length")
            and hasattr(connection, "_frame_buffer") and hasattr(connection, "_on_data_available"))


class PublishTemplate:
    """One message's frames, as pika marshals them, with the body's mark at `mark_offset`."""

    def __init__(self, channel_number: int, exchange: str, routing_key: str, properties: spec.BasicProperties,
                 mandatory: bool, body: bytes, body_max_length: int) -> None:
        method = frame.Method(channel_number, spec.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                                                   mandatory=mandatory)).marshal()
        header = frame.Header(channel_number, len(body), properties).marshal()
        chunks = [frame.Body(channel_number, body[start:start + body_max_length]).marshal()
                  for start in range(0, len(body), body_max_length)]
        self.message = bytearray(method + header + b"".join(chunks))
        self.mark_offset = len(method) + len(header) + FRAME_HEADER.size
        self.size = len(self.message)


def ack_frame(channel_number: int, delivery_tag: int, multiple: bool) -> bytes:
    return ACK.pack(1, channel_number, 13, 60, 80, delivery_tag, 1 if multiple else 0, FRAME_END)


class InboundParser:
    """Replaces `connection._on_data_available` for a connection whose channel consumes."""

    def __init__(self, connection: Any, channel_number: int, deliver: Deliver) -> None:
        self.connection = connection
        self.channel_number = channel_number
        self.deliver = deliver
        self.pika = connection._on_data_available      # bound method of the class: frames we do not handle
        self.buffer = bytearray(connection._frame_buffer)
        connection._frame_buffer = b""
        self.tag = 0
        self.redelivered = False
        self.headers: Any = None
        self.remaining = -1  # body bytes still expected; -1: waiting for a Basic.Deliver
        self.awaiting_header = False
        self.fragments: list[bytes] = []

    def install(self) -> None:
        self.connection._on_data_available = self
        if self.buffer:
            self(b"")

    def __call__(self, data: bytes) -> None:
        buffer = self.buffer
        if data:
            buffer += data
            self.connection.bytes_received += len(data)
        size = len(buffer)
        position = 0
        unpack_frame = FRAME_HEADER.unpack_from
        channel_number = self.channel_number
        try:
            while size - position >= 8:
                frame_type, channel, length = unpack_frame(buffer, position)
                end = position + 7 + length
                if end >= size:
                    break
                if buffer[end] != FRAME_END:
                    raise ValueError("invalid frame end")
                if channel == channel_number:
                    if frame_type == 1 and self.remaining < 0 and not self.awaiting_header:
                        after = self._whole(buffer, position + 7, end, size)
                        if after:
                            position = after
                            continue
                    if self._content(frame_type, buffer, position + 7, end):
                        position = end + 1
                        continue
                self.pika(bytes(buffer[position:end + 1]))
                position = end + 1
        finally:
            if position:
                del buffer[:position]

    def _whole(self, buffer: bytearray, start: int, end: int, size: int) -> int:
        """A Basic.Deliver whose header and single body frame are already in the buffer, delivered in one step:
        the position after it, or 0 when it is not all there (or not that shape) and the frames go one by one."""
        if METHOD_ID.unpack_from(buffer, start)[0] != DELIVER_ID:
            return 0
        at = start + 5 + buffer[start + 4]                     # past the consumer tag
        header = end + 1
        if size - header < 8:
            return 0
        kind, channel, length = FRAME_HEADER.unpack_from(buffer, header)
        header_end = header + 7 + length
        if kind != 2 or channel != self.channel_number or header_end >= size or buffer[header_end] != FRAME_END:
            return 0
        _class, _weight, body_size, flags = CONTENT_HEADER.unpack_from(buffer, header + 7)
        body = header_end + 1
        after: int
        if body_size == 0:
            after, content = body, b""
        else:
            if size - body < 8:
                return 0
            kind, channel, length = FRAME_HEADER.unpack_from(buffer, body)
            after = body + 8 + length
            if kind != 3 or channel != self.channel_number or length != body_size or after > size \
                    or buffer[after - 1] != FRAME_END:
                return 0
            content = bytes(buffer[body + 7:after - 1])
        headers = self._headers(buffer, header + 7, header_end, flags) if flags & HEADERS_FLAG else None
        tag, redelivered = DELIVERY_TAG.unpack_from(buffer, at)
        self.deliver(tag, bool(redelivered & 1), headers, content)
        return after

    def _content(self, frame_type: int, buffer: bytearray, start: int, end: int) -> bool:
        """Handle one frame of our channel if it belongs to a delivery; False hands it to pika."""
        if frame_type == 1:
            if METHOD_ID.unpack_from(buffer, start)[0] != DELIVER_ID:
                return False
            tag, redelivered = DELIVERY_TAG.unpack_from(buffer, start + 5 + buffer[start + 4])   # past the consumer tag
            self.tag, self.redelivered = tag, bool(redelivered & 1)
            self.awaiting_header = True
            self.remaining = -1
            return True
        if frame_type == 2 and self.awaiting_header:
            self.awaiting_header = False
            _class, _weight, body_size, flags = CONTENT_HEADER.unpack_from(buffer, start)
            self.headers = self._headers(buffer, start, end, flags) if flags & HEADERS_FLAG else None
            self.fragments = []
            self.remaining = body_size
            if body_size == 0:
                self._finish()
            return True
        if frame_type == 3 and self.remaining > 0:
            piece = bytes(buffer[start:end])
            self.remaining -= len(piece)
            self.fragments.append(piece)
            if self.remaining <= 0:
                self._finish()
            return True
        return False

    @staticmethod
    def _headers(buffer: bytearray, start: int, end: int, flags: int) -> Any:
        properties = spec.BasicProperties()
        properties.decode(bytes(buffer[start + 12:end]))
        return properties.headers

    def _finish(self) -> None:
        fragments = self.fragments
        body = fragments[0] if len(fragments) == 1 else b"".join(fragments)
        self.fragments = []
        self.remaining = -1
        self.deliver(self.tag, self.redelivered, self.headers, body)
