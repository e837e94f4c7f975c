"""The plan against the live broker: read its state once, diff, and count what a change would lose."""

from __future__ import annotations

from mqspec.broker import live
from mqspec.broker.management import Management
from mqspec.core import model
from mqspec.core.plan import Plan, QueueStats, diff, queues_needing_stats, with_stats
from mqspec.errors import MqspecError, OperationFailed


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
    """Message and consumer counts of the queues the plan removes: the management API's (which lag a few
    seconds and may be missing for a new queue) checked against a passive declare over AMQP (exact now,
    but without unacknowledged messages). The larger message count wins."""
    names = queues_needing_stats(plan)
    if not names:
        return plan
    reported = live.queue_stats(management, plan.vhost, names)
    try:
        from mqspec.broker.amqp_declare import queue_counts

        exact = queue_counts(settings, names)
    except MqspecError:
        exact = {}
    return with_stats(plan, {name: _merged(reported.get(name), exact.get(name)) for name in names})


def _merged(reported: QueueStats | None, exact: QueueStats | None) -> QueueStats:
    if exact is None:
        return reported or QueueStats()
    if reported is None or reported.messages is None:
        return exact
    return QueueStats(max(exact.messages or 0, reported.messages), exact.consumers)
