"""RabbitMQ's rules that need the routing oracle: what it proves will fail is an error, found offline.

The loader runs these with the other rules, so every command agrees on what a valid file is.
"""

from __future__ import annotations

from collections.abc import Iterator

from mqspec.core import model, routing
from mqspec.core.problems import Problem
from mqspec.core.semantics import problem


def check(scenario: model.Scenario) -> list[Problem]:
    """Errors only: a publish the broker would refuse, a `routes:` expectation the topology does not take."""
    found = list(_internal_publishes(scenario))
    found += [p for p in route_problems(scenario) if p.severity == "error"]
    return found


def _internal_publishes(scenario: model.Scenario) -> Iterator[Problem]:
    for producer in scenario.workload.producers:
        target = routing.resolve(scenario.topology, producer.exchange)
        if producer.queue is None and target is not None and target.internal:
            yield problem(scenario, f"{producer.where}.exchange",
                          f"producer '{producer.name}' publishes to exchange '{producer.exchange}', which is internal: "
                          "RabbitMQ refuses it (ACCESS_REFUSED)",
                          "publish to an exchange that is bound to it, or set internal: false")


def route_problems(scenario: model.Scenario) -> Iterator[Problem]:
    """Every `routes:` expectation the oracle disagrees with or cannot check."""
    for expectation in scenario.expectations:
        if isinstance(expectation, model.Routes):
            for route in expectation.routes:
                found = _route_problem(scenario, route)
                if found is not None:
                    yield found


def _route_problem(scenario: model.Scenario, route: model.Route) -> Problem | None:
    result = routing.route(scenario.topology, route.exchange, route.key, route.headers)
    name = _route_name(route)
    if result.refused:
        return problem(scenario, route.where, f"{name} cannot be published: {result.refused}",
                       "publish to an exchange that is not internal")
    if result.unpredictable:
        plugin, kind = result.unpredictable[0]
        return problem(scenario, route.where, f"{name} cannot be checked offline: exchange '{plugin}' has plugin type '{kind}'",
                       "apply checks it against the broker", "warning")
    if set(result.queues) == set(route.to):
        return None
    expected = _queue_list(sorted(route.to))
    predicted = _queue_list(list(result.queues))
    message = f"{name} should reach {expected}, but the topology routes it to {predicted}"
    hint = "fix the bindings or the expectation; `mqspec route` shows the path"
    if result.external:
        outside = ", ".join(f"'{name}'" for name in result.external)
        return problem(scenario, route.where, message, f"{hint} (external exchange {outside} may have bindings made "
                       "outside this file)", "warning")
    return problem(scenario, route.where, message, hint)


def _route_name(route: model.Route) -> str:
    exchange = "the default exchange" if route.exchange == model.DEFAULT_EXCHANGE else f"exchange '{route.exchange}'"
    headers = ""
    if route.headers:
        headers = ", headers {" + ", ".join(f"{k}={routing.value_text(v)}" for k, v in route.headers.items()) + "}"
    return f"route ({exchange}, key '{route.key}'{headers})"


def _queue_list(queues: list[str]) -> str:
    return "[" + ", ".join(queues) + "]" if queues else "no queue"
