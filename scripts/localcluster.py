"""Private RabbitMQ nodes on this machine, joined into one cluster.

Each node gets its own node name, AMQP, management and distribution ports, config file, data,
logs, enabled-plugins file and PID file, all under one base folder; nothing touches a broker
that is already running here. The nodes share the Erlang cookie that `rabbitmqctl` on this
machine uses, so `rabbitmqctl -n mqspec-c1@localhost cluster_status` works as usual.

With `netns=True` every node runs in its own network namespace, linked by a veth pair to a
bridge in the root namespace (10.213.N.0/24, used only by these namespaces), so a test can cut a
node off the others (`ip link set mqspec-c1-h down`).

Used by `scripts/local-cluster` and by the test fixtures in tests/nodes.py. Standard library
only, so it runs with any python3 on a laptop.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_BASE = Path(os.environ.get("MQSPEC_CLUSTER_BASE", "/tmp/mqspec-cluster"))
DEFAULT_PREFIX = "mqspec-c"
DEFAULT_AMQP_PORT = 5701
CLUSTER_PLUGINS = ("rabbitmq_management", "rabbitmq_shovel", "rabbitmq_shovel_management",
                   "rabbitmq_federation", "rabbitmq_federation_management")
NODE_PLUGINS = ("rabbitmq_management",)
BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
STATE_FILE = "cluster.json"

_children: dict[str, subprocess.Popen[bytes]] = {}  # nodes this process started, reaped when they stop


class ClusterError(Exception):
    """Something a person has to act on; the message says what."""


@dataclass(frozen=True)
class Node:
    index: int
    name: str  # Erlang node name, e.g. mqspec-c1@localhost
    host: str  # the address clients and the other nodes use
    amqp_port: int
    management_port: int
    dist_port: int
    home: str  # this node's folder: config, data, logs, PID file
    netns: str | None = None

    @property
    def short(self) -> str:
        return self.name.split("@", 1)[0]

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.amqp_port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.management_port}"

    @property
    def pid_file(self) -> Path:
        return Path(self.home) / "rabbitmq.pid"

    @property
    def log_file(self) -> Path:
        return Path(self.home) / "log" / f"{self.name}.log"


@dataclass(frozen=True)
class Cluster:
    base: str
    nodes: tuple[Node, ...]
    plugins: tuple[str, ...] = CLUSTER_PLUGINS
    netns: bool = False
    subnet: int = 0  # 10.213.<subnet>.0/24 in netns mode
    net_ticktime: int | None = None  # seconds until a silent peer counts as down (Erlang's default: 60)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def bridge(self) -> str:
        return f"mqspec-br{self.subnet}"


def layout(base: Path = DEFAULT_BASE, count: int = 3, prefix: str = DEFAULT_PREFIX, amqp_port: int = DEFAULT_AMQP_PORT,
           plugins: Iterable[str] = CLUSTER_PLUGINS, netns: bool = False, subnet: int = 0,
           net_ticktime: int | None = None) -> Cluster:
    """Where each node lives: node i gets AMQP port amqp_port+i-1, management +10000, distribution +20000."""
    nodes = []
    for i in range(1, count + 1):
        short = f"{prefix}{i}"
        host = f"10.213.{subnet}.{10 + i}" if netns else "127.0.0.1"
        port = amqp_port + i - 1
        nodes.append(Node(index=i, name=f"{short}@{host if netns else 'localhost'}", host=host, amqp_port=port,
                          management_port=port + 10000, dist_port=port + 20000, home=str(base / short),
                          netns=short if netns else None))
    return Cluster(base=str(base), nodes=tuple(nodes), plugins=tuple(plugins), netns=netns, subnet=subnet,
                   net_ticktime=net_ticktime)


# --- the RabbitMQ installation and its command-line tools -------------------------------------------------------------

def _sbin() -> Path:
    """The real scripts, not Debian's /usr/sbin wrapper (which switches to the rabbitmq user)."""
    override = os.environ.get("MQSPEC_RABBITMQ_SBIN")
    candidates = [Path(override)] if override else [Path("/usr/lib/rabbitmq/bin")]
    found = shutil.which("rabbitmq-server")
    if found:
        candidates.append(Path(found).resolve().parent)
    for folder in candidates:
        script = folder / "rabbitmq-server"
        if script.exists() and "rabbitmq-script-wrapper" not in script.resolve().name:
            return folder
    raise ClusterError("rabbitmq-server not found; install RabbitMQ (e.g. apt-get install rabbitmq-server) "
                       "or set MQSPEC_RABBITMQ_SBIN to the folder holding rabbitmq-server and rabbitmqctl")


