"""The delay fault's packet holder (mqspec/workload/packet_delay.py) against the real kernel, in a namespace of its own.

A throwaway network namespace (`mqdly<pid>`, root only, like the cluster tests) holds a TCP listener;
the test times TCP handshakes with it from the root namespace while the delay fault's iptables rules
(cluster_faults.delay_rules) send the namespace's packets to the queue, with and without a holder.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mqspec.core import model
from mqspec.errors import OperationFailed
from mqspec.workload import cluster_faults

pytestmark = pytest.mark.cluster

PORT = 7000


@dataclass(frozen=True)
class Namespace:
    name: str
    host: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    """A namespace at 10.213.N.2 behind a veth pair, with a TCP listener on port 7000 and the delay rules."""
    name, subnet = f"mqdly{os.getpid() % 100000}", 220 + os.getpid() % 30   # outside the clusters' 20-219
    host_end, inner = f"{name}-h", f"{name}-n"
    _ip("netns", "add", name)
    listener = None
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", name)
        _ip("addr", "add", f"10.213.{subnet}.1/24", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"10.213.{subnet}.2/24", "dev", inner)
        _ip("netns", "exec", name, "ip", "link", "set", inner, "up")
        serve = f"import socket\ns = socket.create_server(('0.0.0.0', {PORT}))\nwhile True:\n    s.accept()[0].close()"
        listener = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", serve])
        for rule in cluster_faults.delay_rules(cluster_faults.DELAY_QUEUE):
            _ip("netns", "exec", name, "iptables", "-w", "-I", *rule)
        space = Namespace(name, f"10.213.{subnet}.2")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _handshake_ms(space.host)
                break
            except OSError:
                time.sleep(0.1)
        yield space
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, check=False)
        _ip("netns", "del", name)


def _handshake_ms(host: str) -> float:
    began = time.monotonic()
    with socket.create_connection((host, PORT), timeout=5):
        return (time.monotonic() - began) * 1000


def _median_ms(host: str, count: int = 5) -> float:
    return statistics.median(_handshake_ms(host) for _ in range(count))


def _holder(namespace: Namespace, ms: int) -> subprocess.Popen[str]:
    holder = subprocess.Popen(["ip", "netns", "exec", namespace.name, sys.executable, "-m", "mqspec.workload.packet_delay",
                               "--queue", str(cluster_faults.DELAY_QUEUE), "--delay-ms", str(ms)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
    return holder


def test_the_holder_delays_each_packet_both_ways_and_lets_all_through_when_it_stops(namespace: Namespace) -> None:
    assert _median_ms(namespace.host) < 50   # the rules alone, no holder: --queue-bypass lets packets through
    holder = _holder(namespace, 150)
    held = _median_ms(namespace.host)
    out, _ = holder.communicate(timeout=10)   # its standard input closes: it stops
    assert 2 * 150 <= held <= 2 * 150 + 80   # SYN in, SYN-ACK out, each held 150 ms
    assert holder.returncode == 0 and out.startswith("held ") and int(out.split()[1]) >= 10, out
    assert _median_ms(namespace.host) < 50


def test_packets_pass_again_when_the_holder_is_killed(namespace: Namespace) -> None:
    holder = _holder(namespace, 150)
    assert _median_ms(namespace.host, 3) >= 2 * 150
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate(timeout=10)
    # fail-open and --queue-bypass: with no process on the queue, nothing waits (a packet held at the kill is
    # dropped, and TCP sends it again)
    assert _median_ms(namespace.host) < 50


def test_a_second_holder_on_the_same_queue_is_refused_saying_why(namespace: Namespace) -> None:
    first = _holder(namespace, 150)
    try:
        second = subprocess.run(["ip", "netns", "exec", namespace.name, sys.executable, "-m", "mqspec.workload.packet_delay",
                                 "--queue", str(cluster_faults.DELAY_QUEUE), "--delay-ms", "150"],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    finally:
        first.communicate(timeout=10)
    assert (second.returncode, second.stdout, second.stderr) == (
        1, "", f"packet_delay: netfilter queue {cluster_faults.DELAY_QUEUE} is taken by another process (a delay still on?)\n")


def test_delay_on_a_kernel_without_netem_and_no_iptables_says_what_to_install(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback needs iptables' NFQUEUE target: without it the fault fails with one line naming the package.
    `tc` and `ip` here are stand-ins on PATH that answer as this kernel does (no netem) and list one link."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, script in {"tc": "echo 'Error: Specified qdisc kind is unknown.' >&2; exit 2",
                         "ip": "printf '1: lo: <LOOPBACK>\\n2: mq1-n@if3: <UP>\\n'"}.items():
        (tools / name).write_text(f"#!/bin/sh\n{script}\n")
        (tools / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    faults = cluster_faults.NodeFaults(model.BrokerSettings(), {})
    node = model.Node(name="c2", url="amqp://guest:guest@10.0.0.2:5672/%2F", netns="mq1")
    with pytest.raises(OperationFailed) as refused:
        faults.delay(node, model.Fault(action="delay", node="c2", delay=0.2))
    assert refused.value.message == (
        "delay: this kernel has no netem ('tc qdisc add dev mq1-h root netem' answers that the qdisc is unknown) and "
        "iptables, the fallback (its NFQUEUE target), is not installed (Debian: apt-get install iptables)")
