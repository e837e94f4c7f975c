"""The workload on a Dask cluster: the same worker jobs as local processes, as Dask tasks, with the same merge.

Each job becomes one task pinned to one Dask worker thread (`workers=[address]`, no other worker
allowed, `retries=0`). The task starts the job as a child process (child.py: the local engine's worker
entry point `worker.main`, on one end of a local pipe, forked by the Dask worker's multiprocessing
fork server, or `python -m mqspec.workload.child` in a daemonic Dask worker), so the
publisher has an interpreter to itself and never shares the GIL with Dask's event loop. The task's
thread relays the other end of the pipe through the scheduler, with no polling either way:

  parent -> job:  queue `<token>-in-<job>`: Go, Stop, Kill, Recovering, Abort, and None (keep-alive,
                  every KEEPALIVE_EVERY); a thread of the task waits on it (a `get` without timeout,
                  one round trip per command) and writes what comes to the pipe
  job -> parent:  the scheduler's event topic `<token>-out` (`Worker.log_event`, pushed to the parent,
                  which subscribed before it submitted any task): lists of Ready, Progress and Fatal
                  (Progress coalesced to ten a second, their latency counts summed). An event rides the
                  Dask worker's batched stream to the scheduler, which forwards it on the parent's: no
                  round trip, and ordered before the task's completion, so the parent has every message
                  of a job before it sees the job's task finish
  Final:          the task's result, fetched when the task finishes

Dask queues and events carry only msgpack data, so each item is the pickle of the messages (pipes pickle
them too). A Dask worker that dies shows as silence: when a running job has sent nothing for SILENCE_CHECK
(a relay forwards progress ten times a second), or every LIVENESS_BACKSTOP in any case, the parent asks
the scheduler which workers are alive.

The child dies with the task's thread (the kernel's parent-death signal, set by `worker.main`): a
Dask worker killed outright takes its jobs' processes with it. A child that ends without a Final
fails its task, so the parent names its instances as lost.

So workers need to reach the broker and the scheduler, never the machine mqspec runs on.

Dask reruns a task whose worker died on another worker. A rerun would publish its messages twice,
so it must never happen: restrictions leave a lost task without a worker, and each job also takes
its one token from `<token>-claim-<job>` before it starts; a second start finds none and refuses.
A Dask worker that disappears mid-run fails the run; its instances' counts are missing, so every
expectation that depends on them is unknown (the engine's rule for a worker that never reported).

Clocks: latency compares a producer's clock with a consumer's. At start the parent measures each
Dask worker's clock offset by round trips through the scheduler (t0, worker time, t1: offset =
worker - (t0 + t1) / 2, error at most (t1 - t0) / 2, best of CLOCK_SAMPLES), sends each job its
start time in its own clock, and reports the spread of the offsets.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, NamedTuple

from mqspec.core import model, result
from mqspec.errors import MqspecError, OperationFailed
from mqspec.workload import child, frames
from mqspec.workload.engine import Observer, Run, hosted
from mqspec.workload.messages import Fatal, Final, FromWorker, Go, Progress, Tallies, ToWorker
from mqspec.workload.worker import ORPHAN_GRACE, Job

if TYPE_CHECKING:
    from distributed import Client, Future, Queue, Worker

SCHEME = "dask://"
CONNECT_TIMEOUT = 10.0      # seconds to reach the scheduler
KEEPALIVE_EVERY = 1.0       # the parent's keep-alive to every job
PARENT_SILENCE = 15.0       # a job that hears nothing from the parent this long closes its connections
RELAY_EVERY = 0.1           # the relay forwards progress at most this often
SILENCE_CHECK = 0.5         # a running job silent this long makes the parent ask the scheduler which workers are alive
LIVENESS_EVERY = 0.5        # ... at most this often
LIVENESS_BACKSTOP = 5.0     # ... and at least this often
RETRY_EVERY = 1.0           # a job's command thread tries the scheduler again after this long when it failed
END = b"end"                # the relay's last item in its own command queue: its command thread stops
START_LEAD = 0.2            # seconds between sending Go and the common start, so every job has it in time
CLOCK_SAMPLES = 5
CLOCK_LIMIT_MS = 1.0        # an offset spread above this (or above 10% of the median latency) spoils latency
FINAL_WAIT = 30.0           # seconds the parent waits for a finished task's result
RELAY_BATCH = 100           # messages the relay takes off the pipe before it looks at the queues again
ORPHAN_WAIT = ORPHAN_GRACE + 5.0   # seconds the task waits for its child after the pipe closed; then it kills it


def is_dask(engine: str | None) -> bool:
    return bool(engine) and str(engine).startswith(SCHEME)


def scheduler_address(engine: str) -> str:
    """dask://HOST:PORT -> tcp://HOST:PORT (Dask's address)."""
    return "tcp://" + engine[len(SCHEME):].rstrip("/")


