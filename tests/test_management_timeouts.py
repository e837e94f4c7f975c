"""A management listener that misbehaves ends the command within its connect timeout's bounds, with one line."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import mqspec

SCENARIO = "version: 1\nname: t\nbroker: {connect_timeout: 1s}\ntopology:\n  queues: [{name: q}]\n"
Serve = Callable[[socket.socket], None]


def _server(serve: Serve) -> Iterator[int]:
    """A local listener whose every connection is handled by `serve` on a thread of its own."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=_quietly, args=(serve, connection, stop), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def _quietly(serve: Callable[[socket.socket, threading.Event], None], connection: socket.socket,
             stop: threading.Event) -> None:
    try:
        serve(connection, stop)
    except OSError:
        pass
    finally:
        connection.close()


def _silent(connection: socket.socket, stop: threading.Event) -> None:
    stop.wait(60)


def _trickle(connection: socket.socket, stop: threading.Event) -> None:
    connection.recv(65536)
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + b" " * 100000:
        if stop.wait(0.5):
            return
        connection.sendall(bytes([byte]))


def _html(connection: socket.socket, stop: threading.Event) -> None:
    connection.recv(65536)
    body = b"<html><body>It works!</body></html>"
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.fixture
def silent() -> Iterator[int]:
    yield from _server(_silent)  # type: ignore[arg-type]


@pytest.fixture
def trickling() -> Iterator[int]:
    yield from _server(_trickle)  # type: ignore[arg-type]


@pytest.fixture
def html() -> Iterator[int]:
    yield from _server(_html)  # type: ignore[arg-type]


def _plan(tmp_path: Path, url: str, port: int) -> tuple[int, str, float]:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    started = time.monotonic()
    result = mqspec("--url", url, "--management-url", f"http://guest:guest@127.0.0.1:{port}", "plan", str(path))
    return result.exit_code, result.stderr, time.monotonic() - started


def test_a_management_listener_that_never_answers_times_out_after_three_connect_timeouts(
        tmp_path: Path, url: str, vhost: str, silent: int) -> None:
    code, stderr, took = _plan(tmp_path, url, silent)
    assert (code, stderr) == (3, f"error: management API at http://127.0.0.1:{silent} timed out while working on the "
                                 f"definitions of vhost '{vhost}' (no answer for 3 s)\n")
    assert 2.5 < took < 6


def test_a_management_listener_that_trickles_is_cut_off_at_the_deadline(tmp_path: Path, url: str, vhost: str,
                                                                        trickling: int) -> None:
    code, stderr, took = _plan(tmp_path, url, trickling)
    assert (code, stderr) == (3, f"error: management API at http://127.0.0.1:{trickling} timed out while working on "
                                 f"the definitions of vhost '{vhost}' (no complete answer within 7 s)\n")
    assert 6.5 < took < 10


def test_a_management_listener_that_answers_html_is_named_in_one_line(tmp_path: Path, url: str, vhost: str,
                                                                      html: int) -> None:
    code, stderr, _ = _plan(tmp_path, url, html)
    assert (code, stderr) == (3, f"error: management API at http://127.0.0.1:{html} answered the definitions of vhost "
                                 f"'{vhost}' with something that is not JSON (HTTP 200, text/html); is it the RabbitMQ "
                                 "management API?\n")
