"""Migrating a queue that holds messages: the holding queue, where a migration stands, and what to report. Pure.

A queue whose type, durability or arguments change must be deleted and declared again. `apply --migrate` keeps
its messages by moving them through a holding queue, in stages:

1. hold:      declare the holding queue `mqspec.migrate.<queue>`, bind it with the queue's bindings, then unbind
              the queue (messages published from now on land in the holding queue);
2. move-out:  move the queue's messages to the holding queue;
3. replace:   delete the queue, declare it with the new definition, restore every binding the holding queue
              carries (the queue's own, the file's or not), then unbind the holding queue;
4. move-back: move the messages back;
5. finish:    delete the holding queue once it is empty, and count the queue.

Everything a rerun needs is on the broker, never only in the process: the holding queue's name says which queue
it holds for, its marker arguments name the queue and the target definition (a hash), and its bindings are the
queue's bindings. So after a crash at any point the next `apply --migrate` knows where to resume (`resume_stage`).

The holding queue is durable, and a quorum queue when the target is one (so the messages are replicated at every
point of the way where they end up replicated); otherwise classic, keeping the source's x-max-priority.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from mqspec.core import model

HOLDING_PREFIX = "mqspec.migrate."
MARK_QUEUE = "x-mqspec-migrate-queue"
MARK_TARGET = "x-mqspec-migrate-target"
Stage = Literal["hold", "move-out", "replace", "move-back", "finish"]
STAGES: tuple[Stage, ...] = ("hold", "move-out", "replace", "move-back", "finish")
# Where MQSPEC_MIGRATE_PAUSE_AT may stop a migration (for tests that kill it there).
PAUSE_POINTS = ("held", "moving-out", "deleted", "moving-back")
Path = Literal["shovel", "relay"]


def holding_name(queue: str) -> str:
    return f"{HOLDING_PREFIX}{queue}"


def is_holding(name: str) -> bool:
    return name.startswith(HOLDING_PREFIX)


def target_hash(target: model.Queue) -> str:
    """A short hash of the definition a queue is migrated to: type, durability and arguments."""
    body = {"type": target.type, "durable": target.durable, "auto_delete": target.auto_delete,
            "arguments": dict(target.arguments)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def holding_queue(source: model.Queue | None, target: model.Queue) -> model.Queue:
    """The holding queue for a migration from `source` (the live queue) to `target` (the file's)."""
    marks = {MARK_QUEUE: target.name, MARK_TARGET: target_hash(target)}
    priority = (source.arguments.get("x-max-priority") if source else None)
    if target.type == "quorum" and priority is None:
        return model.Queue(holding_name(target.name), "quorum", True, False, False, marks)
    if priority is not None:
        marks["x-max-priority"] = priority
    return model.Queue(holding_name(target.name), "classic", True, False, False, marks)


@dataclass(frozen=True)
class Holding:
    """A holding queue found on the broker: a migration under way (or interrupted)."""

    name: str
    queue: str
    target: str
    bindings: tuple[model.Binding, ...] = ()
    messages: int | None = None


def holdings(topology: model.Topology) -> dict[str, Holding]:
    """Every holding queue of the live vhost, by the name of the queue it holds messages for."""
    found = {}
    for queue in topology.queues:
        if not is_holding(queue.name):
            continue
        original = queue.arguments.get(MARK_QUEUE)
        name = original if isinstance(original, str) else queue.name.removeprefix(HOLDING_PREFIX)
        bindings = tuple(b for b in topology.bindings if b.destination_type == "queue" and b.destination == queue.name)
        found[name] = Holding(queue.name, name, str(queue.arguments.get(MARK_TARGET, "")), bindings)
    return found


def without_holding(topology: model.Topology) -> model.Topology:
    """The live topology less holding queues and their bindings: the plan never prunes or diffs them."""
    return replace(topology, queues=tuple(q for q in topology.queues if not is_holding(q.name)),
                   bindings=tuple(b for b in topology.bindings
                                  if not (b.destination_type == "queue" and is_holding(b.destination))))


def retarget(bindings: Iterable[model.Binding], destination: str) -> tuple[model.Binding, ...]:
    """The same bindings (source, routing key, arguments) to another queue; default-exchange ones left out."""
    return tuple(replace(b, destination=destination, destination_type="queue", where="")
                 for b in bindings if b.source != "")


def resume_stage(holding_exists: bool, live: model.Queue | None, target: model.Queue) -> Stage:
    """Where a migration of `target` starts, from what is on the broker now."""
    if not holding_exists:
        return "hold"
    if live is None:
        return "replace"
    if same_definition(live, target):
        return "move-back"
    return "move-out"


def same_definition(live: model.Queue, target: model.Queue) -> bool:
    return target_hash(live) == target_hash(target)


@dataclass(frozen=True)
class Migration:
    """One queue to migrate: from its live definition (None once deleted) to the file's, from `start` on."""

    target: model.Queue
    live: model.Queue | None
    start: Stage
    holding: Holding | None = None
    messages: int | None = None
    consumers: int | None = None

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def resumed(self) -> bool:
        return self.holding is not None


def plan_migrations(replaced: Iterable[tuple[model.Queue, model.Queue | None, int | None, int | None]],
                    found: Mapping[str, Holding], declared: Iterable[model.Queue],
                    live: Mapping[str, model.Queue]) -> list[Migration]:
    """The migrations of one apply: every replaced queue (target, live, messages, consumers), and every
    half-done migration of a queue the file declares."""
    migrations = {}
    for target, current, messages, consumers in replaced:
        holding = found.get(target.name)
        migrations[target.name] = Migration(target, current, resume_stage(holding is not None, current, target),
                                            holding, messages, consumers)
    for target in declared:
        holding = found.get(target.name)
        if holding is None or target.name in migrations:
            continue
        current = live.get(target.name)
        migrations[target.name] = Migration(target, current, resume_stage(True, current, target), holding)
    return list(migrations.values())


# --- what the plan says --------------------------------------------------------------------------------------

def offer(messages: int | None, consumers: int | None, queue: str) -> list[str]:
    """The lines under a replace of a queue that holds messages (or may): what --migrate would do."""
    held = "its messages" if messages is None else _count(messages, "message")
    lines = [f"~> migrate ({held}): apply --migrate moves them to holding queue '{holding_name(queue)}', replaces "
             "the queue, restores its bindings and moves them back; nothing is lost"]
    if consumers:
        lines.append(f"   the delete cancels its {_count(consumers, 'consumer')}; --migrate-wait-consumers DURATION "
                     "waits for them to go first")
    elif consumers is None:
        lines.append("   the delete cancels any consumer of the queue")
    return lines


def half_done_note(holding: Holding, queue_exists: bool, target_matches: bool) -> str:
    """The plan's note about an interrupted migration."""
    held = "" if holding.messages is None else f", holding {_count(holding.messages, 'message')}"
    where = ("the queue is deleted" if not queue_exists else
             "the queue has its new definition" if target_matches else "the queue has its old definition")
    return (f"queue '{holding.queue}' is half-way through a migration (holding queue '{holding.name}'{held}; {where}); "
            "apply --migrate finishes it")


def half_done_refusal(holding: Holding) -> str:
    return (f"refusing to apply: queue '{holding.queue}' is half-way through a migration and its messages wait in "
            f"holding queue '{holding.name}'; rerun with --migrate to finish it")


# --- what the apply reports ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Report:
    """What one migration did."""

    queue: str
    path: Path
    before: int               # messages in the queue and the holding queue when the migration began (or resumed)
    after: int                # messages in the queue at the end
    moved: int                # messages moved back into the queue
    duplicates: int = 0       # copies known to exist twice after an interrupted relay (redelivered, then copied again)
    remaining: int = 0        # messages left in the holding queue (0 unless something failed)
    resumed_from: Stage | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def text(self) -> str:
        resumed = f", resumed at {self.resumed_from}" if self.resumed_from else ""
        line = (f"migrated queue '{self.queue}' by {self.path}{resumed} in {self.seconds:.1f} s: "
                f"{_count(self.moved, 'message')} moved, {self.duplicates} possibly duplicated by a crash (redelivered after it), "
                f"{self.remaining} remaining; the queue holds {self.after}")
        return "\n".join([line, *(f"  note: {n}" for n in self.notes)])


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
