"""The scenario as frozen values: what the file means, with defaults applied and units resolved.

Equality of Exchange, Queue and Binding compares exactly what RabbitMQ treats as equivalent
(kombu's entity model, without the I/O). `where` fields hold the JSON path of the entry in the
file, for messages; they never take part in comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from mqspec.core.shapes import ProcessingTime as ProcessingTime
from mqspec.core.shapes import RateProfile, SizeDistribution
from mqspec.core.vocabulary import DEFAULT_EXCHANGE as DEFAULT_EXCHANGE
from mqspec.core.vocabulary import QUEUE_ARGUMENT_NAMES as QUEUE_ARGUMENT_NAMES

QueueType = Literal["classic", "quorum", "stream"]
DestinationType = Literal["queue", "exchange"]
Protocol = Literal["amqp", "stream"]          # AMQP 0-9-1 (pika), or the stream protocol (rstream, port 5552)
OffsetKind = Literal["first", "last", "next", "offset", "timestamp"]



def _frozen_args() -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str = "direct"
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: Mapping[str, Any] = field(default_factory=_frozen_args)
    external: bool = field(default=False, compare=False)
    where: str = field(default="", compare=False)

    @property
    def alternate_exchange(self) -> str | None:
        value = self.arguments.get("alternate-exchange")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Queue:
    name: str
    type: QueueType = "classic"
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    arguments: Mapping[str, Any] = field(default_factory=_frozen_args)
    external: bool = field(default=False, compare=False)
    where: str = field(default="", compare=False)
    # a private queue: declared and bound by this consumer's own connection, never by apply
    owner: str | None = field(default=None, compare=False)
    server_named: bool = field(default=False, compare=False)   # declared with name '' (amq.gen-*); `name` is the owner's

    @property
    def private(self) -> bool:
        return self.owner is not None

    @property
    def dead_letter_exchange(self) -> str | None:
        value = self.arguments.get("x-dead-letter-exchange")
        return value if isinstance(value, str) else None

    @property
    def dead_letter_routing_key(self) -> str | None:
        value = self.arguments.get("x-dead-letter-routing-key")
        return value if isinstance(value, str) else None

    @property
    def has_limit(self) -> bool:
        """True when messages cannot pile up forever: a TTL, a length limit or an expiry."""
        limits = ("x-message-ttl", "x-max-length", "x-max-length-bytes", "x-expires", "x-max-age")
        return any(key in self.arguments for key in limits)

    def broker_arguments(self) -> dict[str, Any]:
        """The x-arguments as declared, including x-queue-type for non-classic queues."""
        args = dict(self.arguments)
        if self.type != "classic":
            args["x-queue-type"] = self.type
        return args


@dataclass(frozen=True)
class Binding:
    """One binding: source exchange to a queue or an exchange, with one routing key."""

    source: str
    destination: str
    destination_type: DestinationType = "queue"
    routing_key: str = ""
    arguments: Mapping[str, Any] = field(default_factory=_frozen_args)
    where: str = field(default="", compare=False)

    def key(self) -> tuple[str, str, str, str, str]:
        """Identity for diffing: the broker keys bindings by these and the arguments."""
        return (self.source, self.destination_type, self.destination, self.routing_key, _canonical(self.arguments))


@dataclass(frozen=True)
class SuperStream:
    """A partitioned stream, as `rabbitmq-streams add_super_stream` declares it: a direct exchange `name`
    (x-super-stream: true) and one stream per partition, bound with its binding key and x-stream-partition-order."""

    name: str
    partitions: tuple[str, ...]          # the partition streams, in partition order
    binding_keys: tuple[str, ...]        # one per partition
    routing: Literal["hash", "key"] = "hash"
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class StreamOffset:
    """Where a stream consumer starts: first, last, next, an offset, or a timestamp (absolute, or seconds ago)."""

    kind: OffsetKind = "next"
    offset: int = 0                       # kind "offset"
    timestamp_ms: int | None = None       # kind "timestamp": milliseconds since the epoch
    ago: float | None = None              # kind "timestamp": this many seconds before the consumer subscribes


@dataclass(frozen=True)
class VHost:
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    default_queue_type: str | None = None
    limits: Mapping[str, int] = field(default_factory=dict)
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class User:
    name: str
    password: str | None = field(default=None, repr=False)
    tags: tuple[str, ...] = ()
    where: str = field(default="", compare=False)
    # The broker's stored hash, as a definitions file carries it; used when there is no password.
    password_hash: str | None = field(default=None, repr=False)
    hashing_algorithm: str | None = None
    # max_connections, max_channels (-1: no limit)
    limits: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Parameter:
    """A runtime parameter of the vhost: a federation upstream or upstream set, a dynamic shovel, or another
    component's; `value` is exactly what the broker stores."""

    component: str
    name: str
    value: Any
    external: bool = field(default=False, compare=False)
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class GlobalParameter:
    """A cluster-wide parameter such as cluster_name."""

    name: str
    value: Any
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class Permission:
    user: str
    vhost: str
    configure: str = ""
    write: str = ""
    read: str = ""
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class TopicPermission:
    user: str
    vhost: str
    exchange: str
    write: str = ".*"
    read: str = ".*"
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class Policy:
    name: str
    pattern: str
    definition: Mapping[str, Any]
    apply_to: str = "all"
    priority: int = 0
    operator: bool = False
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class Topology:
    """Everything declared in the target vhost (and the vhosts and users around it)."""

    vhost: str = "/"
    vhosts: tuple[VHost, ...] = ()
    users: tuple[User, ...] = ()
    permissions: tuple[Permission, ...] = ()
    topic_permissions: tuple[TopicPermission, ...] = ()
    policies: tuple[Policy, ...] = ()
    exchanges: tuple[Exchange, ...] = ()
    queues: tuple[Queue, ...] = ()
    bindings: tuple[Binding, ...] = ()
    parameters: tuple[Parameter, ...] = ()
    global_parameters: tuple[GlobalParameter, ...] = ()
    super_streams: tuple[SuperStream, ...] = ()   # their exchanges, streams and bindings are in the tuples above

    def super_stream(self, name: str) -> SuperStream | None:
        return next((s for s in self.super_streams if s.name == name), None)

    def exchange(self, name: str) -> Exchange | None:
        return next((e for e in self.exchanges if e.name == name), None)

    def queue(self, name: str) -> Queue | None:
        return next((q for q in self.queues if q.name == name), None)

    def private_queues(self) -> frozenset[str]:
        """Queues a consumer's connection declares and binds (apply leaves them and their bindings alone)."""
        return frozenset(q.name for q in self.queues if q.owner is not None)

    def bindings_to(self, queue: str) -> tuple[Binding, ...]:
        return tuple(b for b in self.bindings if b.destination_type == "queue" and b.destination == queue)

    def public(self) -> Topology:
        """What apply, plan, destroy and export handle: all but the private queues, and no binding to one or to an
        exclusive queue (a connection that declares an exclusive queue binds it, if anything does)."""
        private = self.private_queues()
        unowned = {q.name for q in self.queues if q.exclusive and not q.external} | private
        if not unowned:
            return self
        return replace(self, queues=tuple(q for q in self.queues if q.name not in private),
                       bindings=tuple(b for b in self.bindings
                                      if not (b.destination_type == "queue" and b.destination in unowned)))


