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
- delay: every packet in and out of the node is held D (a round trip through it takes 2D longer): a netem
  qdisc (`tc qdisc add dev LINK root netem delay Dms`) on the root-side end of its link and on the
  interfaces inside its namespace; on a kernel without sch_netem, iptables rules inside the namespace
  (`-j NFQUEUE --queue-num 7171 --queue-bypass`, input and output, loopback excepted) send its packets
  to a netfilter queue that mqspec.workload.packet_delay holds, then lets through in order. Its undo
  removes the rules and stops that process; the fault's text says which of the two was used;
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
import select
import shutil
import signal
import socket
import subprocess
import sys
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
DELAY_QUEUE = 7171                     # the netfilter queue the delay fault uses inside a node's namespace
DELAY_COMMENT = "mqspec-delay"         # on its iptables rules, so tests/nodes.py can find what a test left behind
HOLDER_TIMEOUT = 10.0

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
        """Every packet in and out of the node held `delay`: netem where the kernel has it, else a netfilter queue."""
        ms = round((fault.delay or 0) * 1000)
        try:
            return self._netem(node, ms)
        except _NoNetem as missing:
            return self._held(node, ms, missing.link)

    def _netem(self, node: model.Node, ms: int) -> tuple[str, Undo]:
        """A netem qdisc on both ends of the node's link: the root-side end (into the node) and the ones inside its
        namespace (out of it)."""
        netns, link = str(node.netns), str(node.link)
        rule = ("netem", "delay", f"{ms}ms")
        ends = [((), link), *((("ip", "netns", "exec", netns), inner) for inner in _links_inside(netns))]
        added: list[tuple[tuple[str, ...], str]] = []

        def remove() -> str:
            for prefix, device in reversed(added):
                _run((*prefix, "tc", "qdisc", "del", "dev", device, "root"), "undo")
            return f"removed netem from {', '.join(device for _, device in added)}"
        try:
            for prefix, device in ends:
                try:
                    _run((*prefix, "tc", "qdisc", "add", "dev", device, "root", *rule), "delay")
                except OperationFailed as exc:
                    if "unknown" in exc.message.lower() and not added:
                        raise _NoNetem(device) from None
                    raise
                added.append((prefix, device))
        except OperationFailed:
            remove()
            raise
        return (f"delay {ms}ms on every packet in and out of node '{node.name}' (tc netem on "
                f"{', '.join(device for _, device in added)})", remove)

    def _held(self, node: model.Node, ms: int, link: str) -> tuple[str, Undo]:
        """No netem: iptables rules send the node's traffic to a netfilter queue, which packet_delay holds `ms` each."""
        netns = str(node.netns)
        if shutil.which("iptables") is None:
            raise OperationFailed(f"delay: this kernel has no netem ('tc qdisc add dev {link} root netem' answers that "
                                  "the qdisc is unknown) and iptables, the fallback (its NFQUEUE target), is not "
                                  "installed (Debian: apt-get install iptables)")
        holder = _start_holder(netns, ms)
        inside = ("ip", "netns", "exec", netns, "iptables", "-w")
        rules = delay_rules(DELAY_QUEUE)
        added: list[tuple[str, ...]] = []

        def undo() -> str:
            for rule in reversed(added):
                _run((*inside, "-D", *rule), "undo")
            return f"removed the NFQUEUE rules in netns {netns}; {_stop_holder(holder)}"
        try:
            for rule in rules:
                _run((*inside, "-I", *rule), "delay")
                added.append(rule)
        except OperationFailed:
            undo()
            raise
        return (f"delay {ms}ms on every packet in and out of node '{node.name}' (no netem in this kernel: iptables "
                f"NFQUEUE {DELAY_QUEUE} in netns {netns}, held by PID {holder.pid})", undo)

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


def delay_rules(queue: int) -> list[tuple[str, ...]]:
    """iptables rules (chain first) that queue every packet a namespace receives and sends, loopback excepted;
    with --queue-bypass they let packets pass whenever no process holds the queue."""
    target = ("-m", "comment", "--comment", DELAY_COMMENT, "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass")
    return [("INPUT", "!", "-i", "lo", *target), ("OUTPUT", "!", "-o", "lo", *target)]


class _NoNetem(Exception):
    def __init__(self, link: str) -> None:
        super().__init__(link)
        self.link = link


def _links_inside(netns: str) -> list[str]:
    """The network interfaces inside a namespace, loopback excepted."""
    listed = _run(("ip", "netns", "exec", netns, "ip", "-o", "link", "show"), "delay")
    names = [line.split(":")[1].strip().split("@")[0] for line in listed.splitlines() if line.count(":") >= 2]
    return [name for name in names if name != "lo"]


def _start_holder(netns: str, ms: int) -> subprocess.Popen[str]:
    """packet_delay inside the namespace, once it has bound the queue (it prints `ready`)."""
    command = ["ip", "netns", "exec", netns, sys.executable, "-m", "mqspec.workload.packet_delay",
               "--queue", str(DELAY_QUEUE), "--delay-ms", str(ms)]
    try:
        holder = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
    except OSError as exc:
        raise OperationFailed(f"delay: cannot run '{' '.join(command)}': {exc}") from None
    assert holder.stdout is not None and holder.stderr is not None
    ready, _, _ = select.select([holder.stdout], [], [], HOLDER_TIMEOUT)
    if ready and holder.stdout.readline().strip() == "ready":
        return holder
    holder.kill()
    _, errors = holder.communicate()
    why = errors.strip().splitlines()[-1:] or [f"not ready after {HOLDER_TIMEOUT:g}s"]
    raise OperationFailed(f"delay: the packet holder in netns {netns} did not start: {why[0]}")


def _stop_holder(holder: subprocess.Popen[str]) -> str:
    """Stop packet_delay (it lets through what it still holds) and say how many packets it held."""
    try:
        out, _ = holder.communicate(timeout=HOLDER_TIMEOUT)   # closing its stdin tells it to stop
    except subprocess.TimeoutExpired:
        holder.kill()
        holder.communicate()
        return f"killed the packet holder (PID {holder.pid}): it did not stop within {HOLDER_TIMEOUT:g}s"
    held = re.search(r"held (\d+) packets", out)
    return f"stopped the packet holder ({held.group(1) if held else 'an unknown number of'} packets held)"


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
