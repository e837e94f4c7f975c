"""The worker's leaner poll step dispatches as pika's own does: timers, readiness, masks, handlers removed mid-round."""

from __future__ import annotations

import socket
import time

from pika.adapters.select_connection import IOLoop, PollEvents

from mqspec.workload import lean_poll


def _loop() -> IOLoop:
    ioloop = IOLoop()
    assert lean_poll.install(ioloop)
    return ioloop


def test_a_readable_socket_and_a_timer_are_dispatched_and_the_loop_stops() -> None:
    ioloop = _loop()
    ours, theirs = socket.socketpair()
    seen: list[tuple[str, object]] = []
    with ours, theirs:
        def readable(fd: int, events: int) -> None:
            seen.append(("read", ours.recv(10)))
            ioloop.remove_handler(fd)

        ioloop.add_handler(ours.fileno(), readable, PollEvents.READ)
        ioloop.call_later(0.05, lambda: seen.append(("timer", None)))
        ioloop.call_later(0.1, ioloop.stop)
        theirs.send(b"hello")
        started = time.monotonic()
        ioloop.start()
        assert seen == [("read", b"hello"), ("timer", None)]
        assert time.monotonic() - started < 2   # woke for the timer, not after pika's 5 s maximum wait
    ioloop.close()


def test_events_a_descriptor_is_not_registered_for_are_masked_out() -> None:
    ioloop = _loop()
    ours, theirs = socket.socketpair()
    masks: list[int] = []
    with ours, theirs:
        theirs.send(b"x")   # readable and writable; registered for writing only

        def handler(fd: int, events: int) -> None:
            masks.append(events)
            ioloop.remove_handler(fd)
            ioloop.stop()

        ioloop.add_handler(ours.fileno(), handler, PollEvents.WRITE)
        ioloop.start()
    assert masks == [PollEvents.WRITE]
    ioloop.close()


def test_a_handler_removed_by_an_earlier_one_in_the_same_round_is_not_called() -> None:
    ioloop = _loop()
    first, first_peer = socket.socketpair()
    second, second_peer = socket.socketpair()
    called: list[int] = []
    with first, first_peer, second, second_peer:
        descriptors = {first.fileno(), second.fileno()}

        def handler(fd: int, _events: int) -> None:
            called.append(fd)
            for other in descriptors - {fd}:
                ioloop.remove_handler(other)
            ioloop.remove_handler(fd)
            ioloop.stop()

        for fd in descriptors:
            ioloop.add_handler(fd, handler, PollEvents.READ)
        first_peer.send(b"1")
        second_peer.send(b"2")
        time.sleep(0.05)   # both readable before the loop polls: one round reports both
        ioloop.start()
    assert len(called) == 1
    ioloop.close()


def test_only_pikas_epoll_poller_is_changed() -> None:
    class Other:
        _poller = object()

    assert lean_poll.install(Other()) is False
