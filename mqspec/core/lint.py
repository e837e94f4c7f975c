"""Warnings about topology that works but probably not as meant, found with the routing oracle.

Warnings only: what the oracle proves wrong (a publish to an internal exchange, a `routes:` expectation the
topology does not take) is an error of `offline.py`, checked by the loader like every other rule.
Warnings stay quiet when the file cannot know the answer (external exchanges, plugin exchange types,
a file with no workload), so that every warning is worth reading.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mqspec.core import inputs, model, offline, routing, scalars
from mqspec.core.document import Disputed, Document, json_path
from mqspec.core.problems import Problem, shorten
from mqspec.core.semantics import problem

SAMPLE_SEQ = 1
_LIMIT_KEYS = ("message-ttl", "max-length", "max-length-bytes", "expires", "max-age")
_WILDCARD_HINT = "give each wildcard a word of its own between dots, e.g. 'order.*' or 'order.#'"


def check(scenario: model.Scenario) -> list[Problem]:
    context = _Context(scenario)
    checks = (_literal_passwords, _invisible_characters, _unroutable_producers, _unreachable_queues, _growing_queues,
              _dead_letter_dead_ends, _topic_binding_keys, _routes, _multi_ack_above_prefetch, _unowned_exclusive_queues)
    found = [found for run in checks for found in run(context)]
    # the other vhosts of the file: their topology (the workload runs in the default vhost)
    for topology in scenario.every_vhost()[1:]:
        other = _Context(scenario, topology)
        found += [problem for run in _TOPOLOGY_CHECKS for problem in run(other)]
    return found


def sample_key(template: str, producer: str, seq: int = SAMPLE_SEQ, instance: int = 0) -> str:
    """A routing key template filled in as the workload fills it: 'order.{seq}' -> 'order.1'."""
    if "{" not in template:
        return template
    return model.fill_key(template, producer, seq, instance)


@dataclass(frozen=True)
class Sent:
    """One routing key (or header set) a producer publishes, and where the oracle says it goes."""

    producer: model.Producer
    index: int
    template: str
    key: str
    result: routing.RoutingResult

    @property
    def where(self) -> str:
        return f"{self.producer.where}.routing_keys[{self.index}]"


class _Context:
    def __init__(self, scenario: model.Scenario, topology: model.Topology | None = None) -> None:
        self.scenario = scenario
        self.topology = scenario.topology if topology is None else topology
        self.workload = scenario.workload if topology is None else model.Workload()

    @cached_property
    def sent(self) -> list[Sent]:
        found: list[Sent] = []
        for producer in self.workload.producers:
            if producer.super_stream is not None:
                continue   # the producer picks a partition itself (reach.py), no exchange routes it
            exchange = model.DEFAULT_EXCHANGE if producer.queue is not None else producer.exchange
            templates = (producer.queue,) if producer.queue is not None else producer.routing_keys
            seen: set[str] = set()
            for index, template in enumerate(templates):
                key = sample_key(template, producer.name)
                if key not in seen:
                    seen.add(key)
                    found.append(Sent(producer, index, template, key, routing.route(self.topology, exchange, key, producer.headers)))
        return found

    @cached_property
    def unreachable(self) -> list[model.Queue]:
        """Queues no binding, producer, RPC client or dead-letter key can put a message in."""
        if not (self.workload.producers or self.workload.rpc_clients):
            return []
        fed = {b.destination for b in self.topology.bindings if b.destination_type == "queue"}
        fed |= {q for sent in self.sent for q in sent.result.queues}
        fed |= {client.queue for client in self.workload.rpc_clients}
        for queue in self.topology.queues:
            exchange, key = routing.dead_letter(self.topology, queue)
            if exchange == model.DEFAULT_EXCHANGE and key is not None:
                fed.add(key)
        return [q for q in self.topology.queues if q.name not in fed and not q.external]

    def where_exchange(self, name: str) -> str:
        return "the default exchange" if name == model.DEFAULT_EXCHANGE else f"exchange '{name}'"


def _literal_passwords(context: _Context) -> list[Problem]:
    return [_literal_password(context, where) for where in context.scenario.literal_passwords]


def _literal_password(context: _Context, where: str) -> Problem:
    if where.startswith("$.broker."):
        return problem(context.scenario, where, "the URL has a password written literally in the file",
                       "use ${ENV_VAR} interpolation, e.g. url: amqp://app:${APP_PASSWORD}@host/vhost", "warning")
    return problem(context.scenario, where, "password is written literally in the file",
                   "use ${ENV_VAR} interpolation, e.g. password: ${APP_PASSWORD}", "warning")


_ZERO_WIDTH = MappingProxyType({"\u200b": "ZERO WIDTH SPACE", "\u200c": "ZERO WIDTH NON-JOINER", "\u200d": "ZERO WIDTH JOINER",
               "\u2060": "WORD JOINER", "\ufeff": "ZERO WIDTH NO-BREAK SPACE"})


def _invisible_characters(context: _Context) -> Iterator[Problem]:
    """A name with a character no one sees: 'orders' and 'orders\u200b' look alike and are two queues."""
    topology, work = context.topology, context.workload
    named: list[tuple[str, str, str]] = [
        *(("exchange", e.name, e.where) for e in topology.exchanges), *(("queue", q.name, q.where) for q in topology.queues),
        *(("user", u.name, u.where) for u in topology.users), *(("vhost", v.name, v.where) for v in topology.vhosts),
        *(("policy", p.name, p.where) for p in topology.policies),
        *(("producer", p.name, p.where) for p in work.producers), *(("consumer", c.name, c.where) for c in work.consumers),
    ]
    for kind, name, where in named:
        hidden = next((c for c in name if c in _ZERO_WIDTH), None)
        if hidden is not None:
            yield problem(context.scenario, f"{where}.name",
                          f"{kind} name '{name}' holds an invisible character, U+{ord(hidden):04X} {_ZERO_WIDTH[hidden]}",
                          "remove it: a name that looks the same without it is another name to RabbitMQ", "warning")


def _multi_ack_above_prefetch(context: _Context) -> Iterator[Problem]:
    for consumer in context.workload.consumers:
        prefetch = consumer.prefetch or 0
        if consumer.ack != "auto" and 0 < prefetch < consumer.multi_ack:
            yield problem(context.scenario, f"{consumer.where}.multi_ack",
                          f"consumer '{consumer.name}' acknowledges every {consumer.multi_ack} messages but may hold only "
                          f"{prefetch} unacknowledged (prefetch): acks go out every {prefetch} messages instead",
                          f"set multi_ack to at most {prefetch}, or raise the prefetch", "warning")


def _unroutable_producers(context: _Context) -> Iterator[Problem]:
    expecting_returns = {e.subject for e in context.scenario.expectations
                         if isinstance(e, model.CountExpectation) and e.subject_kind == "producer" and e.measure == "returned"
                         and e.bounds.high != 0}
    for sent in context.sent:
        result = sent.result
        if not result.unroutable or not result.certain:
            continue
        if sent.producer.mandatory and sent.producer.name in expecting_returns:
            continue  # the file says it expects returns: the unroutable key is meant
        fate = "RabbitMQ returns it (mandatory)" if sent.producer.mandatory else "RabbitMQ drops it"
        yield problem(context.scenario, sent.where,
                      f"producer '{sent.producer.name}' publishes {_message_text(sent.template, sent.key, sent.producer.headers)} "
                      f"to {context.where_exchange(result.exchange)}, which routes it to no queue: {fate}",
                      "bind a queue that matches it, or give the exchange an alternate_exchange; "
                      "`mqspec route` shows where a message goes", "warning")


def _message_text(template: str, key: str, headers: Mapping[str, Any]) -> str:
    text = f"key '{template}'" + (f" (e.g. '{key}')" if key != template else "")
    if headers:
        text += " with headers {" + ", ".join(f"{name}={routing.value_text(value)}" for name, value in headers.items()) + "}"
    return text


def _unreachable_queues(context: _Context) -> Iterator[Problem]:
    for queue in context.unreachable:
        yield problem(context.scenario, f"{queue.where}.name",
                      f"queue '{queue.name}' is not bound to any exchange and no producer publishes to it: nothing reaches it",
                      "bind it to an exchange, point a producer at it, or remove it", "warning")


def _unowned_exclusive_queues(context: _Context) -> Iterator[Problem]:
    """An exclusive queue belongs to the connection that declares it; without one consumer to own it, none does."""
    for queue in context.topology.queues:
        if queue.exclusive and queue.owner is None and not queue.external:
            yield problem(context.scenario, f"{queue.where}.exclusive",
                          f"queue '{queue.name}' is exclusive but no single consumer reads it: nothing declares it",
                          "give it exactly one consumer (of one instance), whose connection then declares and binds it",
                          "warning")


def _growing_queues(context: _Context) -> Iterator[Problem]:
    work = context.workload
    readers = {c.queue for c in work.consumers} | {s.queue for s in work.rpc_servers}
    if not readers:
        return
    inspected = {e.subject for e in context.scenario.expectations
                 if isinstance(e, model.CountExpectation) and e.subject_kind == "queue" and e.measure == "depth"}
    skipped = readers | inspected | {q.name for q in context.unreachable}
    for queue in context.topology.queues:
        if queue.name in skipped or queue.external or queue.exclusive or _limited(context.topology, queue):
            continue
        yield problem(context.scenario, f"{queue.where}.name",
                      f"queue '{queue.name}' has no consumer and no TTL or length limit: its messages pile up forever",
                      "add a consumer, or set message_ttl, max_length or max_length_bytes", "warning")


def _limited(topology: model.Topology, queue: model.Queue) -> bool:
    if queue.has_limit:
        return True
    policies = (routing.effective_policy(topology, "queue", queue.name, operator, queue.type) for operator in (False, True))
    return any(policy is not None and any(key in policy.definition for key in _LIMIT_KEYS) for policy in policies)


def _dead_letter_dead_ends(context: _Context) -> Iterator[Problem]:
    for queue in context.topology.queues:
        exchange, key = routing.dead_letter(context.topology, queue)
        target = None if exchange is None else routing.resolve(context.topology, exchange)
        if exchange is None or target is None or target.external or target.type not in routing.MODELLED_TYPES:
            continue
        message = _dead_letter_problem(context, queue, target, key)
        if message:
            field = "routing_key" if key is not None and queue.dead_letter_routing_key is not None else "exchange"
            where = f"{queue.where}.dead_letter.{field}" if queue.dead_letter_exchange is not None else queue.where
            hint = (f"bind a queue to exchange '{exchange}' with a matching key, or set dead_letter.routing_key to a key it routes"
                    if exchange else "set dead_letter.routing_key to the name of a declared queue")
            yield problem(context.scenario, where, message, hint, "warning")


def _dead_letter_problem(context: _Context, queue: model.Queue, target: model.Exchange, key: str | None) -> str:
    """Why dead-lettered messages of this queue would be dropped, or '' when they are not (or it cannot be told)."""
    arriving = [(sent.key, sent.producer.headers) for sent in context.sent if queue.name in sent.result.queues]
    name = f"dead-letter exchange '{target.name}' of queue '{queue.name}'" if target.name else \
        f"dead-letter exchange (the default exchange) of queue '{queue.name}'"
    if key is not None:
        if target.type == "headers" and not arriving:
            return ""
        samples = [headers for _, headers in arriving] or [{}]
        if any(_drops(context, target.name, key, headers) for headers in samples):
            return f"{name} routes the dead-letter key '{key}' to no queue: dead-lettered messages are dropped"
        return ""
    for original, headers in arriving:
        if _drops(context, target.name, original, headers):
            return (f"{name} routes key '{original}' (the original routing key; the queue sets no dead-letter routing key) "
                    "to no queue: those dead-lettered messages are dropped")
    has_way_out = any(b.source == target.name for b in context.topology.bindings) or routing.alternate_exchange(context.topology, target)
    if not arriving and target.name and not has_way_out:
        return f"{name} has no bindings: dead-lettered messages are dropped"
    return ""


def _drops(context: _Context, exchange: str, key: str, headers: Mapping[str, Any]) -> bool:
    result = routing.route(context.topology, exchange, key, headers, publish=False)
    return result.unroutable and result.certain


def _topic_binding_keys(context: _Context) -> Iterator[Problem]:
    positions: dict[str, int] = {}
    for binding in context.topology.bindings:
        index = positions.get(binding.where, 0)
        positions[binding.where] = index + 1
        source = routing.resolve(context.topology, binding.source)
        if source is None or source.type != "topic":
            continue
        if binding.routing_key == "":
            destination = f"{binding.destination_type} '{binding.destination}'"
            yield problem(context.scenario, binding.where,
                          f"binding of {destination} to topic exchange '{binding.source}' has the empty key: it matches only "
                          "messages whose routing key is empty", "give keys, e.g. keys: ['#'] to match every routing key", "warning")
            continue
        found = topic_key_problem(binding.routing_key)
        if found is not None:
            yield problem(context.scenario, f"{binding.where}.keys[{index}]", found[0], found[1], "warning")


def topic_key_problem(key: str) -> tuple[str, str] | None:
    """What is odd about a non-empty topic binding key (message, hint), or None."""
    words = routing.topic_words(key)
    if "" in words:
        return (f"topic binding key '{key}' has an empty word: it matches only routing keys with an empty word there",
                "remove the extra '.'")
    for word in words:
        glued = next((c for c in "#*" if c in word), None)
        if glued is not None and word != glued:
            return (f"topic binding key '{key}' glues '{glued}' to other characters in '{word}': RabbitMQ matches that word "
                    "literally, not as a wildcard", _WILDCARD_HINT)
    return None


def _routes(context: _Context) -> Iterator[Problem]:
    """`routes:` the oracle cannot prove either way (plugin and external exchanges) are warnings."""
    return (found for found in offline.route_problems(context.scenario) if found.severity == "warning")


def disputed_scalars(doc: Document) -> list[Problem]:
    """Plain values YAML 1.1 tools read otherwise than mqspec does (YAML 1.2): `NO`, `on`, `01234`, `1_000`."""
    return [Problem(doc.path, item.mark[0], item.mark[1], json_path(item.path), _disputed_message(item), _disputed_hint(item),
                    "warning") for item in doc.disputed]


def _disputed_message(item: Disputed) -> str:
    tool = "Go yaml.v2" if item.text in ("y", "Y", "n", "N") else "PyYAML"
    return (f"{shorten(item.text)} reads as {scalars.describe(_as_mqspec(item.yaml12))} in mqspec (YAML 1.2), "
            f"but as {scalars.describe(item.yaml11)} in YAML 1.1 tools such as {tool}")


def _as_mqspec(value: object) -> object:
    return scalars.whole(value) if isinstance(value, float) and math.isfinite(value) else value


def _disputed_hint(item: Disputed) -> str:
    hint = f"quote it ({json.dumps(item.text, ensure_ascii=False)}) if it is text"
    readings = [value for value in (_as_mqspec(item.yaml12), item.yaml11) if isinstance(value, (bool, int, float)) and value is not None]
    forms = list(dict.fromkeys("true" if v is True else "false" if v is False else scalars.plain(v) for v in readings))
    if forms:
        kind = "a boolean" if isinstance(readings[0], bool) else "a number"
        hint += f"; write {' or '.join(forms)} if it is {kind}"
    return hint + ", so that every YAML tool reads the same"


NO_COMMANDS = "refused by --no-commands"


def file_as_code(doc: Document, refuse: bool = False) -> list[Problem]:
    """What a scenario makes this machine do besides talking to the broker: commands it runs, files it reads from
    outside its folder. Warnings, so that a reader sees them; errors with --no-commands, for files you did not write."""
    data = _dict(doc.data)
    broker, workload = _dict(data.get("broker")), _dict(data.get("workload"))
    found = [_command_problem(doc, i, command, refuse) for i, command in enumerate(_list(broker.get("restart_command")))
             if isinstance(command, list) and all(isinstance(part, str) for part in command)
             and (refuse or tuple(command) not in model.BrokerSettings().restart_command)]  # the default warns nowhere
    if refuse and "restart_command" not in broker:
        found += [doc.problem(("workload", "faults", i, "action"), "restart_broker runs broker.restart_command (by default "
                              f"`rabbitmqctl stop_app` and `rabbitmqctl start_app`) on this machine: {NO_COMMANDS}",
                              "run the file without --no-commands once you have read it")
                  for i, fault in enumerate(_list(workload.get("faults")))
                  if isinstance(fault, dict) and fault.get("action") == "restart_broker"]
    for i, producer in enumerate(_list(workload.get("producers"))):
        body_file = producer.get("body_file") if isinstance(producer, dict) else None
        if isinstance(body_file, str) and _outside(doc, body_file):
            found.append(doc.problem(("workload", "producers", i, "body_file"),
                                     f"body_file '{body_file}' is outside the scenario's folder: apply publishes that file's bytes "
                                     f"to the broker{': ' + NO_COMMANDS if refuse else ''}",
                                     "keep message bodies next to the scenario, and read a file you did not write before running it",
                                     "error" if refuse else "warning"))
    return found


def _command_problem(doc: Document, index: int, command: list[str], refuse: bool) -> Problem:
    shown = " ".join(shlex.quote(part) for part in command)
    return doc.problem(("broker", "restart_command", index), f"runs the command `{shorten(shown, 120)}` on this machine when a "
                       f"restart_broker fault fires{': ' + NO_COMMANDS if refuse else ''}",
                       "read the commands of a file you did not write before running it; --no-commands refuses such files",
                       "error" if refuse else "warning")


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _outside(doc: Document, body_file: str) -> bool:
    """Whether the file lies outside the scenario's folder once symbolic links are followed (the edge followed
    them: doc.inputs.real)."""
    if Path(body_file).expanduser().is_absolute():
        return True
    path, folder = inputs.input_path(doc.path, body_file), inputs.folder_of(doc.path)
    real_folder = Path(doc.inputs.real.get(folder) or os.path.normpath(folder))  # normpath: text only, no file system
    return not Path(doc.inputs.real.get(path) or os.path.normpath(path)).is_relative_to(real_folder)


_TOPOLOGY_CHECKS = (_invisible_characters, _dead_letter_dead_ends, _topic_binding_keys, _routes)
