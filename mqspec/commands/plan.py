"""mqspec plan: compare the file with the live vhost and show what apply would change, and why."""

from __future__ import annotations

import sys

import typer

from mqspec import model
from mqspec.broker import live
from mqspec.broker.management import Management, ManagementUnreachable, forget_prefetched, prefetch, q
from mqspec.commands.options import PlanOptions
from mqspec.errors import EXIT_FAILED, EXIT_OK, SECRETS, BrokerUnavailable, InvalidInput, MqspecError, OperationFailed
from mqspec.loader import Overrides, load, vhost_of
from mqspec.plan import Plan, QueueStats, diff, queues_needing_stats, with_stats
from mqspec.problems import errors
from mqspec.report import plan as render
from mqspec.report import problems as problem_report

CHANGES_PENDING = 2


def run(path: str, overrides: Overrides, options: PlanOptions) -> int:
    try:
        return _plan(path, overrides, options)
    except MqspecError as exc:
        if not options.detailed_exitcode:
            raise
        # --detailed-exitcode keeps 2 for "changes pending": every error is 1.
        typer.echo(f"error: {SECRETS(exc.message)}", err=True)
        return EXIT_FAILED


def _plan(path: str, overrides: Overrides, options: PlanOptions) -> int:
    read_live_state_early(overrides)
    try:
        return _plan_loaded(load_scenario(path, overrides), options)
    finally:
        forget_prefetched()


def _plan_loaded(scenario: model.Scenario, options: PlanOptions) -> int:
    with Management(scenario.broker) as management:
        try:
            plan = make_plan(management, scenario.broker, scenario.topology, options.prune)
        except ManagementUnreachable as exc:
            raise BrokerUnavailable(f"{exc.message} (plan reads the live state through the management API)") from None
    show(plan, options.output)
    if options.detailed_exitcode and not plan.empty:
        return CHANGES_PENDING
    return EXIT_OK


def read_live_state_early(overrides: Overrides) -> None:
    """With --url (or MQSPEC_URL) the vhost is known before the file is read: fetch its definitions meanwhile."""
    if overrides.url:
        settings = model.BrokerSettings(urls=(overrides.url,), management_url=overrides.management_url)
        vhost = vhost_of(overrides.url)
        prefetch(settings, f"/definitions/{q(vhost)}", f"the definitions of vhost '{vhost}'")


def load_scenario(path: str, overrides: Overrides) -> model.Scenario:
    """The scenario, or every problem printed and InvalidInput raised; warnings are printed and pass."""
    loaded = load(path, overrides)
    found = sorted(loaded.problems, key=lambda p: (p.line, p.col))
    if found:
        typer.echo(problem_report.text(found), err=True)
    if loaded.scenario is None or errors(found):
        count = len(errors(found))
        raise InvalidInput(f"{path}: {count} problem{'' if count == 1 else 's'} found; nothing was changed")
    return loaded.scenario


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


def show(plan: Plan, output: str, heading: str | None = None, err: bool = False) -> None:
    """JSON for --format json; coloured on a terminal; stable plain text otherwise."""
    if output == "json":
        typer.echo(render.as_json(plan), err=err)
    elif (sys.stderr if err else sys.stdout).isatty():
        render.print_rich(plan, heading, err=err)
    else:
        typer.echo(render.text(plan, heading), err=err)

