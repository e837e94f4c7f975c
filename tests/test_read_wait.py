"""How long consumers let bytes wait in their sockets: the policy (pure) and the held socket (real TCP, loopback)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from pika.adapters.select_connection import IOLoop, PollEvents

from mqspec.core import model, read_wait
from mqspec.core.read_wait import OFF, Policy
from mqspec.workload import lean_poll
from mqspec.workload.socket_wait import Held, SocketWait

UNTHROTTLED = model.Workload(producers=(model.Producer("p", queue="q"),))
RATED = model.Workload(producers=(model.Producer("p", queue="q"), model.Producer("r", queue="q", rate=100.0)))


# --- the policy -------------------------------------------------------------------------------------------

def test_auto_waits_up_to_2ms_when_no_producer_has_a_fixed_rate() -> None:
    assert read_wait.policy(UNTHROTTLED) == Policy(0.002, by_age=False)
    assert read_wait.policy(model.Workload()) == Policy(0.002, by_age=False)   # a consumer of what others publish


def test_auto_with_a_fixed_rate_waits_only_for_messages_already_a_hundred_times_as_old() -> None:
    rule = read_wait.policy(RATED)
    assert rule == Policy(0.002, by_age=True)
    one_second = (1.0, 10_000_000, 64_000)   # 10 MB/s in messages of 156 bytes
    assert read_wait.low_water(rule, *one_second, youngest_age=0.0005, limit=None) == OFF    # fresh: read at once
    assert read_wait.low_water(rule, *one_second, youngest_age=0.1, limit=None) == (10_000, 0.001)   # 1% of its age
    assert read_wait.low_water(rule, *one_second, youngest_age=5.0, limit=None) == (20_000, 0.002)   # the cap
    assert read_wait.low_water(rule, *one_second, youngest_age=None, limit=None) == OFF      # age unknown


def test_a_read_wait_the_file_gives_is_used_whatever_the_producers_and_0_reads_at_once() -> None:
    assert read_wait.policy(model.Workload(producers=RATED.producers, read_wait=0.005)) == Policy(0.005)
    assert read_wait.low_water(Policy(0.0), 1.0, 10_000_000, 64_000, None, None) == OFF


def test_the_mark_is_the_waits_worth_of_bytes_at_the_last_rate_at_most_32_kib() -> None:
    assert read_wait.low_water(Policy(0.002), 0.1, 1_000_000, 6_400, None, None) == (20_000, 0.002)
    assert read_wait.low_water(Policy(0.002), 0.1, 10_000_000, 64_000, None, None) == (32 * 1024, 0.002)


def test_a_trickle_or_an_idle_consumer_reads_at_once() -> None:
    assert read_wait.low_water(Policy(0.002), 0.1, 20_000, 130, None, None) == OFF   # 400 bytes a wait
    assert read_wait.low_water(Policy(0.002), 0.1, 0, 0, None, None) == OFF


def test_the_mark_needs_at_most_half_the_messages_the_prefetch_leaves_beyond_the_multi_ack() -> None:
    manual = model.Consumer("c", "q", prefetch=200, multi_ack=100)
    assert read_wait.room(manual) == 100
    assert read_wait.low_water(Policy(0.002), 0.1, 1_000_000, 10_000, None, read_wait.room(manual)) == (5_000, 0.002)
    full = model.Consumer("c", "q", prefetch=100, multi_ack=100)   # acks only once the prefetch is full
    assert read_wait.low_water(Policy(0.002), 0.1, 1_000_000, 10_000, None, read_wait.room(full)) == OFF
    assert read_wait.room(model.Consumer("c", "q", prefetch=10, ack="auto")) is None
    assert read_wait.room(model.Consumer("c", "q")) is None   # no prefetch: the broker sends without limit


def test_a_producer_holds_its_confirms_for_a_quarter_of_its_window_and_half_a_millisecond_at_most() -> None:
    # the last tenth: 21-byte acks, each confirming 5 messages -> 4.2 bytes a message; a quarter of 200 is 50
    assert read_wait.confirm_water(Policy(0.002), 21 * 2000, 10_000, 200) == (210, 0.0005)
    assert read_wait.confirm_water(Policy(0.0002), 21 * 2000, 10_000, 200) == (210, 0.0002)
    assert read_wait.confirm_water(Policy(0.002), 21 * 100, 10_000, 200) == OFF   # one ack a window: read at once
    assert read_wait.confirm_water(Policy(0.002, by_age=True), 21 * 2000, 10_000, 200) == OFF   # fixed rates
    assert read_wait.confirm_water(Policy(0.002), 0, 0, 200) == OFF


def test_the_report_names_the_longest_wait_used_and_nothing_when_reads_never_waited() -> None:
    assert read_wait.describe(0.002) == ("consumers let bytes wait in their sockets up to 2 ms, to read more per "
                                         "wakeup (workload.read_wait: 0 reads at once)")
    assert read_wait.describe(0.005, 0.0005) == ("consumers let bytes wait in their sockets up to 5 ms, producers let "
                                                 "confirms wait up to 0.5 ms, to read more per wakeup "
                                                 "(workload.read_wait: 0 reads at once)")
    assert read_wait.describe(0.0, 0.0005).startswith("producers let confirms wait up to 0.5 ms, to read more")
    assert read_wait.describe(0.0) == ""


# --- a held socket, on the worker's poll step ----------------------------------------------------------------

@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        theirs = socket.create_connection(server.getsockname())
        ours, _ = server.accept()
    ours.setblocking(False)
    with ours, theirs:
        yield ours, theirs


def _read_after_sending(ioloop: IOLoop, pair: tuple[socket.socket, socket.socket], hold: SocketWait,
                        data: bytes) -> tuple[float, bytes]:
    """Send `data` to the held socket and run the ioloop until its first read: (seconds after sending, bytes)."""
    ours, theirs = pair
    seen: list[tuple[float, bytes]] = []

    def readable(_fd: int, _events: int) -> None:
        try:
            got = ours.recv(65536)
        except BlockingIOError:
            return
        hold.read(len(got))
        seen.append((time.monotonic(), got))
        ioloop.stop()

    ioloop.add_handler(ours.fileno(), readable, PollEvents.READ)
    sent = time.monotonic()
    theirs.sendall(data)
    ioloop.call_later(5, ioloop.stop)
    ioloop.start()
    ioloop.close()
    assert seen, "never read"
    return seen[0][0] - sent, seen[0][1]


def _held(sock: socket.socket, mark: int, wait: float) -> tuple[IOLoop, SocketWait, Held]:
    held: Held = set()
    ioloop = IOLoop()
    assert lean_poll.install(ioloop, held)
    hold = SocketWait(sock, held)
    hold.tune(mark, wait)
    hold.read(0)   # a read holds it
    assert hold in held and sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == mark
    return ioloop, hold, held


def test_bytes_below_the_mark_wait_for_the_deadline_then_are_read(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    ioloop, hold, _ = _held(tcp_pair[0], 4096, 0.3)
    after, data = _read_after_sending(ioloop, tcp_pair, hold, b"x" * 100)
    assert data == b"x" * 100
    assert 0.25 <= after < 2   # held until its deadline, not read at once nor forgotten


def test_bytes_that_reach_the_mark_are_read_at_once(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    ioloop, hold, _ = _held(tcp_pair[0], 4096, 3.0)
    after, _data = _read_after_sending(ioloop, tcp_pair, hold, b"y" * 5000)
    assert after < 1.5   # well before the 3 s deadline


def test_a_mark_of_one_byte_lets_the_socket_go_and_reads_never_wait_again(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    ioloop, hold, held = _held(tcp_pair[0], 4096, 3.0)
    hold.tune(*OFF)
    assert not held and tcp_pair[0].getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
    after, data = _read_after_sending(ioloop, tcp_pair, hold, b"z")
    assert (data, after < 1.5, held) == (b"z", True, set())


def test_a_held_socket_whose_connection_left_the_ioloop_is_forgotten(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _theirs = tcp_pair
    ioloop, _hold, held = _held(ours, 4096, 0.05)
    ioloop.call_later(0.3, ioloop.stop)
    ioloop.start()   # no handler was ever added for it: at its deadline it is dropped, not read
    assert not held
    ioloop.close()
