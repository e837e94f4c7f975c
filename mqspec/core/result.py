"""What a workload run observed, as plain frozen data: the input of expectations and reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mqspec.core import model
from mqspec.core.outcomes import FaultSeries, Outcomes, Window
from mqspec.core.timeseries import TimeSeries


@dataclass(frozen=True)
class ProducerResult:
    """All instances of one producer, summed. `rate` is published per second over the publishing window.

    `span` is that window in seconds (first to last publish); under accounting.MIN_RATE_WINDOW the
    rate is spread over the whole run instead, and the text report shows no rate.
    """

    name: str
    instances: int = 1
    published: int = 0
    confirmed: int = 0
    nacked: int = 0
    returned: int = 0
    unconfirmed: int = 0
    reconnects: int = 0
    republished: int = 0
    blocked: int = 0              # connection.blocked notifications (resource alarms)
    blocked_seconds: float = 0.0  # time spent blocked, all instances together
    rate: float = 0.0
    span: float = 0.0
    throttled: bool = False
    finished: int = 0       # instances that published everything they were to publish (and had it confirmed)
    planned: int | None = None   # messages × instances, when the file gives a message count
    confirm_latency: Latency | None = None   # publish to publisher confirm (basic.ack), with `confirm`


@dataclass(frozen=True)
class ConsumerResult:
    """All instances of one consumer, summed. `lost` is counted on the consumer's queue (see accounting).

    `rate` is received per second from the first to the last delivery (`span` seconds), as for producers.
    """

    name: str
    queue: str
    instances: int = 1
    received: int = 0
    acked: int = 0
    rejected: int = 0
    nacked: int = 0
    redelivered: int = 0
    duplicates: int = 0
    lost: int = 0
    out_of_order: int = 0
    dead_lettered: int = 0
    foreign: int = 0
    reconnects: int = 0
    crashed: int = 0
    discarded: int = 0      # rejected or nacked without requeue, with no dead-letter exchange: the broker dropped them
    rate: float = 0.0
    span: float = 0.0
    per_instance: tuple[int, ...] = ()
    # of the expected messages routed to this consumer's queue, how many this consumer never saw
    missing: int = 0
    expected: int = 0   # expected messages routed to this consumer's queue


@dataclass(frozen=True)
class RpcClientResult:
    name: str
    requests: int = 0
    sent: int = 0
    answered: int = 0
    timeouts: int = 0
    stray: int = 0
    rate: float = 0.0
    span: float = 0.0


@dataclass(frozen=True)
class RpcServerResult:
    name: str
    instances: int = 1
    handled: int = 0


@dataclass(frozen=True)
class Latency:
    """End-to-end latency in milliseconds, from an HdrHistogram of microseconds."""

    p50: float
    p95: float
    p99: float
    max: float
    count: int


@dataclass(frozen=True)
class QueueObservation:
    name: str
    exists: bool
    depth: int | None = None
    consumers: int | None = None
    note: str = ""


@dataclass(frozen=True)
class RouteObservation:
    """Where a probe message published with `mandatory` landed, seen on the live broker."""

    route: model.Route
    landed: tuple[str, ...] = ()
    returned: bool = False
    note: str = ""


@dataclass(frozen=True)
class MissingCounts:
    """An instance whose final counts never reached the parent (its worker hung or died)."""

    kind: str        # producer | consumer | rpc_client | rpc_server
    name: str
    instance: int
    why: str

    @property
    def label(self) -> str:
        kind = self.kind.replace("_", " ").replace("rpc", "RPC")
        return f"{kind} '{self.name}' instance {self.instance}"


@dataclass(frozen=True)
class LeftOver:
    """Messages left in a queue when the workload failed."""

    queue: str
    messages: int


@dataclass(frozen=True)
class RunResult:
    scenario: str
    producers: Mapping[str, ProducerResult] = field(default_factory=dict)
    consumers: Mapping[str, ConsumerResult] = field(default_factory=dict)
    rpc_clients: Mapping[str, RpcClientResult] = field(default_factory=dict)
    rpc_servers: Mapping[str, RpcServerResult] = field(default_factory=dict)
    latency: Latency | None = None
    # messages that should reach some consumer: confirmed (or published, without confirms), minus returned and nacked
    expected: int = 0
    # of those, never consumed by anyone
    lost: int = 0
    # consumed more than once on the same queue, not counting broker redeliveries
    duplicates: int = 0
    queues: Mapping[str, QueueObservation] = field(default_factory=dict)
    routes: tuple[RouteObservation, ...] = ()
    # drained | drain_timeout | duration | timeout | interrupted | terminated | failed | done
    ended: str = "done"
    elapsed: float = 0.0
    unthrottled: bool = False
    # how long consumers let bytes wait in their sockets (core/read_wait.py), described; "" when they read at once
    read_wait: str = ""
    workers: int = 1
    faults: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    # faults of the scenario that never fired (the run ended first), described
    unfired_faults: tuple[str, ...] = ()
    # faults that fired but could not act (or be undone), with why
    failed_faults: tuple[str, ...] = ()
    # instances whose counts are missing: every expectation that depends on one is unknown
    missing: tuple[MissingCounts, ...] = ()
    # the error that ended the workload early (access refused, a broker gone), "" when none
    error: str = ""
    error_code: int = 0
    # messages left in queues after that error
    left_over: tuple[LeftOver, ...] = ()
    # the fate of every message (None: nothing was published), silences of consumed queues, seconds around faults
    outcomes: Outcomes | None = None
    unavailable: tuple[Window, ...] = ()
    fault_series: tuple[FaultSeries, ...] = ()
    # second by second: rates, latency percentiles, queue depths, fault events
    timeseries: TimeSeries = field(default_factory=TimeSeries)

    @property
    def interrupted(self) -> bool:
        """Ctrl-C or SIGTERM: the counts are partial and the expectations are not checked."""
        return self.ended in ("interrupted", "terminated")


@dataclass
class Live:
    """Aggregated live counters while a run is in progress (for the progress display)."""

    elapsed: float = 0.0
    phase: str = "connecting"
    producers: dict[str, dict[str, int]] = field(default_factory=dict)
    consumers: dict[str, dict[str, int]] = field(default_factory=dict)
    rpc: dict[str, dict[str, int]] = field(default_factory=dict)
    # expectations met, failed and still open so far (core.provisional), filled in by the runner
    expectations: dict[str, int] = field(default_factory=dict)
