"""How many messages a queue holds right now, counted truthfully before mqspec deletes or replaces it.

Neither of the broker's own answers is right alone (measured on RabbitMQ 3.10):
- a passive declare over AMQP is exact at once, but counts only ready messages, and for a stream it reports
  the count of a few seconds ago (0 for a stream that was just written to);
- the management API counts ready and unacknowledged messages, but from statistics each queue emits every
  `collect_statistics_interval` (5 s by default), and it reports nothing at all for a queue younger than that;
  for a stream it reports 0 messages.

So: ready messages and consumers come from a passive declare. A classic or quorum queue without consumers
holds no unacknowledged messages (a basic.get left unacknowledged aside), so its count is exact. For one with
consumers the management statistics are read until they can be trusted: either the queue emits new statistics
while we watch (its entry, reductions included, changes), or its last emission says it went idle at least
three intervals ago by the broker's clock and agrees with the passive declare. Silence alone proves nothing: a
loaded broker emits late, and a stale 0 would let a queue holding unacknowledged messages be deleted. A stream
is counted by reading it: the offsets (x-stream-offset) of its first and last committed messages. Where none
of this gives an answer the count is unknown, with the reason, and the plan refuses to remove the queue
without --force.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pika.exceptions as pe
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from mqspec.broker import amqp
from mqspec.broker.management import Management, q
from mqspec.core import model
from mqspec.core.plan import QueueStats
from mqspec.errors import MqspecError

STATISTICS_INTERVAL = 5.0   # RabbitMQ's default collect_statistics_interval, in seconds
_POLL = 0.25
_FIRST_MESSAGE_WAIT = 1.0   # a stream reader is handed committed messages at once; none by then: it is empty
_QUIET = 0.3                # no further message for this long: the last chunk has been read
_STREAM_READ_LIMIT = 5.0
_STATS_COLUMNS = "name,messages,messages_ready,messages_unacknowledged,consumers,reductions,idle_since"
IDLE_TRUSTED = 3 * STATISTICS_INTERVAL   # idle this long by the broker's clock: no emission can still be pending
_FRESH_WAIT = 2 * STATISTICS_INTERVAL + 1


def count(settings: model.BrokerSettings, management: Management, vhost: str,
          queues: Mapping[str, model.QueueType]) -> dict[str, QueueStats]:
    """The messages (ready and unacknowledged) and consumers of each queue of the vhost, or why they are unknown.

    `settings` must name the vhost in its URL. A queue that does not exist holds nothing.
    """
    if not queues:
        return {}
    try:
        connection = amqp.connect(settings, connection_name="mqspec (message counts)")
    except MqspecError as exc:
        return {name: QueueStats(unknown=f"it could not be counted over AMQP: {exc.message}") for name in queues}
    try:
        declared = {name: _passive(connection, settings.url, name) for name in queues}
        found = {name: answer for name, answer in declared.items() if answer is not None}
        stats: dict[str, QueueStats] = {name: QueueStats(0, 0) for name in queues if declared[name] is None}
        for name, (ready, consumers) in found.items():
            if queues[name] == "stream":
                stats[name] = _stream(settings, name, ready, consumers)
            elif consumers == 0:
                stats[name] = QueueStats(ready, 0)
        consumed = {name: found[name] for name in found if name not in stats}
        stats |= _with_unacknowledged(management, vhost, consumed)
        return stats
    finally:
        if connection.is_open:
            connection.close()


def ready_now(settings: model.BrokerSettings, name: str) -> tuple[int, int] | None:
    """Ready messages and consumers of one queue this moment (None when it does not exist)."""
    connection = amqp.connect(settings, connection_name="mqspec (message counts)")
    try:
        return _passive(connection, settings.url, name)
    finally:
        if connection.is_open:
            connection.close()


def _passive(connection: BlockingConnection, url: str, name: str) -> tuple[int, int] | None:
    channel = connection.channel()
    try:
        frame = channel.queue_declare(name, passive=True)
    except pe.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return None
        raise amqp.translate(exc, url, f"count the messages of queue '{name}'") from None
    channel.close()
    return frame.method.message_count, frame.method.consumer_count


# --- classic and quorum queues with consumers: ready + unacknowledged from statistics that can be trusted -----

def _with_unacknowledged(management: Management, vhost: str,
                         consumed: Mapping[str, tuple[int, int]]) -> dict[str, QueueStats]:
    if not consumed:
        return {}
    try:
        trusted = _trusted_statistics(management, vhost, consumed)
    except MqspecError as exc:
        trusted, failure = {}, exc.message
    else:
        failure = ""
    stats = {}
    for name, (ready, consumers) in consumed.items():
        messages = trusted.get(name)
        if messages is not None:
            stats[name] = QueueStats(max(messages, ready), consumers)
        else:
            why = failure or (f"the management API's statistics for it could not be shown to be current within "
                              f"{_FRESH_WAIT:.0f} s")
            stats[name] = QueueStats(None, consumers, unknown=f"its {_consumers(consumers)} may hold unacknowledged "
                                                              f"messages, and {why}")
    return stats


def _trusted_statistics(management: Management, vhost: str, passive: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    """Each queue's message count from statistics that are provably current, else nothing for it.

    Current means emitted when the queue went idle long enough ago that any later activity would have been
    emitted since (`idle_since`, by the broker's clock, at least IDLE_TRUSTED old) and still agreeing with the
    passive declare made just now (ready messages and consumers). An entry that merely changed while we
    watched proves nothing: it may be a late emission of an older state (a stale 0 from before the messages
    arrived). Otherwise the count is unknown, and the delete is refused without --force.
    """
    names = set(passive)
    first = _statistics(management, vhost, names)
    deadline = time.monotonic() + _FRESH_WAIT
    trusted: dict[str, int] = {n: e["messages"] for n, e in first.items() if _settled(e, passive[n], management.broker_time)}
    while len(trusted) < len(names) and time.monotonic() < deadline:
        time.sleep(_POLL)
        latest = _statistics(management, vhost, names - set(trusted))
        for name, entry in latest.items():
            if _settled(entry, passive[name], management.broker_time):
                trusted[name] = entry["messages"]
    return trusted


def _settled(entry: Mapping[str, Any], passive: tuple[int, int], broker_now: float | None) -> bool:
    idle = _timestamp(entry.get("idle_since"))
    if idle is None or broker_now is None or not isinstance(entry.get("messages"), int):
        return False
    agrees = (entry.get("messages_ready"), entry.get("consumers")) == passive
    return agrees and broker_now - idle >= IDLE_TRUSTED


def _timestamp(text: Any) -> float | None:
    """RabbitMQ's idle_since ('2026-12-01T22:03:19.546+00:00', or '2026-12-01 22:03:19' on older brokers)."""
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _statistics(management: Management, vhost: str, names: set[str]) -> dict[str, dict[str, Any]]:
    listing = management.get(f"/queues/{q(vhost)}?columns={_STATS_COLUMNS}", f"the queues of vhost '{vhost}'",
                             missing_ok=True) or []
    return {entry["name"]: entry for entry in listing if entry.get("name") in names}


def _consumers(n: int) -> str:
    return f"{n} consumer{'' if n == 1 else 's'}"


# --- streams: read the first and the last committed offset ------------------------------------------------------

def _stream(settings: model.BrokerSettings, name: str, reported: int, consumers: int) -> QueueStats:
    """Read on a connection of its own: closing a stream consumer with deliveries still buffered makes pika
    reject them, which a stream answers by closing the connection (NOT_IMPLEMENTED)."""
    try:
        connection = amqp.connect(settings, connection_name="mqspec (stream offsets)")
    except MqspecError as exc:
        return QueueStats(None, consumers, unknown=f"the stream could not be read: {exc.message}")
    try:
        first = _edge_offset(connection, name, "first")
        if first is None:
            if reported:     # the broker counted some, and none could be read: do not guess
                return QueueStats(None, consumers, unknown=f"the broker reports {reported} messages, none could be read")
            return QueueStats(0, consumers)
        last = _edge_offset(connection, name, "last")
    except pe.AMQPError as exc:
        return QueueStats(None, consumers, unknown=f"the stream could not be read: {amqp.translate(exc, settings.url).message}")
    finally:
        with contextlib.suppress(pe.AMQPError):
            if connection.is_open:
                connection.close()
    if last is None or last < first:
        return QueueStats(None, consumers, unknown="its last message could not be read")
    return QueueStats(last - first + 1, consumers)


def _edge_offset(connection: BlockingConnection, name: str, where: str) -> int | None:
    """The offset of the first message, or of the last one (read to the end of the last chunk); None if empty.

    The first is read with a prefetch of one and no acknowledgement, so exactly one message is delivered;
    the last chunk is read with acknowledgements until no further message comes.
    """
    channel: BlockingChannel = connection.channel()
    offsets: list[int] = []
    first = where == "first"

    def received(ch: BlockingChannel, method: Any, properties: Any, _body: bytes) -> None:
        offset = (properties.headers or {}).get("x-stream-offset")
        if isinstance(offset, int):
            offsets.append(offset)
        if not first:
            ch.basic_ack(method.delivery_tag)

    channel.basic_qos(prefetch_count=1 if first else 1000)
    channel.basic_consume(name, received, arguments={"x-stream-offset": where})
    _read(connection, offsets, stop_at_first=first)
    if first and channel.is_open:
        channel.close()
    if not offsets:
        return None
    return offsets[0] if first else max(offsets)


def _read(connection: BlockingConnection, offsets: list[int], stop_at_first: bool) -> None:
    start = time.monotonic()
    last_seen, seen = start, 0
    while time.monotonic() - start < _STREAM_READ_LIMIT:
        connection.process_data_events(0.05)
        now = time.monotonic()
        if len(offsets) > seen:
            seen, last_seen = len(offsets), now
            if stop_at_first:
                return
        elif (seen and now - last_seen >= _QUIET) or (not seen and now - start >= _FIRST_MESSAGE_WAIT):
            return
