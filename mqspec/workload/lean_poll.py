"""pika's ioloop with a leaner poll step: less Python per wakeup, the same dispatch.

A worker wakes thousands of times a second, often for a handful of messages, so what pika does per wakeup
counts in the cost per message. Its epoll poller asks for the next timer through two calls, builds a
defaultdict of the events, then for each descriptor builds a list of the three event kinds to mask them.
The poll step here does the same in one function: the same timeout (the next timer, at most pika's
maximum), the same masking by what each descriptor is registered for, the same handler calls, and the
same skipping of a descriptor whose handler an earlier one removed (pika's `_processing_fd_event_map`).

It reaches into the poller's private attributes, so, like frames.py, it runs only on the pika release
frames.WRITTEN_FOR names (the worker asks frames.fast_path) and only on pika's epoll poller.
"""

from __future__ import annotations

from typing import Any

from pika.adapters.select_connection import PollEvents

READ, WRITE, ERROR = PollEvents.READ, PollEvents.WRITE, PollEvents.ERROR
NEEDS = ("_fd_handlers", "_fd_events", "_get_wait_seconds", "_MAX_POLL_TIMEOUT", "_processing_fd_event_map")


def install(ioloop: Any) -> bool:
    """Replace the poll step of `ioloop`'s poller; False (and nothing changed) if it is not pika's epoll poller."""
    poller: Any = getattr(ioloop, "_poller", None)
    if type(poller).__name__ != "EPollPoller" or not all(hasattr(poller, name) for name in NEEDS):
        return False
    handlers: dict[int, Any] = poller._fd_handlers
    reads, writes, errors = (poller._fd_events[kind] for kind in (READ, WRITE, ERROR))
    wait, longest = poller._get_wait_seconds, poller._MAX_POLL_TIMEOUT

    def poll() -> None:
        delay = wait()
        found = poller._poll.poll(longest if delay is None else min(delay, longest))
        if not found:
            return
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
