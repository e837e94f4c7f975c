"""From a scenario file to a Scenario, or to the list of every problem found on the way."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from mqspec.core import cluster_checks, lint, model, offline, parameters, private, schema, semantics, shapes, superstreams, units
from mqspec.core.document import Document, DocumentError, JsonPathMarks, PathKey, json_path, parse_bytes, parse_json_path
from mqspec.core.inputs import InputFiles, input_path
from mqspec.core.problems import Problem, errors
from mqspec.core.vocabulary import vhost_of as vhost_of

DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"


class Overrides(NamedTuple):
    """Broker settings from the command line or the environment; they beat the file."""

    url: str | None = None
    management_url: str | None = None
    # --no-commands: refuse a file that runs commands or reads files outside its folder (a file you did not write)
    no_commands: bool = False


class Loaded(NamedTuple):
    scenario: model.Scenario | None
    problems: list[Problem]
    # passwords met while loading (users, URLs, ${ENV}): scrub them from every message
    secrets: frozenset[str] = frozenset()


def load_bytes(raw: bytes, path: str, overrides: Overrides = Overrides(), env: Mapping[str, str] | None = None) -> Loaded:
    """Parse, check against the schema and RabbitMQ's rules, and build the scenario; `path` names the file in
    messages and is where relative paths in it start from."""
    try:
        doc = parse_bytes(raw, path, {} if env is None else env)
    except DocumentError as exc:
        return Loaded(None, exc.problems)
    return load_document(doc, overrides)


def load_document(doc: Document, overrides: Overrides = Overrides()) -> Loaded:
    """load_bytes after parsing: for a document already parsed (or composed of several, core/compose.py)."""
    seen = {p.path for p in doc.problems}
    problems = doc.problems + lint.disputed_scalars(doc) + [p for p in schema.check(doc) if p.path not in seen]
    problems += lint.file_as_code(doc, refuse=overrides.no_commands)
    if errors(problems):
        return Loaded(None, problems + _semantics_of_the_rest(doc, overrides, errors(doc.problems)))
    scenario = build(doc, overrides)
    problems += semantics.check(scenario, doc)
    problems += [p for p in cluster_checks.check(scenario, doc) if p not in problems]
    if not errors(problems):
        problems += offline.check(scenario)
    return Loaded(None if errors(problems) else scenario, problems, frozenset(doc.secrets | secrets_of(scenario)))


# A value put where a required one was taken out, so the rest of the document still builds.
_UNKNOWN_EXCHANGE_TYPE = "x-mqspec-unknown-type"
_ENTITY_LISTS = (("topology", "exchanges"), ("topology", "queues"))


def _semantics_of_the_rest(doc: Document, overrides: Overrides, reading_errors: list[Problem]) -> list[Problem]:
    """RabbitMQ's rules on what is left when the values with schema problems are taken out.

    So that a typo does not hide a dangling binding elsewhere. A bad value is removed from its mapping (a bad
    list item takes the list with it, inside an entity); a required value is put back as a placeholder; an
    exchange or queue whose `type` is wrong stays, typed unknown, and the checks of that entity itself are left
    out (they depend on its type). Problems at, inside or around a removed value are left out: they may only
    echo it. When the document cannot be made valid that way, the semantic layer waits for the next run.
    """
    bad = schema.errors_at(doc) + [(key, "reading") for p in reading_errors if (key := parse_json_path(p.path)) is not None]
    data = copy.deepcopy(doc.data)
    removed: dict[PathKey, Any] = {}
    untyped: list[PathKey] = []
    for path, validator in bad:
        if validator == "required":
            _put(data, path, _placeholder(path, None))
            removed[path] = None
            continue
        key = _mapping_key(path)
        if key is None:
            return []
        if key[-1] == "type" and key[:2] in _ENTITY_LISTS and len(key) == 4:
            untyped.append(key[:-1])
            _put(data, key, _UNKNOWN_EXCHANGE_TYPE if key[1] == "exchanges" else "classic")
        elif key not in removed:
            original = _at(data, key)
            if not _remove(data, key):
                return []
            removed[key] = original
    rest = Document(doc.path, data, doc.marks, doc.interpolated)
    if not _refill_required(rest, removed):
        return []
    try:
        checked = semantics.check(build(rest, overrides), rest)
    except Exception:  # noqa: BLE001 - best effort on a document already known to be invalid
        return []
    skip = _Skipped(list(removed), untyped)
    return [p for p in checked if not skip.covers(p)]


def _mapping_key(path: PathKey) -> PathKey | None:
    """The mapping key to take out for a bad value at path: a bad list item takes its list along, but only inside
    one entry (taking out all queues, or all of the topology, would make every reference to them dangle)."""
    while path and isinstance(path[-1], int):
        path = path[:-1]
    if not path or (len(path) <= 2 and path[0] in ("topology", "workload", "expect")):
        return None
    return path


def _refill_required(rest: Document, removed: dict[PathKey, Any]) -> bool:
    """Put a placeholder where a removal left a required key missing; False when the rest stays invalid."""
    missing = {path for path, validator in schema.errors_at(rest) if validator == "required"}
    for path in missing:
        _put(rest.data, path, _placeholder(path, removed.get(path)))
        removed.setdefault(path, None)
    return not schema.errors_at(rest)


def _placeholder(path: PathKey, original: Any) -> Any:
    if path[-1] == "definition":
        return {}
    if path[-1] == "to":
        return []
    if path[-1] == "action":
        return "close_connections"
    if path == ("version",):
        return 1
    if isinstance(original, (int, float, str)) and not isinstance(original, bool) and str(original):
        return str(original)  # `name: 123` is most likely meant as '123', which references may name
    return f"(value at {json_path(path)})"


class _Skipped:
    """Which problems of the partial check to leave out: at, inside or around a removed value, inside an untyped entity."""

    def __init__(self, removed: list[PathKey], untyped: list[PathKey]) -> None:
        self.exact = set(removed)
        self.around = {path[:end] for path in removed for end in range(len(path))}
        self.entities = set(untyped)

    def covers(self, found: Problem) -> bool:
        if _UNKNOWN_EXCHANGE_TYPE in found.message:
            return True
        path = parse_json_path(found.path)
        if path is None:
            return False
        prefixes = {path[:end] for end in range(len(path) + 1)}
        return path in self.around or bool(prefixes & self.exact) or bool(prefixes & self.entities)


def _put(data: Any, path: PathKey, value: Any) -> None:
    parent = _at(data, path[:-1])
    if isinstance(parent, dict):
        parent[path[-1]] = value


def _remove(data: Any, path: tuple[str | int, ...]) -> bool:
    parent = _at(data, path[:-1])
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
        return True
    return False


def secrets_of(scenario: model.Scenario) -> set[str]:
    """The passwords a scenario holds, to be scrubbed from every message mqspec prints."""
    found = {user.password for user in scenario.topology.users if user.password}
    if scenario.broker.tls.key_password:
        found.add(scenario.broker.tls.key_password)
    for url in (*scenario.broker.urls, scenario.broker.management_url or ""):
        parts = urlsplit(url)
        if parts.password and parts.password != parts.username:  # guest:guest is no secret, and hiding it hides the user
            found.add(unquote(parts.password))
    return found


def build(doc: Document, overrides: Overrides = Overrides()) -> model.Scenario:
    data: dict[str, Any] = doc.data
    broker = _broker(data.get("broker", {}), overrides, doc.path)
    vhost = vhost_of(broker.url)
    marks = JsonPathMarks(doc.marks)
    topologies, scope = _topologies(data.get("topology", {}), vhost)
    # the workload runs in the default vhost: its consumers' own queues belong to that vhost's topology
    consumers = [c for _, c in shapes.expand(data.get("workload", {}).get("consumers", []))]
    default = private.with_private_queues(topologies[0], consumers)
    topologies = (default, *topologies[1:])
    literal = tuple(json_path(("topology", "users", i, "password")) for i, user in enumerate(data.get("topology", {}).get("users", []))
                    if "password" in user and ("topology", "users", i, "password") not in doc.interpolated)
    literal += tuple(json_path(path) for path in _url_paths(data.get("broker", {}))
                     if path not in doc.interpolated and _literal_url_password(_at(data, path)))
    return model.Scenario(
        name=data["name"],
        path=doc.path,
        description=data.get("description", ""),
        broker=broker,
        topology=default,
        workload=_workload(data.get("workload", {}), doc.path, doc.inputs),
        expectations=tuple(_expectation(e, f"$.expect[{i}]") for i, e in enumerate(data.get("expect", []))),
        marks=marks,
        literal_passwords=literal,
        topologies=topologies,
        scope=scope,
    )


def _url_paths(broker: Any) -> list[tuple[Any, ...]]:
    """Where the file may write a URL with credentials: broker.url (one or a list) and broker.management_url."""
    if not isinstance(broker, dict):
        return []
    url = broker.get("url")
    paths: list[tuple[Any, ...]] = [("broker", "url", i) for i in range(len(url))] if isinstance(url, list) else [("broker", "url")]
    return [*paths, ("broker", "management_url")]


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _literal_url_password(url: Any) -> bool:
    """A URL with a password other than RabbitMQ's well-known guest:guest default."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return False
    return bool(password) and (unquote(parts.username or ""), unquote(password or "")) != ("guest", "guest")


