"""Runs a scenario's workload: worker processes, the start barrier, run control, faults, and the merge.

The parent process coordinates and publishes nothing itself:

1. instances of producers, consumers and RPC peers are spread round-robin over worker processes
   (consumers first, so one producer and one consumer land in different processes);
2. every worker connects and subscribes, then reports ready; only then does the parent send one
   common start time, so round-robin dispatch and fanout see every consumer from the first message;
3. it reads progress ten times a second, fires faults, and decides when the run ends:
   - producers and RPC clients done, and every consumed queue (and every queue that can still
     dead-letter into one) drained with nothing held by consumers and nothing arriving ("drained"),
     or every consumer stopped on its own and finished what it held ("done");
   - consumer-only workloads end when the consumers stop on their own or at `duration`;
   - `drain_timeout` after the producers finished ("drain_timeout"), `timeout` ("timeout"), Ctrl-C
     ("interrupted"), SIGTERM ("terminated"), an error ("failed");
4. it tells the workers to stop, collects their tallies and merges them into one RunResult. A worker
   that does not report within STOP_TIMEOUT is killed, and its instances' counts are `missing`.

Worker messages are read without ever blocking: a worker frozen half-way through writing one
(SIGSTOP, a stalled machine) leaves a partial frame in our buffer, never a parent stuck in recv().
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import signal
import struct
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, NamedTuple, Protocol

from mqspec.broker import amqp
from mqspec.core import accounting, discards, marks, model, outcomes, read_wait, result, timeseries
from mqspec.core.result import Live, MissingCounts
from mqspec.core.vocabulary import DIRECT_REPLY_TO
from mqspec.errors import EXIT_BROKER, BrokerUnavailable, MqspecError, OperationFailed, Terminated
from mqspec.workload import frames, probes
from mqspec.workload.faults import FaultRunner, FaultSchedule, describe
from mqspec.workload.messages import (
    Abort,
    ConsumerRow,
    Fatal,
    Final,
    FromWorker,
    Go,
    Kill,
    Probed,
    ProducerRow,
    Progress,
    Ready,
    Recovering,
    Snapshot,
    Stop,
    Tallies,
    ToWorker,
)
from mqspec.workload.monitor import QueueMonitor
from mqspec.workload.worker import Job, main

READY_MARGIN = 10.0
STOP_TIMEOUT = 10.0     # seconds a worker has to report its counters once told to stop; then it is killed
DRAIN_CHECK_EVERY = 0.1
DRAIN_QUIET_CHECKS = 3
PROGRESS_EVERY = 0.25
SAMPLE_EVERY = 0.1


SECOND_EVERY = 1.0
SAMPLED_QUEUES = 64          # at most this many queues' depths go into the time series
DEPTH_RETRY_AFTER = 5.0      # seconds without depth samples after the broker could not be asked


class Observer(Protocol):
    def progress(self, live: Live) -> None: ...

    def second(self, point: timeseries.Point) -> None: ...

    def note(self, text: str) -> None: ...


class _Quiet:
    def progress(self, live: Live) -> None:
        pass

    def second(self, point: timeseries.Point) -> None:
        pass

    def note(self, text: str) -> None:
        pass


def worker_count(workload: model.Workload, requested: int | None) -> int:
    """Explicit `--workers`/`workers:`, else one process per instance up to the CPU count."""
    instances = (sum(p.instances for p in workload.producers) + sum(c.instances for c in workload.consumers)
                 + sum(s.instances for s in workload.rpc_servers) + len(workload.rpc_clients))
    wanted = requested or workload.workers or min(instances, os.cpu_count() or 1)
    return max(1, min(wanted, max(instances, 1)))


def assign(workload: model.Workload, settings: model.BrokerSettings, topology: model.Topology, workers: int,
           prefix: str, run_id: int = 0, fast: bool = True) -> list[Job]:
    """Round-robin over workers: consumers, RPC servers, RPC clients, then producers."""
    slots: list[tuple[str, Any]] = []
    slots += [("consumers", (i, n)) for i, c in enumerate(workload.consumers) for n in range(c.instances)]
    slots += [("rpc_servers", (i, n)) for i, s in enumerate(workload.rpc_servers) for n in range(s.instances)]
    slots += [("rpc_clients", i) for i, _ in enumerate(workload.rpc_clients)]
    slots += [("producers", (i, n)) for i, p in enumerate(workload.producers) for n in range(p.instances)]
    buckets: list[dict[str, list[Any]]] = [{"producers": [], "consumers": [], "rpc_servers": [], "rpc_clients": []}
                                           for _ in range(workers)]
    for position, (kind, item) in enumerate(slots):
        buckets[position % workers][kind].append(item)
    return [Job(worker=w, settings=settings, topology=topology, workload=workload, connection_prefix=prefix,
                run_id=run_id, fast=fast, producers=tuple(b["producers"]), consumers=tuple(b["consumers"]),
                rpc_servers=tuple(b["rpc_servers"]),
                rpc_clients=tuple(b["rpc_clients"]))
            for w, b in enumerate(buckets) if any(b.values())]


def watched_queues(scenario: model.Scenario) -> list[str]:
    """Queues that must be empty before consumers may stop: consumed ones, and TTL queues that dead-letter."""
    work = scenario.workload
    names = [c.queue for c in work.consumers] + [s.queue for s in work.rpc_servers]
    expiring = any(p.expiration_ms is not None for p in work.producers)
    for queue in scenario.topology.queues:
        if queue.dead_letter_exchange is not None and ("x-message-ttl" in queue.arguments or expiring):
            names.append(queue.name)
    exclusive = {q.name for q in scenario.topology.queues if q.exclusive or q.server_named}
    return list(dict.fromkeys(n for n in names if n not in exclusive and n != DIRECT_REPLY_TO))


def sampled_queues(scenario: model.Scenario) -> list[str]:
    """Queues whose depth the time series follows: the topology's (not exclusive ones: another connection
    owns those) and the consumed ones, at most SAMPLED_QUEUES."""
    work = scenario.workload
    exclusive = {q.name for q in scenario.topology.queues if q.exclusive}
    names = [q.name for q in scenario.topology.queues] + [c.queue for c in work.consumers] + [s.queue for s in work.rpc_servers]
    return [n for n in dict.fromkeys(names) if n not in exclusive and n != DIRECT_REPLY_TO][:SAMPLED_QUEUES]


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Children inherit SIG_IGN for Ctrl-C, so only the parent sees it (and stops them cleanly)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


_LENGTH = struct.Struct("!i")
_LONG_LENGTH = struct.Struct("!Q")


class Inbox:
    """The parent's end of one worker's pipe, read without blocking (multiprocessing's framing)."""

    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        self.fd = pipe.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = bytearray()
        self.closed = False

    def receive(self) -> list[FromWorker]:
        """Every whole message that has arrived; `closed` turns True at end of file."""
        while not self.closed:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                break
            self.buffer += chunk
        return self._messages()

    def _messages(self) -> list[FromWorker]:
        buffer, found = self.buffer, []
        while len(buffer) >= _LENGTH.size:
            size, start = _LENGTH.unpack_from(buffer)[0], _LENGTH.size
            if size == -1:
                if len(buffer) < _LENGTH.size + _LONG_LENGTH.size:
                    break
                size, start = _LONG_LENGTH.unpack_from(buffer, _LENGTH.size)[0], _LENGTH.size + _LONG_LENGTH.size
            if len(buffer) < start + size:
                break
            found.append(pickle.loads(buffer[start:start + size]))
            del buffer[:start + size]
        return found


class Hosted(NamedTuple):
    """Which instances one worker runs, for naming those whose counts go missing."""

    worker: int
    instances: tuple[tuple[str, str, int], ...]   # (kind, name, instance)


def hosted(job: Job) -> Hosted:
    work = job.workload
    return Hosted(job.worker, (
        *(("producer", work.producers[i].name, n) for i, n in job.producers),
        *(("consumer", work.consumers[i].name, n) for i, n in job.consumers),
        *(("rpc_server", work.rpc_servers[i].name, n) for i, n in job.rpc_servers),
        *(("rpc_client", work.rpc_clients[i].name, 0) for i in job.rpc_clients)))


class Run:
    """One run of a workload; `execute()` returns its RunResult."""

    def __init__(self, scenario: model.Scenario, workers: int | None = None, observer: Observer | None = None) -> None:
        self.scenario = scenario
        self.work = scenario.workload
        self.observer: Observer = observer or _Quiet()
        self.prefix = f"{scenario.broker.connection_name or 'mqspec'}:{scenario.name}:{uuid.uuid4().hex[:6]}"
        self.run_id = marks.new_run_id()
        fast = frames.fast_path()
        self.jobs = assign(self.work, scenario.broker, scenario.topology, worker_count(self.work, workers), self.prefix,
                           self.run_id, fast.enabled)
        self.processes: dict[int, BaseProcess] = {}
        self.pipes: dict[int, Connection] = {}
        self.inboxes: dict[int, Inbox] = {}
        self.snapshots: dict[int, Snapshot] = {}
        self.finals: dict[int, Tallies] = {}
        self.silent: dict[int, str] = {}   # worker -> why its counts are missing
        self.ready: set[int] = set()
        self.failure: MqspecError | None = None
        self.faults = FaultSchedule(self.work.faults)
        self.fault_runner = FaultRunner(scenario.broker, amqp.vhost_of(scenario.broker.url), self.prefix,
                                        self._connection_names)
        self.monitor = QueueMonitor(scenario.broker, f"{self.prefix}/monitor")
        self.watched = watched_queues(scenario)
        self.go_at = 0.0
        self.producers_done_at: float | None = None
        self.quiet = 0
        self.last_received = -1
        self.next_drain_check = 0.0
        self.notes: list[str] = [fast.note] if fast.note else []
        self.recovering = False
        self._ending = False
        self.samples: list[outcomes.Sample] = []
        self.next_sample = 0.0
        self.queue_of = {c.name: c.queue for c in self.work.consumers}
        self.routes = accounting.routes_of(scenario.topology, self.work)   # producer index -> queue -> key slots
        self.producer_index = {p.name: i for i, p in enumerate(self.work.producers)}
        self.recorder = timeseries.Recorder()
        self.sampled = sampled_queues(scenario)
        self.next_second = 0.0
        self.depths_after = 0.0
        self.probes: tuple[tuple[result.RouteObservation, str], ...] = ()   # route probes sent before the start
        self.probed: dict[str, set[str]] = {}                                # probe id -> queues whose consumer took it

    # --- lifecycle ----------------------------------------------------------------------------

    def execute(self) -> result.RunResult:
        """The run's result; an error that ended it early is in `error` (with the counts so far)."""
        ended = "done"
        started = time.monotonic()
        try:
            self.fault_runner.prepare(self.work.faults)
            self._start_workers()
            self._wait_ready()
            self._probe_routes()
            self._go()
            ended = self._control()
            self._stop_workers(ended)
            self._second(time.monotonic())
        except Terminated:
            ended = "terminated"
            self._abort("terminated")
        except KeyboardInterrupt:
            ended = "interrupted"
            self._abort("interrupted")
        except MqspecError as exc:
            self.failure = self.failure or exc
            ended = "failed"
            self._abort("failed")
        finally:
            self.fault_runner.undo_all()
            self.monitor.close()
            self._reap()
        outcome = self._result(ended, time.monotonic() - (self.go_at or started))
        if self.failure is not None:
            outcome = dataclasses.replace(outcome, ended="failed", error=self.failure.message,
                                          error_code=self.failure.exit_code)
        return outcome

    def _start_workers(self) -> None:
        context = _context()
        forked = context.get_start_method() == "fork"
        with _sigint_ignored():
            for job in self.jobs:
                parent, child = context.Pipe()
                # a forked child holds copies of the parent's ends of its own and earlier pipes: it closes them,
                # so the parent's death is an end of file on its pipe
                inherited = (parent, *self.pipes.values()) if forked else ()
                process = context.Process(target=main, args=(job, child, os.getpid(), inherited),
                                          name=f"mqspec-worker-{job.worker}", daemon=True)
                process.start()
                child.close()
                self.processes[job.worker] = process
                self.pipes[job.worker] = parent
                self.inboxes[job.worker] = Inbox(parent)

    def _wait_ready(self) -> None:
        settings = self.scenario.broker
        deadline = time.monotonic() + settings.connect_timeout * len(settings.urls) + READY_MARGIN
        while len(self.ready) < len(self.jobs):
            self._read(0.05)
            if self.failure is not None:
                raise self.failure
            if time.monotonic() > deadline:
                allowed = settings.connect_timeout * len(settings.urls) + READY_MARGIN
                raise BrokerUnavailable(f"workload clients could not connect and subscribe at {amqp.endpoint(settings.url)} "
                                        f"within {allowed:g}s")
            self._show("connecting")

    def _probe_routes(self) -> None:
        """Route probes while every consumer is subscribed, so private and auto_delete queues exist (probes.py)."""
        routes = tuple(r for e in self.scenario.expectations if isinstance(e, model.Routes) for r in e.routes)
        if routes and self.work.consumers:
            own = frozenset(c.queue for c in self.work.consumers)
            self.probes = probes.probe_routes(self.scenario.broker, self.scenario.topology, routes, own)

    def _routes(self) -> tuple[result.RouteObservation, ...]:
        return tuple(probes.with_consumed(o, self.probed.get(probe, set())) for o, probe in self.probes)

    def _go(self) -> None:
        self.go_at = time.monotonic()
        self.next_second = self.go_at + SECOND_EVERY
        self._broadcast(Go(time.time_ns()))

    def _control(self) -> str:
        last_show = 0.0
        while True:
            self._read(0.02)
            if self.failure is not None:
                raise self.failure
            now = time.monotonic()
            self._sample(now)
            self._fire_faults(now)
            if now >= self.next_second:
                self._second(now)
            ended = self._end_reason(now)
            if ended:
                return ended
            if now - last_show >= PROGRESS_EVERY:
                last_show = now
                self._show("running" if self.producers_done_at is None else "draining")

    # --- messages from workers ----------------------------------------------------------------

    def _read(self, timeout: float) -> None:
        waiting = {inbox.pipe: wid for wid, inbox in self.inboxes.items() if wid not in self.finals and not inbox.closed}
        if not waiting:
            time.sleep(timeout)
            return
        ready = wait(list(waiting), timeout)
        for pipe, wid in waiting.items():
            if pipe not in ready:
                continue
            inbox = self.inboxes[wid]
            for message in inbox.receive():
                self._handle(message)
                if wid in self.finals:
                    break
            if inbox.closed and wid not in self.finals:
                self.finals[wid] = Tallies()
                self.silent[wid] = "its worker process exited without reporting them"
                if self.failure is None and not self._ending:
                    self.failure = OperationFailed(f"workload worker {wid} exited unexpectedly")

    def _handle(self, message: FromWorker) -> None:
        if isinstance(message, Ready):
            self.ready.add(message.worker)
        elif isinstance(message, Probed):
            self.probed.setdefault(message.probe, set()).add(message.queue)
        elif isinstance(message, Progress):
            self.snapshots[message.worker] = message.snapshot
            if message.snapshot.latency:
                self.recorder.latency(message.snapshot.latency)
        elif isinstance(message, Fatal):
            if self.failure is None:
                text = message.message
                self.failure = BrokerUnavailable(text) if message.exit_code == EXIT_BROKER else OperationFailed(text)
        elif isinstance(message, Final):
            self.finals[message.worker] = message.tallies

    def _broadcast(self, message: ToWorker) -> None:
        for job in self.jobs:
            if job.worker not in self.finals:
                self._send(job.worker, message)

    def _send(self, wid: int, message: ToWorker) -> None:
        pipe = self.pipes.get(wid)
        if pipe is not None:
            with suppress(OSError, ValueError):
                pipe.send(message)

    # --- run control --------------------------------------------------------------------------

    def _producer_rows(self) -> list[ProducerRow]:
        return [row for s in self.snapshots.values() for row in s.producers]

    def _consumer_rows(self) -> list[ConsumerRow]:
        return [row for s in self.snapshots.values() for row in s.consumers]

    def _senders_done(self) -> bool:
        producers = self._producer_rows()
        clients = [row for s in self.snapshots.values() for row in s.rpc_clients]
        expected_producers = sum(p.instances for p in self.work.producers)
        return (len(producers) == expected_producers and all(row.done for row in producers)
                and len(clients) == len(self.work.rpc_clients) and all(row.done for row in clients))

    def _has_senders(self) -> bool:
        return bool(self.work.producers or self.work.rpc_clients)

    def _end_reason(self, now: float) -> str | None:
        elapsed = now - self.go_at
        if elapsed >= self.work.timeout:
            return "timeout"
        if self.fault_runner.busy:
            return None
        consumers = self._consumer_rows()
        # stopped and holding nothing: a consumer that stopped taking deliveries (messages: N, idle) still
        # processes and acks what it holds, and ending the run then would hand those back to the queue
        consumers_stopped = (all(row.stopped and not row.held for row in consumers)
                             and len(consumers) == sum(c.instances for c in self.work.consumers))
        if not self._has_senders():
            if consumers_stopped and not self.work.rpc_servers and not self.faults.pending:
                return "done"
            if self.work.duration is not None and elapsed >= self.work.duration:
                return "duration"
            return None
        if not self._senders_done():
            return None
        if self.producers_done_at is None:
            self.producers_done_at = now
        if self.faults.may_still_fire(True):
            return None
        if consumers_stopped and not self.work.rpc_servers:
            return "done"
        if self._drained(now, consumers):
            return "drained"
        if now - self.producers_done_at >= self.work.drain_timeout:
            return "drain_timeout"
        return None

    def _drained(self, now: float, consumers: list[ConsumerRow]) -> bool:
        if now < self.next_drain_check:
            return False
        self.next_drain_check = now + DRAIN_CHECK_EVERY
        received = (sum(row.received for row in consumers)
                    + sum(row.handled for s in self.snapshots.values() for row in s.rpc_servers))
        held = sum(row.held for row in consumers)   # a stopped consumer may still be processing what it holds
        watched = self._drainable(consumers)
        depths = self.monitor.depths(watched) if watched else {}
        if depths is None or held or any(depths.values()) or received != self.last_received:
            self.quiet = 0
            self.last_received = received
            return False
        self.quiet += 1
        return self.quiet >= DRAIN_QUIET_CHECKS

    def _drainable(self, consumers: list[ConsumerRow]) -> list[str]:
        """Watched queues that can still empty: a consumed queue only while one of its consumers runs."""
        queue_of = {c.name: c.queue for c in self.work.consumers}
        consumed = {queue_of[row.name] for row in consumers}
        running = {queue_of[row.name] for row in consumers if not row.stopped} | {s.queue for s in self.work.rpc_servers}
        return [name for name in self.watched if name in running or name not in consumed]

    def _sample(self, now: float) -> None:
        """Cumulative counters ten times a second: the timeline behind unavailability and fault series."""
        if now < self.next_sample:
            return
        self.next_sample = now + SAMPLE_EVERY
        producers = self._producer_rows()
        received: dict[str, int] = {}
        running: dict[str, bool] = {}
        for row in self._consumer_rows():
            queue = self.queue_of.get(row[0], row[0])
            received[queue] = received.get(queue, 0) + row[2]
            running[queue] = running.get(queue, False) or not row.stopped
        idle = frozenset(queue for queue, on in running.items() if not on)
        routed, blocked = self._routed(producers, list(received))
        self.samples.append(outcomes.Sample(round(now - self.go_at, 2), sum(r[2] for r in producers),
                                            sum(r[3] for r in producers), received, routed, idle, blocked))

    def _routed(self, producers: list[ProducerRow], queues: list[str]) -> tuple[dict[str, int], frozenset[str]]:
        """queue -> the messages the broker took that the routing oracle sends there (all of a producer it cannot tell
        about), and the queues a blocked producer without confirms feeds (what the broker took is unknown there).

        A blocked producer's publishes wait in its socket, unread by the broker (connection.blocked): of those only
        the confirmed ones are in a queue, so a blocked producer with confirms counts what was confirmed.
        """
        routed = dict.fromkeys(queues, 0)
        blocked: set[str] = set()
        for row in producers:
            index = self.producer_index.get(row.name)
            spec = self.work.producers[index] if index is not None else None
            slots_by_queue = self.routes.get(index) if index is not None else None
            keys = len(spec.routing_keys or ("",)) if spec is not None else 1
            confirms = spec is not None and spec.confirm is not None
            taken = outcomes.taken(row.published, row.confirmed, row.blocked, confirms)
            for queue in queues:
                if slots_by_queue is None or spec is None:
                    routed[queue] += taken
                elif queue in slots_by_queue:
                    routed[queue] += outcomes.routed_count(taken, slots_by_queue[queue], keys, spec.key_order)
                else:
                    continue
                if row.blocked and not confirms:
                    blocked.add(queue)
        return routed, frozenset(blocked)

    def _fire_faults(self, now: float) -> None:
        if self.fault_runner.busy:
            return
        if self.recovering:
            self._set_recovering(False)
        published = sum(row.published for row in self._producer_rows())
        for fault in self.faults.due(now - self.go_at, published):
            self.observer.note(f"fault: {describe(fault)}")
            self.recorder.event(now - self.go_at, describe(fault))
            if fault.action == "kill_consumer":
                self._kill(fault)
                continue
            self._set_recovering(True)
            self.fault_runner.start(fault, self.go_at, lambda: None)
            return

    def _connection_names(self) -> list[str]:
        """Called from the fault thread: copy before reading."""
        return [name for snapshot in list(self.snapshots.values()) for name in snapshot.connections]

    def _kill(self, fault: model.Fault) -> None:
        for wid, snapshot in self.snapshots.items():
            if any(row.name == fault.consumer and not row.stopped for row in snapshot.consumers):
                self._send(wid, Kill(fault.consumer or ""))
                self.fault_runner.log.append(f"{describe(fault)}: killed one instance (at {time.monotonic() - self.go_at:.1f}s)")
                return
        self.fault_runner.log.append(f"{describe(fault)}: no running instance to kill")

    def _set_recovering(self, value: bool) -> None:
        if self.recovering != value:
            self.recovering = value
            self._broadcast(Recovering(value))

    # --- stopping -------------------------------------------------------------------------------

    def _stop_workers(self, reason: str) -> None:
        self._ending = True
        self.fault_runner.join(0)
        self._broadcast(Stop(reason))
        self._collect(STOP_TIMEOUT)

    def _abort(self, reason: str) -> None:
        self._ending = True
        try:
            self._broadcast(Abort(reason))
            self._collect(STOP_TIMEOUT / 2)
        except KeyboardInterrupt:
            pass

    def _collect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.finals) < len(self.jobs) and time.monotonic() < deadline:
            self._read(0.05)
        for job in self.jobs:
            if job.worker not in self.finals:
                self.silent[job.worker] = f"worker {job.worker} did not report its counters within {timeout:g}s and was killed"
                self._kill_worker(job.worker)

    def _kill_worker(self, wid: int) -> None:
        process = self.processes.get(wid)
        if process is not None and process.is_alive():
            process.kill()   # SIGKILL: a stopped (SIGSTOP) process ignores everything else until continued
            process.join(2.0)

    def _reap(self) -> None:
        for wid, process in self.processes.items():
            process.join(1.0)
            if process.is_alive():
                self._kill_worker(wid)
        for pipe in self.pipes.values():
            pipe.close()

    # --- the time series ---------------------------------------------------------------------------

    def _second(self, now: float) -> None:
        """One second's point from the latest snapshots (cumulative counts) and the queues' depths."""
        self.next_second = max(self.next_second + SECOND_EVERY, now + SECOND_EVERY / 2)
        producers: dict[str, dict[str, int]] = {}
        for prow in self._producer_rows():
            row = producers.setdefault(prow.name, {"published": 0, "confirmed": 0})
            row["published"] += prow.published
            row["confirmed"] += prow.confirmed
        consumers: dict[str, dict[str, int]] = {}
        for crow in self._consumer_rows():
            row = consumers.setdefault(crow.name, {"received": 0, "acked": 0})
            row["received"] += crow.received
            row["acked"] += crow.acked
        point = self.recorder.sample(now - self.go_at, producers, consumers, self._depths(now))
        self.observer.second(point)

    def _depths(self, now: float) -> dict[str, int | None]:
        """Ready messages per sampled queue by passive declare; None while a fault runs or the broker is away."""
        unknown: dict[str, int | None] = dict.fromkeys(self.sampled)
        if not self.sampled or self.fault_runner.busy or now < self.depths_after:
            return unknown
        depths = self.monitor.depths(self.sampled)
        if depths is None:
            self.depths_after = now + DEPTH_RETRY_AFTER
            return unknown
        return {name: depths.get(name) for name in self.sampled}

    # --- display and result -----------------------------------------------------------------------

    def _missing(self) -> tuple[MissingCounts, ...]:
        jobs = {job.worker: job for job in self.jobs}
        return tuple(MissingCounts(kind, name, instance, why)
                     for wid, why in sorted(self.silent.items())
                     for kind, name, instance in hosted(jobs[wid]).instances)

    def _show(self, phase: str) -> None:
        live = Live(elapsed=time.monotonic() - self.go_at if self.go_at else 0.0, phase=phase)
        for name, _i, published, confirmed, nacked, returned, done, _r, _b in self._producer_rows():
            row = live.producers.setdefault(name, {"published": 0, "confirmed": 0, "nacked": 0, "returned": 0, "done": 0})
            row["published"] += published
            row["confirmed"] += confirmed
            row["nacked"] += nacked
            row["returned"] += returned
            row["done"] += int(done)
        for crow in self._consumer_rows():
            row = live.consumers.setdefault(crow.name, {"received": 0, "acked": 0, "held": 0, "stopped": 0})
            row["received"] += crow.received
            row["acked"] += crow.acked
            row["held"] += crow.held
            row["stopped"] += int(bool(crow.stopped))
        for snapshot in self.snapshots.values():
            for name, sent, answered, timeouts, _done in snapshot.rpc_clients:
                live.rpc[name] = {"sent": sent, "answered": answered, "timeouts": timeouts}
        self.observer.progress(live)

    def _result(self, ended: str, elapsed: float) -> result.RunResult:
        producers = [t for f in self.finals.values() for t in f.producers]
        consumers = [t for f in self.finals.values() for t in f.consumers]
        clients = [t for f in self.finals.values() for t in f.rpc_clients]
        servers = [t for f in self.finals.values() for t in f.rpc_servers]
        streams = accounting.Streams.of(producers)
        notes = list(self.notes) + self.fault_runner.errors
        stream_names = accounting.stream_queues(self.scenario.topology)
        duplicates = accounting.duplicates_everywhere(consumers, stream_names)
        spans = tuple(self.fault_runner.spans)
        queues = list(dict.fromkeys(c.queue for c in self.work.consumers))
        return result.RunResult(
            scenario=self.scenario.name,
            producers=accounting.producer_results(self.work, producers, elapsed),
            consumers=discards.with_discarded(
                accounting.consumer_results(self.work, streams, consumers, elapsed,
                                            accounting.routes_of(self.scenario.topology, self.work), stream_names),
                self.work, self.scenario.topology),
            rpc_clients={c.name: _client_result(c, [t for t in clients if t.name == c.name], elapsed)
                         for c in self.work.rpc_clients},
            rpc_servers={s.name: result.RpcServerResult(s.name, s.instances, sum(t.handled for t in servers if t.name == s.name))
                         for s in self.work.rpc_servers},
            latency=accounting.latency(t.latency for t in consumers),
            expected=streams.total(),
            lost=accounting.lost_everywhere(streams, consumers),
            duplicates=duplicates,
            ended=ended,
            elapsed=round(elapsed, 3),
            unthrottled=_unthrottled_consumed(self.work, producers, consumers),
            read_wait=read_wait.describe(max((t.read_wait for t in consumers), default=0.0),
                                         max((t.read_wait for t in producers), default=0.0)),
            workers=len(self.jobs),
            faults=tuple(self.fault_runner.log),
            unfired_faults=tuple(describe(f) for f in self.faults.unreached()),
            failed_faults=tuple(self.fault_runner.errors),
            notes=tuple(notes),
            missing=self._missing(),
            outcomes=outcomes.outcomes(producers, consumers, duplicates) if producers else None,
            unavailable=outcomes.unavailable(self.samples, queues, spans),
            fault_series=outcomes.series(self.samples, spans),
            timeseries=self.recorder.series(),
            routes=self._routes(),
        )


