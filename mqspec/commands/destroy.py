"""mqspec destroy: delete exactly what the file declares and the broker has, in dependency order.

Never built-in exchanges (`amq.*`, the default exchange) and never `external: true` entities. Users and vhosts
go only when the file declares them under topology.users / topology.vhosts; the target vhost itself is
deleted only when it is declared there, and then the message guard counts every queue in it. The user
mqspec is logged in as is kept, so that the rest of the run can finish.
"""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import quote, urlsplit

import typer

from mqspec.broker import live
from mqspec.broker.management import Management, ManagementUnreachable
from mqspec.broker.topology import execute
from mqspec.commands.options import DestroyOptions
from mqspec.commands.plan import load_scenario, show, with_counts
from mqspec.errors import EXIT_FAILED, EXIT_OK, BrokerUnavailable, MqspecError
from mqspec.loader import Overrides
from mqspec.model import BrokerSettings
from mqspec.plan import destroy, refusals
from mqspec.report import plan as render

NOTHING = "Nothing to destroy: none of the entities the file declares exist."


def run(path: str, overrides: Overrides, options: DestroyOptions) -> int:
    scenario = load_scenario(path, overrides)
    topology = scenario.topology
    with Management(scenario.broker) as management:
        try:
            found = live.read(management, topology)
        except ManagementUnreachable as exc:
            raise BrokerUnavailable(f"{exc.message} (destroy needs the management API)") from None
        present = {v.name for v in found.topology.vhosts}
        counts = {v.name: _vhost_messages(management, scenario.broker, v.name) for v in topology.vhosts if v.name in present}
        plan = destroy(topology, found, management.user, counts)
        if found.vhost_exists:
            plan = with_counts(plan, management, scenario.broker)
        json_out = options.output == "json"
        if plan.empty:
            typer.echo(json.dumps({"plan": render.as_dict(plan), "complete": True, "steps": []}, indent=2) if json_out
                       else NOTHING)
            return EXIT_OK
        heading = f"{'Would delete' if options.dry_run else 'Deleting'} from vhost '{plan.vhost}':"
        refused = [] if options.dry_run else refusals(plan, allow_replace=True, force=options.force)
        if options.dry_run or refused or not json_out:
            show(plan, options.output, heading)
        if options.dry_run:
            if not json_out:
                typer.echo("Dry run: nothing was deleted.")
            return EXIT_OK
        if refused:
            for line in refused:
                typer.echo(f"error: {line}", err=True)
            typer.echo("Nothing was deleted.", err=True)
            return EXIT_FAILED
        outcome = execute(management, plan, force=options.force)
    if json_out:
        typer.echo(json.dumps({"plan": render.as_dict(plan), **render.outcome_dict(outcome)}, indent=2, ensure_ascii=False))
    else:
        typer.echo(render.outcome_text(outcome, "Destroy"))
    for step in outcome.having("failed"):
        typer.echo(f"error: {step.error}", err=True)
    return outcome.exit_code


def _vhost_messages(management: Management, settings: BrokerSettings, vhost: str) -> int | None:
    """Messages in all queues of a vhost; queues the management API has no count for yet are asked over AMQP."""
    stats = live.vhost_queue_stats(management, vhost)
    unknown = [name for name, found in stats.items() if found.messages is None]
    exact = {}
    if unknown:
        from mqspec.broker.amqp_declare import queue_counts

        url = urlsplit(settings.url)._replace(path="/" + quote(vhost, safe="")).geturl()
        try:
            exact = queue_counts(replace(settings, urls=(url,)), unknown)
        except MqspecError:
            return None
    counts = [exact[name].messages if name in exact else found.messages for name, found in stats.items()]
    return None if any(c is None for c in counts) else sum(c or 0 for c in counts)
