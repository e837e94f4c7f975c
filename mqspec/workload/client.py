"""One AMQP connection on a worker's shared pika ioloop, recovering from connection loss with backoff.

Subclasses (producer, consumer, RPC peers) implement `setup(channel)`, called on every (re)opened
channel, and `lost()`, called when the connection drops unexpectedly. A failure before the first
successful setup is fatal (wrong URL, credentials, permissions, missing queue): the worker reports
it and the run stops with that message. After that, a dropped connection is retried with
exponential backoff, trying the next node URL each time (cluster failover), until the run ends.
"""

from __future__ import annotations

import logging
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol

import pika
import pika.exceptions as pe
from pika.adapters.select_connection import IOLoop
from pika.channel import Channel

from mqspec.broker import amqp
from mqspec.core import model, read_wait
from mqspec.errors import MqspecError
from mqspec.workload import frames
from mqspec.workload.socket_wait import Held, SocketWait

logging.getLogger("pika").setLevel(logging.CRITICAL)

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0
SETTLE = 1.0   # seconds before the first reconnect after a connection was lost


class Context(Protocol):
    """What a client needs from its worker."""

    ioloop: IOLoop
    settings: model.BrokerSettings
    topology: model.Topology
    connection_prefix: str
    recovering: bool
    run_id: int
    stream_caps: dict[int, int]
    started_ns: int
    fast: bool              # prebuilt frames and the inbound parser (frames.py) instead of pika's own paths
    read_rule: read_wait.Policy   # how long clients' bytes may wait in their sockets (core/read_wait.py)
    held: Held | None       # the sockets held at a low-water mark (socket_wait.py); None: reads never wait

    def fatal(self, error: MqspecError) -> None: ...

    def ready(self, client: Client) -> None: ...

    def progress_changed(self) -> None: ...

    def finished(self, client: Client) -> None: ...

    def probed(self, queue: str, probe: str) -> None: ...