def _tls(data: dict[str, Any], scenario_path: str) -> model.TlsSettings:
    settings: dict[str, Any] = dict(data)
    for key in ("ca_file", "cert_file", "key_file"):
        if key in settings:
            settings[key] = input_path(scenario_path, settings[key])
    return model.TlsSettings(**settings)


def _node(data: dict[str, Any], where: str) -> model.Node:
    return model.Node(
        name=data["name"], url=data["url"], management_url=data.get("management_url"),
        rabbitmq_node=data.get("rabbitmq_node"), ctl=tuple(data.get("rabbitmqctl", ("rabbitmqctl",))),
        stop=tuple(data.get("stop", ())), start=tuple(data.get("start", ())), kill=tuple(data.get("kill", ())),
        netns=data.get("netns"), interface=data.get("interface"), where=where)


def _node_management(nodes: tuple[model.Node, ...], url: str) -> str | None:
    """The management API of the node behind the first URL, when broker.nodes names it."""
    return next((n.management_url for n in nodes if n.url == url), None)


def _broker(data: dict[str, Any], overrides: Overrides, scenario_path: str) -> model.BrokerSettings:
    nodes = tuple(_node(n, f"$.broker.nodes[{i}]") for i, n in enumerate(data.get("nodes", [])))
    urls_in_file = data.get("url", [n.url for n in nodes] or DEFAULT_URL)
    urls = (overrides.url,) if overrides.url else tuple(urls_in_file if isinstance(urls_in_file, list) else [urls_in_file])
    tls = data.get("tls", {})
    restart = data.get("restart_command")
    defaults = model.BrokerSettings()
    return model.BrokerSettings(
        urls=urls,
        management_url=overrides.management_url or data.get("management_url") or _node_management(nodes, urls[0]),
        heartbeat=units.seconds(data["heartbeat"]) if "heartbeat" in data else None,
        connect_timeout=units.seconds(data.get("connect_timeout", 5)),
        connection_name=data.get("connection_name"),
        tls=_tls(tls, scenario_path),
        restart_command=tuple(tuple(c) for c in restart) if restart else defaults.restart_command,
        nodes=nodes,
    )


