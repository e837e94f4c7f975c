"""mqspec apply: make the live vhost match the file, then run the workload and check the expectations."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mqspec.broker import capabilities
from mqspec.broker.management import AccessRefused, Management, ManagementUnreachable
from mqspec.broker.planning import VhostPlan, make_vhost_plans, settings_for
from mqspec.broker.topology import execute
from mqspec.context import Context
from mqspec.core import migration, model
from mqspec.core.outcome import Outcome, Step
from mqspec.core.plan import Plan, refusals
from mqspec.errors import EXIT_BROKER, EXIT_FAILED, EXIT_OK, MqspecError
from mqspec.options import ApplyOptions
from mqspec.pipeline import load_valid
from mqspec.report import plan as render
from mqspec.report import problems as problem_report
from mqspec.report.plan import show_all


def run(ctx: Context, path: str, options: ApplyOptions) -> int:
    scenario = load_valid(ctx, path, options.strict)
    if options.topology_only or (scenario.workload.empty and not scenario.expectations):
        return apply_topology(ctx, scenario, options)
    from mqspec import runner  # the workload engine (pika's clients, Dask, Prometheus: 0.15 s) loads only for a workload

    runner.check_outputs(options)  # before the broker is touched
    runner.chosen_engine(scenario, options)
    errors: list[str] = []
    try:
        code = apply_topology(ctx, scenario, options, to_stderr=options.output == "json", errors=errors)
    except MqspecError as exc:
        runner.write_failure(scenario.name, options, f"the topology could not be applied: {exc.message}", ctx.redactor)
        raise
    if code != EXIT_OK:
        why = "; ".join(errors) or "see the output of apply"
        runner.write_failure(scenario.name, options, f"the topology was not applied, so the workload did not run: {why}", ctx.redactor)
        return code
    return runner.run(scenario, options, ctx.redactor)


def apply_topology(ctx: Context, scenario: model.Scenario, options: ApplyOptions, to_stderr: bool = False,
                   errors: list[str] | None = None) -> int:
    """Plan, refuse what needs consent, execute, report. With a workload to follow in JSON, report on stderr.

    Each error shown is also appended to `errors`, when given."""
    out = _Output(ctx, options.output, to_stderr, errors)
    with Management(scenario.broker) as management:
        capabilities.check(scenario, management, lambda found: ctx.err(problem_report.text(found)))
        try:
            vhost_plans = make_vhost_plans(management, scenario, options.prune)
        except ManagementUnreachable as exc:
            return _over_amqp(scenario, f"{exc.message}\nnote: declaring exchanges, queues and bindings over AMQP instead",
                              out, options.allow_replace)
        except AccessRefused as exc:
            if not exc.not_management_user:
                raise
            return _over_amqp(scenario, f"user '{management.user}' may not use the management API (it has no management "
                              "tag); declaring exchanges, queues and bindings over AMQP instead", out, options.allow_replace)
        plans = [vhost.plan for vhost in vhost_plans]
        half_done = [h for vhost in vhost_plans for h in _half_done(vhost, scenario)]
        if all(plan.empty for plan in plans) and not half_done:
            out.result(plans, "no changes", None, [])
            return EXIT_OK
        refused = [line for plan in plans for line in refusals(plan, options.allow_replace, options.force, options.migrate)]
        if not options.migrate:
            refused += [migration.half_done_refusal(h) for h in half_done]
        if refused:
            out.result(plans, "refused", None, refused)
            return EXIT_FAILED
        out.plan(plans)
        if options.migrate:
            steps, reports = _migrate_all(management, vhost_plans, scenario, options)
        else:
            steps, reports = _execute_all(management, plans, scenario.broker, options.force), []
    outcome = Outcome(tuple(steps))
    out.result(plans, "applied" if outcome.ok else "incomplete", outcome, [], reports)
    return outcome.exit_code


def _half_done(vhost: VhostPlan, scenario: model.Scenario) -> list[migration.Holding]:
    topology = next((t for t in scenario.every_vhost() if t.vhost == vhost.plan.vhost), scenario.topology)
    declared = {queue.name for queue in topology.queues}
    return [h for name, h in vhost.holdings.items() if name in declared]


def _migrate_all(management: Management, vhost_plans: Sequence[VhostPlan], scenario: model.Scenario,
                 options: ApplyOptions) -> tuple[list[Step], list[migration.Report]]:
    """apply --migrate, one vhost after another (the default vhost first: it creates what the others need)."""
    from dataclasses import replace

    from mqspec.broker import migrate

    settings = migrate.Settings(options.migrate_via, options.migrate_wait_consumers)
    steps: list[Step] = []
    reports: list[migration.Report] = []
    for vhost in vhost_plans:
        topology = next((t for t in scenario.every_vhost() if t.vhost == vhost.plan.vhost), scenario.topology)
        scoped = replace(scenario, broker=vhost.settings, topology=topology)
        outcome, done = migrate.apply(management, vhost.plan, vhost.holdings, vhost.live_queues, scoped, settings)
        steps += outcome.steps
        reports += done
    return steps, reports


def _execute_all(management: Management, plans: Sequence[Plan], settings: model.BrokerSettings,
                 force: bool) -> list[Step]:
    """The default vhost's plan first (it creates the vhosts, users and permissions the others need), then the
    other vhosts' plans side by side; steps reported in plan order."""
    def run(plan: Plan) -> tuple[Step, ...]:
        return execute(management, plan, force=force, settings=settings_for(settings, plan.vhost)).steps if not plan.empty else ()

    first, others = run(plans[0]), plans[1:]
    if len(others) <= 1:
        return [*first, *(step for plan in others for step in run(plan))]
    with ThreadPoolExecutor(max_workers=len(others)) as pool:
        return [*first, *(step for steps in pool.map(run, others) for step in steps)]