class Client(ABC):
    """Connection + one channel; `label` names it in the management UI (`prefix:label`)."""

    def __init__(self, ctx: Context, label: str) -> None:
        self.ctx = ctx
        self.label = label
        self.connection: pika.SelectConnection | None = None
        self.channel: Channel | None = None
        self.ready_once = False
        self.stopping = False      # we are closing on purpose: do not reconnect
        self.done = False          # finished for good
        self.url_index = 0
        self.delay = BACKOFF_FIRST
        self.reconnects = 0
        self.operation = "open a connection"
        self._finished = False
        self.endpoint_name = ""   # "client-ip:port -> server-ip:port", the broker's name for the connection
        self.socket_wait: SocketWait | None = None   # the hold on this connection's socket (socket_wait.py)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._connect()

    @abstractmethod
    def setup(self, channel: Channel) -> None:
        """Called on every (re)opened channel."""

    @abstractmethod
    def go(self, go_at: float) -> None:
        """The common start (time.monotonic of this process): start publishing or counting."""

    @abstractmethod
    def stop(self, reason: str = "") -> None:
        """The run is ending (drained, timeout, interrupted...): finish up and close."""

    def lost(self) -> None:  # noqa: B027 - a hook: most clients have nothing to forget
        """The connection dropped; subclasses forget channel state (unconfirmed, held messages)."""

    def closed(self) -> None:  # noqa: B027 - a hook: most clients have nothing to finalise
        """The connection is closed for good; subclasses finalise counters."""

    @property
    def url(self) -> str:
        return self.ctx.settings.urls[self.url_index % len(self.ctx.settings.urls)]

    def _connect(self) -> None:
        if self.done:
            return
        name = f"{self.ctx.connection_prefix}:{self.label}"
        try:
            params = amqp.parameters(self.ctx.settings, self.url, name)
        except MqspecError as exc:
            self._fail(exc)
            return
        self.connection = pika.SelectConnection(
            params, on_open_callback=self._on_open, on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed, custom_ioloop=self.ctx.ioloop)

    def opened(self, connection: pika.SelectConnection) -> None:  # noqa: B027 - a hook: only producers listen
        """The connection is open (first time or after a reconnect); before its channel opens."""

    def _on_open(self, connection: pika.SelectConnection) -> None:
        self.endpoint_name = _endpoint_name(connection)
        self.opened(connection)
        self.operation = "open a channel"
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Channel) -> None:
        self.channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        self.delay = BACKOFF_FIRST
        self.setup(channel)

    def became_ready(self) -> None:
        self.ready_once = True

    # --- failures ---------------------------------------------------------------------------

    def _on_open_error(self, _connection: Any, error: BaseException) -> None:
        self.connection = None
        if not self.ready_once and not self.recovering():
            if self.url_index + 1 < len(self.ctx.settings.urls):
                self.url_index += 1     # cluster failover: the next node, at once
                self._connect()
                return
            self._fail(amqp.translate(error, self.url, self.operation))
            return
        self.url_index += 1
        self._retry_later()

    def _on_closed(self, _connection: Any, reason: BaseException) -> None:
        self.channel = None
        self.connection = None
        self.release_socket()
        if self.stopping or self.done or isinstance(reason, pe.ConnectionClosedByClient):
            self._finish()
            return
        if not self.ready_once and not self.recovering():
            self._fail(amqp.translate(reason, self.url, self.operation))
            return
        self.reconnects += 1
        self.lost()
        self.url_index += 1
        # like production clients (the Java client waits 5 s): let the cluster notice the lost node and move
        # queue leaders before this client subscribes or publishes through another node
        self.delay = max(self.delay, SETTLE)
        self._retry_later()

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        if self.channel is channel:
            self.channel = None
        if self.stopping or self.done:
            self.close()
            return
        if isinstance(reason, pe.ChannelClosedByBroker):
            # a refusal (403/404/406) is a configuration error; a forced close during a broker
            # restart arrives as a connection close instead
            self._fail(amqp.translate(reason, self.url, self.operation))
            return
        # closed by us (crash simulation) or with the connection: the connection handler decides

    def recovering(self) -> bool:
        """True while a fault is expected to cut connections (then even first attempts retry)."""
        return self.ctx.recovering

    def _retry_later(self) -> None:
        delay, self.delay = self.delay, min(self.delay * 2, BACKOFF_MAX)
        self.ctx.ioloop.call_later(delay, self._connect)

    def _fail(self, error: MqspecError) -> None:
        self.done = True
        self.stopping = True
        self.ctx.fatal(error)
        self._close_connection()
        self._finish()

    # --- ending -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close on purpose (normal end); `closed` then `finished` follow."""
        self.stopping = True
        if not self._close_connection():
            self._finish()

    def _close_connection(self) -> bool:
        connection = self.connection
        if connection is None or connection.is_closed:
            return False
        if connection.is_closing:
            return True
        try:
            connection.close()
        except pe.ConnectionWrongStateError:
            return False
        return True

    def _finish(self) -> None:
        if self._finished:
            return
        self.done = True
        self._finished = True
        self.closed()
        self.ctx.finished(self)

    # --- reading ----------------------------------------------------------------------------

    def read_once(self, size: int, may_wait: bool) -> None:
        """Read the connection once per readable event (frames.read_once), holding its socket at a low-water
        mark when `may_wait` and it is plain TCP on a worker whose poll step keeps deadlines."""
        hold = self._hold_socket() if may_wait else None
        if not frames.read_once(self.connection, size, None if hold is None else hold.read):
            self.release_socket()   # not plain TCP (TLS): its reads never wait

    def _hold_socket(self) -> SocketWait | None:
        self.release_socket()
        held = self.ctx.held
        sock = getattr(getattr(self.connection, "_transport", None), "_sock", None)
        if held is None or not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        self.socket_wait = SocketWait(sock, held)
        return self.socket_wait

    def release_socket(self) -> None:
        if self.socket_wait is not None:
            self.socket_wait.close()
            self.socket_wait = None

    def later(self, delay: float, callback: Callable[[], None]) -> object:
        return self.ctx.ioloop.call_later(delay, callback)

    @property
    def connection_name(self) -> str | None:
        """The broker's name for the open connection (what the management API closes), if open."""
        connection = self.connection
        return self.endpoint_name if connection is not None and connection.is_open and self.endpoint_name else None


def _endpoint_name(connection: Any) -> str:
    try:
        sock = connection._transport._sock
        local, peer = sock.getsockname(), sock.getpeername()
    except (AttributeError, OSError):
        return ""
    return f"{local[0]}:{local[1]} -> {peer[0]}:{peer[1]}"