@dataclass(frozen=True)
class TlsSettings:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)
    server_name: str | None = None
    insecure: bool = False


@dataclass(frozen=True)
class Node:
    """One cluster node as the scenario names it under `broker.nodes`, and how faults act on it.

    `rabbitmq_node` is the Erlang node name (rabbit@host); when left out it is read from the
    node's management API before the run. `ctl` is the rabbitmqctl command (with any flags, e.g.
    --longnames); `stop`/`start`/`kill` replace the default commands; `netns` is the network
    namespace the node runs in (partition, delay and loss act on its link), `interface` the
    root-side end of its link (default `<netns>-h`, as scripts/local-cluster names it).
    """

    name: str
    url: str
    management_url: str | None = None
    rabbitmq_node: str | None = None
    ctl: tuple[str, ...] = ("rabbitmqctl",)
    stop: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    kill: tuple[str, ...] = ()
    netns: str | None = None
    interface: str | None = None
    where: str = field(default="", compare=False)

    @property
    def link(self) -> str | None:
        if self.interface:
            return self.interface
        return f"{self.netns[:13]}-h" if self.netns else None


@dataclass(frozen=True)
class BrokerSettings:
    urls: tuple[str, ...] = ("amqp://guest:guest@localhost:5672/%2F",)
    management_url: str | None = None
    heartbeat: float | None = None
    connect_timeout: float = 5.0
    connection_name: str | None = None
    tls: TlsSettings = field(default_factory=TlsSettings)
    restart_command: tuple[tuple[str, ...], ...] = (("rabbitmqctl", "stop_app"), ("rabbitmqctl", "start_app"))
    nodes: tuple[Node, ...] = ()

    @property
    def url(self) -> str:
        return self.urls[0]

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)


