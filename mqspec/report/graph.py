"""The topology and workload as a graph, written as Mermaid or Graphviz dot text.

Exchanges are hexagons, queues cylinders, producers parallelograms, consumers rounded boxes. Bindings are
edges labelled with their keys (or header matches); exchange-to-exchange bindings are thick; alternate
exchange and dead-letter links are dashed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from mqspec.core import model, routing

NodeKind = Literal["exchange", "queue", "producer", "consumer"]
EdgeKind = Literal["binding", "e2e", "alternate", "dead_letter", "publish", "consume"]
MAX_KEYS_SHOWN = 3


@dataclass(frozen=True)
class Node:
    id: str
    lines: tuple[str, ...]
    kind: NodeKind
    vhost: str = ""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str
    kind: EdgeKind


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    vhosts: tuple[str, ...] = ()      # more than one: each vhost's nodes are grouped, the default vhost's first


class _Builder:
    def __init__(self, scenario: model.Scenario) -> None:
        self.scenario = scenario
        self.topology = scenario.topology
        self.workload = scenario.workload
        self.nodes: dict[tuple[str, NodeKind, str], Node] = {}
        self.edges: dict[tuple[str, str, EdgeKind], list[str]] = {}

    def node(self, kind: NodeKind, name: str, lines: tuple[str, ...] | None = None) -> str:
        vhost = self.topology.vhost
        found = self.nodes.get((vhost, kind, name))
        if found is None:
            count = sum(1 for _, k, _ in self.nodes if k == kind)
            found = Node(f"{kind[0]}{count + 1}", lines or (name,), kind, vhost)
            self.nodes[(vhost, kind, name)] = found
        return found.id

    def exchange(self, name: str) -> str:
        exchange = routing.resolve(self.topology, name) or model.Exchange(name, "unknown")
        details = [exchange.type] + ["internal"] * exchange.internal + ["external"] * exchange.external
        return self.node("exchange", name, (routing.display(name), ", ".join(details)))

    def queue(self, name: str) -> str:
        queue = self.topology.queue(name)
        details = [] if queue is None or queue.type == "classic" else [queue.type]
        return self.node("queue", name, (name, *details))

    def edge(self, source: str, target: str, kind: EdgeKind, label: str = "") -> None:
        labels = self.edges.setdefault((source, target, kind), [])
        if label and label not in labels:
            labels.append(label)

    def build(self) -> Graph:
        """Every vhost's entities; the workload runs in the default vhost (the first)."""
        topologies = self.scenario.every_vhost()
        for index, topology in enumerate(topologies):
            self.topology = topology
            for exchange in topology.exchanges:
                self.exchange(exchange.name)
            for queue in topology.queues:
                self.queue(queue.name)
            self._bindings()
            self._alternates_and_dead_letters()
            if index == 0:
                self._producers()
                self._readers()
        edges = tuple(Edge(s, t, _join(labels), kind) for (s, t, kind), labels in self.edges.items())
        shown = [t.vhost for t in topologies if any(n.vhost == t.vhost for n in self.nodes.values())]
        return Graph(tuple(self.nodes.values()), edges, tuple(shown) if len(shown) > 1 else ())

    def _bindings(self) -> None:
        for binding in self.topology.bindings:
            source = routing.resolve(self.topology, binding.source)
            label = routing.binding_label(source.type if source else "direct", binding)
            start = self.exchange(binding.source)
            if binding.destination_type == "exchange":
                self.edge(start, self.exchange(binding.destination), "e2e", label)
            else:
                self.edge(start, self.queue(binding.destination), "binding", label)

    def _alternates_and_dead_letters(self) -> None:
        for exchange in self.topology.exchanges:
            alternate = routing.alternate_exchange(self.topology, exchange)
            if alternate is not None:
                self.edge(self.exchange(exchange.name), self.exchange(alternate), "alternate", "alternate")
        for queue in self.topology.queues:
            dead_letter, key = routing.dead_letter(self.topology, queue)
            if dead_letter is not None:
                label = f"dead-letter: {key}" if key is not None else "dead-letter"
                self.edge(self.queue(queue.name), self.exchange(dead_letter), "dead_letter", label)

    def _producers(self) -> None:
        for producer in self.workload.producers:
            start = self.node("producer", producer.name, _instances(producer.name, producer.instances))
            if producer.queue is not None:
                self.edge(start, self.queue(producer.queue), "publish", "(default exchange)")
                continue
            if producer.exchange == model.DEFAULT_EXCHANGE:
                self._default_publishes(start, producer)
                continue
            exchange = routing.resolve(self.topology, producer.exchange)
            if exchange is not None and exchange.type == "headers" and producer.headers:
                label = " ".join(f"{k}={routing.value_text(v)}" for k, v in producer.headers.items())
            else:
                label = _keys(producer.routing_keys)
            self.edge(start, self.exchange(producer.exchange), "publish", label)

    def _default_publishes(self, start: str, producer: model.Producer) -> None:
        for key in producer.routing_keys:
            if self.topology.queue(key) is not None:
                self.edge(start, self.queue(key), "publish", "(default exchange)")
            else:
                self.edge(start, self.exchange(""), "publish", key)

    def _readers(self) -> None:
        for consumer in self.workload.consumers:
            reader = self.node("consumer", consumer.name, _instances(consumer.name, consumer.instances))
            self.edge(self.queue(consumer.queue), reader, "consume")
        for server in self.workload.rpc_servers:
            reader = self.node("consumer", server.name, (*_instances(server.name, server.instances), "rpc server"))
            self.edge(self.queue(server.queue), reader, "consume")
        for client in self.workload.rpc_clients:
            writer = self.node("producer", client.name, (client.name, "rpc client"))
            self.edge(writer, self.queue(client.queue), "publish", "request")


