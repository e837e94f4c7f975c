"""Hold every packet of one netfilter queue for a fixed time, then let it through, in order.

The delay fault on a kernel without netem (mqspec/workload/cluster_faults.py) runs this inside the
node's network namespace, where iptables rules send the node's traffic to the queue:

    python -m mqspec.workload.packet_delay --queue 7171 --delay-ms 200

It binds the queue over a raw netlink socket (NETLINK_NETFILTER; the messages are packed by
mqspec/core/nfqueue.py), asks for metadata only, prints `ready` once bound, and gives back
(NF_ACCEPT, in one batch verdict) every packet that has been held the delay. It stops on SIGTERM
or SIGINT or when its standard input closes (the mqspec process that started it is gone), lets
every packet it holds through, and prints how many packets it held. The queue is fail-open and the
rules carry --queue-bypass, so when this process is gone packets pass instead of piling up.
"""

from __future__ import annotations

import argparse
import collections
import errno
import os
import select
import signal
import socket
import sys
import time
from types import FrameType

from mqspec.core import nfqueue

MAXLEN = 65536                 # packets the kernel may hold for us before fail-open lets the rest through
RECEIVE_BUFFER = 16 * 1024 * 1024
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33


class HolderError(Exception):
    pass


def open_queue(queue: int) -> socket.socket:
    """A netlink socket bound to `queue`, metadata only, fail-open; raises HolderError naming the cause."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nfqueue.NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    sock.bind((0, 0))
    try:
        _request(sock, nfqueue.bind(queue, 1), f"bind netfilter queue {queue}")
    except HolderError as exc:
        if "not permitted" in str(exc):   # EPERM: the kernel's answer when another socket holds the queue
            raise HolderError(f"netfilter queue {queue} is taken by another process (a delay still on?)") from None
        raise
    _request(sock, nfqueue.configure(queue, MAXLEN, 2), f"configure netfilter queue {queue}")
    return sock


def _request(sock: socket.socket, data: bytes, what: str) -> None:
    sock.send(data)
    seq = nfqueue.messages(data)[0].seq
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        for msg in nfqueue.messages(sock.recv(65536)):
            code = nfqueue.error_code(msg)
            if code is not None and msg.seq == seq:
                if code:
                    raise HolderError(f"{what}: {os.strerror(-code)}")
                return
    raise HolderError(f"{what}: the kernel did not answer within 5s")


class Holder:
    """Packets of one queue, in arrival order, each given back once it has been held `delay` seconds."""

    def __init__(self, sock: socket.socket, queue: int, delay: float) -> None:
        self.sock, self.queue, self.delay = sock, queue, delay
        self.held: collections.deque[tuple[float, int]] = collections.deque()
        self.count = 0

    def read(self) -> None:
        """Everything the kernel has queued for us, without waiting."""
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:   # ENOBUFS: messages were lost; fail-open let their packets through
                if exc.errno != errno.ENOBUFS:
                    raise
                continue
            now = time.monotonic()
            for msg in nfqueue.messages(data):
                found = nfqueue.packet(msg)
                if found is not None:
                    self.held.append((now, found.id))
                    self.count += 1

    def release(self, now: float, everything: bool = False) -> None:
        """Accept every packet held long enough (or all of them), with one batch verdict on the newest."""
        ready = len(self.held) if everything else nfqueue.due(self.held, now, self.delay)
        if not ready:
            return
        last = 0
        for _ in range(ready):
            last = self.held.popleft()[1]
        self.sock.send(nfqueue.verdict(self.queue, last, nfqueue.NF_ACCEPT, batch=True))

    def wait(self) -> float | None:
        """Seconds until the oldest packet is due, None when nothing is held."""
        return max(0.0, self.held[0][0] + self.delay - time.monotonic()) if self.held else None


def run(queue: int, delay: float) -> int:
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    stopping: list[int] = []

    def stop(number: int, _frame: FrameType | None) -> None:
        stopping.append(number)
    signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        sock = open_queue(queue)
    except (HolderError, OSError) as exc:
        print(f"packet_delay: {exc}", file=sys.stderr, flush=True)
        return 1
    holder = Holder(sock, queue, delay)
    print("ready", flush=True)
    watched = [sock, wake_r, sys.stdin]
    while not stopping:
        readable, _, _ = select.select(watched, [], [], holder.wait())
        if sock in readable:
            holder.read()
        if sys.stdin in readable and not sys.stdin.readline():
            break   # whoever started us is gone
        holder.release(time.monotonic())
    holder.read()
    holder.release(time.monotonic(), everything=True)
    print(f"held {holder.count} packets", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mqspec.workload.packet_delay", description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, required=True, help="netfilter queue number (0-65535)")
    parser.add_argument("--delay-ms", type=float, required=True, help="how long each packet is held")
    args = parser.parse_args(argv)
    return run(args.queue, args.delay_ms / 1000)


if __name__ == "__main__":
    sys.exit(main())
