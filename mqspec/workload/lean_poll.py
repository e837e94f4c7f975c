"""pika's ioloop with a leaner poll step: less Python per wakeup, the same dispatch.

A worker wakes thousands of times a second, often for a handful of messages, so what pika does per wakeup
counts in the cost per message. Its epoll poller asks for the next timer through two calls, builds a
defaultdict of the events, then for each descriptor builds a list of the three event kinds to mask them.
The poll step here does the same in one function: the same timeout (the next timer, at most pika's
maximum), the same masking by what each descriptor is registered for, the same handler calls, and the
same skipping of a descriptor whose handler an earlier one removed (pika's `_processing_fd_event_map`).

It reaches into the poller's private attributes, so, like frames.py, it runs only on the pika release
frames.WRITTEN_FOR names (the worker asks frames.fast_path) and only on pika's epoll poller. It also keeps the
deadlines of sockets held at a low-water mark (socket_wait.py).
"""

from __future__ import annotations

import time
from typing import Any

from pika.adapters.select_connection import PollEvents

from mqspec.workload.socket_wait import Held

READ, WRITE, ERROR = PollEvents.READ, PollEvents.WRITE, PollEvents.ERROR
NEEDS = ("_fd_handlers", "_fd_events", "_get_wait_seconds", "_MAX_POLL_TIMEOUT", "_processing_fd_event_map")


def install(ioloop: Any, held: Held | None = None) -> bool:
    """Replace the poll step of `ioloop`'s poller; False (and nothing changed) if it is not pika's epoll poller.

    `held`: sockets held at a low-water mark (socket_wait.py); the poll sleeps no longer than their soonest
    deadline, and those whose deadline has passed are read after the round's handlers have run."""
    poller: Any = getattr(ioloop, "_poller", None)
    if type(poller).__name__ != "EPollPoller" or not all(hasattr(poller, name) for name in NEEDS):
        return False
    handlers: dict[int, Any] = poller._fd_handlers
    reads, writes, errors = (poller._fd_events[kind] for kind in (READ, WRITE, ERROR))
    wait, longest = poller._get_wait_seconds, poller._MAX_POLL_TIMEOUT
    waits: Held = set() if held is None else held

    def poll() -> None:
        delay = wait()
        timeout = longest if delay is None else min(delay, longest)
        soonest = min(s.deadline for s in waits) if waits else None
        if soonest is not None:
            timeout = max(0.0, min(timeout, soonest - time.monotonic()))
        found = poller._poll.poll(timeout)
        if found:
            dispatch(found)
        if soonest is not None:   # reads during dispatch only move deadlines later: none is late before `soonest`
            now = time.monotonic()
            if now >= soonest and waits and min(s.deadline for s in waits) <= now:
                read_late(now)

    def read_late(now: float) -> None:
        """Read the held sockets whose deadline has passed, and those due within half their wait, as if readable."""
        for due in [s for s in waits if s.deadline - s.wait / 2 <= now]:
            due.last = now
            handler = handlers.get(due.fileno)
            if handler is None or due.fileno not in reads:
                due.close()   # its connection has gone from the ioloop
            else:
                handler(due.fileno, READ)

    def dispatch(found: list[tuple[int, int]]) -> None:
        pending = poller._processing_fd_event_map = dict(found)
        for fileno, events in found:
            if fileno not in pending:
                continue   # removed by a handler called before it in this round
            if fileno not in reads:
                events &= ~READ
            if fileno not in writes:
                events &= ~WRITE
            if fileno not in errors:
                events &= ~ERROR
            if events:
                handlers[fileno](fileno, events)

    poller.poll = poll
    return True
