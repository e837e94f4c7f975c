"""The plan against the live broker: read its state once, diff, and count what a change would lose."""

from __future__ import annotations

from dataclasses import replace

from mqspec.broker import live
from mqspec.broker.management import Management
from mqspec.core import migration, model
from mqspec.core.plan import Plan, diff, queues_needing_stats, with_stats
from mqspec.errors import OperationFailed


def make_plan(management: Management, settings: model.BrokerSettings, topology: model.Topology,
              prune: bool) -> Plan:
    """Read the live state once, diff, and add message counts for the queues a plan would remove."""
    return make_plan_and_holdings(management, settings, topology, prune)[0]


def make_plan_and_holdings(management: Management, settings: model.BrokerSettings, topology: model.Topology,
                           prune: bool) -> tuple[Plan, dict[str, migration.Holding], dict[str, model.Queue]]:
    """The plan, the holding queues of interrupted migrations (never diffed nor pruned; the plan notes them),
    and the live queues by name."""
    found = live.read(management, topology)
    if not found.vhost_exists and all(v.name != topology.vhost for v in topology.vhosts):
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