@dataclass(frozen=True)
class Producer:
    name: str
    exchange: str = DEFAULT_EXCHANGE
    queue: str | None = None
    routing_keys: tuple[str, ...] = ("",)
    key_order: Literal["round_robin", "random"] = "round_robin"
    messages: int | None = None
    duration: float | None = None
    rate: float | None = None
    size: int = 100
    body: bytes | None = None
    body_template: str | None = None
    content_type: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    priority: int | None = None
    expiration_ms: int | None = None
    persistent: bool = False
    mandatory: bool = False
    confirm: int | None = None
    instances: int = 1
    start_after: float = 0.0
    where: str = field(default="", compare=False)
    protocol: Protocol = "amqp"
    filter_value: str | None = None       # x-stream-filter-value (RabbitMQ 3.13+)
    super_stream: str | None = None       # protocol: stream: route each message to a partition of this super stream
    rate_profile: RateProfile | None = None     # `rate` as a list of steps, ramps and bursts
    sizes: SizeDistribution | None = None       # `size` as a range or a weighted list; None: every body is `size`

    @property
    def throttled(self) -> bool:
        return self.rate is not None or self.rate_profile is not None

    def schedule(self) -> RateProfile | None:
        """When each message is due; None: as fast as the broker takes them."""
        if self.rate_profile is not None:
            return self.rate_profile
        return RateProfile.fixed(self.rate) if self.rate is not None else None

    def size_distribution(self) -> SizeDistribution:
        return self.sizes if self.sizes is not None else SizeDistribution.fixed(self.size)


@dataclass(frozen=True)
class Consumer:
    name: str
    queue: str
    instances: int = 1
    prefetch: int | None = None
    ack: Literal["auto", "manual"] = "manual"
    multi_ack: int = 1
    processing_time: ProcessingTime = field(default_factory=ProcessingTime)
    reject: float = 0.0
    nack: float = 0.0
    requeue: bool = False
    crash_after: int | None = None
    exclusive: bool = False
    priority: int | None = None
    messages: int | None = None
    idle_timeout: float | None = None
    where: str = field(default="", compare=False)
    protocol: Protocol = "amqp"
    offset: StreamOffset | None = None    # streams only: where to start reading (x-stream-offset); None: next
    filter: tuple[str, ...] = ()          # x-stream-filter (RabbitMQ 3.13+)
    single_active_consumer: bool = False  # streams, protocol: stream (RabbitMQ 3.11+): one reader of the group at a time


@dataclass(frozen=True)
class RpcServer:
    name: str
    queue: str
    prefetch: int = 1
    handler: Literal["echo", "fib"] = "echo"
    processing_time: ProcessingTime = field(default_factory=ProcessingTime)
    instances: int = 1
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class RpcClient:
    name: str
    queue: str
    requests: int = 10
    concurrency: int = 1
    timeout: float = 5.0
    body: str | None = None
    direct_reply_to: bool = False
    where: str = field(default="", compare=False)


FaultAction = Literal["close_connections", "kill_consumer", "restart_broker", "stop_node", "start_node", "kill_node",
                      "partition", "delay", "loss", "memory_alarm", "disk_alarm", "command"]
NODE_FAULTS = ("stop_node", "start_node", "kill_node", "partition", "delay", "loss", "memory_alarm", "disk_alarm")
NETNS_FAULTS = ("partition", "delay", "loss")


@dataclass(frozen=True)
class Fault:
    action: FaultAction
    at: float | None = None
    after_messages: int | None = None
    consumer: str | None = None
    where: str = field(default="", compare=False)
    node: str | None = None                       # the node it acts on, as broker.nodes names it
    groups: tuple[tuple[str, ...], ...] = ()      # partition: split into these groups of nodes
    lasts: float | None = None                    # `for`: undone after this many seconds
    delay: float | None = None                    # delay: seconds each packet in and out of the node is held
    loss: float | None = None                     # loss: percent of packets dropped on the node's link
    command: tuple[str, ...] = ()
    undo: tuple[str, ...] = ()

    def nodes(self) -> tuple[str, ...]:
        """Every node this fault names."""
        named = (self.node,) if self.node else ()
        return tuple(dict.fromkeys((*named, *(n for g in self.groups for n in g))))


@dataclass(frozen=True)
class Workload:
    producers: tuple[Producer, ...] = ()
    consumers: tuple[Consumer, ...] = ()
    rpc_servers: tuple[RpcServer, ...] = ()
    rpc_clients: tuple[RpcClient, ...] = ()
    faults: tuple[Fault, ...] = ()
    duration: float | None = None
    timeout: float = 60.0
    drain_timeout: float = 10.0
    workers: int | None = None  # None: one process per instance, up to the CPU count
    timeout_ok: bool = False    # reaching `timeout` with unfinished producers does not fail the run
    engine: str = "local"       # local processes, or "dask://HOST:PORT": tasks on a Dask cluster
    read_wait: float | Literal["auto"] = "auto"  # seconds a client's bytes may wait in its socket (core/read_wait.py)

    @property
    def empty(self) -> bool:
        return not (self.producers or self.consumers or self.rpc_servers or self.rpc_clients)


