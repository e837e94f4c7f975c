"""RabbitMQ's own rules, checked on the scenario before any broker is touched."""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from types import MappingProxyType
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from mqspec.core import model, shapes
from mqspec.core.document import Document, json_path
from mqspec.core.inputs import input_path
from mqspec.core.problems import Problem
from mqspec.core.vocabulary import BUILTIN_EXCHANGES, DIRECT_REPLY_TO, RESERVED_PREFIX, is_reserved

MAX_NAME_BYTES = 255
MAX_TIMER_MS = 4294967295  # 2^32 - 1: the largest TTL or expiry a 32-bit millisecond timer holds
READ_WAIT_MOST = 0.1          # seconds: the longest workload.read_wait
_LAST_SEGMENT = re.compile(r"(\.[^.\[]+|\[[^\]]*\])$")
_QUOTED_KEY = re.compile(r"\['([^'\]]*)'\]")

# Types RabbitMQ checks x-arguments against at declare time ("expected integer, got longstr").
_ARGUMENT_TYPES: Mapping[str, tuple[str, type]] = MappingProxyType({
    **{arg: ("a whole number", int) for arg in ("x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes",
                                                "x-max-priority", "x-delivery-limit")},
    "x-single-active-consumer": ("true or false", bool),
    **{arg: ("a string", str) for arg in ("x-overflow", "x-dead-letter-exchange", "x-dead-letter-routing-key",
                                          "x-queue-mode", "x-queue-type")},
})
# Queue arguments each type refuses ("invalid arg 'x-max-length' ... of queue type rabbit_stream_queue").
_REFUSED_BY_TYPE = MappingProxyType({
    "stream": ("x-max-length", "x-queue-mode", "x-expires", "x-dead-letter-exchange", "x-dead-letter-routing-key",
               "x-single-active-consumer", "x-message-ttl"),
    "quorum": ("x-queue-mode",),
})
_FRIENDLY = MappingProxyType({**{arg: name for name, arg in model.QUEUE_ARGUMENT_NAMES.items()},
                              "x-dead-letter-exchange": "dead_letter.exchange",
                              "x-dead-letter-routing-key": "dead_letter.routing_key"})

_OVERFLOW_BY_TYPE = MappingProxyType({
    "classic": {"drop-head", "reject-publish", "reject-publish-dlx"},
    "quorum": {"drop-head", "reject-publish"},
    "stream": set(),
})


def locate(scenario: model.Scenario, where: str) -> tuple[int, int]:
    """The line and column of a JSON path, or of its nearest ancestor that was marked."""
    path = where
    while path:
        mark = scenario.marks.get(path) or scenario.marks.get(_QUOTED_KEY.sub(r".\1", path))
        if mark is not None:
            return mark
        trimmed = _LAST_SEGMENT.sub("", path)
        if trimmed == path:
            break
        path = trimmed
    return (1, 1)


def problem(scenario: model.Scenario, where: str, message: str, hint: str = "", severity: str = "error") -> Problem:
    line, col = locate(scenario, where)
    return Problem(scenario.path, line, col, where, message, hint, severity)


def suggest(name: str, candidates: Iterable[str]) -> str:
    return Suggester(candidates).suggest(name)


class Suggester:
    """'; did you mean ...?' for a misspelt name, in time that does not grow with the number of names.

    difflib compares with every candidate; with thousands of names and thousands of misspellings that is
    minutes. A typo mostly keeps the start or the end of a name, so only the names next to it in sorted
    order, and next to it in sorted order of reversed names, are compared: at most 2 * NEIGHBOURS. After
    BUDGET suggestions no more are looked for: a file with that many misspellings needs no more hints.
    """

    NEIGHBOURS = 16
    BUDGET = 500

    def __init__(self, candidates: Iterable[str]) -> None:
        self.candidates = candidates
        self.left = self.BUDGET

    @cached_property
    def names(self) -> list[str]:
        return sorted(set(self.candidates))

    @cached_property
    def reversed(self) -> list[str]:
        return sorted(name[::-1] for name in self.names)

    def suggest(self, name: str) -> str:
        if self.left <= 0:
            return ""
        self.left -= 1
        close = difflib.get_close_matches(name, self._near(name), n=1, cutoff=0.6)
        return f"; did you mean '{close[0]}'?" if close else ""

    def _near(self, name: str) -> list[str]:
        if len(self.names) <= 2 * self.NEIGHBOURS:
            return self.names
        found = set(_around(self.names, name, self.NEIGHBOURS))
        found |= {text[::-1] for text in _around(self.reversed, name[::-1], self.NEIGHBOURS)}
        return sorted(found)


