"""What a worker process and the parent say to each other over their pipe: one small named tuple each.

  worker -> parent: Ready once every client is set up; Progress every PROGRESS_EVERY seconds and on
                    changes; Fatal when a client fails for good; Final (the tallies) when every
                    client has closed, then the process exits.
  parent -> worker: Go (start producers and RPC clients at a common wall-clock time), Stop (end
                    gracefully), Kill (crash one consumer instance), Recovering (a fault is about to
                    cut connections), Abort (close everything now: Ctrl-C, SIGTERM).

Named tuples cost more than bare tuples (measured: a progress message takes 15 µs instead of 2 µs
to build, pickle and unpickle, and 205 bytes instead of 117), but a worker sends about ten a
second, so the typed protocol costs under 0.02% of a core; the per-message path never sees it.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ProducerRow(NamedTuple):
    name: str
    instance: int
    published: int
    confirmed: int
    nacked: int
    returned: int
    done: bool
    reconnects: int
    blocked: bool = False   # connection.blocked in force (a resource alarm): the broker reads none of its publishes


class ConsumerRow(NamedTuple):
    name: str
    instance: int
    received: int
    held: int
    stopped: str        # "" while running, else why it stopped
    reconnects: int
    acked: int = 0


class RpcClientRow(NamedTuple):
    name: str
    sent: int
    answered: int
    timeouts: int
    done: bool


class RpcServerRow(NamedTuple):
    name: str
    instance: int
    handled: int


class Snapshot(NamedTuple):
    """Live counters of one worker, small enough to send ten times a second."""

    producers: tuple[ProducerRow, ...] = ()
    consumers: tuple[ConsumerRow, ...] = ()
    rpc_clients: tuple[RpcClientRow, ...] = ()
    rpc_servers: tuple[RpcServerRow, ...] = ()
    # the broker's names of the open connections ("client-ip:port -> server-ip:port")
    connections: tuple[str, ...] = ()
    # latency counts (quantised microseconds -> deliveries) moved out of the consumers since the last snapshot
    latency: dict[int, int] | None = None


class Tallies(NamedTuple):
    """Every instance's final counters (accounting.ProducerTally, ConsumerTally, rpc tallies)."""

    producers: tuple[Any, ...] = ()
    consumers: tuple[Any, ...] = ()
    rpc_clients: tuple[Any, ...] = ()
    rpc_servers: tuple[Any, ...] = ()


# --- worker -> parent ----------------------------------------------------------------------------

class Ready(NamedTuple):
    worker: int


class Progress(NamedTuple):
    worker: int
    snapshot: Snapshot


class Fatal(NamedTuple):
    worker: int
    exit_code: int
    message: str


class Final(NamedTuple):
    worker: int
    tallies: Tallies


class Probed(NamedTuple):
    """A consumer received a route probe (probes.py) from its queue: the probe landed there."""

    worker: int
    queue: str
    probe: str


FromWorker = Ready | Progress | Fatal | Final | Probed


# --- parent -> worker ----------------------------------------------------------------------------

class Go(NamedTuple):
    wall_time_ns: int


class Stop(NamedTuple):
    reason: str


class Kill(NamedTuple):
    consumer: str


class Recovering(NamedTuple):
    value: bool


class Abort(NamedTuple):
    reason: str = "interrupted"


ToWorker = Go | Stop | Kill | Recovering | Abort
