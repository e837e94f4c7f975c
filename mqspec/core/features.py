"""What a scenario asks of the broker's version: stream filters need 3.13, single active consumer on streams 3.11.

Pure: the broker adapter reads the version (management /api/overview, or the AMQP server properties) and
`unmet` says, per field, what the file uses that this broker cannot do, before anything is changed.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from mqspec.core import model, semantics
from mqspec.core.problems import Problem

Version = tuple[int, ...]


class Need(NamedTuple):
    where: str
    feature: str
    version: Version


FILTERING = (3, 13)


def needs(scenario: model.Scenario) -> list[Need]:
    """Every field that needs a given RabbitMQ version, whether written as mqspec's field or as the raw argument."""
    found: list[Need] = []
    for queue in scenario.topology.queues:
        if "x-stream-filter-size-bytes" in queue.arguments:
            found.append(Need(f"{queue.where}.arguments.x-stream-filter-size-bytes",
                              "stream filtering (x-stream-filter-size-bytes)", FILTERING))
    for producer in scenario.workload.producers:
        if producer.filter_value is not None:
            found.append(Need(f"{producer.where}.filter_value", "stream filtering (x-stream-filter-value)", FILTERING))
        if "x-stream-filter-value" in producer.headers:
            found.append(Need(f"{producer.where}.headers.x-stream-filter-value", "stream filtering (x-stream-filter-value)",
                              FILTERING))
    for consumer in scenario.workload.consumers:
        if consumer.filter:
            found.append(Need(f"{consumer.where}.filter", "stream filtering (x-stream-filter)", FILTERING))
        if consumer.single_active_consumer:
            found.append(Need(f"{consumer.where}.single_active_consumer", "single active consumer on streams", (3, 11)))
    return found


def parse_version(text: str) -> Version | None:
    """'3.10.8' -> (3, 10, 8); '3.13.0-rc.1' -> (3, 13, 0); None when there is no leading number."""
    match = re.match(r"^\s*(\d+(?:\.\d+)*)", text or "")
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def unmet(scenario: model.Scenario, version_text: str) -> list[Problem]:
    """One problem per field that needs a newer RabbitMQ than `version_text`; none when the version is unknown."""
    version = parse_version(version_text)
    if version is None:
        return []
    return [semantics.problem(scenario, need.where, f"{need.feature} needs RabbitMQ {_show(need.version)} or newer; "
                              f"the broker runs {version_text}", "upgrade the broker, or remove this field")
            for need in needs(scenario) if version < need.version]


def _show(version: Version) -> str:
    return ".".join(str(part) for part in version)
