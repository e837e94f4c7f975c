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

import functools
import os
import struct
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import pika
from pika import frame, spec

from mqspec.core import marks

FRAME_END = 0xCE
FRAME_HEADER = struct.Struct(">BHI")
DELIVER_ID = (60 << 16) | 60  # Basic.Deliver
METHOD_ID = struct.Struct(">I")
CONTENT_HEADER = struct.Struct(">HHQH")  # class id, weight, body size, property flags
DELIVERY_TAG = struct.Struct(">QB")  # Basic.Deliver's delivery tag and the octet whose low bit is redelivered
ACK_ID = (60 << 16) | 80    # Basic.Ack
NACK_ID = (60 << 16) | 120  # Basic.Nack
CONFIRM = struct.Struct(">IQB")  # Basic.Ack or Nack's method id, delivery tag and bits (multiple; requeue)
ACK = struct.Struct(">BHIHHQBB")  # frame type, channel, size, class, method, delivery tag, multiple, frame end
HEADERS_FLAG = 0x2000
CONTENT_TYPE_FLAG = 0x8000
CONTENT_ENCODING_FLAG = 0x4000

Deliver = Callable[[int, bool, Any, bytes], None]
Confirm = Callable[[int, bool, bool], None]   # delivery tag, multiple, nack
Marked = Callable[[list[Any]], None]   # rows (accounting.Row) of plain marked deliveries, in arrival order
SHAPES = 64       # distinct delivery layouts kept compiled
SHORT_RUNS = 16   # runs of one delivery in a row after which the parser stops learning shapes for a while
REST = 4096       # deliveries parsed one by one before it tries again
READS_PER_EVENT = 2   # reads per readable event at most (pika: up to 100 kB)
CONFIRM_READ = 65536  # bytes per read on a publishing connection whose confirms the ConfirmParser reads
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


def emit(connection: Any, data: bytes | bytearray) -> None:
    """Send `data` now if nothing is queued before it; what the socket does not take waits for pika's writer.

    pika queues every write and sends it when the socket next polls writable: two epoll_ctl calls and one more
    wakeup per write. A write that finds the queue empty can go at once; the order of bytes is unchanged."""
    transport: Any = getattr(connection, "_transport", None)
    if type(transport).__name__ != "_AsyncPlaintextTransport" or transport._tx_buffers \
            or transport._state != transport._STATE_ACTIVE:
        connection._adapter_emit_data(data)
        return
    try:
        sent = transport._sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        connection._adapter_emit_data(data)   # pika's own send meets the error and closes the connection its way
        return
    if sent < len(data):
        connection._adapter_emit_data(bytes(data[sent:]))


def read_once(connection: Any, size: int, on_read: Callable[[int], None] | None = None) -> bool:
    """Read the socket once per readable event, not until it would block: pika's transport reads again after
    every read, and the second read of nearly every wakeup fails with EAGAIN, an exception caught two calls up.
    A read that fills `size` is followed by another, as pika's is. Errors and end of file reach pika's own
    handling unchanged (its `_on_socket_readable` calls this). Plain TCP only; False if the transport is not.
    `on_read` is told the size of every read, before its bytes are handled."""
    transport: Any = getattr(connection, "_transport", None)
    if type(transport).__name__ != "_AsyncPlaintextTransport" or not hasattr(transport, "_consume"):
        return False
    recv, deliver, active = transport._sock.recv, connection._on_data_available, transport._STATE_ACTIVE
    told = on_read or _ignore

    def consume() -> None:
        for _ in range(READS_PER_EVENT):
            data = recv(size)
            if not data:
                raise transport.RxEndOfFile()
            told(len(data))
            deliver(data)
            if len(data) < size or transport._state != active:
                return

    transport._consume = consume
    return True


def _ignore(_size: int) -> None:
    pass


def ack_frame(channel_number: int, delivery_tag: int, multiple: bool) -> bytes:
    return ACK.pack(1, channel_number, 13, 60, 80, delivery_tag, 1 if multiple else 0, FRAME_END)


class Takeover:
    """A connection's incoming bytes, taken over from pika: what pika had buffered is parsed first, and the
    frames the subclass does not handle are handed, whole, to pika's own `_on_data_available`."""

    def __init__(self, connection: Any, channel_number: int) -> None:
        self.connection = connection
        self.channel_number = channel_number
        self.pika = connection._on_data_available      # bound method of the class: frames we do not handle
        self.buffer = bytearray(connection._frame_buffer)
        connection._frame_buffer = b""

    def install(self) -> None:
        self.connection._on_data_available = self
        if self.buffer:
            self(b"")

    def __call__(self, data: bytes) -> None:
        raise NotImplementedError

    def _take(self, data: bytes) -> bytearray:
        """The buffer with `data` appended, counted as received (pika's heartbeat checker reads the count)."""
        buffer = self.buffer
        if data:
            buffer += data
            self.connection.bytes_received += len(data)
        return buffer


