"""Carry out `apply --migrate`: the rest of the plan, then each queue's migration through its holding queue.

The stages and what survives a crash are described in core/migration.py. Here, the broker side:
- the move is a dynamic shovel (src-delete-after: queue-length, ack-mode: on-confirm) when the shovel plugin runs
  on a node (GET /api/nodes), server-side and fast; otherwise mqspec relays the messages itself (broker/relay.py).
  A shovel keeps running if mqspec dies; the next run waits for it. After each move the source is counted again and
  moved again until it is empty (messages published straight to it through the default exchange arrive late).
- bindings switch over binding first, unbinding after: in the instant both are bound a message published lands in
  both queues (a duplicate), never in neither.
- the queue is deleted only once a passive declare counts 0 ready messages, with if-empty for a classic queue.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from mqspec.broker import counts
from mqspec.broker.amqp import all_parameters
from mqspec.broker.management import Management, q
from mqspec.broker.relay import PAUSE_ENV, relay
from mqspec.broker.topology import execute
from mqspec.core import definitions, migration, model, vocabulary
from mqspec.core.migration import Migration, Report, Stage
from mqspec.core.outcome import Outcome, Step
from mqspec.core.plan import Change, Plan
from mqspec.errors import MqspecError, OperationFailed

_POLL = 0.1
_ROUNDS = 20               # moves of one direction before giving up on a source that keeps filling
_SHOVEL_STALL = 60.0       # a shovel that moves nothing for this long has failed


@dataclass(frozen=True)
class Settings:
    via: str = "auto"                  # auto | shovel | relay
    wait_consumers: float = 0.0        # seconds to wait for the queue's consumers to go, before beginning


def shovel_available(management: Management) -> bool:
    nodes = management.get("/nodes", "the nodes of the cluster", missing_ok=True) or []
    return any(app.get("name") == "rabbitmq_shovel" for node in nodes for app in node.get("applications") or [])


def apply(management: Management, plan: Plan, holdings: dict[str, migration.Holding], live_queues: dict[str, model.Queue],
          scenario: model.Scenario, options: Settings) -> tuple[Outcome, list[Report]]:
    """apply --migrate: every queue the plan replaces is migrated, and every interrupted migration finished."""
    replaced = [(c.desired, c.live if isinstance(c.live, model.Queue) else None, c.messages, c.consumers)
                for c in plan.changes if c.kind == "queue" and c.action == "replace" and isinstance(c.desired, model.Queue)]
    declared = [queue for queue in scenario.topology.queues if not queue.external and not queue.exclusive]
    migrations = migration.plan_migrations(replaced, holdings, declared, live_queues)
    return execute_with_migrations(management, plan, migrations, scenario.broker, options)


def execute_with_migrations(management: Management, plan: Plan, migrations: list[Migration], broker: model.BrokerSettings,
                            options: Settings) -> tuple[Outcome, list[Report]]:
    """The plan less the migrated queues (and the bindings to them, which the migration restores), then each
    migration; one outcome for both."""
    names = {m.name for m in migrations}
    moved = [c for c in plan.changes if _migrated(c, names)]
    rest = replace(plan, changes=tuple(c for c in plan.changes if not _migrated(c, names)))
    outcome = execute(management, rest, settings=broker) if rest.changes else Outcome(())
    extra = {name: tuple(c.desired for c in moved if c.kind == "binding" and isinstance(c.desired, model.Binding)
                         and c.desired.destination == name) for name in names}
    path = _path(management, options.via)
    steps, reports = list(outcome.steps), []
    for m in migrations:
        job = _Job(management, broker, plan.vhost, m, extra[m.name], path, options)
        try:
            reports.append(job.run())
            error = ""
        except MqspecError as exc:
            error = f"migrating queue '{m.name}' stopped: {exc.message}; apply --migrate again to finish it"
        steps += [Step(c, "failed" if error else "done", error) for c in moved if c.name == m.name or
                  (isinstance(c.desired, model.Binding) and c.desired.destination == m.name)]
        if error and not any(c.name == m.name for c in moved):
            steps.append(Step(Change("replace", "queue", m.name, _key(plan.vhost, m.name), desired=m.target), "failed", error))
    return Outcome(tuple(steps)), reports


def _migrated(change: Change, names: set[str]) -> bool:
    if change.kind == "queue":
        return change.name in names and change.action in ("create", "replace")
    return (change.kind == "binding" and change.action == "create" and isinstance(change.desired, model.Binding)
            and change.desired.destination_type == "queue" and change.desired.destination in names)


def _key(vhost: str, name: str) -> Any:
    from mqspec.core.plan import entity_key

    return entity_key("queue", vhost, name)


def _path(management: Management, via: str) -> migration.Path:
    if via == "relay":
        return "relay"
    if shovel_available(management):
        return "shovel"
    if via == "shovel":
        raise OperationFailed("--migrate-via shovel: the rabbitmq_shovel plugin is not enabled on any node")
    return "relay"


class _Job:
    """One queue's migration, from the stage the broker's state says it stands at."""

    def __init__(self, management: Management, broker: model.BrokerSettings, vhost: str, m: Migration,
                 extra: Iterable[model.Binding], path: migration.Path, options: Settings) -> None:
        self.m, self.management, self.broker, self.vhost = m, management, broker, vhost
        self.v = q(vhost)
        self.extra = tuple(extra)
        self.path = path
        self.options = options
        self.queue, self.holding = m.name, migration.holding_name(m.name)
        self.pause_at = os.environ.get(PAUSE_ENV, "")
        self.duplicates = 0
        self.notes: list[str] = []

    def run(self) -> Report:
        started = time.monotonic()
        stage = self.m.start
        before = self._ready(self.queue) + self._ready(self.holding)
        if stage in ("hold", "move-out"):
            self._wait_for_consumers()
            self._hold()
            self._move(self.queue, self.holding, "moving-out")
            stage = "replace"
        if stage == "replace":
            self._replace()
            stage = "move-back"
        self._switch_back()
        moved = self._move(self.holding, self.queue, "moving-back")
        remaining = self._finish()
        after = self._ready(self.queue)
        if after < before:
            self.notes.append(f"the queue holds {before - after} fewer messages than were counted at the start: "
                              "a consumer of the queue took them before the migration began")
        resumed: Stage | None = self.m.start if self.m.resumed else None
        return Report(self.queue, self.path, before, after, moved, self.duplicates, remaining, resumed,
                      time.monotonic() - started, tuple(self.notes))

    # --- stages ----------------------------------------------------------------------------------------------

    def _wait_for_consumers(self) -> None:
        deadline = time.monotonic() + self.options.wait_consumers
        while self.options.wait_consumers > 0:
            found = counts.ready_now(self.broker, self.queue)
            if found is None or found[1] == 0:
                return
            if time.monotonic() >= deadline:
                raise OperationFailed(f"queue '{self.queue}' still has {found[1]} consumers after waiting "
                                      f"{self.options.wait_consumers:g} s; nothing was changed")
            time.sleep(0.25)

    def _hold(self) -> None:
        """The holding queue, bound like the queue; then the queue unbound, so new messages land in the holding queue."""
        if self.m.holding is None:
            self._declare(migration.holding_queue(self.m.live, self.m.target))
        current = self._bindings(self.queue)
        if self.m.holding is not None and current and self.m.holding.bindings:
            self.notes.append("the interrupted run had bound the holding queue but not yet unbound the queue: messages "
                              "published since were routed to both and may be there twice")
        for binding in migration.retarget((*(b for b, _ in current), *self.extra), self.holding):
            self._bind(binding)
        self._pause("held")
        for binding, key in current:
            self._unbind(binding, key)

    def _replace(self) -> None:
        if self._exists(self.queue):
            self._drain_into_holding()
            guard = "?if-empty=true" if self.m.live is None or self.m.live.type == "classic" else ""
            self.management.delete(f"/queues/{self.v}/{q(self.queue)}{guard}", f"queue '{self.queue}'")
        self._pause("deleted")
        self._declare(self.m.target)

    def _switch_back(self) -> None:
        """Every binding the holding queue carries (and the file's) onto the queue; then the holding queue unbound."""
        held = self._bindings(self.holding)
        for binding in migration.retarget((*(b for b, _ in held), *self.extra), self.queue):
            self._bind(binding)
        for binding, key in held:
            self._unbind(binding, key)

    def _finish(self) -> int:
        remaining = self._ready(self.holding)
        if remaining:
            raise OperationFailed(f"holding queue '{self.holding}' still holds {remaining} messages")
        holding_type = self._type(self.holding)
        guard = "?if-empty=true" if holding_type == "classic" else ""
        self.management.delete(f"/queues/{self.v}/{q(self.holding)}{guard}", f"holding queue '{self.holding}'")
        return 0

    def _drain_into_holding(self) -> None:
        if self._ready(self.queue):
            self._move(self.queue, self.holding, "")

    # --- moving ----------------------------------------------------------------------------------------------

    def _move(self, source: str, destination: str, pause: str) -> int:
        """Move until the source is empty; the number of messages that arrived in the destination."""
        moved = 0
        for _ in range(_ROUNDS):
            pending = self._shovel_running(source)
            ready = self._ready(source)
            if not ready and not pending:
                return moved
            if self.path == "shovel":
                moved += self._by_shovel(source, destination, pause, pending)
            else:
                moved += self._by_relay(source, destination, ready, pause)
            pause = ""
        raise OperationFailed(f"queue '{source}' kept receiving messages through {_ROUNDS} moves; stop the publishers "
                              "that publish straight to it and apply --migrate again")

    def _by_relay(self, source: str, destination: str, ready: int, pause: str) -> int:
        params = all_parameters(self.broker, "mqspec (migrate relay)")[0]
        result = relay(params, source, destination, ready, pause if pause == self.pause_at else "")
        self.duplicates += result.redelivered if self.m.resumed else 0
        return result.moved

    def _shovel_name(self, source: str) -> str:
        return f"{migration.HOLDING_PREFIX}{self.queue}.{'out' if source == self.queue else 'back'}"

    def _shovel_running(self, source: str) -> bool:
        path = f"/parameters/shovel/{self.v}/{q(self._shovel_name(source))}"
        return self.path == "shovel" and self.management.get(path, "shovel", missing_ok=True) is not None

    def _by_shovel(self, source: str, destination: str, pause: str, running: bool) -> int:
        name = self._shovel_name(source)
        path = f"/parameters/shovel/{self.v}/{q(name)}"
        start = self._ready(destination)
        if not running:
            uri = f"amqp:///{q(self.vhost)}"
            self.management.put(path, f"shovel '{name}'", {"component": "shovel", "vhost": self.vhost, "name": name,
                                "value": {"src-protocol": "amqp091", "src-uri": uri, "src-queue": source,
                                          "dest-protocol": "amqp091", "dest-uri": uri, "dest-queue": destination,
                                          "src-delete-after": "queue-length", "ack-mode": "on-confirm"}})
        self._pause(pause)
        last, progress = start, time.monotonic()
        while self.management.get(path, f"shovel '{name}'", missing_ok=True) is not None:
            time.sleep(_POLL)
            now = self._ready(destination)
            if now != last:
                last, progress = now, time.monotonic()
            elif time.monotonic() - progress > _SHOVEL_STALL:
                self.management.delete(path, f"shovel '{name}'")
                raise OperationFailed(f"shovel '{name}' moved nothing for {_SHOVEL_STALL:g} s ({self._shovel_state(name)})")
        return max(0, self._ready(destination) - start)

    def _shovel_state(self, name: str) -> str:
        found = self.management.get(f"/shovels/{self.v}", "shovels", missing_ok=True) or []
        for entry in found:
            if entry.get("name") == name:
                return f"state {entry.get('state')}: {entry.get('reason') or 'no reason given'}"
        return "not running"

    # --- broker requests ---------------------------------------------------------------------------------------

    def _pause(self, point: str) -> None:
        if point and point == self.pause_at:
            print(f"mqspec: migration paused at {point}", file=sys.stderr, flush=True)
            time.sleep(float(os.environ.get("MQSPEC_MIGRATE_PAUSE_SECONDS", "3600")))

    def _ready(self, name: str) -> int:
        found = counts.ready_now(self.broker, name)
        return 0 if found is None else found[0]

    def _exists(self, name: str) -> bool:
        return self.management.get(f"/queues/{self.v}/{q(name)}", f"queue '{name}'", missing_ok=True) is not None

    def _type(self, name: str) -> str:
        entry = self.management.get(f"/queues/{self.v}/{q(name)}", f"queue '{name}'", missing_ok=True) or {}
        return str(entry.get("type") or "classic")

    def _declare(self, queue: model.Queue) -> None:
        self.management.put(f"/queues/{self.v}/{q(queue.name)}", f"queue '{queue.name}' in vhost '{self.vhost}'",
                            vocabulary.queue_body(queue))

    def _bindings(self, queue: str) -> list[tuple[model.Binding, str]]:
        """The queue's bindings (the default exchange's left out), each with the key that names it in the API."""
        found = self.management.get(f"/queues/{self.v}/{q(queue)}/bindings", f"the bindings of queue '{queue}'",
                                    missing_ok=True) or []
        return [(definitions.binding_from(e), str(e["properties_key"])) for e in found if e.get("source")]

    def _bind(self, binding: model.Binding) -> None:
        self.management.post(f"/bindings/{self.v}/e/{q(binding.source)}/q/{q(binding.destination)}",
                             f"binding '{binding.source}' → queue '{binding.destination}'", vocabulary.binding_body(binding))

    def _unbind(self, binding: model.Binding, key: str) -> None:
        self.management.delete(f"/bindings/{self.v}/e/{q(binding.source)}/q/{q(binding.destination)}/{q(key)}",
                                   f"binding '{binding.source}' → queue '{binding.destination}'")