def _unthrottled_consumed(work: model.Workload, producers: list[Any], consumers: list[Any]) -> bool:
    """Did any consumer receive messages from a producer without a fixed rate (so latency is mostly queueing)?"""
    consumed = {sid for tally in consumers for sid in tally.streams}
    return any(not work.producers[t.index].throttled and t.sid in consumed for t in producers)


def _client_result(spec: model.RpcClient, tallies: list[Any], run_window: float) -> result.RpcClientResult:
    answered = sum(t.answered for t in tallies)
    first = min((t.first_ns for t in tallies if t.first_ns), default=0)
    last = max((t.last_ns for t in tallies), default=0)
    rate, span = accounting.rate_over(answered, first, last, run_window)
    return result.RpcClientResult(
        name=spec.name, requests=spec.requests, sent=sum(t.sent for t in tallies), answered=answered,
        timeouts=sum(t.timeouts for t in tallies), stray=sum(t.stray for t in tallies),
        rate=rate, span=span)


def run(scenario: model.Scenario, workers: int | None = None, observer: Observer | None = None) -> result.RunResult:
    """Run the workload against the scenario's broker; the topology must already be in place."""
    if scenario.workload.empty:
        return result.RunResult(scenario=scenario.name, ended="done")
    return Run(scenario, workers, observer).execute()
