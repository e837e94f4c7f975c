"""A plan and an apply outcome, rendered: Terraform-like symbols, coloured on a terminal, stable plain text
otherwise, or JSON for programs. Rendering only: the plan is data made elsewhere."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from types import MappingProxyType
from typing import Any

import typer

from mqspec.core import migration
from mqspec.core.outcome import Outcome, Step
from mqspec.core.plan import ABSENT, ACTIONS, Change, Entity, FieldDiff, Plan

SYMBOLS = MappingProxyType({"create": "+", "update": "~", "replace": "-/+", "delete": "-"})
STYLES = MappingProxyType({"create": "green", "update": "yellow", "replace": "magenta", "delete": "red"})
PAST = MappingProxyType({"create": "created", "update": "updated", "replace": "replaced", "delete": "deleted"})
UP_TO_DATE = "No changes. Topology is up to date."


def change_line(change: Change) -> str:
    line = f"{SYMBOLS[change.action]:>3} {change.label}"
    counts = _counts(change)
    return f"{line} ({counts})" if counts else line


def _counts(change: Change) -> str:
    if change.kind == "vhost" and change.action == "delete" and change.messages is not None:
        return f"its queues hold {_plural(change.messages, 'message')}"
    if change.kind != "queue" or change.action not in ("replace", "delete"):
        return ""
    if change.messages is None and change.consumers is None:
        return "message and consumer counts unknown"
    messages = "message count unknown" if change.messages is None else f"holds {_plural(change.messages, 'message')}"
    consumers = "consumer count unknown" if change.consumers is None else _plural(change.consumers, "consumer")
    return f"{messages}, {consumers}"


def migrate_offer(change: Change) -> list[str]:
    """Under a replace of a queue that holds messages (or may): what apply --migrate would do instead."""
    if change.kind != "queue" or change.action != "replace" or change.messages == 0:
        return []
    if getattr(change.live, "type", "") == "stream":
        return []
    return migration.offer(change.messages, change.consumers, change.name)


def migration_dict(report: migration.Report) -> dict[str, Any]:
    return asdict(report)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summary(plan: Plan) -> str:
    counts = plan.summary()
    return "Plan: " + ", ".join(f"{counts[a]} to {a}" for a in ACTIONS) + "."


def text(plan: Plan, heading: str | None = None) -> str:
    """Plain text, the same on every run for the same plan."""
    if plan.empty:
        return "\n".join([*(f"note: {n}" for n in plan.notes), UP_TO_DATE])
    lines = [heading or f"Changes to vhost '{plan.vhost}':", ""]
    for change in plan.changes:
        lines.append(change_line(change))
        lines += [f"      {reason}" for reason in change.reasons]
        lines += [f"      {line}" for line in migrate_offer(change)]
    lines += ["", *(f"note: {n}" for n in plan.notes), summary(plan)]
    return "\n".join(lines)


def print_rich(plan: Plan, heading: str | None = None, err: bool = False) -> None:
    """The same content as `text`, coloured, for a terminal."""
    from rich.console import Console
    from rich.text import Text

    console = Console(stderr=err, highlight=False)
    if plan.empty:
        for note in plan.notes:
            console.print(Text(f"note: {note}", style="dim"))
        console.print(Text(UP_TO_DATE, style="bold green"))
        return
    console.print(Text(heading or f"Changes to vhost '{plan.vhost}':", style="bold"))
    console.print()
    for change in plan.changes:
        console.print(Text(change_line(change), style=STYLES[change.action]))
        for reason in change.reasons:
            console.print(Text(f"      {reason}", style="dim"))
        for line in migrate_offer(change):
            console.print(Text(f"      {line}", style="cyan"))
    console.print()
    for note in plan.notes:
        console.print(Text(f"note: {note}", style="dim"))
    console.print(Text(summary(plan), style="bold"))


# --- JSON --------------------------------------------------------------------------------------------------

def as_dict(plan: Plan) -> dict[str, Any]:
    return {
        "vhost": plan.vhost,
        "changes": [{"vhost": plan.vhost, **change_dict(c)} for c in plan.changes],
        "summary": plan.summary(),
        "notes": list(plan.notes),
    }


def change_dict(change: Change) -> dict[str, Any]:
    return {
        "action": change.action,
        "kind": change.kind,
        "name": change.name,
        "key": _key(change),
        "diffs": [diff_dict(d) for d in change.diffs],
        "reasons": list(change.reasons),
        "messages": change.messages,
        "consumers": change.consumers,
        "migrate": migrate_offer(change) or None,
        "desired": _entity(change.desired),
        "live": _entity(change.live),
    }


def _key(change: Change) -> dict[str, Any]:
    return {"kind": change.key.kind, "vhost": change.key.vhost, "identity": list(change.key.identity)}


def diff_dict(diff: FieldDiff) -> dict[str, Any]:
    """A field difference; `before` or `after` is left out where that side has no value (and for a password)."""
    found: dict[str, Any] = {"field": diff.field}
    for side, value in (("before", diff.before), ("after", diff.after)):
        if value is not ABSENT:
            found[side] = _plain(value)
    found["immutable"] = diff.immutable
    return found


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _entity(entity: Entity | None) -> dict[str, Any] | None:
    if entity is None:
        return None
    data = asdict(entity)
    data.pop("where", None)
    if "password" in data:                 # never a password, only whether there is one
        data["password"] = None if data["password"] is None else "***"
    plain: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return plain


def as_json(plan: Plan) -> str:
    return json.dumps(as_dict(plan), indent=2, ensure_ascii=False)


# --- outcome -----------------------------------------------------------------------------------------------

def outcome_text(outcome: Outcome, verb: str = "Apply") -> str:
    done = outcome.having("done")
    if outcome.ok:
        counts = {a: sum(1 for s in done if s.change.action == a) for a in ACTIONS}
        parts = [f"{n} {PAST[a]}" for a, n in counts.items() if n]
        return f"{verb} complete: {', '.join(parts) or 'nothing to do'}."
    lines = [f"{verb} incomplete: {len(done)} of {len(outcome.steps)} changes done."]
    lines += [_step_line(s) for s in outcome.steps]
    lines.append(f"Fix the cause and run {verb.lower()} again; it continues from what is on the broker now.")
    return "\n".join(lines)


def amqp_summary(exchanges: int, queues: int, bindings: int) -> list[str]:
    """What an apply over AMQP declared, and what it cannot know."""
    lines = []
    if exchanges or queues:
        lines.append(f"Declared {_plural(exchanges, 'exchange')} and {_plural(queues, 'queue')} over AMQP (arguments the "
                     "broker does not compare, like x-consumer-timeout, cannot be checked without the management API).")
    if bindings:
        lines.append(f"Declared {_plural(bindings, 'binding')} (over AMQP a new binding cannot be told apart from an "
                     "existing one).")
    return lines


def _step_line(step: Step) -> str:
    line = f"  {step.status + ':':<15}{change_line(step.change).strip()}"
    return f"{line}: {step.error}" if step.error else line


def outcome_dict(outcome: Outcome) -> dict[str, Any]:
    return {
        "complete": outcome.ok,
        "steps": [{"action": s.change.action, "kind": s.change.kind, "name": s.change.name,
                   "key": _key(s.change), "status": s.status,
                   "error": s.error or None} for s in outcome.steps],
    }


def show(plan: Plan, output: str, heading: str | None = None, err: bool = False) -> None:
    """JSON for --format json; coloured on a terminal; stable plain text otherwise."""
    if output == "json":
        typer.echo(as_json(plan), err=err)
    elif (sys.stderr if err else sys.stdout).isatty():
        print_rich(plan, heading, err=err)
    else:
        typer.echo(text(plan, heading), err=err)


# --- several vhosts ----------------------------------------------------------------------------------------

def plans_dict(plans: Sequence[Plan]) -> dict[str, Any]:
    """One vhost: as_dict. Several: every change with its vhost, one summary, and each vhost's plan."""
    if len(plans) == 1:
        return as_dict(plans[0])
    each = [as_dict(p) for p in plans]
    return {
        "vhost": plans[0].vhost,
        "vhosts": [p.vhost for p in plans],
        "changes": [c for d in each for c in d["changes"]],
        "summary": {a: sum(p.count(a) for p in plans) for a in ACTIONS},
        "notes": [n for p in plans for n in p.notes],
        "plans": each,
    }