def _cli_cookie() -> str:
    """The cookie `rabbitmqctl` on this machine presents, so the user's own CLI reaches these nodes."""
    override = os.environ.get("MQSPEC_ERLANG_COOKIE_FILE")
    candidates = [Path(override)] if override else []
    if os.geteuid() == 0:
        candidates.append(Path("/var/lib/rabbitmq/.erlang.cookie"))  # Debian's wrapper runs the CLI as 'rabbitmq'
    candidates.append(Path.home() / ".erlang.cookie")
    for path in candidates:
        if path.is_file():
            return path.read_text().strip()
    cookie = secrets.token_hex(16).upper()
    home_cookie = Path.home() / ".erlang.cookie"
    home_cookie.write_text(cookie)
    home_cookie.chmod(0o400)
    return cookie


def _env(cluster: Cluster, node: Node | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
    env["HOME"] = cluster.base  # holds the .erlang.cookie copy
    env["PATH"] = f"{_sbin()}:{env.get('PATH', '/usr/bin:/bin')}:/usr/sbin:/sbin"
    if cluster.netns:
        env["RABBITMQ_USE_LONGNAME"] = "true"
        # the namespaces reach no DNS server: resolve names from /etc/hosts only, instead of waiting for timeouts
        env["ERL_INETRC"] = str(Path(cluster.base) / "inetrc")
    if node is not None:
        home = Path(node.home)
        env.update({
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_PID_FILE": str(node.pid_file),
        })
        if not cluster.netns:
            env["ERL_EPMD_ADDRESS"] = "127.0.0.1"
    return env


def rabbitmqctl(cluster: Cluster, node: Node, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    command = [str(_sbin() / "rabbitmqctl"), *(["--longnames"] if cluster.netns else []), "-n", node.name, *args]
    return subprocess.run(command, env=_env(cluster), capture_output=True, text=True, timeout=timeout, check=False)


# --- files ---------------------------------------------------------------------------------------------------------

def _config(cluster: Cluster, node: Node) -> str:
    listen = node.host
    lines = [
        f"listeners.tcp.1 = {listen}:{node.amqp_port}",
        f"management.tcp.ip = {listen}",
        f"management.tcp.port = {node.management_port}",
        "cluster_formation.peer_discovery_backend = classic_config",
        # node 1 forms the cluster alone (instead of waiting for peers that are not up yet); the others join it
        *(f"cluster_formation.classic_config.nodes.{n.index} = {n.name}" for n in cluster.nodes[:node.index]
          if n.index in (1, node.index)),
        "cluster_formation.randomized_startup_delay_range.min = 0",
        "cluster_formation.randomized_startup_delay_range.max = 1",
        *(["cluster_partition_handling = pause_minority"] if len(cluster.nodes) >= 3 else []),
        "log.console = false",
        "log.file.level = info",
    ]
    if cluster.netns:
        lines.append("loopback_users = none")  # clients come from the root namespace, not from 127.0.0.1
    return "\n".join(lines) + "\n"


def _prepare(cluster: Cluster, cookie: str) -> None:
    base = Path(cluster.base)
    base.mkdir(parents=True, exist_ok=True)
    cookie_file = base / ".erlang.cookie"
    if cookie_file.exists():
        cookie_file.chmod(0o600)
    cookie_file.write_text(cookie)
    cookie_file.chmod(0o400)
    (base / STATE_FILE).write_text(json.dumps(asdict(cluster), indent=2) + "\n")
    (base / "inetrc").write_text("{lookup, [file]}.\n")
    for node in cluster.nodes:
        home = Path(node.home)
        for sub in ("mnesia", "log"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        (home / "rabbitmq.conf").write_text(_config(cluster, node))
        ticktime = f"{{kernel, [{{net_ticktime, {cluster.net_ticktime}}}]}}" if cluster.net_ticktime else ""
        (home / "advanced.config").write_text(f"[{ticktime}].\n")
        dist = "{127,0,0,1}" if not cluster.netns else "{" + node.host.replace(".", ",") + "}"
        (home / "rabbitmq-env.conf").write_text(f'export ERL_FLAGS="-kernel inet_dist_use_interface {dist}"\n')
        (home / "enabled_plugins").write_text(f"[{','.join(cluster.plugins)}].\n")


def load(base: Path = DEFAULT_BASE) -> Cluster:
    """The cluster `up` left in this base folder."""
    try:
        data = json.loads((base / STATE_FILE).read_text())
    except FileNotFoundError:
        raise ClusterError(f"no cluster in {base} (start one with: scripts/local-cluster up)") from None
    return Cluster(base=data["base"], nodes=tuple(Node(**n) for n in data["nodes"]), plugins=tuple(data["plugins"]),
                   netns=data["netns"], subnet=data["subnet"], net_ticktime=data.get("net_ticktime"))


# --- waiting on conditions -------------------------------------------------------------------------------------------

def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `condition` until it holds; fail with `what` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise ClusterError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def overview(node: Node) -> dict[str, object] | None:
    """The node's /api/overview, or None while the management API does not answer."""
    request = urllib.request.Request(node.management_url + "/api/overview",
                                     headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            answer: dict[str, object] = json.loads(response.read())
            return answer
    except (OSError, ValueError, urllib.error.URLError):
        return None


def pid(node: Node) -> int | None:
    try:
        number = int(node.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return number


def node_ready(cluster: Cluster, node: Node, process: subprocess.Popen[bytes] | None = None) -> bool:
    """AMQP accepts connections and (with the management plugin) the API answers as this very node."""
    if process is not None and process.poll() is not None:
        raise ClusterError(f"{node.name} exited with {process.returncode} while starting; see {node.log_file} "
                           f"and {Path(node.home) / 'startup.log'}")
    if not port_open(node.host, node.amqp_port):
        return False
    if "rabbitmq_management" not in cluster.plugins:
        return True
    answer = overview(node)
    if answer is None:
        return False
    if answer.get("node") != node.name:
        raise ClusterError(f"port {node.management_port} answers as {answer.get('node')}, not {node.name}")
    return True


def running_nodes(cluster: Cluster, node: Node) -> list[str]:
    done = rabbitmqctl(cluster, node, "cluster_status", "--formatter", "json")
    if done.returncode != 0:
        return []
    try:
        return list(json.loads(done.stdout).get("running_nodes", []))
    except ValueError:
        return []


# --- network namespaces ----------------------------------------------------------------------------------------------

def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise ClusterError(f"'ip {' '.join(args)}' failed: {done.stderr.strip()}")
    return done


def _netns_up(cluster: Cluster) -> None:
    if os.geteuid() != 0:
        raise ClusterError("--netns needs root (it creates network namespaces, veth pairs and a bridge)")
    bridge = cluster.bridge
    if _ip("link", "show", bridge, check=False).returncode != 0:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"10.213.{cluster.subnet}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
    for node in cluster.nodes:
        assert node.netns is not None
        host_end, node_end = _veth(node)
        if _ip("netns", "pids", node.netns, check=False).returncode != 0:
            _ip("netns", "add", node.netns)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", node_end)
        _ip("link", "set", node_end, "netns", node.netns)
        _ip("link", "set", host_end, "master", bridge)
        _ip("link", "set", host_end, "up")
        inside = ("netns", "exec", node.netns, "ip")
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "addr", "add", f"{node.host}/24", "dev", node_end)
        _ip(*inside, "link", "set", node_end, "up")
        _ip(*inside, "route", "add", "default", "via", f"10.213.{cluster.subnet}.1")
        subprocess.run(["ip", "netns", "exec", node.netns, "epmd", "-daemon"], check=True)


def _veth(node: Node) -> tuple[str, str]:
    """Interface names (at most 15 characters): '<short>-h' on the bridge, '<short>-n' inside the namespace."""
    return f"{node.short[:13]}-h", f"{node.short[:13]}-n"


def _netns_down(cluster: Cluster) -> None:
    for node in cluster.nodes:
        if node.netns is None:
            continue
        pids = _ip("netns", "pids", node.netns, check=False).stdout.split()
        for number in pids:  # epmd and anything left behind in this namespace only
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(number), signal.SIGKILL)
        _ip("link", "del", _veth(node)[0], check=False)
        _ip("netns", "del", node.netns, check=False)
    if cluster.netns:
        _ip("link", "del", cluster.bridge, check=False)


# --- up, down, status ------------------------------------------------------------------------------------------------

def _check_free(cluster: Cluster) -> None:
    for node in cluster.nodes:
        if pid(node) is not None:
            raise ClusterError(f"{node.name} is already running (PID file {node.pid_file}); "
                               "run 'scripts/local-cluster down' first")
        for port in (node.amqp_port, node.management_port, node.dist_port):
            if not cluster.netns and port_open("127.0.0.1", port):
                raise ClusterError(f"port {port} (for {node.name}) is already in use; choose another with --port")


def _launch(cluster: Cluster, node: Node) -> subprocess.Popen[bytes]:
    earlier = _children.pop(node.name, None)
    if earlier is not None:   # the node is gone (killed, or stopped): reap the process this one replaces
        with contextlib.suppress(subprocess.TimeoutExpired):
            earlier.wait(STOP_TIMEOUT)
    command = [str(_sbin() / "rabbitmq-server")]
    if node.netns:
        command = ["ip", "netns", "exec", node.netns, *command]
    with open(Path(node.home) / "startup.log", "wb") as startup:
        process = subprocess.Popen(command, env=_env(cluster, node), stdin=subprocess.DEVNULL, stdout=startup,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    _children[node.name] = process
    return process


def up(cluster: Cluster, timeout: float = BOOT_TIMEOUT, log: Callable[[str], None] = lambda _: None) -> float:
    """Start every node and wait until all of them run in one cluster; returns the seconds it took.

    The first node boots alone; the others then find it through classic-config peer discovery and
    join it as they boot, in parallel.
    """
    began = time.monotonic()
    _check_free(cluster)
    if cluster.netns:
        _netns_up(cluster)
    _prepare(cluster, _cli_cookie())
    first, *rest = cluster.nodes
    try:
        process = _launch(cluster, first)
        wait_until(lambda: node_ready(cluster, first, process), timeout, f"{first.name} to start")
        log(f"{first.name} up after {time.monotonic() - began:.1f}s")
        processes = {node: _launch(cluster, node) for node in rest}
        for node, proc in processes.items():
            wait_until(lambda n=node, p=proc: node_ready(cluster, n, p), timeout, f"{node.name} to start")  # type: ignore[misc]
            log(f"{node.name} up after {time.monotonic() - began:.1f}s")
        if rest:
            wanted = set(cluster.names)
            wait_until(lambda: wanted <= set(running_nodes(cluster, first)), timeout,
                       f"'rabbitmqctl -n {first.name} cluster_status' to list {', '.join(sorted(wanted))} as running",
                       interval=0.5)
    except BaseException:
        down(cluster, keep=True)
        raise
    return time.monotonic() - began


def find(cluster: Cluster, name: str) -> Node:
    """A node by its Erlang name, its short name (mqspec-c2) or its index (2)."""
    for node in cluster.nodes:
        if name in (node.name, node.short, str(node.index)):
            return node
    raise ClusterError(f"no node '{name}' in this cluster (nodes: {', '.join(cluster.names)})")


def start_node(cluster: Cluster, node: Node, timeout: float = BOOT_TIMEOUT) -> float:
    """Boot one node of the cluster again (after a kill or a stop) and wait until it runs in the cluster."""
    began = time.monotonic()
    if pid(node) is not None:   # its process lives (maybe paused in a minority, or still booting): never a second one
        wait_until(lambda: node_ready(cluster, node), timeout, f"{node.name} (already running) to accept connections")
    else:
        process = _launch(cluster, node)
        wait_until(lambda: node_ready(cluster, node, process), timeout, f"{node.name} to start")
    others = [n for n in cluster.nodes if n is not node]
    if others:
        wait_until(lambda: node.name in running_nodes(cluster, node), timeout,
                   f"{node.name} to run in the cluster again", interval=0.5)
    return time.monotonic() - began


def kill(node: Node, timeout: float = 30.0) -> None:
    """SIGKILL a node's VM, and the process group of the server this process launched for it (the VM of a node
    stuck early in its boot may not have written its PID file yet); wait until it is gone."""
    number = pid(node)
    if number is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(number, signal.SIGKILL)
    child = _children.get(node.name)
    if child is not None and child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)   # started in its own session: the group is the server's
    wait_until(lambda: pid(node) is None and (child is None or child.poll() is not None), timeout,
               f"{node.name} (PID {number}) to exit")


def _stop(cluster: Cluster, node: Node) -> None:
    number = pid(node)
    if number is None:
        return
    rabbitmqctl(cluster, node, "stop", timeout=STOP_TIMEOUT)
    try:
        wait_until(lambda: pid(node) is None, STOP_TIMEOUT, f"{node.name} (PID {number}) to exit")
    except ClusterError:
        os.kill(number, signal.SIGKILL)
    child = _children.pop(node.name, None)
    if child is not None:
        try:
            child.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def down(cluster: Cluster, keep: bool = False) -> None:
    """Stop every node (all at once), remove the namespaces and, unless `keep`, the base folder."""
    with ThreadPoolExecutor(max_workers=max(1, len(cluster.nodes))) as pool:
        list(pool.map(lambda n: _stop(cluster, n), cluster.nodes))
    if cluster.netns:
        _netns_down(cluster)
    if not keep:
        shutil.rmtree(cluster.base, ignore_errors=True)


def status_lines(cluster: Cluster) -> list[str]:
    lines = []
    for node in cluster.nodes:
        state = "running" if pid(node) is not None and node_ready(cluster, node) else "stopped"
        where = f" (netns {node.netns})" if node.netns else ""
        lines.append(f"{node.name:<28} {state:<8} {node.amqp_url}  {node.management_url}{where}")
    return lines


# --- command line ----------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local-cluster", description="Private RabbitMQ nodes on this machine, in one cluster.")
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE, help=f"folder for all node files (default {DEFAULT_BASE})")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the nodes and join them into one cluster")
    start.add_argument("-n", "--nodes", type=int, default=3, help="how many nodes (default 3)")
    start.add_argument("--prefix", default=DEFAULT_PREFIX,
                       help=f"node name prefix (default {DEFAULT_PREFIX}: {DEFAULT_PREFIX}1@localhost, ...)")
    start.add_argument("--port", type=int, default=DEFAULT_AMQP_PORT,
                       help=f"AMQP port of node 1 (default {DEFAULT_AMQP_PORT}); management +10000, distribution +20000")
    start.add_argument("--netns", action="store_true", help="run each node in its own network namespace (root only)")
    start.add_argument("--subnet", type=int, default=0, help="with --netns: use 10.213.SUBNET.0/24 (default 0)")
    start.add_argument("--net-ticktime", type=int, help="seconds until a cut-off node counts as down (Erlang default 60)")
    start.add_argument("--timeout", type=float, default=BOOT_TIMEOUT, help=f"seconds to wait (default {BOOT_TIMEOUT:g})")
    commands.add_parser("down", help="stop the nodes and remove their data")
    commands.add_parser("status", help="list the nodes with their URLs")
    again = commands.add_parser("start-node", help="boot one node again (after it was killed or stopped)")
    again.add_argument("node", help="its name, short name (mqspec-c2) or number (2)")
    again.add_argument("--timeout", type=float, default=BOOT_TIMEOUT, help=f"seconds to wait (default {BOOT_TIMEOUT:g})")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            cluster = layout(args.base, args.nodes, args.prefix, args.port, netns=args.netns, subnet=args.subnet,
                             net_ticktime=args.net_ticktime)
            took = up(cluster, args.timeout, log=lambda line: print(f"local-cluster: {line}", file=sys.stderr))
            print(f"local-cluster: {len(cluster.nodes)} node(s) running in one cluster after {took:.1f}s", file=sys.stderr)
            for node in cluster.nodes:
                print(node.amqp_url)
        elif args.command == "start-node":
            cluster = load(args.base)
            node = find(cluster, args.node)
            took = start_node(cluster, node, args.timeout)
            print(f"local-cluster: {node.name} running in the cluster after {took:.1f}s", file=sys.stderr)
        elif args.command == "down":
            if not (args.base / STATE_FILE).exists():
                print(f"local-cluster: no cluster in {args.base}", file=sys.stderr)
                return 0
            down(load(args.base))
        else:
            print("\n".join(status_lines(load(args.base))))
    except ClusterError as exc:
        print(f"local-cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
