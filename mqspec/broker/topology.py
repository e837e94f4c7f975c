"""Carry out a plan: through the management API, and over AMQP for many new exchanges, queues and bindings.

Stages follow the plan's dependency order; the requests inside a stage are independent and run on a small
thread pool. When there are many new exchanges, queues or bindings they are declared over several AMQP
connections side by side: for 2,000 queues and bindings on a 2-core machine, the whole `mqspec apply` (process
start included) took 0.7-0.9 times as long as the broker's own `POST /api/definitions/{vhost}` of the same
entities (benchmarks/topology_apply.py), and every failure still names its entity. Without AMQP (or when a
connection is refused, e.g. by a vhost connection limit) they go one management request each.

A failed change does not stop the others: only changes that depend on it (a binding on its queue, a
permission on its user) are skipped. Every request is idempotent, so running apply again converges.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from mqspec.broker import live as live_state
from mqspec.broker.management import Management, q
from mqspec.core import definitions, model, vocabulary
from mqspec.core.outcome import Outcome, Step
from mqspec.core.plan import Change, Entity, Key, Kind, Plan, entity_key
from mqspec.errors import MqspecError, OperationFailed

if TYPE_CHECKING:
    from mqspec.broker.amqp_declare import Declarer

BULK_MIN = 20          # fewer new entities than this: one management request each is as fast
PER_CONNECTION = 25    # new entities per AMQP connection, at least
CONNECTIONS = 16
WORKERS = 8


class _Op(NamedTuple):
    position: int
    change: Change
    delete: bool        # the delete half of a replace, or a delete


def execute(management: Management, plan: Plan, force: bool = False, settings: model.BrokerSettings | None = None,
            workers: int = WORKERS) -> Outcome:
    """Run every change of the plan; the outcome says what was done, what failed and what was not attempted.

    With `settings`, many new exchanges, queues and bindings are declared over AMQP.
    """
    runner = _Runner(management, plan.vhost, force, settings, workers)
    try:
        return runner.run(plan)
    finally:
        runner.close()


class _Runner:
    def __init__(self, management: Management, vhost: str, force: bool, settings: model.BrokerSettings | None,
                 workers: int) -> None:
        self.management = management
        self.vhost = vhost
        self.force = force
        self.settings = settings
        self.amqp = settings        # for counting a queue again right before it is deleted
        self.declarer: Declarer | None = None
        self.workers = workers
        self.steps: dict[int, Step] = {}
        self.failed: dict[Key, str] = {}
        self._properties: dict[tuple[str, str, str, str, str], str] | None = None
        self._lock = threading.Lock()

    def run(self, plan: Plan) -> Outcome:
        for stage, parallel, bulk_kind in _stages(plan):
            ready = [op for op in stage if self._ready(op)]
            if bulk_kind and self.settings is not None and len(ready) >= BULK_MIN:
                self._bulk(ready)
            else:
                self._each(ready, parallel)
        return Outcome(tuple(self.steps.get(i) or Step(c, "not attempted") for i, c in enumerate(plan.changes)))

    # --- bookkeeping -----------------------------------------------------------------------------------------

    def _ready(self, op: _Op) -> bool:
        """False (and the step recorded) when the op must not run because something it needs failed."""
        if op.position in self.steps:          # the delete half of this replace failed already
            return False
        blocker = next((self.failed[d] for d in _needs(op.change, self.vhost) if d in self.failed), None)
        if blocker is None:
            return True
        self.steps[op.position] = Step(op.change, "not attempted", f"skipped because {blocker} failed")
        return False

    def _record(self, op: _Op, error: MqspecError | None) -> None:
        with self._lock:
            if error is not None:
                self.steps[op.position] = Step(op.change, "failed", self._describe_failure(op, error), error.exit_code)
                self.failed[op.change.key] = op.change.label
            elif not (op.delete and op.change.action == "replace"):
                self.steps[op.position] = Step(op.change, "done")

    def _attempt(self, op: _Op) -> None:
        try:
            (self._delete if op.delete else self._declare)(op.change)
        except MqspecError as exc:
            self._record(op, exc)
        else:
            self._record(op, None)

    def _each(self, ops: Sequence[_Op], parallel: bool) -> None:
        if not parallel or len(ops) < 2:
            for op in ops:
                self._attempt(op)
            return
        with ThreadPoolExecutor(max_workers=min(self.workers, len(ops))) as pool:
            list(pool.map(self._attempt, ops))

    def _bulk(self, ops: Sequence[_Op]) -> None:
        """New entities over several AMQP connections; one management request each when AMQP is out of reach."""
        assert self.settings is not None
        if self.declarer is None:
            from mqspec.broker.amqp_declare import Declarer

            self.declarer = Declarer(self.settings, min(CONNECTIONS, len(ops) // PER_CONNECTION))
        try:
            errors = self.declarer.run([_desired(op.change) for op in ops])
        except MqspecError:
            self.settings = None
            self._each(ops, parallel=True)
            return
        for op, error in zip(ops, errors, strict=True):
            self._record(op, error)

    def close(self) -> None:
        if self.declarer is not None:
            self.declarer.close()

    # --- one entity ------------------------------------------------------------------------------------------

    def _describe_failure(self, op: _Op, error: MqspecError) -> str:
        """A failed declare after the delete half of a replace leaves the entity missing: say so, and what to do."""
        if op.change.action != "replace" or op.delete:
            return error.message
        what = self._what(op.change)
        if isinstance(error, OperationFailed):    # the broker refused the file's definition: apply again won't help
            reason = error.message.removeprefix(f"broker refused {what}: ")
            return f"{what} was deleted but its new definition was refused: {reason}; fix the file and apply again to create it"
        return f"{what} was deleted but declaring it again failed: {error.message}; apply again to create it"

    def _what(self, change: Change) -> str:
        scoped = change.kind in ("policy", "operator_policy", "exchange", "queue", "binding", "parameter")
        return f"{change.label} in vhost '{self.vhost}'" if scoped else change.label

    def _declare(self, change: Change) -> None:
        entity, what, v = change.desired, self._what(change), q(self.vhost)
        m = self.management
        if isinstance(entity, model.Exchange):
            m.put(f"/exchanges/{v}/{q(entity.name)}", what, vocabulary.exchange_body(entity))
        elif isinstance(entity, model.Queue):
            m.put(f"/queues/{v}/{q(entity.name)}", what, vocabulary.queue_body(entity))
        elif isinstance(entity, model.Binding):
            m.post(_binding_path(v, entity), what, vocabulary.binding_body(entity))
        elif isinstance(entity, model.Policy):
            m.put(f"/{_policy_path(entity.operator)}/{v}/{q(entity.name)}", what, vocabulary.policy_body(entity))
        elif isinstance(entity, model.Permission):
            m.put(f"/permissions/{q(entity.vhost)}/{q(entity.user)}", what,
                  {"configure": entity.configure, "write": entity.write, "read": entity.read})
        elif isinstance(entity, model.TopicPermission):
            m.put(f"/topic-permissions/{q(entity.vhost)}/{q(entity.user)}", what,
                  {"exchange": entity.exchange, "write": entity.write, "read": entity.read})
        elif isinstance(entity, model.User):
            m.put(f"/users/{q(entity.name)}", what, self._user_body(entity, change.action == "create"))
        elif isinstance(entity, model.VHost):
            self._declare_vhost(entity, what)
        elif isinstance(entity, model.Parameter):
            m.put(f"/parameters/{q(entity.component)}/{v}/{q(entity.name)}", what, {"value": entity.value})
        elif isinstance(entity, model.GlobalParameter):
            m.put(f"/global-parameters/{q(entity.name)}", what, {"value": entity.value})
        if isinstance(entity, model.User):
            for name, value in definitions.broker_user_limits(entity.limits).items():
                m.put(f"/user-limits/{q(entity.name)}/{q(name)}", f"limit {name} of {what}", {"value": value})

    def _user_body(self, user: model.User, new: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"tags": ",".join(user.tags)}
        if user.password is not None:
            return {**body, "password": user.password}
        if user.password_hash is not None:
            return {**body, "password_hash": user.password_hash,
                    "hashing_algorithm": user.hashing_algorithm or definitions.SHA256}
        if new:
            return {**body, "password_hash": ""}
        # No password in the file: keep the one the user has (a PUT without one would clear it).
        current = self.management.get(f"/users/{q(user.name)}", f"user '{user.name}'")
        return {**body, "password_hash": current.get("password_hash", ""),
                "hashing_algorithm": current.get("hashing_algorithm", definitions.SHA256)}

    def _declare_vhost(self, vhost: model.VHost, what: str) -> None:
        body: dict[str, Any] = {"description": vhost.description, "tags": ",".join(vhost.tags)}
        if vhost.default_queue_type:
            body["default_queue_type"] = vhost.default_queue_type
        self.management.put(f"/vhosts/{q(vhost.name)}", what, body)
        for name, value in definitions.broker_limits(vhost.limits).items():
            self.management.put(f"/vhost-limits/{q(vhost.name)}/{q(name)}", f"limit {name} of {what}", {"value": value})

    def _delete(self, change: Change) -> None:
        entity, what, v = change.live, self._what(change), q(self.vhost)
        m = self.management
        if isinstance(entity, model.Queue):
            if not self.force:
                self._still_empty(change, what)
            # The broker refuses if-empty for quorum queues (HTTP 400) and ignores it for streams.
            guard = "?if-empty=true" if not self.force and entity.type == "classic" else ""
            m.delete(f"/queues/{v}/{q(entity.name)}{guard}", what)
        elif isinstance(entity, model.Exchange):
            m.delete(f"/exchanges/{v}/{q(entity.name)}", what)
        elif isinstance(entity, model.Binding):
            self._unbind(entity, what)
        elif isinstance(entity, model.Policy):
            m.delete(f"/{_policy_path(entity.operator)}/{v}/{q(entity.name)}", what)
        elif isinstance(entity, model.Permission):
            m.delete(f"/permissions/{q(entity.vhost)}/{q(entity.user)}", what)
        elif isinstance(entity, model.TopicPermission):
            self._revoke_topic(entity, what)
        elif isinstance(entity, model.User):
            m.delete(f"/users/{q(entity.name)}", what)
        elif isinstance(entity, model.VHost):
            m.delete(f"/vhosts/{q(entity.name)}", what)
        elif isinstance(entity, model.Parameter):
            m.delete(f"/parameters/{q(entity.component)}/{v}/{q(entity.name)}", what)

    def _still_empty(self, change: Change, what: str) -> None:
        """Count the ready messages and consumers again, this moment: the plan's count is seconds old."""
        if self.amqp is None:
            return
        from mqspec.broker import counts

        now = counts.ready_now(self.amqp, change.name)
        if now is None:
            return
        ready, consumers = now
        if ready > (change.messages or 0):
            raise OperationFailed(f"{what} was not deleted: it holds {ready} ready messages now, {change.messages or 0} "
                                  "when the plan counted them; run again to count again, or with --force to discard them")
        if consumers > (change.consumers or 0):
            raise OperationFailed(f"{what} was not deleted: {consumers} consumers now, {change.consumers or 0} when the "
                                  "plan counted its messages; run again to count again, or with --force")

    def _unbind(self, binding: model.Binding, what: str) -> None:
        with self._lock:
            if self._properties is None:
                self._properties = live_state.binding_properties(self.management, self.vhost)
        key = self._properties.get(binding.key())
        if key is not None:     # already gone otherwise
            self.management.delete(f"{_binding_path(q(self.vhost), binding)}/{q(key)}", what)

    def _revoke_topic(self, permission: model.TopicPermission, what: str) -> None:
        """The API deletes all topic permissions of a user in a vhost at once; put back the other exchanges'."""
        path = f"/topic-permissions/{q(permission.vhost)}/{q(permission.user)}"
        current = self.management.get(path, what, missing_ok=True) or []
        self.management.delete(path, what)
        for entry in current:
            if entry.get("exchange") != permission.exchange:
                self.management.put(path, what, {"exchange": entry["exchange"], "write": entry.get("write", ""),
                                                 "read": entry.get("read", "")})