def plans_text(plans: Sequence[Plan], verb: str = "Changes to") -> str:
    """Each vhost's changes under its own heading, then one summary for all."""
    if len(plans) == 1:
        return text(plans[0], None if verb == "Changes to" else f"{verb} vhost '{plans[0].vhost}':")
    notes = [f"note: {n}" for p in plans for n in p.notes]
    if all(p.empty for p in plans):
        return "\n".join([*notes, UP_TO_DATE])
    lines: list[str] = []
    for plan in plans:
        if plan.empty:
            continue
        lines += [f"{verb} vhost '{plan.vhost}':", ""]
        for change in plan.changes:
            lines.append(change_line(change))
            lines += [f"      {reason}" for reason in change.reasons]
        lines.append("")
    counts = {a: sum(p.count(a) for p in plans) for a in ACTIONS}
    lines += [*notes, "Plan: " + ", ".join(f"{counts[a]} to {a}" for a in ACTIONS) + "."]
    return "\n".join(lines)


def show_all(plans: Sequence[Plan], output: str, verb: str = "Changes to", err: bool = False) -> None:
    if len(plans) == 1:
        show(plans[0], output, None if verb == "Changes to" else f"{verb} vhost '{plans[0].vhost}':", err)
    elif output == "json":
        typer.echo(json.dumps(plans_dict(plans), indent=2, ensure_ascii=False), err=err)
    else:
        typer.echo(plans_text(plans, verb), err=err)
