"""Fault steps a scenario injects into its own run: close connections, kill a consumer, restart the broker.

The schedule is pure (`FaultSchedule`); the actions talk to the management API and run the
configured restart command. Actions run on a background thread so the run keeps reading its
workers while the broker is down; `kill_consumer` is carried out by the worker that hosts the
consumer (the engine sends it there).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from mqspec.broker import amqp
from mqspec.broker.management import Management, q
from mqspec.core import model, outcomes
from mqspec.errors import MqspecError, OperationFailed
from mqspec.workload.cluster_faults import NodeFaults, Undo, resolve

BROKER_BACK_TIMEOUT = 120.0
COMMAND_TIMEOUT = 180.0


def describe(fault: model.Fault) -> str:
    when = f"at {fault.at:g}s" if fault.at is not None else f"after {fault.after_messages} messages"
    named = fault.consumer or fault.node or " | ".join(",".join(g) for g in fault.groups)
    target = f" '{named}'" if named else ""
    lasting = f" for {fault.lasts:g}s" if fault.lasts is not None else ""
    return f"{fault.action}{target} {when}{lasting}"


class FaultSchedule:
    """Which faults are due, given the time since the start and the messages published so far."""

    def __init__(self, faults: tuple[model.Fault, ...]) -> None:
        self.pending = list(faults)

    def due(self, elapsed: float, published: int) -> list[model.Fault]:
        ready = [f for f in self.pending if (f.at is not None and elapsed >= f.at)
                 or (f.after_messages is not None and published >= f.after_messages)]
        self.pending = [f for f in self.pending if f not in ready]
        return ready

    def may_still_fire(self, producers_done: bool) -> bool:
        """Timed faults always can (before the timeout); count-triggered ones only while producers run."""
        return any(f.at is not None or not producers_done for f in self.pending)

    def unreached(self) -> list[model.Fault]:
        return list(self.pending)


def close_connections(management: Management, vhost: str, prefix: str, known: list[str], wait: float = 6.0) -> int:
    """Close every connection of this run's workers in the vhost (never the run's own monitor).

    The workers report their connections' broker-side names ("client-ip:port -> server-ip:port");
    those are closed through the connection-tracking view (`disable_stats=true`), which knows a
    connection the moment it opens. If none of them is known there (a proxy or NAT renames
    them), the statistics view is searched for this run's connection names instead; it can lag
    by up to the statistics interval.
    """
    tracked = management.get("/connections?disable_stats=true", "connections") or []
    names = [c["name"] for c in tracked if c.get("vhost") == vhost and c.get("name") in set(known)]
    if not names:
        names = _by_client_name(management, vhost, prefix, wait)
    for name in names:
        management.delete(f"/connections/{q(name)}?disable_stats=true", f"connection '{name}'")
    return len(names)


def _by_client_name(management: Management, vhost: str, prefix: str, wait: float) -> list[str]:
    deadline = time.monotonic() + wait
    while True:
        listed = management.get(f"/vhosts/{q(vhost)}/connections", f"connections of vhost '{vhost}'") or []
        ours = [c["name"] for c in listed if str(c.get("user_provided_name") or _client_name(c)).startswith(prefix + ":")]
        if ours or time.monotonic() >= deadline:
            return ours
        time.sleep(0.2)


def _client_name(connection: dict[str, object]) -> str:
    properties = connection.get("client_properties")
    if isinstance(properties, dict):
        return str(properties.get("connection_name") or "")
    return ""


def restart_broker(settings: model.BrokerSettings) -> None:
    """Run the restart commands in order, then wait until the broker accepts connections again.

    A `rabbitmqctl` command that names no node (`-n`/`--node`) is aimed at the node behind the
    broker URL, as the management API reports it: never at whatever node is the default on this
    machine. When that node cannot be determined, nothing is run.
    """
    try:
        with Management(settings, timeout=5.0) as client:
            overview: dict[str, Any] | None = client.overview()
            where = client.base
    except MqspecError as exc:
        overview, where = None, exc.message
    commands = settings.restart_command
    if any(_needs_node(c) for c in commands):
        node = _node_behind(settings.url, overview, where)
        commands = tuple(_aimed_at(c, node) if _needs_node(c) else c for c in commands)
    for command in commands:
        try:
            done = subprocess.run(list(command), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OperationFailed(f"restart_broker: cannot run '{' '.join(command)}': {exc}") from None
        if done.returncode != 0:
            tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise OperationFailed(f"restart_broker: '{' '.join(command)}' exited {done.returncode}: {tail[0]}")
    wait_for_broker(settings, management=overview is not None)


def _rabbitmqctl_at(command: tuple[str, ...]) -> int | None:
    return next((i for i, word in enumerate(command) if word.rsplit("/", 1)[-1] == "rabbitmqctl"), None)


def _needs_node(command: tuple[str, ...]) -> bool:
    at = _rabbitmqctl_at(command)
    return at is not None and not any(w in ("-n", "--node") or w.startswith("--node=") for w in command[at + 1:])


def _aimed_at(command: tuple[str, ...], node: str) -> tuple[str, ...]:
    at = _rabbitmqctl_at(command)
    assert at is not None
    return (*command[:at + 1], "-n", node, *command[at + 1:])


def _node_behind(url: str, overview: dict[str, Any] | None, where: str) -> str:
    """The node whose AMQP listener serves `url`, from the listeners in the management overview."""
    endpoint = amqp.endpoint(url)
    advice = ("; name the node in broker.restart_command, e.g. [rabbitmqctl, -n, rabbit@HOST, stop_app], "
              "or point --management-url at the management API of that broker")
    if overview is None:
        raise OperationFailed(f"restart_broker: cannot tell which RabbitMQ node serves {endpoint}: {where}{advice}")
    host, _, port = endpoint.rpartition(":")
    listeners = [entry for entry in overview.get("listeners") or []
                 if str(entry.get("protocol", "")).startswith("amqp") and str(entry.get("port")) == port]
    nodes = sorted({str(entry["node"]) for entry in listeners if "node" in entry})
    if len(nodes) > 1:  # a cluster on several hosts, all on the same port: the node's host names it
        nodes = [n for n in nodes if n.split("@", 1)[-1].split(".")[0] == host.split(".")[0]] or nodes
    if len(nodes) == 1:
        return nodes[0]
    found = (f"several nodes listen on port {port} ({', '.join(nodes)})" if nodes else
             f"the management API at {where} ({overview.get('node', 'unknown node')}) lists no AMQP listener on port {port}")
    raise OperationFailed(f"restart_broker: cannot tell which RabbitMQ node serves {endpoint}: {found}{advice}")


def wait_for_broker(settings: model.BrokerSettings, timeout: float = BROKER_BACK_TIMEOUT, management: bool = True) -> None:
    """Until AMQP accepts a connection and (if it answered before) the management API answers again."""
    deadline = time.monotonic() + timeout
    checks: list[Callable[[], object]] = [lambda: amqp.connect(settings, "mqspec:wait-for-broker").close()]
    if management:
        checks.append(lambda: _management_answers(settings))
    for check in checks:
        while True:
            try:
                check()
                break
            except MqspecError:
                if time.monotonic() >= deadline:
                    raise OperationFailed(f"the broker at {amqp.endpoint(settings.url)} did not come back within "
                                          f"{timeout:g}s") from None
                time.sleep(0.25)


def _management_answers(settings: model.BrokerSettings) -> None:
    with Management(settings, timeout=5.0) as management:
        management.overview()


class FaultRunner:
    """Runs one management/command fault at a time on a thread; the engine polls `busy`."""

    def __init__(self, settings: model.BrokerSettings, vhost: str, prefix: str,
                 connections: Callable[[], list[str]] = list) -> None:
        self.settings = settings
        self.connections = connections
        self.vhost = vhost
        self.prefix = prefix
        self.thread: threading.Thread | None = None
        self.log: list[str] = []
        self.errors: list[str] = []
        self.spans: list[outcomes.FaultSpan] = []
        self.nodes: NodeFaults | None = None
        self.undos: list[tuple[model.Fault, Undo]] = []
        self.ending = threading.Event()

    def prepare(self, faults: tuple[model.Fault, ...]) -> None:
        """Before the run: the Erlang name of every node a fault names (refuses when one cannot be told)."""
        if any(f.action in model.NODE_FAULTS or f.action == "command" for f in faults):
            self.nodes = NodeFaults(self.settings, resolve(self.settings, faults))
            self.nodes.prepare(faults)

    def undo_all(self, timeout: float = COMMAND_TIMEOUT) -> None:
        """The run ends: cut short any `for`, then undo what is still in force (alarms, partitions, commands)."""
        self.ending.set()
        self.join(timeout)
        while self.undos:
            fault, undo = self.undos.pop()
            try:
                self.log.append(f"{describe(fault)}: undone at the end of the run: {undo()}")
            except MqspecError as exc:
                self.errors.append(f"undoing {describe(fault)} failed: {exc.message}")

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, fault: model.Fault, started: float, on_done: Callable[[], None]) -> None:
        def work() -> None:
            began = time.monotonic() - started
            try:
                self.log.append(f"{describe(fault)}: {self._execute(fault, started)} (at {began:.1f}s)")
            except MqspecError as exc:
                self.errors.append(f"{describe(fault)} failed: {exc.message}")
            finally:
                self.spans.append(outcomes.FaultSpan(describe(fault), round(began, 2),
                                                     round(time.monotonic() - started, 2)))
                on_done()

        self.thread = threading.Thread(target=work, name=f"mqspec-fault-{fault.action}", daemon=True)
        self.thread.start()

    def _execute(self, fault: model.Fault, started: float) -> str:
        if self.nodes is not None and (fault.action in model.NODE_FAULTS or fault.action == "command"):
            return self._on_nodes(self.nodes, fault, started)
        if fault.action == "close_connections":
            with Management(self.settings) as management:
                count = close_connections(management, self.vhost, self.prefix, self.connections())
            return f"closed {count} connection(s)"
        if fault.action == "restart_broker":
            began = time.monotonic()
            restart_broker(self.settings)
            return f"broker back after {time.monotonic() - began:.1f}s"
        return "done"

    def _on_nodes(self, nodes: NodeFaults, fault: model.Fault, started: float) -> str:
        done, undo = nodes.act(fault)
        if undo is None:
            return done
        if fault.lasts is None:
            self.undos.append((fault, undo))
            return done
        self.ending.wait(fault.lasts)
        return f"{done}; then {undo()} (at {time.monotonic() - started:.1f}s)"

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