# Sections whose entries belong to one vhost: their `vhost:` field, or the broker URL's vhost.
VHOST_SCOPED = ("policies", "operator_policies", "exchanges", "queues", "bindings", *parameters.SECTIONS, "parameters")


def _topologies(data: dict[str, Any], default: str) -> tuple[tuple[model.Topology, ...], tuple[str, ...]]:
    """One topology per vhost, the default vhost's first (it also holds users, vhosts, permissions and global
    parameters); and the vhosts the file declares, which --prune stays inside."""
    named = [e.get("vhost", default) for key in VHOST_SCOPED for e in data.get(key, []) if isinstance(e, dict)]
    declared = [v["name"] for v in data.get("vhosts", []) if isinstance(v, dict) and "name" in v]
    scope = tuple(dict.fromkeys([*named, *declared]))
    others = sorted(v for v in scope if v != default)
    groups = _Groups(default, *(_by_vhost(entries, default) for entries in (
        enumerate(data.get("exchanges", [])), shapes.expand(data.get("queues", [])),
        shapes.expand(data.get("bindings", [])))))
    first = _topology(data, default, groups, cluster=True)
    return (first, *(_topology(data, v, groups, cluster=False) for v in others)), scope


class _Groups(NamedTuple):
    """The large lists' entries by the vhost they name (the default where they name none), each with its index in
    the file: read once, not once per vhost."""

    default: str
    exchanges: Mapping[str | None, list[tuple[int, Any]]]
    queues: Mapping[str | None, list[tuple[int, Any]]]
    bindings: Mapping[str | None, list[tuple[int, Any]]]