def _around(ordered: list[str], name: str, count: int) -> list[str]:
    at = bisect.bisect_left(ordered, name)
    return ordered[max(0, at - count // 2): at + count // 2]


def check(scenario: model.Scenario, doc: Document | None = None) -> list[Problem]:
    checks = (_names, _queues, _exchanges, _bindings, _workload, _expectations)
    found = [p for run in checks for p in run(scenario)]
    if doc is not None:
        raw_checks = (_expectation_shapes, _raw_queues, _raw_bindings, _raw_broker, _raw_producers, _tls_files, _raw_patterns)
        found += [p for raw in raw_checks for p in raw(scenario, doc)]
    # the copies of a `count: N` entry share its position: one message for what they all get wrong
    return sorted(dict.fromkeys(found), key=lambda p: (p.line, p.col))


class _Known:
    """Names a reference may point at: declared here, external, or built in."""

    def __init__(self, scenario: model.Scenario) -> None:
        self.exchanges = {e.name for e in scenario.topology.exchanges} | set(BUILTIN_EXCHANGES)
        self.queues = {q.name for q in scenario.topology.queues}
        self.declared_exchanges = [e.name for e in scenario.topology.exchanges]
        self._suggesters = {"exchange": Suggester(self.declared_exchanges), "queue": Suggester(self.queues)}

    def _suggest(self, kind: str, name: str) -> str:
        return self._suggesters[kind].suggest(name)

    def exchange_problem(self, scenario: model.Scenario, name: str, where: str, role: str) -> Problem | None:
        if name in self.exchanges:
            return None
        return problem(scenario, where, f"{role} '{name}' is not declared{self._suggest('exchange', name)}",
                       "declare it under topology.exchanges, or mark it `external: true` there if it exists already")

    def queue_problem(self, scenario: model.Scenario, name: str, where: str, role: str) -> Problem | None:
        if name in self.queues or name == DIRECT_REPLY_TO:
            return None
        return problem(scenario, where, f"{role} '{name}' is not declared{self._suggest('queue', name)}",
                       "declare it under topology.queues, or mark it `external: true` there if it exists already")


def _names(scenario: model.Scenario) -> Iterator[Problem]:
    topo = scenario.topology
    work = scenario.workload
    groups: list[tuple[str, list[tuple[str, str]]]] = [
        ("exchange", [(e.name, e.where) for e in topo.exchanges]),
        ("queue", [(q.name, q.where) for q in topo.queues]),
        ("user", [(u.name, u.where) for u in topo.users]),
        ("vhost", [(v.name, v.where) for v in topo.vhosts]),
        ("policy", [(p.name, p.where) for p in topo.policies if not p.operator]),
        ("operator policy", [(p.name, p.where) for p in topo.policies if p.operator]),
        ("workload name", [(p.name, p.where) for p in work.producers] + [(c.name, c.where) for c in work.consumers]
         + [(s.name, s.where) for s in work.rpc_servers] + [(c.name, c.where) for c in work.rpc_clients]),
    ]
    for kind, entries in groups:
        yield from _duplicates(scenario, kind, entries)
    declared = ([("exchange", e.name, e.where) for e in topo.exchanges if not e.external]
                + [("queue", q.name, q.where) for q in topo.queues if not q.external])
    for kind, name, where in declared:
        yield from _reserved_rule(scenario, kind, name, f"{where}.name")
    for kind, entries in groups[:6]:
        for name, where in entries:
            yield from _length_rule(scenario, f"{kind} name", name, f"{where}.name")


def _duplicates(scenario: model.Scenario, kind: str, entries: list[tuple[str, str]]) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for name, where in entries:
        if name in seen:
            line = locate(scenario, seen[name])[0]
            yield problem(scenario, f"{where}.name", f"duplicate {kind} '{name}' (first declared at line {line})",
                          "give each one its own name or remove the copy")
        else:
            seen[name] = where


def _reserved_rule(scenario: model.Scenario, kind: str, name: str, where: str) -> Iterator[Problem]:
    """Declaring an amq.* name is refused; referencing one marked `external: true` declares nothing."""
    if is_reserved(name):
        yield problem(scenario, where, f"{kind} name '{name}' starts with '{RESERVED_PREFIX}', which RabbitMQ reserves "
                      "(ACCESS_REFUSED)", f"choose a name without the '{RESERVED_PREFIX}' prefix")


def _length_rule(scenario: model.Scenario, what: str, text: str, where: str) -> Iterator[Problem]:
    size = len(text.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        yield problem(scenario, where, f"{what} is {size} bytes; RabbitMQ allows at most {MAX_NAME_BYTES}",
                      f"shorten the {what.split()[-1]}")


def _queues(scenario: model.Scenario) -> Iterator[Problem]:
    known = _Known(scenario)
    for queue in scenario.topology.queues:
        yield from _queue_type_rules(scenario, queue)
        dlx = queue.dead_letter_exchange
        if dlx is not None:
            found = known.exchange_problem(scenario, dlx, f"{queue.where}.dead_letter.exchange", "dead-letter exchange")
            if found:
                yield found


def _queue_type_rules(scenario: model.Scenario, queue: model.Queue) -> Iterator[Problem]:
    where = queue.where
    if queue.type in ("quorum", "stream"):
        for flag, bad in (("durable", not queue.durable), ("exclusive", queue.exclusive), ("auto_delete", queue.auto_delete)):
            if bad:
                wanted = "true" if flag == "durable" else "false"
                yield problem(scenario, f"{where}.{flag}", f"{queue.type} queue '{queue.name}' must have {flag}: {wanted}",
                              f"set {flag}: {wanted}, or use type: classic")
    priority = queue.arguments.get("x-max-priority")
    if priority is not None:
        if queue.type != "classic":
            yield problem(scenario, f"{where}.max_priority", f"max_priority is only supported by classic queues, not {queue.type}",
                          "remove max_priority or use type: classic")
        elif _is_int(priority) and not 1 <= priority <= 255:
            yield problem(scenario, f"{where}.max_priority", f"max_priority must be between 1 and 255, got {priority!r}",
                          "use a value from 1 to 255 (RabbitMQ recommends at most 10)")
    overflow = queue.arguments.get("x-overflow")
    if isinstance(overflow, str) and overflow not in _OVERFLOW_BY_TYPE.get(queue.type, set()):
        allowed = ", ".join(sorted(_OVERFLOW_BY_TYPE.get(queue.type, set()))) or "none"
        yield problem(scenario, f"{where}.overflow", f"overflow '{overflow}' is not supported by {queue.type} queues (allowed: {allowed})",
                      "pick an allowed overflow mode or change the queue type")
    if "x-delivery-limit" in queue.arguments and queue.type != "quorum":
        yield problem(scenario, f"{where}.delivery_limit", f"delivery_limit only applies to quorum queues, not {queue.type}",
                      "use type: quorum or remove delivery_limit")
    for arg in _REFUSED_BY_TYPE.get(queue.type, ()):
        if arg in queue.arguments:
            hint = ("streams use x-max-age and x-max-length-bytes for retention" if queue.type == "stream"
                    else "remove it; quorum queues always keep messages on disk")
            yield problem(scenario, _argument_where(scenario, queue, arg),
                          f"{queue.type} queue '{queue.name}' does not support {arg}", hint)
    yield from _timer_rules(scenario, queue)
    routing_key = queue.dead_letter_routing_key
    if routing_key is not None:
        yield from _length_rule(scenario, "dead-letter routing key", routing_key,
                                _argument_where(scenario, queue, "x-dead-letter-routing-key"))


def _argument_where(scenario: model.Scenario, queue: model.Queue, arg: str) -> str:
    """Where an x-argument was written: under raw `arguments`, or as its friendly field."""
    raw = f"{queue.where}.arguments['{arg}']"
    if raw in scenario.marks or f"{queue.where}.arguments.{arg}" in scenario.marks:
        return raw
    return f"{queue.where}.{_FRIENDLY.get(arg, 'arguments')}"


def _timer_rules(scenario: model.Scenario, queue: model.Queue) -> Iterator[Problem]:
    expires = queue.arguments.get("x-expires")
    if _is_int(expires) and expires <= 0:
        yield problem(scenario, _argument_where(scenario, queue, "x-expires"),
                      f"expires must be greater than 0 ms, got {expires} (RabbitMQ refuses it: value_zero)",
                      "remove expires to keep the queue, or give a positive duration such as 30m")
    ttl = queue.arguments.get("x-message-ttl")
    if _is_int(ttl) and ttl < 0:
        yield problem(scenario, _argument_where(scenario, queue, "x-message-ttl"),
                      f"message_ttl must be at least 0 ms, got {ttl} (RabbitMQ refuses it: value_negative)",
                      "give a duration such as 60s")
    for arg in ("x-message-ttl", "x-expires"):
        value = queue.arguments.get(arg)
        if _is_int(value) and value > MAX_TIMER_MS:
            yield problem(scenario, _argument_where(scenario, queue, arg),
                          f"{_FRIENDLY[arg]} is {value} ms, more than {MAX_TIMER_MS} ms (about 49.7 days)",
                          "RabbitMQ 3.10 accepts it, but a 32-bit millisecond timer cannot hold it; check the unit",
                          severity="warning")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _exchanges(scenario: model.Scenario) -> Iterator[Problem]:
    known = _Known(scenario)
    for exchange in scenario.topology.exchanges:
        alternate = exchange.alternate_exchange
        if alternate is not None:
            found = known.exchange_problem(scenario, alternate, f"{exchange.where}.alternate_exchange", "alternate exchange")
            if found:
                yield found


def _bindings(scenario: model.Scenario) -> Iterator[Problem]:
    known = _Known(scenario)
    for binding in scenario.topology.bindings:
        where = binding.where
        if binding.source == "":
            yield problem(scenario, f"{where}.exchange", "the default exchange cannot be bound (RabbitMQ refuses it)",
                          "publish to the queue by name instead, or bind another exchange")
            continue
        found = known.exchange_problem(scenario, binding.source, f"{where}.exchange", "binding source exchange")
        if found:
            yield found
        if binding.destination_type == "exchange" and binding.destination == "":
            found = problem(scenario, f"{where}.to_exchange", "the default exchange cannot be a binding destination "
                            "(RabbitMQ refuses it: ACCESS_REFUSED)", "bind to a queue with `queue: NAME`, or to a named exchange")
        elif binding.destination_type == "exchange":
            found = known.exchange_problem(scenario, binding.destination, f"{where}.to_exchange", "binding destination exchange")
        elif binding.destination == "":
            found = problem(scenario, where, "binding has no destination", "add `queue: NAME` or `to_exchange: NAME`")
        else:
            found = known.queue_problem(scenario, binding.destination, f"{where}.queue", "binding destination queue")
        if found:
            yield found
        if len(binding.routing_key.encode("utf-8")) > MAX_NAME_BYTES:
            yield problem(scenario, f"{where}.keys", "binding key is longer than 255 bytes", "shorten the key")


def _private_queue_rules(scenario: model.Scenario, consumer: model.Consumer) -> Iterator[Problem]:
    queue = scenario.topology.queue(consumer.queue)
    if queue is None or queue.owner is None:
        return
    if queue.owner != consumer.name and queue.exclusive:
        yield problem(scenario, f"{consumer.where}.queue", f"queue '{queue.name}' is exclusive to the connection of consumer "
                      f"'{queue.owner}', which declares it", "give this consumer a queue of its own")
    elif queue.owner == consumer.name and consumer.instances > 1:
        yield problem(scenario, f"{consumer.where}.instances", f"consumer '{consumer.name}' declares its own queue: "
                      f"{consumer.instances} instances would each declare and read a queue of their own",
                      "write one consumer entry per subscriber, or leave instances out")


def _workload(scenario: model.Scenario) -> Iterator[Problem]:
    known = _Known(scenario)
    work = scenario.workload
    for field_name in ("duration", "timeout", "drain_timeout"):
        yield from _positive(scenario, f"$.workload.{field_name}", getattr(work, field_name), "a duration such as 10s")
    if work.read_wait != "auto" and work.read_wait > READ_WAIT_MOST:
        yield problem(scenario, "$.workload.read_wait", f"read_wait of {work.read_wait:g}s would hold heartbeats, acks "
                      f"and the end of the run that long", f"give at most {READ_WAIT_MOST * 1000:g}ms, or auto")
    for producer in work.producers:
        yield from _producer_rules(scenario, known, producer)
        yield from _stream_producer_rules(scenario, producer)
    for stream in scenario.topology.super_streams:
        yield from _super_stream_rules(scenario, stream)
    for consumer in work.consumers:
        yield from _stream_consumer_rules(scenario, consumer)
        found = known.queue_problem(scenario, consumer.queue, f"{consumer.where}.queue", "consumer queue")
        if found:
            yield found
        yield from _private_queue_rules(scenario, consumer)
        if consumer.reject + consumer.nack > 1:
            yield problem(scenario, consumer.where, "reject + nack fractions add up to more than 1", "lower one of them")
        if consumer.processing_time.low > consumer.processing_time.high:
            yield problem(scenario, f"{consumer.where}.processing_time", "processing_time min is greater than max", "swap them")
        if consumer.ack == "auto" and (consumer.reject or consumer.nack or consumer.multi_ack > 1):
            yield problem(scenario, consumer.where, "reject, nack and multi_ack need ack: manual", "set ack: manual")
    for server in work.rpc_servers:
        found = known.queue_problem(scenario, server.queue, f"{server.where}.queue", "RPC server queue")
        if found:
            yield found
    consumers = {c.name for c in work.consumers}
    for fault in work.faults:
        if (fault.at is None) == (fault.after_messages is None):
            yield problem(scenario, fault.where, "a fault needs exactly one of `at` or `after_messages`",
                          "add at: 2s or after_messages: 100")
        if fault.action == "kill_consumer" and fault.consumer not in consumers:
            yield problem(scenario, f"{fault.where}.consumer", f"kill_consumer names unknown consumer '{fault.consumer}'"
                          f"{suggest(str(fault.consumer), consumers)}", "name a consumer from workload.consumers")
        yield from _fault_rules(scenario, fault)


def _fault_rules(scenario: model.Scenario, fault: model.Fault) -> Iterator[Problem]:
    """A fault acts only on nodes the file names, with what it needs to act and to undo."""
    nodes = {n.name: n for n in scenario.broker.nodes}
    where, action = fault.where, fault.action
    if action in model.NODE_FAULTS:
        if not nodes:
            yield problem(scenario, where, f"{action} needs the cluster's nodes under broker.nodes; "
                          "a fault never acts on a broker the file does not name",
                          "list them: broker: {nodes: [{name: c1, url: amqp://...}]}")
            return
        wanted = fault.nodes()
        if not wanted or (action != "partition" and fault.groups) or (action == "partition" and fault.node and fault.groups):
            hint = "give node: NAME or groups: [[a], [b, c]]" if action == "partition" else "give node: NAME"
            yield problem(scenario, where, f"{action} needs exactly one node" if action != "partition"
                          else "partition needs node (cut it off) or groups (split), not both or neither", hint)
            return
        for name in wanted:
            if name not in nodes:
                yield problem(scenario, f"{where}.node", f"{action} names unknown node '{name}'{suggest(name, set(nodes))}",
                              "name a node from broker.nodes")
        if any(n not in nodes for n in wanted):
            return
        if action in model.NETNS_FAULTS:
            for name in wanted:
                if nodes[name].netns is None:
                    yield problem(scenario, f"{where}.node", f"{action} acts on the network link of node '{name}', "
                                  "which has no netns", "give the node's netns (scripts/local-cluster up --netns)")
        if action == "kill_node" and fault.lasts is not None and not nodes[wanted[0]].start:
            yield problem(scenario, f"{where}.for", f"kill_node leaves no running VM for 'rabbitmqctl start_app' on node "
                          f"'{wanted[0]}'", "give broker.nodes[].start, the command that boots the node")
    if (action == "delay") != (fault.delay is not None) or (action == "loss") != (fault.loss is not None):
        yield problem(scenario, where, "delay needs delay: (e.g. 200ms) and loss needs loss: (a percent); "
                      "other actions take neither", "give the amount with its action only")
    if (action == "command") != bool(fault.command) or (fault.undo and action != "command"):
        yield problem(scenario, where, "command needs command: [PROGRAM, ARG...]; undo belongs to command only",
                      "give command: (and undo:) with action: command")


def _producer_rules(scenario: model.Scenario, known: _Known, producer: model.Producer) -> Iterator[Problem]:
    where = producer.where
    if producer.queue is not None and producer.exchange:
        yield problem(scenario, where, "a producer targets either `exchange` or `queue`, not both",
                      "remove one; `queue:` publishes through the default exchange")
    if producer.queue is not None:
        found = known.queue_problem(scenario, producer.queue, f"{where}.queue", "producer queue")
    else:
        found = known.exchange_problem(scenario, producer.exchange, f"{where}.exchange", "producer exchange")
    if found:
        yield found
    profile = producer.rate_profile
    if producer.messages is None and producer.duration is None and scenario.workload.duration is None \
            and (profile is None or profile.total is None):
        yield problem(scenario, where, f"producer '{producer.name}' has no end: set `messages` or `duration`",
                      "add messages: 1000, or duration: 10s here or under workload")
    for key in producer.routing_keys:
        if len(key.encode("utf-8")) > MAX_NAME_BYTES:
            yield problem(scenario, f"{where}.routing_keys", "routing key is longer than 255 bytes", "shorten the key")
    if producer.body is not None and producer.body_template is not None:
        yield problem(scenario, where, "give either `body` or `body_file`, not both", "remove one")
    yield from _positive(scenario, f"{where}.duration", producer.duration, "a duration such as 10s")
    yield from _positive(scenario, f"{where}.rate", producer.rate, "a rate such as 100/s, or leave rate out for no limit")
    for name in producer.headers:
        yield from _length_rule(scenario, "header name", name, f"{where}.headers")
    if profile is not None:
        yield from _rate_profile_rules(scenario, profile)
    sizes = producer.sizes
    if sizes is not None and sizes.kind == "uniform" and sizes.low > sizes.high:
        yield problem(scenario, f"{where}.size", "size min is greater than max", "swap them")
    if sizes is not None and sizes.largest > MAX_MESSAGE_BYTES:
        yield problem(scenario, f"{where}.size", f"size {sizes.largest} is larger than 128 MiB, the largest message "
                      "RabbitMQ 3.x accepts (max_message_size)", "give sizes of at most 128MiB")


MAX_MESSAGE_BYTES = 134217728


def _rate_profile_rules(scenario: model.Scenario, profile: shapes.RateProfile) -> Iterator[Problem]:
    last = len(profile.steps) - 1
    for i, step in enumerate(profile.steps):
        if step.seconds is None and i < last:
            yield problem(scenario, step.where, "only the last part of a rate profile may leave out `for` (it lasts until "
                          "the producer stops)", "give this part a duration, e.g. for: 30s")
        if step.seconds == 0 and step.end_rate != step.rate:
            yield problem(scenario, f"{step.where}.ramp_to", "a ramp needs `for`: how long it takes to reach ramp_to",
                          "add for: 30s")


def _queue_type(scenario: model.Scenario, name: str | None) -> str | None:
    queue = scenario.topology.queue(name) if name is not None else None
    return queue.type if queue is not None else None


def _stream_consumer_rules(scenario: model.Scenario, consumer: model.Consumer) -> Iterator[Problem]:
    """offset, filter, single active consumer and protocol: stream belong to consumers of a stream."""
    where, kind = consumer.where, _queue_type(scenario, consumer.queue)
    stream_only = [name for name, used in (("offset", consumer.offset is not None), ("filter", bool(consumer.filter)),
                                           ("single_active_consumer", consumer.single_active_consumer),
                                           ("protocol", consumer.protocol == "stream")) if used]
    if kind is not None and kind != "stream":
        for name in stream_only:
            yield problem(scenario, f"{where}.{name}", f"{name} applies to stream queues; queue '{consumer.queue}' is {kind}",
                          f"consume from a queue of type: stream, or remove {name}")
        return
    offset = consumer.offset
    if offset is not None and offset.kind == "timestamp" and offset.timestamp_ms is None and offset.ago is None:
        yield problem(scenario, f"{where}.offset", "offset is not a timestamp: give ISO 8601 such as 2024-05-01T12:00:00Z",
                      "or a duration ago such as 10m, or first, last, next, or an offset number")
    if consumer.single_active_consumer and consumer.protocol != "stream":
        yield problem(scenario, f"{where}.single_active_consumer", "single active consumer on a stream needs protocol: stream "
                      "(the group is formed by the stream protocol's consumer name; AMQP 0-9-1 consumers cannot join one)",
                      "add protocol: stream")
    if consumer.protocol == "stream":
        yield from _stream_protocol_consumer_rules(scenario, consumer)


_STREAM_CONSUMER_HINT = "remove it, or use protocol: amqp"


def _stream_protocol_consumer_rules(scenario: model.Scenario, consumer: model.Consumer) -> Iterator[Problem]:
    """The fields of an AMQP consumer the stream protocol has nothing for: refused, never ignored."""
    where = consumer.where
    unsupported = [name for name, used in (("exclusive", consumer.exclusive), ("priority", consumer.priority is not None),
                                           ("reject", consumer.reject > 0), ("nack", consumer.nack > 0),
                                           ("requeue", consumer.requeue), ("crash_after", consumer.crash_after is not None))
                   if used]
    for name in unsupported:
        yield problem(scenario, f"{where}.{name}", f"{name} has no meaning over the stream protocol (no acks, no requeue)",
                      _STREAM_CONSUMER_HINT)
    if f"{where}.ack" in scenario.marks or consumer.multi_ack != 1:
        name = "ack" if f"{where}.ack" in scenario.marks else "multi_ack"
        yield problem(scenario, f"{where}.{name}", f"{name} has no meaning over the stream protocol: a stream consumer "
                      "acknowledges nothing, what it reads is settled", _STREAM_CONSUMER_HINT)
    if consumer.prefetch is not None:
        yield problem(scenario, f"{where}.prefetch", "prefetch has no meaning over the stream protocol: the broker "
                      "grants credit in chunks of messages, not in messages", _STREAM_CONSUMER_HINT)


def _stream_producer_rules(scenario: model.Scenario, producer: model.Producer) -> Iterator[Problem]:
    where = producer.where
    if producer.super_stream is not None:
        if producer.protocol != "stream":
            yield problem(scenario, f"{where}.super_stream", "super_stream needs protocol: stream (an AMQP producer publishes "
                          "to the super stream's exchange)", f"add protocol: stream, or write exchange: {producer.super_stream}")
        if scenario.topology.super_stream(producer.super_stream) is None:
            names = {s.name for s in scenario.topology.super_streams}
            yield problem(scenario, f"{where}.super_stream", f"super stream '{producer.super_stream}' is not declared"
                          f"{suggest(producer.super_stream, names)}", "declare it under topology.super_streams")
        if producer.protocol == "stream":
            yield from _stream_protocol_producer_rules(scenario, producer)
        return
    if producer.protocol != "stream":
        if producer.filter_value is not None:
            kind = _queue_type(scenario, producer.queue)
            if kind is not None and kind != "stream":
                yield problem(scenario, f"{where}.filter_value", f"filter_value applies to streams; queue '{producer.queue}' "
                              f"is {kind}", "publish to a queue of type: stream, or remove filter_value")
        return
    kind = _queue_type(scenario, producer.queue)
    if producer.queue is None or kind not in ("stream", None):
        target = f"queue '{producer.queue}' is {kind}" if producer.queue is not None else "it names no stream"
        yield problem(scenario, f"{where}.protocol", f"protocol: stream publishes to a stream; {target}",
                      "give queue: STREAM (a queue of type: stream) or super_stream: NAME")
    yield from _stream_protocol_producer_rules(scenario, producer)


def _stream_protocol_producer_rules(scenario: model.Scenario, producer: model.Producer) -> Iterator[Problem]:
    """The fields of an AMQP producer a stream-protocol message cannot carry: refused, never ignored."""
    where = producer.where
    unsupported = [name for name, used in (("mandatory", producer.mandatory), ("priority", producer.priority is not None),
                                           ("expiration", producer.expiration_ms is not None)) if used]
    for name in unsupported:
        yield problem(scenario, f"{where}.{name}", f"{name} has no meaning for a stream", "remove it")


def _super_stream_rules(scenario: model.Scenario, stream: model.SuperStream) -> Iterator[Problem]:
    if len(stream.binding_keys) != len(stream.partitions):
        yield problem(scenario, f"{stream.where}.binding_keys", f"super stream '{stream.name}' has {len(stream.partitions)} "
                      f"partitions but {len(stream.binding_keys)} binding keys", "give one binding key per partition")
    if len(set(stream.partitions)) != len(stream.partitions):
        yield problem(scenario, f"{stream.where}.partitions", f"super stream '{stream.name}' names a partition twice",
                      "give each partition its own key")


def _positive(scenario: model.Scenario, where: str, value: float | None, example: str) -> Iterator[Problem]:
    if value is not None and value <= 0:
        field_name = where.rsplit(".", 1)[-1]
        yield problem(scenario, where, f"{field_name} must be greater than 0", f"give {example}")


def _expectations(scenario: model.Scenario) -> Iterator[Problem]:
    work = scenario.workload
    names = {
        "consumer": {c.name for c in work.consumers},
        "producer": {p.name for p in work.producers},
        "queue": {q.name for q in scenario.topology.queues},
        "rpc": {c.name for c in work.rpc_clients},
    }
    known = _Known(scenario)
    suggesters = {kind: Suggester(found) for kind, found in names.items()}
    for expectation in scenario.expectations:
        if isinstance(expectation, model.CountExpectation) and expectation.subject_kind != "outcomes":
            yield from _unknown(scenario, expectation.subject_kind, [expectation.subject], names, suggesters, expectation.where)
        elif isinstance(expectation, model.RpcAnswered):
            yield from _unknown(scenario, "rpc", [expectation.client], names, suggesters, expectation.where)
        elif isinstance(expectation, model.LatencyBound) and expectation.producer is not None:
            yield from _unknown(scenario, "producer", [expectation.producer], names, suggesters, expectation.where)
            yield from _confirm_latency_rule(scenario, expectation)
        elif isinstance(expectation, (model.Balanced, model.EveryMessage)):
            yield from _unknown(scenario, "consumer", list(expectation.consumers), names, suggesters, expectation.where)
        elif isinstance(expectation, model.Routes):
            for route in expectation.routes:
                found = known.exchange_problem(scenario, route.exchange, f"{route.where}.exchange", "route exchange")
                if found:
                    yield found
                for i, queue in enumerate(route.to):
                    found = known.queue_problem(scenario, queue, f"{route.where}.to[{i}]", "route destination queue")
                    if found:
                        yield found


def _confirm_latency_rule(scenario: model.Scenario, expectation: model.LatencyBound) -> Iterator[Problem]:
    producer = next((p for p in scenario.workload.producers if p.name == expectation.producer), None)
    if producer is not None and producer.confirm is None:
        yield problem(scenario, f"{expectation.where}.confirm_latency", f"producer '{producer.name}' does not use publisher "
                      "confirms, so there is no confirm latency", "set confirm: 100 on the producer")


def _unknown(scenario: model.Scenario, kind: str, subjects: list[str], names: dict[str, set[str]],
             suggesters: dict[str, Suggester], where: str) -> Iterator[Problem]:
    for subject in subjects:
        if subject not in names[kind]:
            yield problem(scenario, f"{where}.{kind}", f"expectation names unknown {kind} '{subject}'{suggesters[kind].suggest(subject)}",
                          f"name a {kind} declared in this file")


_MEASURES = MappingProxyType({
    "consumer": model.CONSUMER_MEASURES,
    "producer": (*model.PRODUCER_MEASURES, "confirm_latency"),
    "queue": model.QUEUE_MEASURES,
    "rpc": model.RPC_MEASURES,
})
_STANDALONE = ("no_loss", "no_duplicates", "balanced", "every_message", "latency", "routes")


def _expectation_shapes(scenario: model.Scenario, doc: Document) -> Iterator[Problem]:
    for i, entry in enumerate(doc.data.get("expect", [])):
        message = _shape_problem(entry)
        if message:
            yield doc.problem(("expect", i), message[0], message[1])


def _shape_problem(entry: dict[str, Any]) -> tuple[str, str] | None:
    keys = set(entry) - {"description"}
    standalone = [k for k in _STANDALONE if k in keys]
    subjects = [k for k in _MEASURES if k in keys]
    if standalone:
        extra = keys - {standalone[0]} - ({"tolerance"} if standalone[0] == "balanced" else set())
        if extra:
            return (f"'{standalone[0]}' stands alone; remove {', '.join(sorted(extra))}", "write one expectation per entry")
        return None
    if not subjects and len(keys) == 1 and keys <= set(model.OUTCOME_MEASURES):
        return None
    if len(subjects) != 1:
        return ("an expectation names one subject: consumer, producer, queue or rpc"
                if subjects else "expectation has no subject or check",
                "e.g. {consumer: reader, received: 10} or {no_loss: true}")
    measures = keys - {subjects[0]}
    allowed = _MEASURES[subjects[0]]
    wrong = sorted(measures - set(allowed))
    if wrong or len(measures) != 1:
        return (f"a {subjects[0]} expectation takes exactly one of: {', '.join(allowed)}"
                + (f" (not {', '.join(wrong)})" if wrong else ""), "write one expectation per entry")
    return None


def _tls_files(scenario: model.Scenario, doc: Document) -> Iterator[Problem]:
    written = doc.data.get("broker", {}).get("tls", {})
    for field_name in ("ca_file", "cert_file", "key_file"):
        resolved = getattr(scenario.broker.tls, field_name)
        if resolved and resolved not in doc.inputs.existing:
            yield problem(scenario, f"$.broker.tls.{field_name}", f"{field_name} '{written.get(field_name, resolved)}' does not exist"
                          + (f" (looked for {resolved})" if resolved != written.get(field_name) else ""),
                          "give the path of a PEM file; a relative path starts at the scenario file's folder")
    if scenario.broker.tls.key_file and not scenario.broker.tls.cert_file:
        yield problem(scenario, "$.broker.tls.key_file", "key_file needs cert_file: the key belongs to a client certificate",
                      "add cert_file, or remove key_file")


_PERCENT = MappingProxyType({"/": "%2F", "?": "%3F", "#": "%23", "@": "%40", "[": "%5B", "]": "%5D", " ": "%20", "%": "%25"})
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _unencoded_userinfo(url: str) -> str:
    """The characters ('/', '@', ...) that end the user:password part of a URL early, quoted; '' when there are none.

    Everything between :// and the last '@' is meant as user:password; a password taken from ${VAR} as is
    (`ab/cd`) makes urlsplit read `ab` as the host. The password itself is never shown.
    """
    _, sep, rest = url.partition("://")
    userinfo = rest.rpartition("@")[0] if sep else ""
    found = {c for c in userinfo if c in _PERCENT and c != "%"} | ({"%"} if _BAD_PERCENT.search(userinfo) else set())
    return " and ".join(f"'{c}'" for c in sorted(found))


def _url_hint(url: str, example: str) -> str:
    unencoded = _unencoded_userinfo(url)
    if not unencoded:
        return example
    codes = ", ".join(f"'{c}' is {_PERCENT[c]}" for c in sorted(_PERCENT) if f"'{c}'" in unencoded)
    return f"percent-encode the user name and password ({codes}), e.g. urllib.parse.quote(password, safe='') in Python"


def _raw_broker(scenario: model.Scenario, doc: Document) -> Iterator[Problem]:
    broker = doc.data.get("broker", {})
    urls = broker.get("url", [])
    entries = [(("broker", "url"), urls)] if isinstance(urls, str) else [(("broker", "url", i), u) for i, u in enumerate(urls)]
    for path, url in entries:
        message = _url_problem(url, ("amqp", "amqps"))
        if message:
            yield doc.problem(path, message, _url_hint(url, "write amqp://USER:PASSWORD@HOST:5672/VHOST, or amqps:// for TLS"))
    management = broker.get("management_url")
    if isinstance(management, str):
        message = _url_problem(management, ("http", "https"))
        if message:
            yield doc.problem(("broker", "management_url"), message, _url_hint(management, "write http://HOST:15672, or https:// for TLS"))


def option_url_problem(url: str, management: bool) -> str:
    """What is wrong with a URL given as --url (or MQSPEC_URL) or --management-url, with the fix; '' when fine.
    Never shows the URL: it may hold a password."""
    schemes = ("http", "https") if management else ("amqp", "amqps")
    message = _url_problem(url, schemes)
    example = "http://HOST:15672, or https:// for TLS" if management else "amqp://USER:PASSWORD@HOST:5672/VHOST, or amqps:// for TLS"
    return f"{message}; {_url_hint(url, 'write ' + example)}" if message else ""


def _url_problem(url: str, schemes: tuple[str, ...]) -> str:
    unencoded = _unencoded_userinfo(url)
    if unencoded:
        return (f"the user name or password in this URL holds {unencoded}, which a URL must percent-encode: as written, "
                "part of the credentials is read as the host, port or path")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        return "not a valid URL: the port is not a number" if "port" in str(exc).lower() else f"not a valid URL ({exc})"
    wanted = " or ".join(f"{s}://" for s in schemes)
    if parts.scheme not in schemes:
        return f"URL must start with {wanted}" + (f", not {parts.scheme}://" if parts.scheme else "")
    if not host:
        return f"URL '{parts.scheme}://...' names no host"
    return ""


_WRITE_AS = MappingProxyType({int: "write a whole number without quotes", bool: "write true or false without quotes",
                              str: "write it as text"})


def _raw_queues(scenario: model.Scenario, doc: Document) -> Iterator[Problem]:
    """x-arguments given raw under `arguments:`, checked as the broker checks them at declare time."""
    for i, entry in enumerate(doc.data.get("topology", {}).get("queues", [])):
        raw = entry.get("arguments", {})
        for arg, value in raw.items():
            expected = _ARGUMENT_TYPES.get(arg)
            if expected is not None and not _has_type(value, expected[1]):
                friendly = _FRIENDLY.get(arg, "type")
                yield problem(scenario, f"$.topology.queues[{i}].arguments['{arg}']", f"{arg} must be {expected[0]}, got {_show(value)}",
                              f"{_WRITE_AS[expected[1]]}, or use the field `{friendly}:` instead")
        declared = raw.get("x-queue-type")
        where = f"$.topology.queues[{i}].arguments['x-queue-type']"
        if isinstance(declared, str) and declared not in ("classic", "quorum", "stream"):
            yield problem(scenario, where, f"x-queue-type '{declared}' is not one of: classic, quorum, stream",
                          "use `type: classic|quorum|stream` instead")
        elif isinstance(declared, str) and "type" in entry and entry["type"] != declared:
            yield problem(scenario, where, f"x-queue-type '{declared}' disagrees with type: {entry['type']}",
                          "remove x-queue-type from arguments; `type:` is enough")


def _has_type(value: Any, kind: type) -> bool:
    if kind is int:
        return _is_int(value)
    return isinstance(value, kind)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 40 else "a long string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else str(value)


def _raw_bindings(scenario: model.Scenario, doc: Document) -> Iterator[Problem]:
    exchange_types = dict(BUILTIN_EXCHANGES) | {e.name: e.type for e in scenario.topology.exchanges}
    for i, entry in enumerate(doc.data.get("topology", {}).get("bindings", [])):
        path = ("topology", "bindings", i)
        if "queue" in entry and "to_exchange" in entry:
            yield doc.problem((*path, "to_exchange"), "a binding has one destination: `queue` or `to_exchange`, not both",
                              "write two bindings, one for the queue and one for the exchange")
        source_type = exchange_types.get(entry.get("exchange", ""), "headers")
        given = [key for key in ("match", "headers") if key in entry]
        if given and source_type != "headers":
            yield doc.problem((*path, given[0]), f"match/headers only affect headers exchanges; '{entry['exchange']}' is "
                              f"{source_type}", "remove match and headers, or bind a headers exchange")
        for name in entry.get("headers", {}):
            yield from _length_rule(scenario, "header name", str(name), json_path((*path, "headers")))


def _raw_patterns(scenario: model.Scenario, doc: Document) -> Iterator[Problem]:
    """`count: N` without {i} anywhere in the entry: N copies of the same entry."""
    for path, entries in shapes.pattern_lists(doc.data):
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and shapes.repeats_itself(entry):
                yield doc.problem((*path, i, "count"), f"count: {entry['count']} makes {entry['count']} copies of the same "
                                  "entry: none of its strings has {i}", "put {i} in its name (q-{i} becomes q-1, q-2, ...)")


def _raw_producers(scenario: model.Scenario, doc: Document) -> Iterator[Problem]:
    for i, entry in enumerate(doc.data.get("workload", {}).get("producers", [])):
        body_file = entry.get("body_file")
        if isinstance(body_file, str) and (resolved := input_path(scenario.path, body_file)) not in doc.inputs.existing:
            yield doc.problem(("workload", "producers", i, "body_file"), f"body_file '{body_file}' does not exist"
                              + (f" (looked for {resolved})" if resolved != body_file else ""),
                              "give the path of a file; a relative path starts at the scenario file's folder")
