"""Faults on the nodes a scenario names under `broker.nodes`: stop, start, kill, partition, delay,
loss, resource alarms, and any command with its undo.

Nothing here acts on a node the file does not name. Before the run starts, `resolve` finds each
named node's Erlang name (from the file, else from that node's own management API) and refuses
when it cannot. Each action returns its undo (or None); the runner calls it after `for`, or
when the run ends.

- stop_node / start_node: `rabbitmqctl -n NODE stop_app` / `start_app`, or the node's own commands;
- kill_node: SIGKILL of the node's OS process (its pid from `rabbitmqctl eval 'os:getpid().'`),
  or the node's `kill` command; its undo is the node's `start` command;
- partition: a single node has its link set down (`ip link set LINK down`: cut off from peers and
  clients alike); groups get blackhole routes to each other inside their namespaces, so clients
  still reach every node;
- delay: `tc qdisc add dev LINK root netem delay Dms`; refused, saying why, on a kernel without sch_netem;
- loss: an nftables table (`inet mqspec_loss`) inside the node's namespace that drops P% of the packets
  in and out of it at random (`numgen random mod 10000 < P*100 counter drop`, loopback excepted); its
  undo reads how many packets the counters dropped and deletes the table. It needs no netem, so it
  works on a kernel with nf_tables but no sch_netem;
- memory_alarm / disk_alarm: the watermark (disk limit) is read, set so the alarm fires
  (`set_vm_memory_high_watermark 0`, `set_disk_free_limit` far above the free space), then restored.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from mqspec.broker import amqp
from mqspec.broker.management import Management
from mqspec.core import model
from mqspec.errors import MqspecError, OperationFailed

COMMAND_TIMEOUT = 180.0
DOWN_TIMEOUT = 30.0
UP_TIMEOUT = 120.0
DISK_LIMIT_FIRES = "1000000000000000"   # 1 PB: more than any disk has free
LOSS_TABLE = "mqspec_loss"

Undo = Callable[[], str]


def resolve(settings: model.BrokerSettings, faults: tuple[model.Fault, ...]) -> dict[str, str]:
    """The Erlang node name of every node a node fault names; refuses when one cannot be told."""
    names: dict[str, str] = {}
    for fault in faults:
        if fault.action not in model.NODE_FAULTS:
            continue
        for name in fault.nodes():
            node = settings.node(name)
            if node is None:
                raise OperationFailed(f"{fault.action}: node '{name}' is not under broker.nodes; "
                                      "a fault never acts on a broker the file does not name")
            if name not in names:
                names[name] = node.rabbitmq_node or _asked(settings, node, fault.action)
    return names


def _asked(settings: model.BrokerSettings, node: model.Node, action: str) -> str:
    where = model.BrokerSettings(urls=(node.url,), management_url=node.management_url, tls=settings.tls,
                                 connect_timeout=settings.connect_timeout)
    try:
        with Management(where, timeout=5.0) as client:
            answer = client.overview()
    except MqspecError as exc:
        raise OperationFailed(f"{action}: cannot tell which RabbitMQ node '{node.name}' is: {exc.message}; "
                              f"give its rabbitmq_node (e.g. rabbit@HOST) under {node.where or 'broker.nodes'}") from None
    found = str(answer.get("node") or "") if isinstance(answer, dict) else ""
    if not found:
        raise OperationFailed(f"{action}: the management API of node '{node.name}' names no node; give its rabbitmq_node")
    return found


class NodeFaults:
    """Carries out node faults; `erlang` maps each named node to its Erlang node name."""

    def __init__(self, settings: model.BrokerSettings, erlang: dict[str, str]) -> None:
        self.settings = settings
        self.erlang = erlang
        self.pids: dict[str, int] = {}   # read before the run (rabbitmqctl takes seconds), again after a start
        self.limits: dict[tuple[str, str], tuple[str, ...]] = {}   # (alarm, node) -> the setting to restore

    def prepare(self, faults: tuple[model.Fault, ...]) -> None:
        """What the faults will need, read before the run: each call of rabbitmqctl takes seconds."""
        for fault in faults:
            node = self.settings.node(fault.node or "")
            if node is None:
                continue
            if fault.action == "kill_node" and not node.kill and node.name not in self.pids:
                self.pids[node.name] = self.os_pid(node)
            if fault.action in ("memory_alarm", "disk_alarm") and (fault.action, node.name) not in self.limits:
                self.limits[(fault.action, node.name)] = self._limit(node, fault.action)

    def _limit(self, node: model.Node, action: str) -> tuple[str, ...]:
        if action == "disk_alarm":
            before = self.ctl(node, "eval", "rabbit_disk_monitor:get_disk_free_limit().").strip()
            if not before.isdigit():
                raise OperationFailed(f"disk_alarm: cannot read the disk free limit of node '{node.name}' ({before!r})")
            return (before,)
        before = self.ctl(node, "eval", "vm_memory_monitor:get_vm_memory_high_watermark().").strip()
        absolute = re.fullmatch(r"\{absolute,\s*(\d+)\}", before)
        if absolute:
            return ("absolute", absolute.group(1))
        if not re.fullmatch(r"[0-9.e+-]+", before):
            raise OperationFailed(f"memory_alarm: cannot read the watermark of node '{node.name}' ({before!r})")
        return (before,)

    def act(self, fault: model.Fault) -> tuple[str, Undo | None]:
        """Do the fault; returns what happened and how to undo it."""
        action = fault.action
        if action == "command":
            _run(fault.command, "command")
            undo = fault.undo
            return f"ran {' '.join(fault.command)}", ((lambda: _ran(undo)) if undo else None)
        node = self._node(fault.node or "")
        if action == "stop_node":
            self.stop(node)
            return f"stopped node '{node.name}'", lambda: self.start(node)
        if action == "start_node":
            return self.start(node), None
        if action == "kill_node":
            return self.kill(node), (lambda: self.start(node)) if node.start else None
        if action == "partition":
            return self.partition(fault)
        if action == "delay":
            return self.delay(node, fault)
        if action == "loss":
            return self.loss(node, fault)
        if action == "memory_alarm":
            return self.memory_alarm(node)
        if action == "disk_alarm":
            return self.disk_alarm(node)
        raise OperationFailed(f"unknown fault action '{action}'")

    def _node(self, name: str) -> model.Node:
        node = self.settings.node(name)
        if node is None or name not in self.erlang:
            raise OperationFailed(f"node '{name}' is not under broker.nodes")
        return node

    def ctl(self, node: model.Node, *args: str) -> str:
        return _run((*node.ctl, "-n", self.erlang[node.name], *args), f"rabbitmqctl on node '{node.name}'")

    # --- stop, start, kill ------------------------------------------------------------------------

    def stop(self, node: model.Node) -> None:
        if node.stop:
            _run(node.stop, f"stop node '{node.name}'")
        else:
            self.ctl(node, "stop_app")

    def start(self, node: model.Node) -> str:
        began = time.monotonic()
        if node.start:
            _run(node.start, f"start node '{node.name}'")
        else:
            self.ctl(node, "start_app")
        _wait(lambda: _accepts(self.settings, node), UP_TIMEOUT, f"node '{node.name}' to accept AMQP connections")
        if node.name in self.pids:
            self.pids[node.name] = self.os_pid(node)
        return f"node '{node.name}' back after {time.monotonic() - began:.1f}s"

    def kill(self, node: model.Node) -> str:
        if node.kill:
            _run(node.kill, f"kill node '{node.name}'")
            what = "killed"
        else:
            number = self.pids.pop(node.name, 0) or self.os_pid(node)
            try:
                os.kill(number, signal.SIGKILL)
            except ProcessLookupError:
                raise OperationFailed(f"kill_node: node '{node.name}' (PID {number}) was already gone") from None
            what = f"SIGKILL to PID {number} of"
        _wait(lambda: not _port_open(node.url), DOWN_TIMEOUT, f"node '{node.name}' to stop listening")
        return f"{what} node '{node.name}'"

    def os_pid(self, node: model.Node) -> int:
        answer = self.ctl(node, "eval", "os:getpid().")
        digits = re.search(r"\d+", answer)
        if digits is None:
            raise OperationFailed(f"kill_node: node '{node.name}' gave no PID (os:getpid() answered {answer.strip()!r})")
        return int(digits.group())

    # --- the network --------------------------------------------------------------------------------

    def partition(self, fault: model.Fault) -> tuple[str, Undo]:
        if fault.node:
            node = self._node(fault.node)
            link = str(node.link)
            _run(("ip", "link", "set", link, "down"), "partition")
            return (f"cut node '{node.name}' off (link {link} down)",
                    lambda: _ran(("ip", "link", "set", link, "up")))
        routes = [(self._node(a), self._node(b)) for i, group in enumerate(fault.groups) for a in group
                  for j, other in enumerate(fault.groups) if i != j for b in other]
        for here, there in routes:
            _run(("ip", "netns", "exec", str(here.netns), "ip", "route", "add", "blackhole", f"{_host(there.url)}/32"),
                 "partition")

        def heal() -> str:
            for here, there in routes:
                _run(("ip", "netns", "exec", str(here.netns), "ip", "route", "del", "blackhole", f"{_host(there.url)}/32"),
                     "heal the partition")
            return "healed"
        split = " | ".join(", ".join(g) for g in fault.groups)
        return f"split the nodes into {split}", heal

    def delay(self, node: model.Node, fault: model.Fault) -> tuple[str, Undo]:
        link = str(node.link)
        rule = ("delay", f"{round((fault.delay or 0) * 1000)}ms")
        try:
            _run(("tc", "qdisc", "add", "dev", link, "root", "netem", *rule), "delay")
        except OperationFailed as exc:
            if "unknown" not in exc.message.lower():
                raise
            raise OperationFailed(f"delay: this kernel has no netem queueing discipline (sch_netem), which delay needs "
                                  f"('tc qdisc add dev {link} root netem' answers that the qdisc is unknown)") from None
        return (f"{' '.join(rule)} on the link of node '{node.name}' ({link})",
                lambda: _ran(("tc", "qdisc", "del", "dev", link, "root")))

    def loss(self, node: model.Node, fault: model.Fault) -> tuple[str, Undo]:
        netns = str(node.netns)
        if shutil.which("nft") is None:
            raise OperationFailed("loss: nftables' nft command is not installed (Debian: apt-get install nftables)")
        inside = ("ip", "netns", "exec", netns, "nft")
        _run((*inside, "-f", "-"), "loss", stdin=loss_rules(fault.loss or 0.0))

        def undo() -> str:
            listed = _run((*inside, "list", "table", "inet", LOSS_TABLE), "undo")
            dropped = sum(int(n) for n in re.findall(r"counter packets (\d+)", listed))
            return f"{_ran((*inside, 'delete', 'table', 'inet', LOSS_TABLE))} ({dropped} packets dropped)"
        return (f"loss {fault.loss:g}% of the packets in and out of node '{node.name}' (nftables table inet {LOSS_TABLE} "
                f"in netns {netns})", undo)

    # --- resource alarms --------------------------------------------------------------------------

    def memory_alarm(self, node: model.Node) -> tuple[str, Undo]:
        restore = self.limits.get(("memory_alarm", node.name)) or self._limit(node, "memory_alarm")
        self.ctl(node, "set_vm_memory_high_watermark", "0")

        def undo() -> str:
            self.ctl(node, "set_vm_memory_high_watermark", *restore)
            return f"watermark back to {' '.join(restore)}"
        return f"memory alarm on node '{node.name}' (watermark 0, was {' '.join(restore)})", undo

    def disk_alarm(self, node: model.Node) -> tuple[str, Undo]:
        restore = self.limits.get(("disk_alarm", node.name)) or self._limit(node, "disk_alarm")
        self.ctl(node, "set_disk_free_limit", DISK_LIMIT_FIRES)

        def undo() -> str:
            self.ctl(node, "set_disk_free_limit", *restore)
            return f"disk free limit back to {restore[0]} bytes"
        return f"disk alarm on node '{node.name}' (limit {DISK_LIMIT_FIRES} bytes, was {restore[0]})", undo


def loss_rules(percent: float) -> str:
    """An nftables table that drops `percent` of the packets a namespace sends and receives, loopback excepted."""
    drop = f'numgen random mod 10000 < {round(percent * 100)} counter drop'
    return (f"table inet {LOSS_TABLE} {{\n"
            f'  chain incoming {{ type filter hook input priority 0; policy accept; iifname != "lo" {drop}; }}\n'
            f'  chain outgoing {{ type filter hook output priority 0; policy accept; oifname != "lo" {drop}; }}\n'
            "}\n")


def _run(command: tuple[str, ...], what: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(list(command), input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperationFailed(f"{what}: cannot run '{' '.join(command)}': {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise OperationFailed(f"{what}: '{' '.join(command)}' exited {done.returncode}: {tail[0]}")
    return done.stdout


def _ran(command: tuple[str, ...]) -> str:
    _run(command, "undo")
    return f"ran {' '.join(command)}"


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=1.0):
            return True
    except OSError:
        return False


def _accepts(settings: model.BrokerSettings, node: model.Node) -> bool:
    try:
        amqp.connect(model.BrokerSettings(urls=(node.url,), tls=settings.tls, connect_timeout=2.0),
                     "mqspec:wait-for-node").close()
    except MqspecError:
        return False
    return True


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise OperationFailed(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)
