"""Before anything changes: can this broker do what the file asks? Its version, and the stream protocol's port."""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from mqspec.broker.management import AccessRefused, Management, ManagementUnreachable
from mqspec.core import features, model
from mqspec.core.problems import Problem
from mqspec.errors import BrokerUnavailable, MqspecError, OperationFailed

STREAM_PORT = 5552
_CONNECT_TIMEOUT = 3.0


def version(management: Management, settings: model.BrokerSettings) -> str | None:
    """The broker's RabbitMQ version: the management API's overview, else the AMQP server properties."""
    try:
        found = management.overview().get("rabbitmq_version")
        if isinstance(found, str):
            return found
    except (ManagementUnreachable, AccessRefused):
        pass
    from mqspec.broker import amqp  # pika loads only when the management API cannot say

    try:
        connection = amqp.connect(settings, connection_name="mqspec (version)")
    except MqspecError:
        return None
    try:
        value = connection._impl.server_properties.get("version")
        return value.decode() if isinstance(value, bytes) else value if isinstance(value, str) else None
    finally:
        connection.close()


def check(scenario: model.Scenario, management: Management, report: Callable[[list[Problem]], None]) -> None:
    """Every field this broker cannot serve goes to `report`, then OperationFailed; BrokerUnavailable without the
    stream protocol's port."""
    if features.needs(scenario):
        found = version(management, scenario.broker)
        problems = features.unmet(scenario, found) if found else []
        if problems:
            report(problems)
            count = f"{len(problems)} field{'s' if len(problems) > 1 else ''}"
            raise OperationFailed(f"{scenario.path}: {count} need{'s' if len(problems) == 1 else ''} a newer RabbitMQ "
                                  f"than the broker's {found}; nothing was changed")
    if uses_stream_protocol(scenario.workload):
        host, port = stream_endpoint(scenario.broker)
        try:
            socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT).close()
        except OSError as exc:
            raise BrokerUnavailable(f"the stream protocol does not answer on {host}:{port} ({exc.strerror or exc}); "
                                    "protocol: stream needs the rabbitmq_stream plugin: "
                                    "rabbitmq-plugins enable rabbitmq_stream") from None


def uses_stream_protocol(workload: model.Workload) -> bool:
    return any(p.protocol == "stream" for p in workload.producers) or any(c.protocol == "stream" for c in workload.consumers)


def stream_endpoint(settings: model.BrokerSettings) -> tuple[str, int]:
    """The broker URL's host, on the stream protocol's port."""
    return urlsplit(settings.url).hostname or "localhost", STREAM_PORT
