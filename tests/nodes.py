"""Private RabbitMQ nodes for tests that stop, restart or cut off a broker.

Built on scripts/localcluster.py, the code behind `scripts/local-cluster`: each node has its own
node name, ports, config and data under pytest's temporary folder, and is stopped at the end of
the session. Node names carry the pytest process id and the ports are picked free, so two test
runs on one machine do not collide, and the shared broker on 5672 is never touched.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pika

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


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections (ip_local_port_range); our listeners stay below it."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_base(count: int) -> int:
    """An AMQP port for node 1 such that every node's AMQP, management (+10000) and distribution (+20000) port is free.

    All of them lie below the kernel's ephemeral range, so no outgoing connection (a client, rabbitmqctl,
    epmd) can take one between this check and the node's listen.
    """
    top = _ephemeral_low() - 20000 - count
    if top <= 10000:
        raise RuntimeError(f"the ephemeral port range starts at {_ephemeral_low()}: no room below it for private nodes")
    for _ in range(200):
        base = random.randrange(10000, top)
        if all(_free(base + i + offset) for i in range(count) for offset in (0, 10000, 20000)):
            return base
    raise RuntimeError(f"no free block of ports between 10000 and {top + 20000 + count}")


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
        localcluster.down(cluster, keep=True)   # the logs stay under pytest's basetemp; the data goes
        for node in cluster.nodes:
            shutil.rmtree(Path(node.home) / "mnesia", ignore_errors=True)


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


# --- between tests: the state every cluster test starts from -----------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """A node's resource limits as `rabbitmqctl eval` prints them, read once after the cluster booted."""

    watermark: str    # vm_memory_monitor:get_vm_memory_high_watermark(), e.g. 0.4
    disk_limit: str   # rabbit_disk_monitor:get_disk_free_limit(), in bytes

    def restore_args(self) -> list[list[str]]:
        absolute = re.fullmatch(r"\{absolute,\s*(\d+)\}", self.watermark)
        watermark = ["absolute", absolute.group(1)] if absolute else [self.watermark]
        return [["set_vm_memory_high_watermark", *watermark], ["set_disk_free_limit", self.disk_limit]]


STUCK_AFTER = 60.0   # seconds a node may take to finish booting before it counts as stuck
LIMITS = "{vm_memory_monitor:get_vm_memory_high_watermark(), rabbit_disk_monitor:get_disk_free_limit()}."


def limits(cluster: Cluster, node: Node) -> Limits:
    done = _ctl(cluster, node, "eval", LIMITS)
    found = re.fullmatch(r"\{(.+),(\d+)\}", done.stdout.strip().replace("\n", ""))
    if found is None:
        raise localcluster.ClusterError(f"cannot read the limits of {node.name}: {done.stdout.strip()!r}")
    return Limits(found.group(1).strip(), found.group(2))


