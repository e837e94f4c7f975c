"""One worker process: a pika ioloop running some producer, consumer and RPC instances.

It talks to the parent over a pipe whose file descriptor sits in the same ioloop; the messages
are the named tuples of messages.py. It dies with its parent (lifeline.py).
"""

from __future__ import annotations

import gc
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from pika.adapters.select_connection import IOLoop

from mqspec.core import marks, model, read_wait
from mqspec.errors import MqspecError
from mqspec.workload import lean_poll, lifeline
from mqspec.workload.client import Client
from mqspec.workload.consumer import Consumer
from mqspec.workload.messages import (
    Abort,
    ConsumerRow,
    Fatal,
    Final,
    Go,
    Kill,
    Probed,
    ProducerRow,
    Progress,
    Ready,
    Recovering,
    RpcClientRow,
    RpcServerRow,
    Snapshot,
    Stop,
    Tallies,
    ToWorker,
)
from mqspec.workload.producer import Producer
from mqspec.workload.rpc import RpcClient, RpcServer
from mqspec.workload.socket_wait import Held
from mqspec.workload.stream_protocol import StreamClient, StreamConsumer, StreamProducer

PROGRESS_EVERY = 0.1
ORPHAN_GRACE = 5.0   # seconds an orphaned worker may take to close its connections before it exits anyway


@dataclass(frozen=True)
class Job:
    """What one worker runs: (index in the workload, instance) pairs per kind."""

    worker: int
    settings: model.BrokerSettings
    topology: model.Topology
    workload: model.Workload
    connection_prefix: str
    run_id: int = 0
    producers: tuple[tuple[int, int], ...] = ()
    consumers: tuple[tuple[int, int], ...] = ()
    rpc_servers: tuple[tuple[int, int], ...] = ()
    rpc_clients: tuple[int, ...] = ()
    fast: bool = True    # frames.fast_path(), decided once by the parent

    @property
    def size(self) -> int:
        return len(self.producers) + len(self.consumers) + len(self.rpc_servers) + len(self.rpc_clients)


