"""The live figures of a run as Prometheus metrics (`mqspec apply --metrics [HOST]:PORT`).

Served by the official prometheus-client's HTTP server on a thread of the parent process, from a
registry of this run only. Each scrape reads the latest figures the engine handed to this observer
(the same ones the live progress shows), so serving costs the workload nothing between scrapes.

Names follow the Prometheus conventions: a `mqspec_` prefix, base units (seconds), `_total` for
counters, the unit as suffix (`_messages`, `_seconds`):

    mqspec_messages_published_total{producer}      counter  messages published (first attempts)
    mqspec_messages_confirmed_total{producer}      counter  publisher confirms (ack)
    mqspec_messages_nacked_total{producer}         counter  publisher confirms (nack)
    mqspec_messages_returned_total{producer}       counter  returned as unroutable
    mqspec_messages_consumed_total{consumer}       counter  deliveries received
    mqspec_messages_acked_total{consumer}          counter  deliveries acknowledged
    mqspec_consumer_unacked_messages{consumer}     gauge    held by the consumer, not yet acknowledged
    mqspec_rpc_requests_sent_total{client}         counter
    mqspec_rpc_replies_total{client}               counter  answered requests
    mqspec_end_to_end_latency_seconds{quantile}    gauge    publish-to-delivery latency of the
                                                            deliveries of the last second (quantile
                                                            0.5, 0.95, 0.99 and 1 for the maximum)
    mqspec_queue_depth_messages{queue}             gauge    ready messages, sampled once a second
    mqspec_run_elapsed_seconds                     gauge    since the common start
    mqspec_expectations{state}                     gauge    expectations met, failed or still open
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mqspec.core.result import Live
from mqspec.core.timeseries import Point
from mqspec.errors import InvalidInput, OperationFailed

DEFAULT_HOST = "127.0.0.1"

_PRODUCER_COUNTERS = (("published", "mqspec_messages_published", "Messages published (first attempts)."),
                      ("confirmed", "mqspec_messages_confirmed", "Publisher confirms received (ack)."),
                      ("nacked", "mqspec_messages_nacked", "Publisher confirms received (nack)."),
                      ("returned", "mqspec_messages_returned", "Messages returned as unroutable."))
_CONSUMER_COUNTERS = (("received", "mqspec_messages_consumed", "Deliveries received by the consumer."),
                      ("acked", "mqspec_messages_acked", "Deliveries acknowledged by the consumer."))
_QUANTILES = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"), ("1", "max"))


def parse_address(text: str) -> tuple[str, int]:
    """'[HOST]:PORT' or 'PORT' -> (host, port); the host defaults to loopback, so nothing is exposed by accident."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--metrics expects [HOST]:PORT, e.g. :9464 or 0.0.0.0:9464, got '{text}'")
    return host, int(port)


@dataclass
class Figures:
    """The latest figures of the run, replaced by the engine's observer calls, read by scrapes."""

    live: Live = field(default_factory=Live)
    point: Point | None = None
    expectations: dict[str, int] = field(default_factory=dict)


class _Collector(Collector):
    def __init__(self, figures: Figures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        live, point = self.figures.live, self.figures.point
        for measure, name, documentation in _PRODUCER_COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=["producer"])
            for producer, row in live.producers.items():
                family.add_metric([producer], row.get(measure, 0))
            yield family
        for measure, name, documentation in _CONSUMER_COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=["consumer"])
            for consumer, row in live.consumers.items():
                family.add_metric([consumer], row.get(measure, 0))
            yield family
        held = GaugeMetricFamily("mqspec_consumer_unacked_messages", "Deliveries held by the consumer, not yet acknowledged.",
                                 labels=["consumer"])
        for consumer, row in live.consumers.items():
            held.add_metric([consumer], row.get("held", 0))
        yield held
        yield from self._rpc(live)
        latency = GaugeMetricFamily("mqspec_end_to_end_latency_seconds",
                                    "Publish-to-delivery latency of the last second's deliveries.", labels=["quantile"])
        if point is not None and point.latency is not None:
            for quantile, attribute in _QUANTILES:
                latency.add_metric([quantile], getattr(point.latency, attribute) / 1000)
        yield latency
        depth = GaugeMetricFamily("mqspec_queue_depth_messages", "Ready messages in the queue, sampled once a second.",
                                  labels=["queue"])
        for queue, value in (point.queues.items() if point is not None else ()):
            if value is not None:
                depth.add_metric([queue], value)
        yield depth
        yield GaugeMetricFamily("mqspec_run_elapsed_seconds", "Seconds since the workload's common start.", value=live.elapsed)
        states = GaugeMetricFamily("mqspec_expectations", "Expectations met, failed or still open.", labels=["state"])
        for state, count in self.figures.expectations.items():
            states.add_metric([state], count)
        yield states

    def _rpc(self, live: Live) -> Iterator[Metric]:
        sent = CounterMetricFamily("mqspec_rpc_requests_sent", "RPC requests sent.", labels=["client"])
        answered = CounterMetricFamily("mqspec_rpc_replies", "RPC requests answered.", labels=["client"])
        for client, row in live.rpc.items():
            sent.add_metric([client], row.get("sent", 0))
            answered.add_metric([client], row.get("answered", 0))
        yield sent
        yield answered


class MetricsServer:
    """An Observer that serves the run's figures over HTTP while it goes; a context manager."""

    def __init__(self, address: str) -> None:
        self.host, self.port = parse_address(address)
        self.figures = Figures()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self.figures))
        self.server: WSGIServer | None = None

    def __enter__(self) -> MetricsServer:
        try:
            self.server, _thread = start_http_server(self.port, self.host, self.registry)
        except OSError as exc:
            raise OperationFailed(f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def progress(self, live: Live) -> None:
        self.figures.live = live

    def second(self, point: Point) -> None:
        self.figures.point = point

    def note(self, text: str) -> None:
        pass

    def verdicts(self, counts: dict[str, int]) -> None:
        self.figures.expectations = counts