def _ctl(cluster: Cluster, node: Node, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    done = localcluster.rabbitmqctl(cluster, node, *args, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise localcluster.ClusterError(f"'rabbitmqctl -n {node.name} {' '.join(args)}' exited {done.returncode}: {tail[0]}")
    return done


def heal_network(cluster: Cluster) -> list[str]:
    """Undo what partition, delay and loss faults leave when a test stops half-way: links up, no blackhole
    routes, no netem qdisc on either end of a link, no mqspec nftables tables, no delay NFQUEUE rules and no
    packet holder. Returns what it undid."""
    undone: list[str] = []
    for node in cluster.nodes:
        if node.netns is None:
            continue
        link = f"{node.short[:13]}-h"
        flags = re.search(r"<([^>]*)>", _run("ip", "link", "show", link))
        if flags is None or "UP" not in flags.group(1).split(","):
            _run("ip", "link", "set", link, "up")
            undone.append(f"link {link} was down")
        inside = ("ip", "netns", "exec", node.netns)
        for route in _run(*inside, "ip", "route", "show", "type", "blackhole").splitlines():
            _run(*inside, "ip", "route", "del", *route.split())
            undone.append(f"blackhole route {route.strip()} in {node.netns}")
        if "netem" in _run("tc", "qdisc", "show", "dev", link):
            _run("tc", "qdisc", "del", "dev", link, "root")
            undone.append(f"netem on {link}")
        inner = f"{node.short[:13]}-n"
        if "netem" in _run(*inside, "tc", "qdisc", "show", "dev", inner):
            _run(*inside, "tc", "qdisc", "del", "dev", inner, "root")
            undone.append(f"netem on {inner} in {node.netns}")
        undone += _remove_packet_delay(node.netns)
        if shutil.which("nft"):
            for table in re.findall(r"^table (\S+ mqspec\S*)", _run(*inside, "nft", "list", "tables"), re.M):
                _run(*inside, "nft", "delete", "table", *table.split())
                undone.append(f"nftables table {table} in {node.netns}")
    return undone


def _remove_packet_delay(netns: str) -> list[str]:
    """The delay fault's NFQUEUE rules (comment mqspec-delay) and its packet holder, if a test left them behind."""
    undone: list[str] = []
    inside = ("ip", "netns", "exec", netns)
    if shutil.which("iptables"):
        for rule in _run(*inside, "iptables", "-w", "-S").splitlines():
            if "--comment mqspec-delay" in rule:
                _run(*inside, "iptables", "-w", "-D", *shlex.split(rule)[1:])
                undone.append(f"iptables rule '{rule}' in {netns}")
    for number in _run("ip", "netns", "pids", netns).split():
        try:
            command = Path(f"/proc/{number}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mqspec.workload.packet_delay" in command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(number), signal.SIGKILL)
            undone.append(f"packet holder PID {number} in {netns}")
    return undone


def _run(*command: str) -> str:
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise localcluster.ClusterError(f"'{' '.join(command)}' exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def settle(cluster: Cluster, baseline: dict[str, Limits], timeout: float = 120.0,
           stuck_after: float = STUCK_AFTER) -> list[str]:
    """Bring the cluster back to the state every test starts from; returns what had to be repaired.

    Every node runs (a killed one is booted again) and has finished booting (`rabbitmqctl await_startup`),
    each one lists all nodes as running and no partition, its memory watermark and disk limit are back to
    `baseline`, no node reports a resource alarm, and a queue declared on any node is seen on every other.
    A node that has not booted after `stuck_after` seconds is killed and booted again, and so is one whose
    declarations another node does not see. Raises ClusterError when that cannot be reached.
    """
    repaired = heal_network(cluster)
    for node in cluster.nodes:
        if localcluster.pid(node) is None:
            try:
                localcluster.start_node(cluster, node, stuck_after)
                repaired.append(f"{node.name} was down: booted again")
            except (localcluster.ClusterError, subprocess.TimeoutExpired) as exc:
                # the same stuck boot as in _settle_node, met while booting it here
                where = _booting_in(cluster, node)
                _reboot(cluster, node, timeout)
                repaired.append(f"{node.name} was down and stuck booting (in {where}; {exc}): killed and booted again")
    with ThreadPoolExecutor(max_workers=len(cluster.nodes)) as pool:
        for fixed in pool.map(lambda n: _settle_node(cluster, n, baseline[n.name], timeout, stuck_after), cluster.nodes):
            repaired += fixed
    for node, blind in _unreplicated(cluster):
        # Seen after a healed partition: the paused node restarted its rabbit app, Mnesia reported
        # {inconsistent_database, starting_partitioned_network, ...}, and although every node listed every
        # other as running, a queue declared on it was not there on another node. A new VM loads the tables
        # from the others again.
        tables = _ctl(cluster, node, "eval", WHERE_TO_WRITE).stdout.strip()
        _reboot(cluster, node, timeout)
        repaired.append(f"{node.name} declared what {', '.join(n.name for n in blind)} did not see ({tables}): "
                        "killed and booted again")
        repaired += _settle_node(cluster, node, baseline[node.name], timeout, stuck_after)
    still = _unreplicated(cluster)
    if still:
        raise localcluster.ClusterError("nodes still miss what others declared: " + "; ".join(
            f"{n.name}'s declarations on {', '.join(b.name for b in blind)}" for n, blind in still))
    return repaired


WHERE_TO_WRITE = "[{T, mnesia:table_info(T, where_to_write)} || T <- [rabbit_queue, rabbit_durable_queue]]."


def _unreplicated(cluster: Cluster) -> list[tuple[Node, list[Node]]]:
    """Each node whose metadata some other node does not see, with those nodes: a durable queue is declared
    on every node (vhost /) and looked up on every other one."""
    probes = {node.name: f"mqspec-settle-probe-{node.index}" for node in cluster.nodes}
    for node in cluster.nodes:
        with contextlib.closing(pika.BlockingConnection(pika.URLParameters(vhost_url(node, "/")))) as connection:
            connection.channel().queue_declare(probes[node.name], durable=True)
    blind: dict[str, list[Node]] = {node.name: [] for node in cluster.nodes}
    for other in cluster.nodes:
        with contextlib.closing(pika.BlockingConnection(pika.URLParameters(vhost_url(other, "/")))) as connection:
            for node in cluster.nodes:
                try:
                    connection.channel().queue_declare(probes[node.name], passive=True)
                except pika.exceptions.ChannelClosedByBroker:
                    blind[node.name].append(other)
    for node in cluster.nodes:
        with contextlib.closing(pika.BlockingConnection(pika.URLParameters(vhost_url(node, "/")))) as connection:
            connection.channel().queue_delete(probes[node.name])
    return [(node, blind[node.name]) for node in cluster.nodes if blind[node.name]]


def _settle_node(cluster: Cluster, node: Node, baseline: Limits, timeout: float, stuck_after: float) -> list[str]:
    repaired: list[str] = []
    try:
        _ctl(cluster, node, "await_startup", "--timeout", str(int(stuck_after)), timeout=stuck_after + 30)
    except (localcluster.ClusterError, subprocess.TimeoutExpired) as exc:
        # Seen after a partition healed: the paused node restarts its rabbit app and hangs for good in
        # rabbit_node_monitor:global_sync (global:sync() never returns; RabbitMQ 3.10.8, Erlang 25).
        # Only a new VM gets it out: kill this node's process and boot it again.
        where = _booting_in(cluster, node)
        _reboot(cluster, node, timeout)
        repaired.append(f"{node.name} was stuck booting (in {where}; {exc}): killed and booted again")
        _ctl(cluster, node, "await_startup", "--timeout", str(int(timeout)), timeout=timeout + 30)
    now = limits(cluster, node)
    if now != baseline:
        for args in baseline.restore_args():
            _ctl(cluster, node, *args)
        repaired.append(f"{node.name} had limits {now}: restored")
    wanted = set(cluster.names)
    last: dict[str, Any] = {}

    def whole_and_calm() -> bool:
        last.clear()
        last.update(_status(cluster, node))
        return (wanted <= set(last.get("running_nodes", [])) and not any(last.get("partitions", {}).values())
                and not last.get("alarms"))
    if not whole_and_calm():
        localcluster.wait_until(whole_and_calm, timeout, f"{node.name} to see every node running, no partition and "
                                f"no alarm (last: {last})", interval=0.5)
        repaired.append(f"{node.name} waited for the whole cluster")
    return repaired


# the function each process running rabbit's boot steps waits in (past the gen_server plumbing)
BOOTING_IN = ("lists:usort([hd([{M, F} || {M, F, _, _} <- S, not lists:member(M, [gen, gen_server, proc_lib])])"
              " || P <- erlang:processes(), {current_stacktrace, S} <- [erlang:process_info(P, current_stacktrace)],"
              " lists:keymember(rabbit_boot_steps, 1, S)]).")


def _booting_in(cluster: Cluster, node: Node) -> str:
    try:
        done = localcluster.rabbitmqctl(cluster, node, "eval", BOOTING_IN, timeout=30)
    except subprocess.TimeoutExpired:
        return "an unknown place: rabbitmqctl eval timed out"
    return done.stdout.strip() if done.returncode == 0 else f"an unknown place: {done.stderr.strip()[:200]}"


def _reboot(cluster: Cluster, node: Node, timeout: float) -> None:
    localcluster.kill(node)
    localcluster.start_node(cluster, node, timeout)


def _status(cluster: Cluster, node: Node) -> dict[str, Any]:
    try:
        done = localcluster.rabbitmqctl(cluster, node, "cluster_status", "--formatter", "json", timeout=15.0)
    except subprocess.TimeoutExpired:   # a node paused in a minority answers only once it resumes
        return {}
    try:
        answer: dict[str, Any] = json.loads(done.stdout) if done.returncode == 0 else {}
    except ValueError:
        return {}
    return answer


def rebuild(cluster: Cluster) -> None:
    """The last resort when `settle` fails: stop every node, wipe its data, boot the same layout again."""
    localcluster.down(cluster, keep=True)
    for node in cluster.nodes:
        shutil.rmtree(Path(node.home) / "mnesia", ignore_errors=True)
    localcluster.up(cluster)