# --- on the Dask worker ------------------------------------------------------------------------

def run_job(job: Job, token: str) -> Final:
    """The Dask task: run one job in a child process, relaying its pipe to the run's queues from this thread."""
    from distributed import Queue, get_client, get_worker

    client = get_client()
    outbox = _Outbox(get_worker(), f"{token}-out")
    if not Queue(f"{token}-claim-{job.worker}", client=client).get(batch=True):   # atomic at the scheduler
        outbox.post([Fatal(job.worker, 1, f"workload job {job.worker} was started a second time (its first "
                                          "Dask worker was lost); it refused to run again, which would publish its messages twice")])
        return Final(job.worker, Tallies())
    if job.fast and not frames.fast_path().enabled:
        job = _plain(job)
    ours, theirs = multiprocessing.Pipe()
    process = _Child(job, theirs)
    try:
        final = _Relay(job.worker, ours, Queue(f"{token}-in-{job.worker}", client=client), outbox).run()
    finally:
        with suppress(OSError):
            ours.close()
        code = process.reap()
    if final is None:
        raise RuntimeError(f"its worker process (pid {process.pid}) ended with exit code {code} before reporting its counts")
    return final


def _plain(job: Job) -> Job:
    """This worker's pika is not the one the fast path was written for."""
    import dataclasses

    return dataclasses.replace(job, fast=False)