class ConfirmParser(Takeover):
    """Replaces `connection._on_data_available` for a publishing connection with confirms: basic.ack and basic.nack
    of its channel go straight to `confirm(delivery tag, multiple, nack)`; every other frame goes, whole, to pika."""

    def __init__(self, connection: Any, channel_number: int, confirm: Confirm) -> None:
        super().__init__(connection, channel_number)
        self.confirm = confirm

    def __call__(self, data: bytes) -> None:
        """A run of basic.ack frames with `multiple` set, in one read, is one confirm: the last one's tag covers
        the earlier ones' (they arrived together, so their timing is the same). Anything else between them
        (a nack, a single ack, another frame) is handled in its place, after the run before it."""
        buffer = self._take(data)
        size, position, number = len(buffer), 0, self.channel_number
        unpack_frame, unpack_confirm, confirm = FRAME_HEADER.unpack_from, CONFIRM.unpack_from, self.confirm
        upto = 0   # the tag of the run of multiple acks not yet passed on
        try:
            while size - position >= 8:
                frame_type, channel, length = unpack_frame(buffer, position)
                end = position + 7 + length
                if end >= size:
                    break
                if buffer[end] != FRAME_END:
                    raise ValueError("invalid frame end")
                position = end + 1
                if frame_type == 1 and channel == number and length == CONFIRM.size:
                    method, tag, bits = unpack_confirm(buffer, end - length)
                    if method == ACK_ID and bits & 1:
                        upto = tag
                        continue
                    if method in (ACK_ID, NACK_ID):
                        if upto:
                            confirm(upto, True, False)
                            upto = 0
                        confirm(tag, bool(bits & 1), method == NACK_ID)
                        continue
                if upto:
                    confirm(upto, True, False)
                    upto = 0
                self.pika(bytes(buffer[end - length - 7:position]))
        finally:
            if position:
                del buffer[:position]
            if upto:
                confirm(upto, True, False)


class Shape(NamedTuple):
    """The byte layout of one plain marked delivery: Basic.Deliver, a content header without headers and one body
    frame that starts with the accounting mark. Consecutive deliveries to a consumer mostly share it (same
    consumer tag, exchange, routing key, properties and body size), so a run of them is one struct each."""

    layout: struct.Struct   # method frame up to the tag | tag | the rest up to the body | magic, mark | body end
    method: bytes           # the constant bytes before the delivery tag
    middle: bytes           # the constant bytes between the tag and the body (redelivered octet 0 included)

    @property
    def size(self) -> int:
        return self.layout.size


def shape_of(buffer: bytearray, start: int, at: int, body: int, body_size: int) -> Shape:
    """The layout of the delivery whose frame starts at `start`, tag at `at`, body frame at `body`."""
    method = bytes(buffer[start:at])
    middle = bytes(buffer[at + 8:body + 7])
    rest = body_size - marks.PREFIX_SIZE
    return Shape(_layout(len(method), len(middle), rest), method, middle)


@functools.lru_cache(maxsize=SHAPES)
def _layout(method: int, middle: int, rest: int) -> struct.Struct:
    return struct.Struct(f">{method}sQ{middle}s4sIIIQ{rest}xB")


class InboundParser(Takeover):
    """Replaces `connection._on_data_available` for a connection whose channel consumes."""

    def __init__(self, connection: Any, channel_number: int, deliver: Deliver, marked: Marked | None = None) -> None:
        super().__init__(connection, channel_number)
        self.deliver = deliver
        self.marked = marked     # runs of plain marked deliveries, when the consumer takes them in bulk
        self.shape: Shape | None = None
        self.short_runs = 0      # runs of a single delivery in a row (see _learning)
        self.resting = 0
        self.tag = 0
        self.redelivered = False
        self.headers: Any = None
        self.remaining = -1  # body bytes still expected; -1: waiting for a Basic.Deliver
        self.awaiting_header = False
        self.fragments: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        buffer = self._take(data)
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
                        if self.shape is not None:
                            after = self._run(buffer, position, size, self.shape)
                            if after:
                                position = after
                                continue
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
        if self.marked is not None and headers is None and not redelivered & 1 and content[:4] == marks.MAGIC \
                and body_size >= marks.PREFIX_SIZE and self._learning():
            self.shape = shape_of(buffer, start - 7, at, body, body_size)
            ran = self._run(buffer, start - 7, size, self.shape)
            if ran:
                return ran
        self.deliver(tag, bool(redelivered & 1), headers, content)
        return after

    def _learning(self) -> bool:
        """Learn a new shape? Not while shapes change at nearly every delivery (routing keys taken in turn, say):
        after SHORT_RUNS runs of one delivery in a row, the next REST deliveries go one by one."""
        if self.resting:
            self.resting -= 1
            return False
        if self.short_runs >= SHORT_RUNS:
            self.short_runs = 0
            self.resting = REST
            self.shape = None
            return False
        return True

    def _run(self, buffer: bytearray, position: int, size: int, shape: Shape) -> int:
        """Hand the consumer, in one call, the deliveries from `position` on that have `shape`: the position after
        them, or 0 if the first does not (another frame, a redelivery, headers, another size or routing key)."""
        step = shape.size
        count = (size - position) // step
        if count <= 0:
            return 0
        method, middle, magic = shape.method, shape.middle, marks.MAGIC
        rows = []
        with memoryview(buffer) as view, view[position:position + count * step] as run:
            for row in shape.layout.iter_unpack(run):
                if row[0] != method or row[2] != middle or row[3] != magic or row[8] != FRAME_END:
                    break
                rows.append(row)
        if not rows:
            return 0
        self.short_runs = self.short_runs + 1 if len(rows) == 1 else 0
        self.marked(rows)  # type: ignore[misc]
        return position + len(rows) * step

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