def _instances(name: str, instances: int) -> tuple[str, ...]:
    return (name, f"×{instances}") if instances > 1 else (name,)


def _keys(keys: Iterable[str]) -> str:
    shown = [k for k in keys if k]
    more = len(shown) - MAX_KEYS_SHOWN
    return ", ".join(shown[:MAX_KEYS_SHOWN]) + (f" +{more} more" if more > 0 else "")


def _join(labels: list[str]) -> str:
    return ", ".join(labels)


def _grouped(graph: Graph) -> list[tuple[str | None, list[Node]]]:
    """The nodes as one group (one vhost), or one group per vhost."""
    if not graph.vhosts:
        return [(None, list(graph.nodes))]
    return [(vhost, [n for n in graph.nodes if n.vhost == vhost]) for vhost in graph.vhosts]


def build(scenario: model.Scenario) -> Graph:
    return _Builder(scenario).build()


_MERMAID_SHAPES = MappingProxyType({
    "exchange": ('{{"', '"}}'),
    "queue": ('[("', '")]'),
    "producer": ('[/"', '"/]'),
    "consumer": ('(["', '"])'),
})
_MERMAID_ARROWS = MappingProxyType({"binding": "-->", "e2e": "==>", "alternate": "-.->", "dead_letter": "-.->", "publish": "-->",
                                    "consume": "-->"})
_MERMAID_ENTITIES = MappingProxyType({"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "|": "#124;", "`": "#96;"})
_MERMAID_CLASSES = MappingProxyType({
    "exchange": "fill:#fff4d6,stroke:#b7791f",
    "queue": "fill:#e6f0ff,stroke:#2b6cb0",
    "producer": "fill:#e9f7ef,stroke:#2f855a",
    "consumer": "fill:#f3e8ff,stroke:#6b46c1",
})


def _mermaid_text(text: str) -> str:
    return "".join(_MERMAID_ENTITIES.get(c, c) for c in text)


def mermaid(scenario: model.Scenario) -> str:
    """A Mermaid flowchart (renders on GitHub inside a ```mermaid block)."""
    graph = build(scenario)
    lines = ["flowchart LR"]
    for index, (vhost, nodes) in enumerate(_grouped(graph)):
        indent = "  " if vhost is None else "    "
        if vhost is not None:
            lines.append(f'  subgraph v{index + 1}["vhost {_mermaid_text(vhost)}"]')
        for node in nodes:
            opening, closing = _MERMAID_SHAPES[node.kind]
            lines.append(f"{indent}{node.id}{opening}{'<br/>'.join(_mermaid_text(line) for line in node.lines)}{closing}")
        if vhost is not None:
            lines.append("  end")
    for edge in graph.edges:
        label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
        lines.append(f"  {edge.source} {_MERMAID_ARROWS[edge.kind]}{label} {edge.target}")
    for kind, style in _MERMAID_CLASSES.items():
        members = [n.id for n in graph.nodes if n.kind == kind]
        if members:
            lines.append(f"  classDef {kind} {style}")
            lines.append(f"  class {','.join(members)} {kind}")
    return "\n".join(lines) + "\n"


_DOT_NODES = MappingProxyType({
    "exchange": 'shape=hexagon, style=filled, fillcolor="#fff4d6", color="#b7791f"',
    "queue": 'shape=cylinder, style=filled, fillcolor="#e6f0ff", color="#2b6cb0"',
    "producer": 'shape=parallelogram, style=filled, fillcolor="#e9f7ef", color="#2f855a"',
    "consumer": 'shape=box, style="rounded,filled", fillcolor="#f3e8ff", color="#6b46c1"',
})
_DOT_EDGES = MappingProxyType({
    "binding": "",
    "e2e": ", style=bold, penwidth=2",
    "alternate": ", style=dashed",
    "dead_letter": ', style=dashed, color="#c53030"',
    "publish": ', color="#2f855a"',
    "consume": ', color="#6b46c1"',
})


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def dot(scenario: model.Scenario) -> str:
    """A Graphviz digraph (render with `dot -Tsvg`)."""
    graph = build(scenario)
    lines = [f'digraph "{_dot_text(scenario.name)}" {{', "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for index, (vhost, nodes) in enumerate(_grouped(graph)):
        indent = "  " if vhost is None else "    "
        if vhost is not None:
            lines.append(f'  subgraph cluster_{index + 1} {{')
            lines.append(f'    label="vhost {_dot_text(vhost)}";')
        for node in nodes:
            label = "\\n".join(_dot_text(line) for line in node.lines)
            lines.append(f'{indent}{node.id} [label="{label}", {_DOT_NODES[node.kind]}];')
        if vhost is not None:
            lines.append("  }")
    for edge in graph.edges:
        lines.append(f'  {edge.source} -> {edge.target} [label="{_dot_text(edge.label)}"{_DOT_EDGES[edge.kind]}];')
    lines.append("}")
    return "\n".join(lines) + "\n"