def _over_amqp(scenario: model.Scenario, reason: str, out: _Output, allow_replace: bool) -> int:
    """No management API: exchanges, queues and bindings over AMQP; the rest needs the plugin."""
    from mqspec.broker import amqp_declare

    missing = amqp_declare.needs_management(scenario.topology)
    out.say(f"note: {reason}")
    declared = amqp_declare.declare(scenario.broker, scenario.topology, allow_replace)
    if declared.outcome.steps:
        out.outcome(declared.outcome)
    for line in render.amqp_summary(declared.exchanges, declared.queues, declared.bindings):
        out.say(line)
    for error in declared.unchecked:
        out.error(error.message)
    for label in missing:
        out.error(f"{label} was not applied: users, permissions, policies and vhosts need the management plugin")
    if declared.exit_code != EXIT_OK:
        return declared.exit_code
    return EXIT_BROKER if missing else EXIT_OK


class _Output:
    """Where apply's topology report goes, and in which form."""

    def __init__(self, ctx: Context, output: str, to_stderr: bool, errors: list[str] | None = None) -> None:
        self.ctx = ctx
        self.json = output == "json"
        self.err = to_stderr
        self.errors = errors if errors is not None else []

    def say(self, text: str) -> None:
        if not self.json:
            self.ctx.echo(text, err=self.err)

    def error(self, text: str) -> None:
        self.errors.append(text)
        self.ctx.echo(f"error: {text}", err=True)

    def plan(self, plans: Sequence[Plan]) -> None:
        if not self.json:
            show_all([p for p in plans if not p.empty], "text", "Applying to", err=self.err)

    def outcome(self, outcome: Outcome) -> None:
        if self.json:
            self.ctx.echo(json.dumps({"topology": {"over_amqp": True, **render.outcome_dict(outcome)}}, indent=2), err=self.err)
            return
        self.ctx.echo(render.outcome_text(outcome), err=self.err)
        for step in outcome.having("failed"):
            self.error(step.error)

    def result(self, plans: Sequence[Plan], status: str, outcome: Outcome | None, refused: list[str],
               reports: Sequence[migration.Report] = ()) -> None:
        if self.json:
            body: dict[str, Any] = {"status": status, "plan": render.plans_dict(plans), "refused": refused}
            if outcome is not None:
                body.update(render.outcome_dict(outcome))
            if reports:
                body["migrations"] = [render.migration_dict(r) for r in reports]
            self.ctx.echo(json.dumps({"topology": body}, indent=2, ensure_ascii=False), err=self.err)
            _each(refused, self.error)
            return
        if status == "no changes":
            show_all(plans, "text", err=self.err)
            return
        if status == "refused":
            show_all(plans, "text", err=self.err)
            _each(refused, self.error)
            self.ctx.echo("Nothing was changed.", err=True)
            return
        assert outcome is not None
        for report in reports:
            self.ctx.echo(report.text(), err=self.err)
        self.outcome(outcome)


def _each(lines: list[str], emit: Callable[[str], None]) -> None:
    for line in lines:
        emit(line)
