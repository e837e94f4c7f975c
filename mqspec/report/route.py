"""A routing result rendered for people (one queue per line, with its path) or for scripts (JSON)."""

from __future__ import annotations

import json
from typing import Any

from mqspec.core.routing import RoutingResult, display

DROPPED = "unroutable: dropped"
RETURNED = "unroutable: returned to the publisher (mandatory)"


def status(result: RoutingResult) -> str:
    if result.refused:
        return "refused"
    if result.unpredictable or result.external:
        return "unknown"
    return "routed" if result.deliveries else "unroutable"


def outcome(result: RoutingResult, mandatory: bool) -> str:
    """What happens to the message: delivered, dropped, returned, refused or unknown."""
    found = status(result)
    if found == "routed":
        return "delivered"
    if found == "unroutable":
        return "returned" if mandatory else "dropped"
    return found


def text(result: RoutingResult, mandatory: bool) -> str:
    """stdout: the paths, one queue per line, then a verdict line only when the answer is not a list of queues."""
    if result.refused:
        return f"refused: {result.refused}"
    lines = [delivery.path() for delivery in result.deliveries]
    lines += [f"unknown: exchange '{name}' has plugin type '{kind}'; mqspec cannot predict where it routes messages"
              for name, kind in result.unpredictable]
    lines += [f"unknown: exchange '{name}' is external; bindings made outside this file are not known" for name in result.external]
    if result.unroutable and not result.external:
        lines.append(RETURNED if mandatory else DROPPED)
    return "\n".join(lines)


def notes(result: RoutingResult) -> list[str]:
    """stderr: what a person should know about the answer."""
    found = [f"note: exchange '{name}' does not exist; RabbitMQ skips it" for name in result.missing]
    if result.unroutable and not result.external:
        passed = ", ".join(display(name) for name in result.visited)
        found.append(f"note: the message passed through {passed} and matched no binding to a queue")
    return found


def as_json(result: RoutingResult, mandatory: bool) -> str:
    data: dict[str, Any] = {
        "exchange": result.exchange,
        "routing_key": result.routing_key,
        "headers": dict(result.headers),
        "status": status(result),
        "outcome": outcome(result, mandatory),
        "mandatory": mandatory,
        "queues": [{"queue": d.queue, "path": d.path(),
                    "hops": [{"source": h.source, "target": h.target, "target_kind": h.target_kind, "label": h.label, "via": h.via}
                             for h in d.hops]}
                   for d in result.deliveries],
        "visited": list(result.visited),
        "refused": result.refused or None,
        "unpredictable": [{"exchange": name, "type": kind} for name, kind in result.unpredictable],
        "external": list(result.external),
        "missing": list(result.missing),
    }
    return json.dumps(data, indent=2)
