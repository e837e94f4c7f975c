"""The plan against the live broker: read its state once, diff, and count what a change would lose."""

from __future__ import annotations

from mqspec.broker import live
from mqspec.broker.management import Management
from mqspec.core import model
from mqspec.core.plan import Plan, diff, queues_needing_stats, with_stats
from mqspec.errors import OperationFailed


def make_plan(management: Management, settings: model.BrokerSettings, topology: model.Topology,
              prune: bool) -> Plan:
    """Read the live state once, diff, and add message counts for the queues a plan would remove."""
    found = live.read(management, topology)
    if not found.vhost_exists and all(v.name != topology.vhost for v in topology.vhosts):
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
