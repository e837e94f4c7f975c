"""scripts/local-cluster: private nodes joined into one cluster, each with its own name, ports and data."""

from __future__ import annotations

from pathlib import Path

import pika
import pytest

from tests import nodes

pytestmark = pytest.mark.cluster


def test_the_private_cluster_runs_all_three_nodes_in_one_cluster(private_cluster: nodes.Cluster) -> None:
    first, *_ = private_cluster.nodes
    assert sorted(nodes.localcluster.running_nodes(private_cluster, first)) == sorted(private_cluster.names)
    assert len({n.amqp_port for n in private_cluster.nodes} | {n.management_port for n in private_cluster.nodes}
               | {n.dist_port for n in private_cluster.nodes}) == 9


def test_a_queue_declared_on_one_node_is_seen_on_another(private_cluster: nodes.Cluster) -> None:
    first, _, last = private_cluster.nodes
    connection = pika.BlockingConnection(pika.URLParameters(first.amqp_url))
    connection.channel().queue_declare("seen-everywhere", durable=True)
    connection.close()
    other = pika.BlockingConnection(pika.URLParameters(last.amqp_url))
    channel = other.channel()
    assert channel.queue_declare("seen-everywhere", passive=True).method.message_count == 0
    channel.queue_delete("seen-everywhere")
    other.close()


def test_status_lists_every_node_with_its_urls(private_cluster: nodes.Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert nodes.localcluster.main(["--base", private_cluster.base, "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [[n.name, "running"] for n in private_cluster.nodes]
    assert [line.split()[2:4] for line in lines] == [[n.amqp_url, n.management_url] for n in private_cluster.nodes]


def test_up_refuses_a_port_that_is_taken(private_cluster: nodes.Cluster, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    taken = private_cluster.nodes[0].amqp_port
    assert nodes.localcluster.main(["--base", str(tmp_path), "up", "-n", "1", "--prefix", "mqspec-refused",
                                    "--port", str(taken)]) == 1
    assert capsys.readouterr().err == (f"local-cluster: port {taken} (for mqspec-refused1@localhost) is already in use; "
                                       "choose another with --port\n")
