"""RabbitMQ's own rules, checked on the scenario before any broker is touched."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from typing import Any

from mqspec import model
from mqspec.document import Document
from mqspec.problems import Problem

BUILTIN_EXCHANGES = {
    "": "direct", "amq.direct": "direct", "amq.fanout": "fanout", "amq.topic": "topic",
    "amq.headers": "headers", "amq.match": "headers", "amq.rabbitmq.trace": "topic",
}
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
MAX_NAME_BYTES = 255
_LAST_SEGMENT = re.compile(r"(\.[^.\[]+|\[[^\]]*\])$")

_OVERFLOW_BY_TYPE = {
    "classic": {"drop-head", "reject-publish", "reject-publish-dlx"},
    "quorum": {"drop-head", "reject-publish"},
    "stream": set(),
}


def locate(scenario: model.Scenario, where: str) -> tuple[int, int]:
    """The line and column of a JSON path, or of its nearest ancestor that was marked."""
    path = where
    while path:
        mark = scenario.marks.get(path)
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
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def check(scenario: model.Scenario, doc: Document | None = None) -> list[Problem]:
    checks = (_names, _queues, _exchanges, _bindings, _workload, _expectations)
    found = [p for run in checks for p in run(scenario)]
    if doc is not None:
        found += list(_expectation_shapes(scenario, doc))
    return sorted(found, key=lambda p: (p.line, p.col))


class _Known:
    """Names a reference may point at: declared here, external, or built in."""

    def __init__(self, scenario: model.Scenario) -> None:
        self.exchanges = {e.name for e in scenario.topology.exchanges} | set(BUILTIN_EXCHANGES)
        self.queues = {q.name for q in scenario.topology.queues}
        self.declared_exchanges = [e.name for e in scenario.topology.exchanges]

    def exchange_problem(self, scenario: model.Scenario, name: str, where: str, role: str) -> Problem | None:
        if name in self.exchanges:
            return None
        return problem(scenario, where, f"{role} '{name}' is not declared{suggest(name, self.declared_exchanges)}",
                       "declare it under topology.exchanges, or mark it `external: true` there if it exists already")

    def queue_problem(self, scenario: model.Scenario, name: str, where: str, role: str) -> Problem | None:
        if name in self.queues or name == DIRECT_REPLY_TO:
            return None
        return problem(scenario, where, f"{role} '{name}' is not declared{suggest(name, self.queues)}",
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
    for kind, entries in groups[:2]:
        for name, where in entries:
            yield from _name_rules(scenario, kind, name, f"{where}.name")


def _duplicates(scenario: model.Scenario, kind: str, entries: list[tuple[str, str]]) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for name, where in entries:
        if name in seen:
            line = locate(scenario, seen[name])[0]
            yield problem(scenario, f"{where}.name", f"duplicate {kind} '{name}' (first declared at line {line})",
                          "give each one its own name or remove the copy")
        else:
            seen[name] = where


def _name_rules(scenario: model.Scenario, kind: str, name: str, where: str) -> Iterator[Problem]:
    if name.startswith("amq."):
        yield problem(scenario, where, f"{kind} name '{name}' starts with 'amq.', which RabbitMQ reserves (ACCESS_REFUSED)",
                      "choose a name without the 'amq.' prefix")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        yield problem(scenario, where, f"{kind} name is {len(name.encode('utf-8'))} bytes; RabbitMQ allows at most {MAX_NAME_BYTES}",
                      "shorten the name")


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
        elif not isinstance(priority, int) or isinstance(priority, bool) or not 1 <= priority <= 255:
            yield problem(scenario, f"{where}.max_priority", f"max_priority must be between 1 and 255, got {priority!r}",
                          "use a value from 1 to 255 (RabbitMQ recommends at most 10)")
    overflow = queue.arguments.get("x-overflow")
    if overflow is not None and overflow not in _OVERFLOW_BY_TYPE.get(queue.type, set()):
        allowed = ", ".join(sorted(_OVERFLOW_BY_TYPE.get(queue.type, set()))) or "none"
        yield problem(scenario, f"{where}.overflow", f"overflow '{overflow}' is not supported by {queue.type} queues (allowed: {allowed})",
                      "pick an allowed overflow mode or change the queue type")
    if "x-delivery-limit" in queue.arguments and queue.type != "quorum":
        yield problem(scenario, f"{where}.delivery_limit", f"delivery_limit only applies to quorum queues, not {queue.type}",
                      "use type: quorum or remove delivery_limit")
    if queue.type == "stream":
        for arg in ("x-message-ttl", "x-expires", "x-dead-letter-exchange", "x-single-active-consumer"):
            if arg in queue.arguments:
                yield problem(scenario, where, f"stream queue '{queue.name}' does not support {arg}",
                              "streams use x-max-age and x-max-length-bytes for retention")


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
    exchange_types = dict(BUILTIN_EXCHANGES) | {e.name: e.type for e in scenario.topology.exchanges}
    for binding in scenario.topology.bindings:
        where = binding.where
        if binding.source == "":
            yield problem(scenario, f"{where}.exchange", "the default exchange cannot be bound (RabbitMQ refuses it)",
                          "publish to the queue by name instead, or bind another exchange")
            continue
        found = known.exchange_problem(scenario, binding.source, f"{where}.exchange", "binding source exchange")
        if found:
            yield found
        if binding.destination_type == "exchange":
            found = known.exchange_problem(scenario, binding.destination, f"{where}.to_exchange", "binding destination exchange")
        elif binding.destination == "":
            found = problem(scenario, where, "binding has no destination", "add `queue: NAME` or `to_exchange: NAME`")
        else:
            found = known.queue_problem(scenario, binding.destination, f"{where}.queue", "binding destination queue")
        if found:
            yield found
        if "x-match" in binding.arguments and exchange_types.get(binding.source, "headers") != "headers":
            yield problem(scenario, f"{where}.match", f"match/headers only affect headers exchanges; '{binding.source}' is "
                          f"{exchange_types[binding.source]}", "remove match and headers, or bind a headers exchange")
        if len(binding.routing_key.encode("utf-8")) > MAX_NAME_BYTES:
            yield problem(scenario, f"{where}.keys", "binding key is longer than 255 bytes", "shorten the key")


def _workload(scenario: model.Scenario) -> Iterator[Problem]:
    known = _Known(scenario)
    work = scenario.workload
    for producer in work.producers:
        yield from _producer_rules(scenario, known, producer)
    for consumer in work.consumers:
        found = known.queue_problem(scenario, consumer.queue, f"{consumer.where}.queue", "consumer queue")
        if found:
            yield found
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
    if producer.messages is None and producer.duration is None and scenario.workload.duration is None:
        yield problem(scenario, where, f"producer '{producer.name}' has no end: set `messages` or `duration`",
                      "add messages: 1000, or duration: 10s here or under workload")
    for key in producer.routing_keys:
        if len(key.encode("utf-8")) > MAX_NAME_BYTES:
            yield problem(scenario, f"{where}.routing_keys", "routing key is longer than 255 bytes", "shorten the key")
    if producer.body is not None and producer.body_template is not None:
        yield problem(scenario, where, "give either `body` or `body_file`, not both", "remove one")


def _expectations(scenario: model.Scenario) -> Iterator[Problem]:
    work = scenario.workload
    names = {
        "consumer": {c.name for c in work.consumers},
        "producer": {p.name for p in work.producers},
        "queue": {q.name for q in scenario.topology.queues},
        "rpc": {c.name for c in work.rpc_clients},
    }
    known = _Known(scenario)
    for expectation in scenario.expectations:
        if isinstance(expectation, model.CountExpectation):
            yield from _unknown(scenario, expectation.subject_kind, [expectation.subject], names, expectation.where)
        elif isinstance(expectation, model.RpcAnswered):
            yield from _unknown(scenario, "rpc", [expectation.client], names, expectation.where)
        elif isinstance(expectation, (model.Balanced, model.EveryMessage)):
            yield from _unknown(scenario, "consumer", list(expectation.consumers), names, expectation.where)
        elif isinstance(expectation, model.Routes):
            for route in expectation.routes:
                found = known.exchange_problem(scenario, route.exchange, f"{route.where}.exchange", "route exchange")
                if found:
                    yield found
                for i, queue in enumerate(route.to):
                    found = known.queue_problem(scenario, queue, f"{route.where}.to[{i}]", "route destination queue")
                    if found:
                        yield found


def _unknown(scenario: model.Scenario, kind: str, subjects: list[str], names: dict[str, set[str]], where: str) -> Iterator[Problem]:
    for subject in subjects:
        if subject not in names[kind]:
            yield problem(scenario, f"{where}.{kind}", f"expectation names unknown {kind} '{subject}'{suggest(subject, names[kind])}",
                          f"name a {kind} declared in this file")


_MEASURES = {
    "consumer": model.CONSUMER_MEASURES,
    "producer": model.PRODUCER_MEASURES,
    "queue": model.QUEUE_MEASURES,
    "rpc": model.RPC_MEASURES,
}
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