def _by_vhost(entries: Iterable[tuple[int, Any]], default: str) -> dict[str | None, list[tuple[int, Any]]]:
    groups: dict[str | None, list[tuple[int, Any]]] = {}
    for index, entry in entries:
        named = entry.get("vhost", default) if isinstance(entry, dict) else None
        groups.setdefault(named if isinstance(named, str) else None, []).append((index, entry))
    return groups


def _topology(data: dict[str, Any], vhost: str, groups: _Groups, cluster: bool = True) -> model.Topology:
    """The entities of one vhost: those naming it, and (for the default vhost) those naming none."""
    def mine(entry: Mapping[str, Any]) -> bool:
        named = entry.get("vhost", groups.default) if isinstance(entry, dict) else None
        return bool(named == vhost)

    scoped = model.Topology(
        vhost=vhost,
        policies=_policies(data, "policies", False, mine) + _policies(data, "operator_policies", True, mine),
        exchanges=tuple(_exchange(e, f"$.topology.exchanges[{i}]") for i, e in groups.exchanges.get(vhost, ())),
        queues=tuple(_queue(q, f"$.topology.queues[{i}]") for i, q in groups.queues.get(vhost, ())),
        bindings=tuple(b for i, entry in groups.bindings.get(vhost, ())
                       for b in _bindings(entry, f"$.topology.bindings[{i}]")),
        parameters=parameters.from_document(data, mine),
    )
    if not cluster:
        return scoped
    return replace(
        _with_super_streams(scoped, data),
        vhosts=tuple(_vhost(v, f"$.topology.vhosts[{i}]") for i, v in enumerate(data.get("vhosts", []))),
        users=tuple(_user(u, f"$.topology.users[{i}]") for i, u in enumerate(data.get("users", []))),
        permissions=tuple(model.Permission(p["user"], p.get("vhost", vhost), p.get("configure", ""), p.get("write", ""),
                                           p.get("read", ""), f"$.topology.permissions[{i}]")
                          for i, p in enumerate(data.get("permissions", []))),
        topic_permissions=tuple(model.TopicPermission(p["user"], p.get("vhost", vhost), p["exchange"], p.get("write", ".*"),
                                                      p.get("read", ".*"), f"$.topology.topic_permissions[{i}]")
                                for i, p in enumerate(data.get("topic_permissions", []))),
        global_parameters=parameters.globals_from_document(data),
    )


def _with_super_streams(declared: model.Topology, data: dict[str, Any]) -> model.Topology:
    """Super streams (in the default vhost): their exchange, partition streams and bindings join the topology."""
    entries = data.get("super_streams", [])
    supers = tuple(superstreams.of(s, f"$.topology.super_streams[{i}]") for i, s in enumerate(entries))
    if not supers:
        return declared
    parts = [superstreams.entities(s, entries[i].get("arguments", {})) for i, s in enumerate(supers)]
    return replace(declared, super_streams=supers,
                   exchanges=declared.exchanges + tuple(exchange for exchange, _, _ in parts),
                   queues=declared.queues + tuple(q for _, queues, _ in parts for q in queues),
                   bindings=declared.bindings + tuple(b for _, _, bindings in parts for b in bindings))


def _user(data: dict[str, Any], where: str) -> model.User:
    return model.User(data["name"], data.get("password"), tuple(data.get("tags", [])), where, data.get("password_hash"),
                      data.get("hashing_algorithm"), dict(data.get("limits", {})))