class _Child:
    """The job's process: a fork-server Process, or a subprocess where multiprocessing may not start one."""

    def __init__(self, job: Job, theirs: Connection) -> None:
        self.process: BaseProcess | None = None
        self.popen: subprocess.Popen[bytes] | None = None
        try:
            if multiprocessing.current_process().daemon:
                self.popen = _popen(job, theirs)
            else:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["mqspec.workload.child"])   # only before the server's first start
                self.process = context.Process(target=child.forked, args=(job, theirs), daemon=True,
                                               name=f"mqspec-worker-{job.worker}")
                self.process.start()
        finally:
            theirs.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else self.popen.pid if self.popen is not None else None

    def reap(self) -> int | None:
        """Wait for it (so its CPU counts in its parent's children's times), killing it if it lingers; its exit code."""
        if self.process is not None:
            self.process.join(ORPHAN_WAIT)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
            return self.process.exitcode
        assert self.popen is not None
        try:
            return self.popen.wait(ORPHAN_WAIT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()


def _popen(job: Job, theirs: Connection) -> subprocess.Popen[bytes]:
    fd = theirs.fileno()
    found = subprocess.Popen([sys.executable, "-m", "mqspec.workload.child", str(fd), str(os.getpid())],
                             stdin=subprocess.PIPE, pass_fds=(fd,), close_fds=True)
    assert found.stdin is not None
    with found.stdin:
        found.stdin.write(pickle.dumps(job))
    return found


class _Outbox:
    """The run's event topic, written from the task's thread (the Dask worker's event loop sends it)."""

    def __init__(self, worker: Worker, topic: str) -> None:
        self.worker = worker
        self.topic = topic

    def post(self, messages: list[FromWorker]) -> None:
        with suppress(Exception):   # the scheduler is gone: the parent will see this job as lost
            self.worker.log_event(self.topic, pickle.dumps(messages))


class _Commands(threading.Thread):
    """Waits at the scheduler for the parent's commands (a `get` without timeout) and writes them to the job's pipe."""

    def __init__(self, inbox: Queue, pipe: Connection) -> None:
        super().__init__(name="mqspec-commands", daemon=True)
        self.inbox = inbox
        self.pipe = pipe
        self.heard = time.monotonic()   # read by the relay's thread
        self.broken = False             # the pipe is closed: the child is gone
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set() and not self.broken:
            try:
                item = self.inbox.get()
            except Exception:  # noqa: BLE001 - the scheduler unreachable: as silent as a parent gone, try again
                self.stopping.wait(RETRY_EVERY)
                continue
            if item == END:
                return
            self.heard = time.monotonic()
            message = pickle.loads(item)
            if message is not None:
                try:
                    self.pipe.send(message)
                except (OSError, ValueError):
                    self.broken = True

    def stop(self) -> None:
        self.stopping.set()
        with suppress(Exception):
            self.inbox.put(END)
        self.join(RETRY_EVERY)


def _merged(earlier: Progress | None, later: Progress) -> Progress:
    """The later snapshot, carrying the latency counts of the one it replaces (each snapshot holds only its own)."""
    if earlier is None or not earlier.snapshot.latency:
        return later
    counts = dict(earlier.snapshot.latency)
    for value, count in (later.snapshot.latency or {}).items():
        counts[value] = counts.get(value, 0) + count
    return later._replace(snapshot=later.snapshot._replace(latency=counts))


class _Relay:
    """One job's pipe to and from the run, in the task's thread (the parent's commands in a thread of their own).

    The child's messages are forwarded as they come, Progress coalesced to one event per RELAY_EVERY:
    with the keep-alive's round trip, this is the Dask engine's whole per-second overhead on a worker,
    whatever the message rate."""

    def __init__(self, worker: int, pipe: Connection, inbox: Queue, outbox: _Outbox) -> None:
        self.worker = worker
        self.pipe = pipe
        self.commands = _Commands(inbox, pipe)
        self.outbox = outbox
        self.final: Final | None = None
        self.pending: list[FromWorker] = []
        self.progress: Progress | None = None
        self.flushed = time.monotonic()

    def run(self) -> Final | None:
        """Relay until the child closes its end (after its Final, or dead), or the parent is silent too long;
        the child's Final, if it sent one."""
        self.commands.start()
        try:
            while self._receive():
                now = time.monotonic()
                self._flush(now)
                if self.commands.broken or now - self.commands.heard > PARENT_SILENCE:
                    break   # the child is told by the end of file on its pipe
            self._flush(time.monotonic(), force=True)
        finally:
            self.commands.stop()
        return self.final

    def _receive(self) -> bool:
        try:
            ready, count = self.pipe.poll(RELAY_EVERY), 0
            while ready and count < RELAY_BATCH:
                message = self.pipe.recv()
                count += 1
                if isinstance(message, Final):
                    self.final = message
                elif isinstance(message, Progress):
                    self.progress = _merged(self.progress, message)
                else:
                    self.pending.append(message)
                ready = self.pipe.poll()
        except (EOFError, OSError):
            return False
        return True

    def _flush(self, now: float, force: bool = False) -> None:
        due = self.progress is not None and (force or now - self.flushed >= RELAY_EVERY)
        if not self.pending and not due:
            return
        # a Ready or Fatal goes at once, after the progress before it
        messages = [self.progress, *self.pending] if self.progress is not None else self.pending
        self.outbox.post(messages)
        self.pending, self.progress, self.flushed = [], None, now


# --- in the parent ------------------------------------------------------------------------------

class Offset(NamedTuple):
    """One Dask worker's clock minus the parent's, in milliseconds, and the bound on its error."""

    worker: str
    offset_ms: float
    error_ms: float


def measure_offset(client: Client, address: str, samples: int = CLOCK_SAMPLES) -> Offset:
    best: Offset | None = None
    for _ in range(samples):
        t0 = time.time_ns()
        theirs = client.run(time.time_ns, workers=[address])[address]
        t1 = time.time_ns()
        found = Offset(address, (theirs - (t0 + t1) / 2) / 1e6, (t1 - t0) / 2e6)
        if best is None or found.error_ms < best.error_ms:
            best = found
    assert best is not None
    return best


def clock_notes(offsets: list[Offset], latency: result.Latency | None) -> list[str]:
    """The spread of the workers' clocks, and whether it spoils the latency figures."""
    if not offsets:
        return []
    spread = max(o.offset_ms for o in offsets) - min(o.offset_ms for o in offsets)
    error = max(o.error_ms for o in offsets)
    notes = [f"clocks: the {len(offsets)} Dask worker{'s' if len(offsets) != 1 else ''} differ by at most {spread:.3f} ms "
             f"(measured at start through the scheduler, each to within {error:.3f} ms)"]
    limit = CLOCK_LIMIT_MS if latency is None else min(CLOCK_LIMIT_MS, latency.p50 / 10)
    if latency is not None and spread > limit:
        notes.append(f"latency figures compare the clocks of different hosts, which differ by {spread:.3f} ms, more than "
                     f"{limit:.3f} ms ({'1 ms' if limit == CLOCK_LIMIT_MS else '10% of the median latency'}): "
                     "they do not mean much; synchronise the hosts' clocks (chrony, PTP)")
    return notes


def liveness_due(now: float, heard: Mapping[int, float], running: Iterable[int], checked_at: float) -> bool:
    """Whether to ask the scheduler which workers are alive: when a running job has been silent for
    SILENCE_CHECK (its relay forwards progress ten times a second), at most every LIVENESS_EVERY, and
    every LIVENESS_BACKSTOP in any case."""
    if now - checked_at < LIVENESS_EVERY:
        return False
    return now - checked_at >= LIVENESS_BACKSTOP or any(now - heard[wid] > SILENCE_CHECK for wid in running)


class Slot(NamedTuple):
    address: str
    thread: int


def slots(client: Client) -> list[Slot]:
    """Every worker thread of the cluster, worker by worker in turn, so jobs spread over workers first."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    threads = {address: int(info.get("nthreads", 1)) for address, info in sorted(workers.items())}
    return [Slot(address, thread) for thread in range(max(threads.values(), default=0))
            for address, count in threads.items() if thread < count]


def job_count(workload: model.Workload, requested: int | None, available: int) -> int:
    """Explicit `--workers`/`workers:`, else one job per Dask worker thread, at most one per instance."""
    instances = (sum(p.instances for p in workload.producers) + sum(c.instances for c in workload.consumers)
                 + sum(s.instances for s in workload.rpc_servers) + len(workload.rpc_clients))
    wanted = requested or workload.workers or available
    return max(1, min(wanted, max(instances, 1)))


class DaskRun(Run):
    """A Run whose jobs are Dask tasks; everything else (control, faults, merge) is the local engine's."""

    def __init__(self, scenario: model.Scenario, client: Client, address: str, workers: int | None = None,
                 observer: Observer | None = None) -> None:
        self.client = client
        self.address = address
        self.places = slots(client)
        if not self.places:
            raise OperationFailed(f"the Dask scheduler at {address} has no workers: start some with "
                                  f"'dask worker {address}'")
        wanted = job_count(scenario.workload, workers, len(self.places))
        if wanted > len(self.places):
            raise OperationFailed(f"the workload asks for {wanted} jobs but the Dask cluster at {address} has "
                                  f"{len(self.places)} worker threads: start more workers or lower --workers")
        super().__init__(scenario, wanted, observer)
        self.token = f"mqspec-{uuid.uuid4().hex}"
        self.placed = {job.worker: self.places[i].address for i, job in enumerate(self.jobs)}
        self.futures: dict[int, Future] = {}
        self.inqueues: dict[int, Queue] = {}
        self.topic = f"{self.token}-out"
        self.subscribed = False
        self.arrived: queue.SimpleQueue[bytes] = queue.SimpleQueue()   # the topic's events, put by the client's thread
        self.heard: dict[int, float] = {}   # job -> when its last message came (or its task was submitted)
        self.offsets: dict[str, Offset] = {}
        self.keepalive_at = 0.0
        self.checked_at = 0.0   # when the parent last asked the scheduler which workers are alive

    # --- starting -----------------------------------------------------------------------------

    def _start_workers(self) -> None:
        from distributed import Queue

        for address in dict.fromkeys(self.placed.values()):
            self.offsets[address] = measure_offset(self.client, address)
        # on the client's stream to the scheduler, so it is there before any task runs
        self.client.subscribe_topic(self.topic, lambda event: self.arrived.put(event[1]))
        self.subscribed = True
        for job in self.jobs:
            Queue(f"{self.token}-claim-{job.worker}", client=self.client).put(self.token)
            self.inqueues[job.worker] = Queue(f"{self.token}-in-{job.worker}", client=self.client)
        for job in self.jobs:
            self.heard[job.worker] = time.monotonic()
            self.futures[job.worker] = self.client.submit(
                run_job, job, self.token, key=f"{self.token}-job-{job.worker}", workers=[self.placed[job.worker]],
                allow_other_workers=False, retries=0, pure=False)

    def _go(self) -> None:
        start_ns = time.time_ns() + int(START_LEAD * 1e9)
        self.go_at = time.monotonic() + START_LEAD
        for job in self.jobs:
            offset = self.offsets[self.placed[job.worker]].offset_ms
            self._send(job.worker, Go(start_ns + int(offset * 1e6)))

    # --- messages -----------------------------------------------------------------------------

    def _send(self, wid: int, message: ToWorker | None) -> None:
        queue = self.inqueues.get(wid)
        if queue is not None:
            with suppress(Exception):   # a lost scheduler shows as lost jobs
                queue.put(pickle.dumps(message))

    def _read(self, timeout: float) -> None:
        now = time.monotonic()
        if now >= self.keepalive_at:
            self.keepalive_at = now + KEEPALIVE_EVERY
            for wid in self.inqueues:
                if wid not in self.finals:
                    self._send(wid, None)
        # a job's messages are all in `arrived` before its task shows as done (both ride the same streams)
        finished = [wid for wid, future in self.futures.items() if wid not in self.finals and future.done()]
        batches = self._receive(0.0 if finished else timeout)
        now = time.monotonic()
        for batch in batches:
            for message in batch:
                self.heard[message.worker] = now
                self._handle(message)
        for wid in finished:
            self._finish(wid)
        if self._liveness_due(now):
            self._check_alive()

    def _receive(self, timeout: float) -> list[list[FromWorker]]:
        """The topic's events: waits up to `timeout` for the first (locally: the client pushes them), takes the rest."""
        found: list[bytes] = []
        try:
            found.append(self.arrived.get(timeout=timeout) if timeout > 0 else self.arrived.get_nowait())
            while True:
                found.append(self.arrived.get_nowait())
        except queue.Empty:
            pass
        return [pickle.loads(item) for item in found]

    def _liveness_due(self, now: float) -> bool:
        running = [wid for wid in self.futures if wid not in self.finals]
        if not liveness_due(now, self.heard, running, self.checked_at):
            return False
        self.checked_at = now
        return True

    def _finish(self, wid: int) -> None:
        future = self.futures[wid]
        try:
            final = future.result(timeout=FINAL_WAIT)
        except Exception as exc:  # noqa: BLE001 - reported as one line: the job's counts are missing
            self._lose(wid, f"its Dask task failed: {type(exc).__name__}: {exc}")
            return
        self._handle(final)

    def _check_alive(self) -> None:
        try:
            alive = set(self.client.scheduler_info(n_workers=-1)["workers"])
        except Exception as exc:  # noqa: BLE001 - the scheduler is unreachable: the run cannot go on
            if self.failure is None and not self._ending:
                self.failure = OperationFailed(f"lost the Dask scheduler at {self.address}: {type(exc).__name__}: {exc}")
            for job in self.jobs:
                self._lose(job.worker, f"the Dask scheduler at {self.address} became unreachable")
            return
        for wid, address in self.placed.items():
            if wid not in self.finals and address not in alive:
                self._lose(wid, f"its Dask worker {address} died")

    def _lose(self, wid: int, why: str) -> None:
        if wid in self.finals:
            return
        self.finals[wid] = Tallies()
        self.silent[wid] = why
        if self.failure is None and not self._ending:
            labels = ", ".join(f"{kind.replace('_', ' ')} '{name}' instance {n}"
                               for kind, name, n in hosted(self._job(wid)).instances)
            self.failure = OperationFailed(f"workload job {wid} was lost: {why}; its instances' counts are unknown: {labels}")

    def _job(self, wid: int) -> Job:
        return next(job for job in self.jobs if job.worker == wid)

    # --- stopping -----------------------------------------------------------------------------

    def _kill_worker(self, wid: int) -> None:
        """A task cannot be killed: cancel it, and forget it (its job stops itself once the keep-alives stop)."""
        future = self.futures.get(wid)
        if future is not None:
            with suppress(Exception):
                future.cancel()

    def _reap(self) -> None:
        with suppress(Exception):
            self.client.cancel([f for wid, f in self.futures.items() if not f.done()])
        for inbox in self.inqueues.values():
            with suppress(Exception):
                inbox.close()
        if self.subscribed:
            with suppress(Exception):
                self.client.unsubscribe_topic(self.topic)
            with suppress(Exception):
                self.client.run_on_scheduler(_topic_dropper(), self.topic)

    def _result(self, ended: str, elapsed: float) -> result.RunResult:
        import dataclasses

        outcome = super()._result(ended, elapsed)
        hosts = len(set(self.placed.values()))
        notes = [f"engine: Dask scheduler {self.address}, {len(self.jobs)} job{'s' if len(self.jobs) != 1 else ''} "
                 f"on {hosts} Dask worker{'s' if hosts != 1 else ''}",
                 *clock_notes(list(self.offsets.values()), outcome.latency)]
        return dataclasses.replace(outcome, notes=(*outcome.notes, *notes))


def _topic_dropper() -> Callable[[str, Any], None]:
    """What forgets the run's events on the scheduler, which keeps a topic's last ones (up to
    `distributed.admin.low-level-log-length`) and has no public call to drop them. A nested function
    is pickled by value, so the scheduler needs no mqspec installed."""

    def drop(topic: str, dask_scheduler: Any) -> None:
        broker = getattr(dask_scheduler, "_broker", None)
        if broker is not None:
            broker.truncate(topic)

    return drop


def run(scenario: model.Scenario, engine: str, workers: int | None = None, observer: Observer | None = None) -> result.RunResult:
    """Run the workload on the Dask cluster whose scheduler `engine` (dask://HOST:PORT) names."""
    if scenario.workload.empty:
        return result.RunResult(scenario=scenario.name, ended="done")
    address = scheduler_address(engine)
    client = connect(address)
    try:
        return DaskRun(scenario, client, address, workers, observer).execute()
    finally:
        with suppress(Exception):
            client.close(timeout=5)


def connect(address: str) -> Client:
    try:
        from distributed import Client
    except ImportError as exc:
        raise MqspecError("the Dask engine needs the 'distributed' package: pip install 'mqspec[distributed]'") from exc
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise OperationFailed(f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT:g}s: {exc}") from exc
