"""mqspec plan: compare the file with the live vhost and show what apply would change, and why."""

from __future__ import annotations

from mqspec.broker import capabilities
from mqspec.broker.management import Management, ManagementUnreachable
from mqspec.broker.planning import make_plans
from mqspec.context import Context
from mqspec.core import model
from mqspec.errors import EXIT_FAILED, EXIT_OK, BrokerUnavailable, MqspecError
from mqspec.options import PlanOptions
from mqspec.pipeline import load_valid
from mqspec.report import problems as problem_report
from mqspec.report.plan import show_all

CHANGES_PENDING = 2


def run(ctx: Context, path: str, options: PlanOptions) -> int:
    try:
        return _plan_loaded(ctx, load_valid(ctx, path, options.strict), options)
    except MqspecError as exc:
        if not options.detailed_exitcode:
            raise
        # --detailed-exitcode keeps 2 for "changes pending": every error is 1.
        ctx.err(f"error: {exc.message}")
        return EXIT_FAILED


def _plan_loaded(ctx: Context, scenario: model.Scenario, options: PlanOptions) -> int:
    with Management(scenario.broker) as management:
        capabilities.check(scenario, management, lambda found: ctx.err(problem_report.text(found)))
        try:
            plans = make_plans(management, scenario, options.prune)
        except ManagementUnreachable as exc:
            raise BrokerUnavailable(f"{exc.message} (plan reads the live state through the management API)") from None
    show_all(plans, options.output)
    if options.detailed_exitcode and not all(plan.empty for plan in plans):
        return CHANGES_PENDING
    return EXIT_OK