def _vhost(data: dict[str, Any], where: str) -> model.VHost:
    return model.VHost(data["name"], data.get("description", ""), tuple(data.get("tags", [])),
                       data.get("default_queue_type"), dict(data.get("limits", {})), where)


def _policies(data: dict[str, Any], key: str, operator: bool,
              mine: Callable[[Mapping[str, Any]], bool]) -> tuple[model.Policy, ...]:
    return tuple(model.Policy(p["name"], p["pattern"], dict(p["definition"]), p.get("apply_to", "all"), p.get("priority", 0),
                              operator, f"$.topology.{key}[{i}]") for i, p in enumerate(data.get(key, [])) if mine(p))


def _exchange(data: dict[str, Any], where: str) -> model.Exchange:
    args = dict(data.get("arguments", {}))
    if "alternate_exchange" in data:
        args["alternate-exchange"] = data["alternate_exchange"]
    return model.Exchange(data["name"], data.get("type", "direct"), data.get("durable", True), data.get("auto_delete", False),
                          data.get("internal", False), args, data.get("external", False), where)


def queue_arguments(data: Mapping[str, Any]) -> dict[str, Any]:
    """Friendly queue fields folded into x-arguments; raw `arguments` win on conflict."""
    args: dict[str, Any] = {}
    for field_name in ("message_ttl", "expires"):
        if field_name in data:
            args[model.QUEUE_ARGUMENT_NAMES[field_name]] = units.milliseconds(data[field_name])
    if "max_length_bytes" in data:
        args["x-max-length-bytes"] = units.size_bytes(data["max_length_bytes"])
    for field_name in ("max_length", "overflow", "max_priority", "single_active_consumer", "delivery_limit"):
        if field_name in data:
            args[model.QUEUE_ARGUMENT_NAMES[field_name]] = data[field_name]
    dead_letter = data.get("dead_letter")
    if dead_letter is not None:
        args["x-dead-letter-exchange"] = dead_letter["exchange"]
        if "routing_key" in dead_letter:
            args["x-dead-letter-routing-key"] = dead_letter["routing_key"]
    args.update(data.get("arguments", {}))
    return args


def _queue(data: dict[str, Any], where: str) -> model.Queue:
    args = queue_arguments(data)
    queue_type = args.pop("x-queue-type", data.get("type", "classic"))
    return model.Queue(data["name"], queue_type, data.get("durable", True), data.get("exclusive", False),
                       data.get("auto_delete", False), args, data.get("external", False), where)


def _bindings(data: dict[str, Any], where: str) -> list[model.Binding]:
    args = dict(data.get("arguments", {}))
    if "match" in data:
        args["x-match"] = data["match"]
    args.update(data.get("headers", {}))
    kind: model.DestinationType = "exchange" if "to_exchange" in data else "queue"
    destination = data["to_exchange"] if kind == "exchange" else data.get("queue", "")
    return [model.Binding(data["exchange"], destination, kind, key, args, where) for key in data.get("keys", [""])]


def _workload(data: dict[str, Any], scenario_path: str, inputs: InputFiles) -> model.Workload:
    return model.Workload(
        producers=tuple(_producer(p, f"$.workload.producers[{i}]", scenario_path, inputs)
                        for i, p in shapes.expand(data.get("producers", []))),
        consumers=tuple(_consumer(c, f"$.workload.consumers[{i}]") for i, c in shapes.expand(data.get("consumers", []))),
        rpc_servers=tuple(model.RpcServer(s["name"], s["queue"], s.get("prefetch", 1), s.get("handler", "echo"),
                                          _processing(s.get("processing_time")), s.get("instances", 1), f"$.workload.rpc_servers[{i}]")
                          for i, s in enumerate(data.get("rpc_servers", []))),
        rpc_clients=tuple(model.RpcClient(c["name"], c["queue"], c.get("requests", 10), c.get("concurrency", 1),
                                          units.seconds(c.get("timeout", 5)), c.get("body"), c.get("direct_reply_to", False),
                                          f"$.workload.rpc_clients[{i}]")
                          for i, c in enumerate(data.get("rpc_clients", []))),
        faults=tuple(_fault(f, f"$.workload.faults[{i}]") for i, f in enumerate(data.get("faults", []))),
        duration=_opt_seconds(data.get("duration")),
        timeout=units.seconds(data.get("timeout", 60)),
        drain_timeout=units.seconds(data.get("drain_timeout", 10)),
        workers=data.get("workers"),
        timeout_ok=data.get("timeout_ok", False),
        engine=data.get("engine", "local"),
        read_wait="auto" if data.get("read_wait", "auto") == "auto" else units.seconds(data["read_wait"]),
    )


