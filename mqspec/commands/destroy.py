"""mqspec destroy: delete exactly what the file declares and the broker has, in dependency order.

Never built-in exchanges (`amq.*`, the default exchange) and never `external: true` entities. Users and vhosts
go only when the file declares them under topology.users / topology.vhosts; the target vhost itself is
deleted only when it is declared there, and then the message guard counts every queue in it (truthfully, as
broker/counts.py does: ready and unacknowledged messages, streams included), and the plan notes each queue and exchange
the file does not declare that would go with it. The user
mqspec is logged in as is kept, so that the rest of the run can finish.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import quote, urlsplit

from mqspec.broker import live
from mqspec.broker.management import Management, ManagementUnreachable, q
from mqspec.broker.planning import settings_for, with_counts
from mqspec.broker.topology import execute
from mqspec.context import Context
from mqspec.core.model import BrokerSettings, Topology
from mqspec.core.outcome import Outcome
from mqspec.core.plan import QueueStats, destroy, refusals, with_stats
from mqspec.core.vocabulary import is_builtin_exchange
from mqspec.errors import EXIT_FAILED, EXIT_OK, BrokerUnavailable
from mqspec.options import DestroyOptions
from mqspec.pipeline import load_valid
from mqspec.report import plan as render
from mqspec.report.plan import show_all

NOTHING = "Nothing to destroy: none of the entities the file declares exist."


def run(ctx: Context, path: str, options: DestroyOptions) -> int:
    scenario = load_valid(ctx, path, options.strict)
    topology = scenario.topology
    with Management(scenario.broker) as management:
        try:
            found = live.read(management, topology)
        except ManagementUnreachable as exc:
            raise BrokerUnavailable(f"{exc.message} (destroy needs the management API)") from None
        present = {v.name for v in found.topology.vhosts}
        by_vhost = {t.vhost: t for t in scenario.every_vhost()}
        contents = {v.name: _vhost_contents(management, scenario.broker, by_vhost.get(v.name, topology), v.name)
                    for v in topology.vhosts if v.name in present}
        plan = destroy(topology, found, management.user, {name: c.messages for name, c in contents.items()})
        if topology.vhost in contents:       # counted already, with the rest of the vhost
            plan = with_stats(plan, contents[topology.vhost].counts)
        elif found.vhost_exists:
            plan = with_counts(plan, management, scenario.broker)
        # the other vhosts' entities, unless their whole vhost goes
        going = {c.name for c in plan.changes if c.kind == "vhost"}
        plans = [plan] + [with_counts(destroy(other, live.read(management, other), management.user), management,
                                      settings_for(scenario.broker, other.vhost))
                          for other in scenario.every_vhost()[1:] if other.vhost not in going]
        if not plan.empty:
            plans[0] = replace(plan, notes=(*plan.notes, *(n for name, c in contents.items() for n in _undeclared_notes(name, c))))
        plans = [p for i, p in enumerate(plans) if i == 0 or not p.empty]
        json_out = options.output == "json"
        if all(p.empty for p in plans):
            ctx.echo(json.dumps({"plan": render.as_dict(plan), "complete": True, "steps": []}, indent=2) if json_out
                       else NOTHING)
            return EXIT_OK
        plans = [p for p in plans if not p.empty]
        verb = "Would delete from" if options.dry_run else "Deleting from"
        refused = [] if options.dry_run else [r for p in plans for r in refusals(p, allow_replace=True, force=options.force)]
        if options.dry_run or refused or not json_out:
            show_all(plans, options.output, verb)
        if options.dry_run:
            if not json_out:
                ctx.echo("Dry run: nothing was deleted.")
            return EXIT_OK
        if refused:
            for line in refused:
                ctx.echo(f"error: {line}", err=True)
            ctx.echo("Nothing was deleted.", err=True)
            return EXIT_FAILED
        # the other vhosts first: the default vhost's plan may delete users and vhosts they need
        steps = [s for p in reversed(plans)
                 for s in execute(management, p, force=options.force, settings=settings_for(scenario.broker, p.vhost)).steps]
        outcome = Outcome(tuple(steps))
    if json_out:
        ctx.echo(json.dumps({"plan": render.plans_dict(plans), **render.outcome_dict(outcome)}, indent=2, ensure_ascii=False))
    else:
        ctx.echo(render.outcome_text(outcome, "Destroy"))
    for step in outcome.having("failed"):
        ctx.echo(f"error: {step.error}", err=True)
    return outcome.exit_code


@dataclass(frozen=True)
class _VhostContents:
    """What deleting a vhost takes with it: the counts of every queue, and what the file does not declare."""

    counts: Mapping[str, QueueStats]
    undeclared_queues: tuple[str, ...]
    undeclared_exchanges: tuple[str, ...]

    @property
    def messages(self) -> QueueStats:
        unknown = [f"queue '{name}': {c.unknown or 'not counted'}" for name, c in self.counts.items() if c.messages is None]
        if unknown:
            return QueueStats(None, unknown="; ".join(unknown))
        return QueueStats(sum(c.messages or 0 for c in self.counts.values()))


def _vhost_contents(management: Management, settings: BrokerSettings, topology: Topology, vhost: str) -> _VhostContents:
    """Every queue of the vhost counted truthfully (ready and unacknowledged messages, streams included)."""
    from mqspec.broker import counts  # pika loads only when a vhost is to be deleted

    url = urlsplit(settings.url)._replace(path="/" + quote(vhost, safe="")).geturl()
    counted = counts.count(replace(settings, urls=(url,)), management, vhost, live.queue_types(management, vhost))
    same_vhost = vhost == topology.vhost
    declared_queues = {qu.name for qu in topology.queues} if same_vhost else set()
    declared_exchanges = {e.name for e in topology.exchanges} if same_vhost else set()
    exchanges = management.get(f"/exchanges/{q(vhost)}?columns=name", f"the exchanges of vhost '{vhost}'",
                               missing_ok=True) or []
    return _VhostContents(
        counted,
        tuple(sorted(name for name in counted if name not in declared_queues)),
        tuple(sorted(e["name"] for e in exchanges
                     if not is_builtin_exchange(e["name"]) and e["name"] not in declared_exchanges)),
    )


def _undeclared_notes(vhost: str, contents: _VhostContents) -> list[str]:
    notes = [f"deleting vhost '{vhost}' also deletes queue '{name}', which the file does not declare "
             f"({_queue_state(contents.counts.get(name) or QueueStats())})" for name in contents.undeclared_queues]
    notes += [f"deleting vhost '{vhost}' also deletes exchange '{name}', which the file does not declare"
              for name in contents.undeclared_exchanges]
    return notes


def _queue_state(stats: QueueStats) -> str:
    messages = stats.messages
    if messages is None:
        return "message count unknown; blocks the destroy without --force"
    if messages == 0:
        return "empty"
    return f"holds {messages} message{'' if messages == 1 else 's'}; blocks the destroy without --force"
