"""Private RabbitMQ nodes for tests that stop, restart or cut off a broker.

Built on scripts/localcluster.py, the code behind `scripts/local-cluster`: each node has its own
node name, ports, config and data under pytest's temporary folder, and is stopped at the end of
the session. Node names carry the pytest process id and the ports are picked free, so two test
runs on one machine do not collide, and the shared broker on 5672 is never touched.
"""

from __future__ import annotations

import importlib.util
import os
import random
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("localcluster", ROOT / "scripts" / "localcluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["localcluster"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


localcluster = _load()
Cluster = localcluster.Cluster
Node = localcluster.Node


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_base(count: int) -> int:
    """An AMQP port for node 1 such that every node's AMQP, management (+10000) and distribution (+20000) port is free."""
    for _ in range(200):
        base = random.randrange(30000, 45000 - count)
        if all(_free(base + i + offset) for i in range(count) for offset in (0, 10000, 20000)):
            return base
    raise RuntimeError("no free block of ports between 30000 and 65000")


def free_subnet() -> int:
    """A 10.213.N.0/24 whose bridge (mqspec-brN) does not exist yet, so concurrent test runs do not share one."""
    start = os.getpid() % 200 + 20
    for offset in range(200):
        subnet = (start + offset) % 200 + 20
        if not Path(f"/sys/class/net/mqspec-br{subnet}").exists():
            return subnet
    raise RuntimeError("no free subnet 10.213.N.0/24 for the private cluster's bridge")


@contextmanager
def private_cluster(base: Path, count: int, role: str, plugins: tuple[str, ...] = localcluster.NODE_PLUGINS,
                    netns: bool = False, net_ticktime: int | None = None) -> Iterator[Cluster]:
    """Start `count` private nodes joined into one cluster; stop them and remove their data afterwards.

    With `netns` each node runs in its own network namespace (root only), so tests can partition,
    delay or drop its link; interface names stay under 15 characters with the short prefix.
    """
    prefix = f"mq{os.getpid() % 100000}{role[0]}-" if netns else f"mqspec-{role}-{os.getpid()}-"
    cluster = localcluster.layout(base, count, prefix=prefix, amqp_port=free_port_base(count),
                                  plugins=plugins, netns=netns,
                                  subnet=free_subnet() if netns else 0, net_ticktime=net_ticktime)
    try:
        localcluster.up(cluster)
    except localcluster.ClusterError as exc:
        raise RuntimeError(f"could not start {count} private RabbitMQ node(s) in {base}: {exc}") from None
    try:
        yield cluster
    finally:
        localcluster.down(cluster)


def vhost_url(node: Node, vhost: str) -> str:
    return f"amqp://guest:guest@{node.host}:{node.amqp_port}/{quote(vhost, safe='')}"


def scenario_nodes(cluster: Cluster, vhost: str, order: list[int]) -> list[dict[str, object]]:
    """broker.nodes entries (c1, c2, ...) for a private cluster, in the given order of node numbers."""
    by_index = {n.index: n for n in cluster.nodes}
    return [_entry(cluster, by_index[i], vhost) for i in order]


def _entry(cluster: Cluster, node: Node, vhost: str) -> dict[str, object]:
    entry: dict[str, object] = {
        "name": f"c{node.index}", "url": vhost_url(node, vhost), "management_url": node.management_url,
        "rabbitmq_node": node.name,
        "start": [sys.executable, str(ROOT / "scripts" / "localcluster.py"), "--base", cluster.base, "start-node",
                  str(node.index)]}
    if node.netns:
        entry["rabbitmqctl"] = ["rabbitmqctl", "--longnames"]
        entry["netns"] = node.netns
    return entry


def whole(cluster: Cluster, timeout: float = 90.0) -> None:
    """Wait until every node runs in the cluster again (after a partition heals, a paused node resumes)."""
    wanted = set(cluster.names)
    for node in cluster.nodes:
        localcluster.wait_until(lambda n=node: wanted <= set(localcluster.running_nodes(cluster, n))
                                and localcluster.port_open(n.host, n.amqp_port), timeout,
                                f"{node.name} to see the whole cluster again", interval=0.5)