def _opt_seconds(value: Any) -> float | None:
    return None if value is None else units.seconds(value)


def _producer(data: dict[str, Any], where: str, scenario_path: str, inputs: InputFiles) -> model.Producer:
    queue = data.get("queue")
    keys = tuple(data["routing_keys"]) if "routing_keys" in data else ((queue,) if queue else ("",))
    body: bytes | None = None
    template: str | None = None
    sizes = _sizes(data.get("size"))
    if "body" in data:
        template = data["body"]
    if "body_file" in data:
        body = inputs.bodies.get(input_path(scenario_path, data["body_file"]), b"")
    return model.Producer(
        name=data["name"], exchange=data.get("exchange", model.DEFAULT_EXCHANGE), queue=queue, routing_keys=keys,
        key_order=data.get("key_order", "round_robin"), messages=data.get("messages"), duration=_opt_seconds(data.get("duration")),
        rate=units.per_second(data["rate"]) if "rate" in data and not isinstance(data["rate"], list) else None,
        size=sizes.largest if sizes is not None else units.size_bytes(data.get("size", 100)),
        body=body, body_template=template, content_type=data.get("content_type"), headers=dict(data.get("headers", {})),
        priority=data.get("priority"), expiration_ms=units.milliseconds(data["expiration"]) if "expiration" in data else None,
        persistent=data.get("persistent", False), mandatory=data.get("mandatory", False), confirm=data.get("confirm"),
        instances=data.get("instances", 1), start_after=units.seconds(data.get("start_after", 0)), where=where,
        protocol=data.get("protocol", "amqp"), filter_value=data.get("filter_value"), super_stream=data.get("super_stream"),
        rate_profile=_rate_profile(data["rate"], f"{where}.rate") if isinstance(data.get("rate"), list) else None, sizes=sizes,
    )


def _rate_profile(entries: list[dict[str, Any]], where: str) -> shapes.RateProfile:
    """Steps, ramps and bursts; a ramp starts from the rate before it (0 at the start)."""
    steps: list[shapes.RateStep] = []
    rate = 0.0
    for i, entry in enumerate(entries):
        seconds = units.seconds(entry["for"]) if "for" in entry else (0.0 if "rate" not in entry else None)
        start = units.per_second(entry["rate"]) if "rate" in entry else rate
        end = units.per_second(entry["ramp_to"]) if "ramp_to" in entry else start
        steps.append(shapes.RateStep(seconds, start, end, int(entry.get("burst", 0)), f"{where}[{i}]"))
        rate = end
    return shapes.RateProfile(tuple(steps))


def _sizes(value: Any) -> shapes.SizeDistribution | None:
    """`size` as a uniform range {min, max} or a weighted list [{size, weight}]; None for one fixed size."""
    if isinstance(value, dict):
        return shapes.SizeDistribution("uniform", units.size_bytes(value["min"]), units.size_bytes(value["max"]))
    if isinstance(value, list):
        choices = tuple((units.size_bytes(c["size"]), float(c.get("weight", 1))) for c in value)
        return shapes.SizeDistribution("weighted", min(s for s, _ in choices), max(s for s, _ in choices), choices)
    return None


def _processing(value: Any) -> model.ProcessingTime:
    if value is None:
        return model.ProcessingTime()
    if isinstance(value, dict) and "distribution" in value:
        mean = units.seconds(value["mean"])
        return model.ProcessingTime(0.0, 0.0, value["distribution"], mean, units.seconds(value.get("stddev", 0)))
    if isinstance(value, dict):
        return model.ProcessingTime(units.seconds(value["min"]), units.seconds(value["max"]))
    fixed = units.seconds(value)
    return model.ProcessingTime(fixed, fixed)


