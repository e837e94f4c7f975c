"""A client's socket held at a low-water mark (SO_RCVLOWAT), and the deadline that bounds the wait.

The kernel does not wake a poller for a TCP socket until `mark` bytes have arrived (or the peer closed).
A held socket also has a deadline, `wait` seconds after its last read: the worker's poll step
(lean_poll.py) sleeps no longer than the soonest deadline, and reads a socket whose deadline has passed
as if it were readable, together with every other held socket that would be due within half its wait,
so one wakeup serves them all. What mark and wait to use is core/read_wait.py's; the consumer retunes
them ten times a second, and a mark of one byte (reads never wait) lets the socket go.
"""

from __future__ import annotations

import socket
import time

Held = set["SocketWait"]   # the sockets of one worker held at a mark above one byte


class SocketWait:
    def __init__(self, sock: socket.socket, held: Held) -> None:
        self.sock = sock
        self.fileno = sock.fileno()
        self.held = held
        self.mark = 1          # bytes: what the socket should be held at while holding
        self.wait = 0.0        # seconds a byte may wait at most
        self.holding = False   # the socket's SO_RCVLOWAT is `mark`
        self.last = time.monotonic()
        self.nbytes = 0        # bytes read since the last `take_bytes`

    def read(self, size: int) -> None:
        """After every read from the socket (the hot path)."""
        self.nbytes += size
        self.last = time.monotonic()
        if not self.holding and self.mark > 1:
            self._hold()

    @property
    def deadline(self) -> float:
        return self.last + self.wait

    def let_go(self) -> None:
        """Back to a mark of one byte: whatever has arrived is readable now."""
        self.held.discard(self)
        self.holding = False
        self._set(1)

    def tune(self, mark: int, wait: float) -> None:
        """A new mark and wait; a mark of 1 stops holding at once, a larger one starts at the next read."""
        self.wait = wait
        if mark == self.mark:
            return
        self.mark = mark
        if mark <= 1:
            if self.holding:
                self.let_go()
        elif self.holding:
            self._set(mark)

    def take_bytes(self) -> int:
        taken, self.nbytes = self.nbytes, 0
        return taken

    def close(self) -> None:
        """The connection is gone: never touch its socket again."""
        self.held.discard(self)
        self.holding = False
        self.mark = 1

    def _hold(self) -> None:
        if self._set(self.mark):
            self.holding = True
            self.held.add(self)

    def _set(self, mark: int) -> bool:
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
        except OSError:   # closed under us: its connection's own error handling reports that
            self.close()
            return False
        return True
