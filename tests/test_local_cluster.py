"""scripts/local-cluster: private nodes joined into one cluster, each with its own name, ports and data."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pika
import pytest

from tests import nodes
from tests.conftest import SessionCluster

pytestmark = pytest.mark.cluster


def test_the_private_cluster_runs_all_three_nodes_in_one_cluster(private_cluster: nodes.Cluster) -> None:
    first, *_ = private_cluster.nodes
    assert sorted(nodes.localcluster.running_nodes(private_cluster, first)) == sorted(private_cluster.names)
    assert len({n.amqp_port for n in private_cluster.nodes} | {n.management_port for n in private_cluster.nodes}
               | {n.dist_port for n in private_cluster.nodes}) == 9


def test_a_queue_declared_on_one_node_is_seen_on_another(private_cluster: nodes.Cluster) -> None:
    first, _, last = private_cluster.nodes
    with contextlib.closing(pika.BlockingConnection(pika.URLParameters(first.amqp_url))) as connection:
        connection.channel().queue_declare("seen-everywhere", durable=True)
    with contextlib.closing(pika.BlockingConnection(pika.URLParameters(last.amqp_url))) as other:
        channel = other.channel()
        assert channel.queue_declare("seen-everywhere", passive=True).method.message_count == 0
        channel.queue_delete("seen-everywhere")


def test_status_lists_every_node_with_its_urls(private_cluster: nodes.Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert nodes.localcluster.main(["--base", private_cluster.base, "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [[n.name, "running"] for n in private_cluster.nodes]
    assert [line.split()[2:4] for line in lines] == [[n.amqp_url, n.management_url] for n in private_cluster.nodes]


def test_up_refuses_a_port_that_is_taken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", nodes.free_port_base(1)))
        holder.listen()
        taken = holder.getsockname()[1]
        assert nodes.localcluster.main(["--base", str(tmp_path), "up", "-n", "1", "--prefix", "mqspec-refused",
                                        "--port", str(taken)]) == 1
    assert capsys.readouterr().err == (f"local-cluster: port {taken} (for mqspec-refused1@localhost) is already in use; "
                                       "choose another with --port\n")
    assert not (tmp_path / "mqspec-refused1").exists()   # refused before anything was written, nothing started


def test_settle_boots_a_killed_node_heals_a_cut_link_and_restores_an_alarmed_limit(
        private_cluster: nodes.Cluster, session_cluster: SessionCluster) -> None:
    lc = nodes.localcluster
    first, second, third = private_cluster.nodes
    assert lc.rabbitmqctl(private_cluster, second, "set_vm_memory_high_watermark", "0").returncode == 0
    os.kill(lc.pid(third), signal.SIGKILL)
    link = f"{first.short[:13]}-h"
    subprocess.run(["ip", "link", "set", link, "down"], check=True)
    repaired = nodes.settle(private_cluster, session_cluster.baseline)
    assert f"link {link} was down" in repaired, repaired
    # booted again, either at once or, when RabbitMQ 3.10.8 hung in its boot, after a kill (the test below)
    assert [r for r in repaired if r.startswith(f"{third.name} was down")], repaired
    for node in private_cluster.nodes:   # each node's own view, straight from rabbitmqctl
        status = json.loads(lc.rabbitmqctl(private_cluster, node, "cluster_status", "--formatter", "json").stdout)
        assert (sorted(status["running_nodes"]), status["alarms"]) == (sorted(private_cluster.names), []), node.name
        assert nodes.limits(private_cluster, node) == session_cluster.baseline[node.name]
    assert nodes.settle(private_cluster, session_cluster.baseline) == []   # nothing left to repair


def _drop_rules(netns: str, peers: list[str], action: str) -> None:
    for peer in peers:
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-w", action, "OUTPUT", "-d", peer, "-m", "comment",
                        "--comment", "test-stuck-boot", "-j", "DROP"], check=action == "-I", capture_output=True)


def _unblock_once_killed(node: nodes.Node, netns: str, peers: list[str], done: threading.Event) -> None:
    """Lift the block once the VM that settle booted is gone (settle killed it), so its next boot can finish."""
    lc = nodes.localcluster
    booted = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not done.is_set():
        number = lc.pid(node)
        if booted is None:
            booted = number
        elif number != booted:
            break
        time.sleep(0.1)
    _drop_rules(netns, peers, "-D")


def test_settle_kills_and_boots_again_a_killed_node_whose_boot_does_not_finish(
        private_cluster: nodes.Cluster, session_cluster: SessionCluster) -> None:
    lc = nodes.localcluster
    first, second, third = private_cluster.nodes
    assert third.netns is not None
    peers = [first.host, second.host]
    os.kill(lc.pid(third), signal.SIGKILL)
    lc.wait_until(lambda: lc.pid(third) is None, 30, f"{third.name} to exit")
    # its peers unreachable (not a fault settle knows how to heal): booting again, it waits for them in
    # rabbit_mnesia and never listens, as a node hung in rabbit_node_monitor:global_sync never does
    _drop_rules(third.netns, peers, "-I")
    done = threading.Event()
    lifter = threading.Thread(target=_unblock_once_killed, args=(third, third.netns, peers, done), daemon=True)
    lifter.start()
    try:
        repaired = nodes.settle(private_cluster, session_cluster.baseline, stuck_after=15)
    finally:
        done.set()
        lifter.join(10)
        _drop_rules(third.netns, peers, "-D")
    stuck = [r for r in repaired if r.startswith(f"{third.name} was down and stuck booting (in ")]
    assert stuck and stuck[0].endswith(f"timed out after 15s waiting for {third.name} to start): killed and booted again"), \
        repaired
    for node in private_cluster.nodes:
        status = json.loads(lc.rabbitmqctl(private_cluster, node, "cluster_status", "--formatter", "json").stdout)
        assert sorted(status["running_nodes"]) == sorted(private_cluster.names), node.name
    assert nodes.settle(private_cluster, session_cluster.baseline) == []