# --- stages ------------------------------------------------------------------------------------------------

_FORWARD: tuple[tuple[tuple[Kind, ...], bool, bool], ...] = (
    (("vhost",), False, False),
    (("global_parameter",), True, False),
    (("user",), True, False),
    (("permission", "topic_permission"), True, False),
    (("policy", "operator_policy"), True, False),
)
_BACKWARD: tuple[tuple[tuple[Kind, ...], bool], ...] = (
    (("parameter",), True),
    (("queue", "exchange"), True),
    (("policy", "operator_policy"), True),
    (("topic_permission",), False),
    (("permission",), True),
    (("user",), True),
    (("vhost",), False),
)


def _stages(plan: Plan) -> list[tuple[list[_Op], bool, bool]]:
    """(ops, run in parallel, may use the bulk import) in the order they must run."""
    indexed = list(enumerate(plan.changes))

    def ops(kinds: Iterable[Kind], actions: Iterable[str], delete: bool) -> list[_Op]:
        wanted_kinds, wanted_actions = set(kinds), set(actions)
        return [_Op(i, c, delete) for i, c in indexed if c.kind in wanted_kinds and c.action in wanted_actions]

    stages = [(ops(kinds, ("create", "update"), False), parallel, bulk) for kinds, parallel, bulk in _FORWARD]
    stages += [
        (ops(("binding",), ("delete",), True), True, False),
        (ops(("exchange", "queue"), ("replace",), True), True, False),
        (ops(("exchange", "queue"), ("create", "replace"), False), True, True),
        (ops(("binding",), ("create",), False), True, True),
        (ops(("parameter",), ("create", "update"), False), True, False),
    ]
    stages += [(ops(kinds, ("delete",), True), parallel, False) for kinds, parallel in _BACKWARD]
    return [stage for stage in stages if stage[0]]


def _desired(change: Change) -> Entity:
    if change.desired is None:
        raise ValueError(f"{change.label}: nothing to declare")
    return change.desired


def _needs(change: Change, vhost: str) -> list[Key]:
    """The keys of plan entries this change cannot do without."""
    if change.action == "delete":
        return []
    entity = change.desired
    needs: list[Key] = []
    if change.kind in ("policy", "operator_policy", "exchange", "queue", "binding", "parameter"):
        needs.append(entity_key("vhost", vhost, vhost))
    if isinstance(entity, model.Binding):
        needs += [entity_key("exchange", vhost, entity.source), entity_key(entity.destination_type, vhost, entity.destination)]
    elif isinstance(entity, (model.Permission, model.TopicPermission)):
        needs += [entity_key("user", vhost, entity.user), entity_key("vhost", vhost, entity.vhost)]
    return needs


# --- request paths ----------------------------------------------------------------------------------------

def _binding_path(v: str, binding: model.Binding) -> str:
    kind = "e" if binding.destination_type == "exchange" else "q"
    return f"/bindings/{v}/e/{q(binding.source)}/{kind}/{q(binding.destination)}"


def _policy_path(operator: bool) -> str:
    return "operator-policies" if operator else "policies"
