"""The plan against the live broker: read its state once, diff, and count what a change would lose."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from mqspec import collector
from mqspec.broker import live
from mqspec.broker.management import Management
from mqspec.core import migration, model, parameters
from mqspec.core.plan import Live, Plan, diff, queues_needing_stats, with_stats
from mqspec.core.vocabulary import vhost_of
from mqspec.errors import OperationFailed


def make_plans(management: Management, scenario: model.Scenario, prune: bool) -> tuple[Plan, ...]:
    """One plan per vhost the file declares, the default vhost's (with users, vhosts, permissions and global
    parameters) first; --prune only inside the vhosts the file declares."""
    return tuple(vhost.plan for vhost in make_vhost_plans(management, scenario, prune))


class VhostPlan(NamedTuple):
    """One vhost's plan, with what a migration needs: interrupted migrations' holding queues, and the live queues."""

    plan: Plan
    holdings: dict[str, migration.Holding]
    live_queues: dict[str, model.Queue]
    settings: model.BrokerSettings


def make_vhost_plans(management: Management, scenario: model.Scenario, prune: bool) -> tuple[VhostPlan, ...]:
    with collector.paused():
        return _vhost_plans(management, scenario, prune)


def _vhost_plans(management: Management, scenario: model.Scenario, prune: bool) -> tuple[VhostPlan, ...]:
    require_plugins(management, scenario)
    declared = {v.name for v in scenario.topology.vhosts}
    topologies = list(scenario.every_vhost())
    plans = []
    for topology, found in zip(topologies, read_side_by_side(management, topologies), strict=True):
        needed = scenario.prunes(topology.vhost) and topology.vhost not in declared
        settings = settings_for(scenario.broker, topology.vhost)
        plan, holdings, queues = make_plan_and_holdings(management, settings, topology,
                                                        prune and scenario.prunes(topology.vhost), required=needed,
                                                        found=found)
        plans.append(VhostPlan(plan, holdings, queues, settings))
    return tuple(plans)


# Vhosts whose live state is read at once: the management API serves them side by side (3 vhosts of 2,000
# queues: 0.24 s instead of 0.4 s one after another).
PARALLEL_READS = 4


def read_side_by_side(management: Management, topologies: list[model.Topology]) -> list[Live]:
    """The live state of every vhost, read in parallel; nothing else is asked of the broker meanwhile."""
    if len(topologies) < 2:
        return [live.read(management, topology) for topology in topologies]
    with ThreadPoolExecutor(max_workers=min(PARALLEL_READS, len(topologies)), thread_name_prefix="mqspec-read") as pool:
        return list(pool.map(lambda topology: live.read(management, topology), topologies))


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


def make_plan_and_holdings(management: Management, settings: model.BrokerSettings, topology: model.Topology,
                           prune: bool, required: bool = True,
                           found: Live | None = None) -> tuple[Plan, dict[str, migration.Holding], dict[str, model.Queue]]:
    """Read the live state once (unless `found` is it), diff, and add message counts for the queues a plan would
    remove: the plan, the holding queues of interrupted migrations (never diffed nor pruned; the plan notes them),
    and the live queues by name."""
    found = live.read(management, topology) if found is None else found
    if required and not found.vhost_exists and all(v.name != topology.vhost for v in topology.vhosts):
        raise OperationFailed(f"vhost '{topology.vhost}' not found (NOT_FOUND); create it, or declare it under "
                              "topology.vhosts so that apply creates it")
    holdings = migration.holdings(found.topology)
    found = replace(found, topology=migration.without_holding(found.topology))
    plan = diff(topology, found, prune)
    plan = with_counts(plan, management, settings) if found.vhost_exists else plan
    queues = {queue.name: queue for queue in found.topology.queues}
    if holdings:
        holdings, plan = _noted(holdings, plan, settings, queues, {t.name: t for t in topology.queues})
    return plan, holdings, queues


def _noted(holdings: dict[str, migration.Holding], plan: Plan, settings: model.BrokerSettings,
           queues: dict[str, model.Queue], declared: dict[str, model.Queue]) -> tuple[dict[str, migration.Holding], Plan]:
    from mqspec.broker import counts

    counted = {}
    notes = []
    for name, holding in holdings.items():
        ready = counts.ready_now(settings, holding.name)
        counted[name] = replace(holding, messages=None if ready is None else ready[0])
        current, target = queues.get(name), declared.get(name)
        matches = current is not None and target is not None and migration.same_definition(current, target)
        notes.append(migration.half_done_note(counted[name], current is not None, matches))
    return counted, replace(plan, notes=(*plan.notes, *notes))


def with_counts(plan: Plan, management: Management, settings: model.BrokerSettings) -> Plan:
    """Message and consumer counts of the queues the plan removes, counted truthfully now (broker/counts.py):
    ready and unacknowledged messages, streams included; unknown, with the reason, where they cannot be known."""
    removed = {c.name: c.live.type if isinstance(c.live, model.Queue) else "classic"
               for c in plan.changes if c.name in set(queues_needing_stats(plan)) and c.kind == "queue"}
    if not removed:
        return plan
    from mqspec.broker import counts  # pika loads only when a queue is to be counted

    return with_stats(plan, counts.count(settings, management, plan.vhost, removed))
