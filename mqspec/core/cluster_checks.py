"""RabbitMQ's rules across vhosts and on runtime parameters: each vhost checked on its own, federation
policies naming an upstream that exists, shovels with both ends, and no parameter declared twice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from mqspec.core import model, parameters, semantics
from mqspec.core.document import Document
from mqspec.core.problems import Problem
from mqspec.core.semantics import problem


def check(scenario: model.Scenario, doc: Document | None = None) -> list[Problem]:
    """The vhost-scoped rules on every vhost but the default one (the loader checks that one), then the
    parameter rules on every vhost."""
    found: list[Problem] = []
    for topology in scenario.every_vhost()[1:]:
        alone = replace(scenario, topology=topology, workload=model.Workload(), expectations=())
        found += semantics.check(alone, None)
    for topology in scenario.every_vhost():
        found += list(_parameters(scenario, topology))
    unique = list(dict.fromkeys(found))
    return unique


def _parameters(scenario: model.Scenario, topology: model.Topology) -> Iterator[Problem]:
    seen: dict[tuple[str, str], str] = {}
    for parameter in topology.parameters:
        key = (parameter.component, parameter.name)
        if key in seen:
            line, _col = semantics.locate(scenario, seen[key])
            yield problem(scenario, parameter.where,
                          f"{parameter.component} '{parameter.name}' in vhost '{topology.vhost}' is declared twice "
                          f"(first at line {line})", "remove one of them")
        seen[key] = parameter.where
        if parameter.component == parameters.SHOVEL and not parameter.external:
            yield from _shovel(scenario, parameter)
    for policy in topology.policies:
        for component, name in parameters.referenced_upstreams(policy):
            if (component, name) not in seen:
                section = parameters.COMPONENT_SECTIONS[component]
                yield problem(scenario, f"{policy.where}.definition['{component}']",
                              f"policy '{policy.name}' names {component} '{name}', which is not declared in vhost "
                              f"'{topology.vhost}'",
                              f"declare it under topology.{section}, or as {{name: {name}, external: true}} "
                              "when it is managed elsewhere")


def _shovel(scenario: model.Scenario, shovel: model.Parameter) -> Iterator[Problem]:
    value = shovel.value if isinstance(shovel.value, dict) else {}
    for end in ("src", "dest"):
        if f"{end}-uri" not in value:
            yield problem(scenario, shovel.where, f"shovel '{shovel.name}' has no {end}_uri",
                          f"add {end}_uri, e.g. amqp:// for the local broker")
        protocol = value.get(f"{end}-protocol", "amqp091")
        ends = ("address",) if protocol == "amqp10" else ("queue", "exchange")
        if end == "src" and not any(f"{end}-{e}" in value for e in ends):
            yield problem(scenario, shovel.where, f"shovel '{shovel.name}' has no source: give "
                          + " or ".join(f"{end}_{e}" for e in ends), "name what the shovel consumes from")