@dataclass(frozen=True)
class Bounds:
    """An exact count (low == high) or an inclusive range; None means unbounded."""

    low: int | None = None
    high: int | None = None

    def holds(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def describe(self) -> str:
        if self.low == self.high and self.low is not None:
            return str(self.low)
        if self.high is None:
            return f">= {self.low}"
        if self.low is None:
            return f"<= {self.high}"
        return f"{self.low}..{self.high}"


@dataclass(frozen=True)
class Route:
    exchange: str
    key: str
    headers: Mapping[str, Any]
    to: tuple[str, ...]
    where: str = field(default="", compare=False)


SubjectKind = Literal["consumer", "producer", "queue", "rpc", "outcomes"]


@dataclass(frozen=True)
class CountExpectation:
    """A measure of one subject within bounds, e.g. consumer 'orange-reader' received 300."""

    subject_kind: SubjectKind
    subject: str
    measure: str
    bounds: Bounds
    description: str = ""
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class RpcAnswered:
    """RPC client got replies for all requests (bounds None) or a count within bounds."""

    client: str
    bounds: Bounds | None = None
    description: str = ""
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class NoLoss:
    allow_discarded: bool = False   # messages a consumer rejected and the broker dropped (no dead-letter exchange)
    description: str = ""
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class NoDuplicates:
    description: str = ""
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class Balanced:
    consumers: tuple[str, ...]
    tolerance: int = 1
    description: str = ""
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class EveryMessage:
    """Each listed consumer received every message published (fanout)."""

    consumers: tuple[str, ...]
    description: str = ""
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class LatencyBound:
    """Upper bounds in seconds, keyed by p50, p95, p99, max: of end-to-end latency, or of a producer's
    publish-to-confirm latency when `producer` is set."""

    bounds: Mapping[str, float]
    description: str = ""
    where: str = field(default="", compare=False)
    producer: str | None = None


@dataclass(frozen=True)
class Routes:
    routes: tuple[Route, ...]
    description: str = ""
    where: str = field(default="", compare=False)


Expectation = CountExpectation | RpcAnswered | NoLoss | NoDuplicates | Balanced | EveryMessage | LatencyBound | Routes

CONSUMER_MEASURES = ("received", "acked", "redelivered", "duplicates", "lost", "dead_lettered", "foreign", "reconnects",
                     "discarded")
PRODUCER_MEASURES = ("published", "confirmed", "nacked", "returned", "reconnects", "blocked", "blocked_seconds")
# the fate of every message, across the whole run (mqspec/core/outcomes.py); `run: outcomes` in an expectation
OUTCOME_MEASURES = ("confirmed_consumed", "confirmed_lost", "unconfirmed_consumed", "unconfirmed_lost", "redelivered",
                    "duplicated", "unavailable_seconds")
QUEUE_MEASURES = ("depth", "received", "dead_lettered", "unavailable_seconds")
RPC_MEASURES = ("answered", "timeouts")


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str = "<memory>"
    description: str = ""
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    topology: Topology = field(default_factory=Topology)
    workload: Workload = field(default_factory=Workload)
    expectations: tuple[Expectation, ...] = ()
    # path inside the document -> (line, col); for messages only
    marks: Mapping[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)
    literal_passwords: tuple[str, ...] = field(default=(), compare=False)
    # One topology per vhost the file declares, the default vhost's (== topology, which also holds the
    # cluster-wide entities) first; empty for a scenario built in code: then it is just (topology,).
    topologies: tuple[Topology, ...] = ()
    # The vhosts the file declares (named by an entity or under topology.vhosts); --prune stays inside them.
    # Empty: only the default vhost.
    scope: tuple[str, ...] = ()

    def every_vhost(self) -> tuple[Topology, ...]:
        return self.topologies or (self.topology,)

    def prunes(self, vhost: str) -> bool:
        return vhost in self.scope if self.scope else vhost == self.topology.vhost


def fill_key(template: str, producer: str, seq: int, instance: int) -> str:
    """A routing key with its placeholders filled in: 'order.{seq}' -> 'order.7' ({seq}, {producer}, {instance})."""
    return template.replace("{seq}", str(seq)).replace("{producer}", producer).replace("{instance}", str(instance))


def fill_body(template: str, producer: str, seq: int) -> bytes:
    """A body template filled in ({seq}, {producer}), as UTF-8."""
    return template.replace("{seq}", str(seq)).replace("{producer}", producer).encode("utf-8")


def _canonical(value: Mapping[str, Any]) -> str:
    if not value:
        return "{}"  # most bindings: no arguments, and 12,000 of them are keyed in a plan
    import json

    return json.dumps(value, sort_keys=True, separators=(",", ":"))
