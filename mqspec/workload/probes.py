"""After the workload: queue depths, and routes checked live with probe messages.

Depth is the ready count from a passive queue.declare, read once the workload's consumers have
closed (so nothing is unacknowledged by mqspec); the management API's counts lag by up to its
statistics interval. A missing queue is reported as such.

A route check publishes one probe message with `mandatory` and publisher confirms to the route's
exchange, key and headers, and compares every queue's ready count before and after: the queues
whose count went up are where the message landed; a basic.return means it was unroutable. Probes
carry an `x-mqspec-probe` header and are taken out again afterwards (basic.get from the queue,
other messages are given back with a requeue). When the workload has consumers, route checks run
once they have subscribed and before any producer starts (engine.py), while private and auto_delete
queues exist; a consumer that takes a probe reports it (so the queue it reads is known exactly) and
does not count it. Without consumers they run after the workload and after the depth readings, so
they never disturb what was counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from typing import Any

import pika
import pika.exceptions as pe
from pika.adapters.blocking_connection import BlockingChannel

from mqspec.broker import amqp
from mqspec.broker.management import Management, q
from mqspec.core import marks, model
from mqspec.core.result import QueueObservation, RouteObservation
from mqspec.errors import MqspecError

CLEANUP_LIMIT = 10_000


class _Channel:
    """A blocking channel that survives channel-level errors (a missing queue closes the channel)."""

    def __init__(self, settings: model.BrokerSettings, name: str) -> None:
        self.connection = amqp.connect(settings, name)
        self.channel: BlockingChannel | None = None

    def get(self) -> BlockingChannel:
        if self.channel is None or not self.channel.is_open:
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()
        return self.channel

    def stat(self, queue: str) -> tuple[int, int] | None:
        try:
            frame = self.get().queue_declare(queue, passive=True)
        except pe.ChannelClosedByBroker:
            self.channel = None
            return None
        return int(frame.method.message_count), int(frame.method.consumer_count)

    def close(self) -> None:
        if self.connection.is_open:
            with contextlib.suppress(pe.AMQPError, OSError):
                self.connection.close()


def observe_queues(settings: model.BrokerSettings, names: list[str]) -> dict[str, QueueObservation]:
    if not names:
        return {}
    channel = _Channel(settings, "mqspec:queue-depths")
    try:
        observed = {}
        for name in dict.fromkeys(names):
            stat = channel.stat(name)
            observed[name] = (QueueObservation(name, False, None, None, "queue does not exist") if stat is None
                              else QueueObservation(name, True, stat[0], stat[1]))
        return observed
    except (pe.AMQPError, OSError) as exc:
        raise amqp.translate(exc, settings.url, "read queue depths") from None
    finally:
        channel.close()


def candidate_queues(settings: model.BrokerSettings, topology: model.Topology, routes: tuple[model.Route, ...]) -> list[str]:
    """Every queue of the vhost a probe could reach (from the management API, else the file)."""
    vhost = amqp.vhost_of(settings.url)
    names = [queue.name for queue in topology.queues if not queue.exclusive]
    names += [name for route in routes for name in route.to]
    try:
        with Management(settings) as management:
            listed = management.get(f"/queues/{q(vhost)}?columns=name,exclusive,owner_pid_details",
                                    f"queues of vhost '{vhost}'") or []
        names += [entry["name"] for entry in listed if not entry.get("exclusive")]
    except MqspecError:
        pass
    return list(dict.fromkeys(names))


def observe_routes(settings: model.BrokerSettings, topology: model.Topology,
                   routes: tuple[model.Route, ...]) -> tuple[RouteObservation, ...]:
    return tuple(observation for observation, _probe in probe_routes(settings, topology, routes))


def probe_routes(settings: model.BrokerSettings, topology: model.Topology, routes: tuple[model.Route, ...],
                 own: frozenset[str] = frozenset()) -> tuple[tuple[RouteObservation, str], ...]:
    """Each route's observation by queue counts, with its probe's id. Consumers of this run, on the queues in
    `own`, report the probes they take (with_consumed), so those queues need no note."""
    if not routes:
        return ()
    queues = candidate_queues(settings, topology, routes)
    channel = _Channel(settings, "mqspec:route-probes")
    try:
        before = _stats(channel, queues)
        observations = []
        for route in routes:
            probe = uuid.uuid4().hex
            observation, before = _probe(channel, queues, before, route, probe, own)
            observations.append((observation, probe))
        _remove_probes(channel, [name for o, _p in observations for name in o.landed])
        return tuple(observations)
    except (pe.AMQPError, OSError) as exc:
        raise amqp.translate(exc, settings.url, "check routes") from None
    finally:
        channel.close()


def with_consumed(observation: RouteObservation, consumed: set[str]) -> RouteObservation:
    """A probe observation completed with the queues whose (this run's) consumers took the probe."""
    if not consumed:
        return observation
    return dataclasses.replace(observation, landed=tuple(sorted(set(observation.landed) | consumed)), returned=False)


def _stats(channel: _Channel, queues: list[str]) -> dict[str, tuple[int, int]]:
    found = {name: channel.stat(name) for name in queues}
    return {name: stat for name, stat in found.items() if stat is not None}


def _probe(channel: _Channel, queues: list[str], before: dict[str, tuple[int, int]],
           route: model.Route, probe: str, own: frozenset[str] = frozenset()) -> tuple[RouteObservation, dict[str, tuple[int, int]]]:
    headers: dict[str, Any] = {**route.headers, marks.PROBE_HEADER: probe}
    returned = False
    note = ""
    try:
        channel.get().basic_publish(route.exchange, route.key, b"mqspec route probe",
                                    pika.BasicProperties(headers=headers), mandatory=True)
    except pe.UnroutableError:
        returned = True
    except pe.NackError:
        note = "the broker nacked the probe"
    except pe.ChannelClosedByBroker as exc:
        channel.channel = None
        note = f"error: {exc.reply_code} {exc.reply_text}"
    after = _stats(channel, queues)
    landed = tuple(sorted(name for name, (count, _c) in after.items() if count > before.get(name, (0, 0))[0]))
    busy = [name for name in landed if after[name][1] and name not in own]
    watched = [name for name in route.to if name in after and after[name][1] and name not in landed and name not in own]
    if watched:
        note = "; ".join(filter(None, [note, f"queue(s) {', '.join(watched)} have consumers that may have taken the probe"]))
    if busy:
        note = "; ".join(filter(None, [note, f"queue(s) {', '.join(busy)} have other consumers"]))
    return RouteObservation(route, landed, returned, note), after


def _remove_probes(channel: _Channel, queues: list[str]) -> None:
    """Take the probes back out; anything else fetched on the way goes back with a requeue."""
    for name in dict.fromkeys(queues):
        stat = channel.stat(name)
        if stat is None or stat[0] > CLEANUP_LIMIT:
            continue
        ch = channel.get()
        held = False
        for _ in range(stat[0]):
            method, properties, _body = ch.basic_get(name, auto_ack=False)
            if method is None:
                break
            if properties.headers and marks.PROBE_HEADER in properties.headers:
                ch.basic_ack(method.delivery_tag)
            else:
                held = True
        if held:
            ch.basic_nack(0, multiple=True, requeue=True)
