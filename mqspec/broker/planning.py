"""The plan against the live broker: read its state once, diff, and count what a change would lose."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote, urlsplit

from mqspec.broker import live
from mqspec.broker.management import Management
from mqspec.core import model, parameters
from mqspec.core.plan import Plan, diff, queues_needing_stats, with_stats
from mqspec.core.vocabulary import vhost_of
from mqspec.errors import OperationFailed


def make_plans(management: Management, scenario: model.Scenario, prune: bool) -> tuple[Plan, ...]:
    """One plan per vhost the file declares, the default vhost's (with users, vhosts, permissions and global
    parameters) first; --prune only inside the vhosts the file declares."""
    require_plugins(management, scenario)
    declared = {v.name for v in scenario.topology.vhosts}
    plans = []
    for topology in scenario.every_vhost():
        needed = scenario.prunes(topology.vhost) and topology.vhost not in declared
        plans.append(make_plan(management, settings_for(scenario.broker, topology.vhost), topology,
                               prune and scenario.prunes(topology.vhost), required=needed))
    return tuple(plans)


def settings_for(settings: model.BrokerSettings, vhost: str) -> model.BrokerSettings:
    """The same broker, with every URL pointing at another vhost."""
    if vhost_of(settings.url) == vhost:
        return settings
    urls = tuple(urlsplit(url)._replace(path="/" + quote(vhost, safe="")).geturl() for url in settings.urls)
    return replace(settings, urls=urls)


def require_plugins(management: Management, scenario: model.Scenario) -> None:
    """One line per plugin the file needs and the broker lacks, with the command that enables it."""
    needs: dict[str, list[str]] = {}
    for topology in scenario.every_vhost():
        for plugin, labels in parameters.required_plugins(topology).items():
            needs.setdefault(plugin, []).extend(f"{label} in vhost '{topology.vhost}'" for label in labels)
    if not needs:
        return
    nodes = management.get("/nodes?columns=name,applications", "the broker's nodes", missing_ok=True) or []
    enabled = {a.get("name") for node in nodes[:1] for a in node.get("applications", [])}
    if not nodes or not enabled:
        return
    missing = [f"{labels[0]}{f' (and {len(labels) - 1} more)' if len(labels) > 1 else ''} needs the {plugin} plugin, "
               f"which the broker does not have; enable it: rabbitmq-plugins enable {plugin}"
               for plugin, labels in sorted(needs.items()) if plugin not in enabled]
    if missing:
        raise OperationFailed("\n".join(missing))


def make_plan(management: Management, settings: model.BrokerSettings, topology: model.Topology,
              prune: bool, required: bool = True) -> Plan:
    """Read the live state once, diff, and add message counts for the queues a plan would remove."""
    found = live.read(management, topology)
    if required and not found.vhost_exists and all(v.name != topology.vhost for v in topology.vhosts):
        raise OperationFailed(f"vhost '{topology.vhost}' not found (NOT_FOUND); create it, or declare it under "
                              "topology.vhosts so that apply creates it")
    plan = diff(topology, found, prune)
    return with_counts(plan, management, settings) if found.vhost_exists else plan


def with_counts(plan: Plan, management: Management, settings: model.BrokerSettings) -> Plan:
    """Message and consumer counts of the queues the plan removes, counted truthfully now (broker/counts.py):
    ready and unacknowledged messages, streams included; unknown, with the reason, where they cannot be known."""
    removed = {c.name: c.live.type if isinstance(c.live, model.Queue) else "classic"
               for c in plan.changes if c.name in set(queues_needing_stats(plan)) and c.kind == "queue"}
    if not removed:
        return plan
    from mqspec.broker import counts  # pika loads only when a queue is to be counted

    return with_stats(plan, counts.count(settings, management, plan.vhost, removed))