def _consumer(data: dict[str, Any], where: str) -> model.Consumer:
    return model.Consumer(
        name=data["name"], queue=private.queue_name(data), instances=data.get("instances", 1), prefetch=data.get("prefetch"),
        ack=data.get("ack", "manual"), multi_ack=data.get("multi_ack", 1), processing_time=_processing(data.get("processing_time")),
        reject=data.get("reject", 0.0), nack=data.get("nack", 0.0), requeue=data.get("requeue", False),
        crash_after=data.get("crash_after"), exclusive=data.get("exclusive", False), priority=data.get("priority"),
        messages=data.get("messages"), idle_timeout=_opt_seconds(data.get("idle_timeout")), where=where,
        protocol=data.get("protocol", "amqp"), offset=stream_offset(data["offset"]) if "offset" in data else None,
        filter=tuple(data.get("filter", ())), single_active_consumer=data.get("single_active_consumer", False),
    )


def stream_offset(value: Any) -> model.StreamOffset:
    """first | last | next | 42 | '10m' (ago) | '2024-05-01T12:00:00Z' (no zone: UTC)."""
    if value in ("first", "last", "next"):
        return model.StreamOffset(value)
    if isinstance(value, int):
        return model.StreamOffset("offset", offset=value)
    if units.is_duration(value):
        return model.StreamOffset("timestamp", ago=units.seconds(value))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return model.StreamOffset("timestamp")   # neither a moment nor a duration: semantics says so
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return model.StreamOffset("timestamp", timestamp_ms=round(moment.timestamp() * 1000))


def _bounds(value: Any) -> model.Bounds:
    if isinstance(value, int):
        return model.Bounds(value, value)
    return model.Bounds(value.get("min"), value.get("max"))


_SUBJECTS: tuple[model.SubjectKind, ...] = ("consumer", "producer", "queue", "rpc")


def _fault(data: dict[str, Any], where: str) -> model.Fault:
    loss = data.get("loss")
    return model.Fault(
        data["action"], _opt_seconds(data.get("at")), data.get("after_messages"), data.get("consumer"), where,
        node=data.get("node"), groups=tuple(tuple(g) for g in data.get("groups", ())), lasts=_opt_seconds(data.get("for")),
        delay=_opt_seconds(data.get("delay")), loss=float(loss) if loss is not None else None,
        command=tuple(data.get("command", ())), undo=tuple(data.get("undo", ())))


def _expectation(data: dict[str, Any], where: str) -> model.Expectation:
    text = data.get("description", "")
    if data.get("no_loss"):
        allowed = data["no_loss"] if isinstance(data["no_loss"], dict) else {}
        return model.NoLoss(bool(allowed.get("allow_discarded", False)), text, where)
    if data.get("no_duplicates"):
        return model.NoDuplicates(text, where)
    if "balanced" in data:
        return model.Balanced(tuple(data["balanced"]), data.get("tolerance", 1), text, where)
    if "every_message" in data:
        return model.EveryMessage(tuple(data["every_message"]), text, where)
    if "latency" in data:
        return model.LatencyBound({k: units.seconds(v) for k, v in data["latency"].items()}, text, where)
    if "confirm_latency" in data:
        bounds = {k: units.seconds(v) for k, v in data["confirm_latency"].items()}
        return model.LatencyBound(bounds, text, where, producer=data.get("producer", ""))
    if "routes" in data:
        routes = tuple(model.Route(r.get("exchange", ""), r.get("key", ""), dict(r.get("headers", {})), tuple(r["to"]),
                                   f"{where}.routes[{i}]") for i, r in enumerate(data["routes"]))
        return model.Routes(routes, text, where)
    if "rpc" in data and "answered" in data:
        answered = data["answered"]
        return model.RpcAnswered(data["rpc"], None if answered == "all" else _bounds(answered), text, where)
    measure = next((k for k in data if k not in (*_SUBJECTS, "description")), "received")
    outcome = not any(k in data for k in _SUBJECTS) and measure in model.OUTCOME_MEASURES
    kind: model.SubjectKind = "outcomes" if outcome else next((k for k in _SUBJECTS if k in data), "consumer")
    return model.CountExpectation(kind, data.get(kind, ""), measure, _bounds(data.get(measure, 0)), text, where)
