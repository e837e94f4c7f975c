"""The parent's own AMQP connection: ready-message counts of queues, by passive declare (exact, immediate).

The management API's message counts lag by up to the statistics interval (5 s by default), too
slow to decide that a queue has drained; a passive queue.declare answers from the queue itself.
"""

from __future__ import annotations

import contextlib

import pika
import pika.exceptions as pe
from pika.adapters.blocking_connection import BlockingChannel

from mqspec.broker import amqp
from mqspec.core import model
from mqspec.errors import MqspecError


class QueueMonitor:
    def __init__(self, settings: model.BrokerSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.connection: pika.BlockingConnection | None = None
        self.channel: BlockingChannel | None = None

    def _channel(self) -> BlockingChannel:
        if self.connection is None or not self.connection.is_open:
            self.connection = amqp.connect(self.settings, self.name)
            self.channel = None
        if self.channel is None or not self.channel.is_open:
            self.channel = self.connection.channel()
        return self.channel

    def stat(self, queue: str) -> tuple[int, int] | None:
        """(ready messages, consumers) of a queue, or None when it does not exist or cannot be read."""
        try:
            frame = self._channel().queue_declare(queue, passive=True)
        except pe.ChannelClosedByBroker:
            self.channel = None
            return None
        except (pe.AMQPError, MqspecError, OSError):
            self.close()
            raise
        return int(frame.method.message_count), int(frame.method.consumer_count)

    def depths(self, queues: list[str]) -> dict[str, int] | None:
        """Ready counts of existing queues; None when the broker cannot be reached right now."""
        try:
            found = {queue: self.stat(queue) for queue in queues}
        except (pe.AMQPError, MqspecError, OSError):
            return None
        return {queue: stat[0] for queue, stat in found.items() if stat is not None}

    def close(self) -> None:
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(pe.AMQPError, OSError):
                connection.close()