class Worker:
    def __init__(self, job: Job, pipe: Connection, parent_pid: int | None = None, own_process: bool = True) -> None:
        self.job = job
        self.pipe = pipe
        self.parent_pid = os.getppid() if parent_pid is None else parent_pid
        self.own_process = own_process   # False: a thread of a host process (a Dask task), which must never exit
        self.orphaned_at: float | None = None
        self.ioloop = IOLoop()
        self.settings = job.settings
        self.topology = job.topology
        self.connection_prefix = job.connection_prefix
        self.recovering = False
        self.run_id = job.run_id
        self.started_ns = time.time_ns()
        self.fast = job.fast
        work = job.workload
        self.read_rule = read_wait.policy(work)
        self.held: Held | None = set()   # client sockets held at a low-water mark; None: reads never wait
        if not (self.fast and lean_poll.install(self.ioloop, self.held)):
            self.held = None
        self.stream_caps = stream_caps(work)
        self.producers: list[Producer | StreamProducer] = [
            (StreamProducer if work.producers[i].protocol == "stream" else Producer)(self, work.producers[i], i, n, work.duration)
            for i, n in job.producers]
        self.consumers: list[Consumer | StreamConsumer] = [
            (StreamConsumer if work.consumers[i].protocol == "stream" else Consumer)(self, work.consumers[i], n)
            for i, n in job.consumers]
        self.servers = [RpcServer(self, work.rpc_servers[i], n) for i, n in job.rpc_servers]
        self.rpc_clients = [RpcClient(self, work.rpc_clients[i]) for i in job.rpc_clients]
        self.clients: list[Client | StreamClient] = [*self.consumers, *self.servers, *self.rpc_clients, *self.producers]
        self.waiting_readers = [c for c in (*self.consumers, *self.producers) if isinstance(c, (Consumer, Producer))]
        self.ready_count = 0
        self.finished_count = 0
        self.failed = False
        self.ending = False
        self.progress_due = False
        self.sent_ready = False

    # --- Context for clients ----------------------------------------------------------------

    def ready(self, client: Client | StreamClient) -> None:
        self.ready_count += 1
        if self.ready_count == len(self.clients) and not self.sent_ready:
            self.sent_ready = True
            self._send(Ready(self.job.worker))

    def fatal(self, error: MqspecError) -> None:
        if not self.failed:
            self.failed = True
            self._send(Fatal(self.job.worker, error.exit_code, error.message))
        self._stop_all("fatal")

    def progress_changed(self) -> None:
        if not self.progress_due:
            self.progress_due = True
            self.ioloop.call_later(0, self._progress_now)

    def finished(self, client: Client | StreamClient) -> None:
        self.finished_count += 1
        self.progress_changed()
        if self.finished_count >= len(self.clients):
            self.ioloop.call_later(0, self.ioloop.stop)

    # --- running ----------------------------------------------------------------------------

    def run(self) -> None:
        self.ioloop.add_handler(self.pipe.fileno(), self._on_pipe, IOLoop.READ)
        for client in self.clients:
            client.start()
        self.ioloop.call_later(PROGRESS_EVERY, self._tick)
        if self.clients:
            self.ioloop.start()
        self.ioloop.remove_handler(self.pipe.fileno())
        self._send(Progress(self.job.worker, self.snapshot()))
        self._send(Final(self.job.worker, self.final()))

    def _tick(self) -> None:
        if not lifeline.parent_alive(self.parent_pid):
            self._orphaned()
        self._progress_now()
        for client in self.waiting_readers:
            client.tune_reads()
        self.ioloop.call_later(PROGRESS_EVERY, self._tick)

    def _progress_now(self) -> None:
        self.progress_due = False
        self._send(Progress(self.job.worker, self.snapshot()))

    def probed(self, queue: str, probe: str) -> None:
        self._send(Probed(self.job.worker, queue, probe))

    def _send(self, message: Ready | Progress | Fatal | Final | Probed) -> None:
        if self.orphaned_at is not None:
            return
        try:
            self.pipe.send(message)
        except (OSError, ValueError):
            self._orphaned()

    def _orphaned(self) -> None:
        """The parent is gone: close every connection, and exit after ORPHAN_GRACE whatever happens."""
        if self.orphaned_at is None:
            self.orphaned_at = time.monotonic()
            self.ioloop.call_later(ORPHAN_GRACE, (lambda: os._exit(1)) if self.own_process else self.ioloop.stop)
            self._stop_all("parent gone")

    def _on_pipe(self, _fd: int, _events: int) -> None:
        try:
            while self.pipe.poll():
                self._command(self.pipe.recv())
        except (EOFError, OSError):
            self.ioloop.remove_handler(self.pipe.fileno())
            self._orphaned()

    def _command(self, message: ToWorker) -> None:
        if isinstance(message, Go):
            go_at = time.monotonic() - (time.time_ns() - message.wall_time_ns) / 1e9
            for client in self.clients:
                client.go(go_at)
        elif isinstance(message, (Stop, Abort)):
            self._stop_all(message.reason)
        elif isinstance(message, Kill):
            victim = next((c for c in self.consumers if c.spec.name == message.consumer and c.active), None)
            if victim is not None:
                victim.crash()
                victim.tally.stopped = "killed"
        elif isinstance(message, Recovering):
            self.recovering = message.value

    def _stop_all(self, reason: str) -> None:
        self.ending = True
        for client in self.clients:
            if not client.done:
                client.stop(reason)

    # --- reporting --------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return Snapshot(
            tuple(ProducerRow(p.spec.name, p.instance, p.tally.published, p.tally.confirmed, p.tally.nacked,
                              p.tally.returned, p.tally.done, p.reconnects, bool(getattr(p, "blocked_since", 0)))
                  for p in self.producers),
            tuple(ConsumerRow(c.spec.name, c.instance, c.tally.received, c.tally.held, c.tally.stopped, c.reconnects,
                              c.tally.acked) for c in self.consumers),
            tuple(RpcClientRow(r.spec.name, r.tally.sent, r.tally.answered, r.tally.timeouts, r.tally.done)
                  for r in self.rpc_clients),
            tuple(RpcServerRow(s.spec.name, s.tally.instance, s.tally.handled) for s in self.servers),
            tuple(name for name in (c.connection_name for c in self.clients) if name),
            latency=self._latency_counts(),
        )

    def _latency_counts(self) -> dict[int, int] | None:
        """The quantised latency counts since the last snapshot, folded into each consumer's histogram.

        A tenth of a second holds few distinct quantised values, so this costs little; the parent
        turns them into per-second percentiles."""
        merged: dict[int, int] = {}
        for consumer in self.consumers:
            counts = consumer.tally.latency.counts
            if counts:
                for value, count in counts.items():
                    merged[value] = merged.get(value, 0) + count
                consumer.tally.latency.fold()
        return merged or None

    def final(self) -> Tallies:
        for consumer in self.consumers:
            consumer.tally.latency.fold()
        return Tallies(tuple(p.tally for p in self.producers), tuple(c.tally for c in self.consumers),
                       tuple(r.tally for r in self.rpc_clients), tuple(s.tally for s in self.servers))


def stream_caps(workload: model.Workload) -> dict[int, int]:
    """Every producer stream of the run -> one more than the highest sequence number it can publish."""
    return {marks.stream_id(index, instance): marks.SEQ_LIMIT if producer.messages is None else producer.messages
            for index, producer in enumerate(workload.producers) for instance in range(producer.instances)}


def main(job: Job, pipe: Connection, parent_pid: int, inherited: tuple[Connection, ...] = ()) -> None:
    """Process entry point. Ctrl-C and SIGTERM belong to the parent, which stops us through the pipe
    (so a signal sent to the whole process group still ends the run with a partial report).

    `inherited`: the parent's ends of the pipes this forked process holds copies of, closed first.
    """
    lifeline.set_name(f"mqspec-worker-{job.worker}")
    lifeline.die_with_parent(parent_pid)
    lifeline.close_inherited(inherited)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    gc.collect()
    gc.freeze()
    serve(job, pipe, parent_pid)


def serve(job: Job, pipe: Connection, parent_pid: int | None = None, own_process: bool = True) -> None:
    """Run the job in this thread until its clients have closed; the pipe carries messages.py's protocol.

    `own_process=False` (a thread of a Dask worker): no signal handlers, and an orphan stops instead of exiting.
    """
    try:
        Worker(job, pipe, parent_pid, own_process).run()
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line, never a traceback
        try:
            pipe.send(Fatal(job.worker, 1, f"workload worker failed: {type(exc).__name__}: {exc}"))
            pipe.send(Final(job.worker, Tallies()))
        except OSError:
            pass
    finally:
        pipe.close()
