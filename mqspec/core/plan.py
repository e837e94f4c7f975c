"""What apply would change on the live broker, and why. Pure: values in, an ordered plan out.

Creates and in-place updates run in dependency order (vhosts, users, permissions, topic permissions, policies,
exchanges, queues, bindings); deletes run in the reverse order. A replace deletes an exchange or queue and
declares it again, and every binding to or from it is re-created in the same plan, including bindings the file
does not declare (unless they are being pruned), because deleting the entity drops them on the broker.

Decisions worth knowing:
- Arguments are compared with their JSON types against the live definitions, so "5" is not 5, true is not 1,
  and arguments the broker itself does not compare on redeclare (x-consumer-timeout, custom keys) still differ.
- Passwords cannot be read back. A password in the file is checked by recomputing RabbitMQ's salted hash
  (rabbit_password_hashing_sha256, sha512 or md5) with the salt of the stored hash; for any other hashing
  algorithm the user is updated on every apply and the plan says "password (cannot compare ...; set)".
  A user without a password in the file keeps whatever password it has.
- Vhost metadata and limits are compared only for vhosts declared under topology.vhosts, and only the limits
  the file names.
- --prune covers exchanges, queues, bindings, policies and operator policies of the target vhost. Users,
  vhosts and permissions are never pruned: removing the permissions of the user mqspec runs as would lock it out.
- Exclusive queues belong to the connection that declares them (the workload); the plan leaves them out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from mqspec.core import model
from mqspec.core.definitions import SHA256, password_matches
from mqspec.core.vocabulary import is_builtin_exchange, is_immutable, is_server_named

Action = Literal["create", "update", "replace", "delete"]
Kind = Literal["vhost", "user", "permission", "topic_permission", "global_parameter", "policy", "operator_policy",
               "exchange", "queue", "binding", "parameter"]
Entity = (model.VHost | model.User | model.Permission | model.TopicPermission | model.Policy | model.Exchange
          | model.Queue | model.Binding | model.Parameter | model.GlobalParameter)

# Runtime parameters come last: a shovel or a federation link starts as soon as it is declared, and the
# queues and exchanges it works on should be there by then.
KINDS: tuple[Kind, ...] = ("vhost", "user", "permission", "topic_permission", "global_parameter", "policy",
                           "operator_policy", "exchange", "queue", "binding", "parameter")
ACTIONS: tuple[Action, ...] = ("create", "update", "replace", "delete")
KIND_LABELS: Mapping[Kind, str] = MappingProxyType({
    "vhost": "vhost", "user": "user", "permission": "permissions", "topic_permission": "topic permissions",
    "policy": "policy", "operator_policy": "operator policy", "exchange": "exchange", "queue": "queue",
    "binding": "binding", "global_parameter": "global parameter", "parameter": "parameter",
})
ABSENT = "(absent)"


@dataclass(frozen=True)
class QueueStats:
    """Live counts of one queue: messages ready and unacknowledged; None when unknown, and then `unknown` says why."""

    messages: int | None = None
    consumers: int | None = None
    unknown: str = ""


@dataclass(frozen=True)
class Live:
    """The live state the plan is compared with, as read from the broker."""

    topology: model.Topology
    vhost_exists: bool = True
    # user name -> (hashing algorithm, password hash)
    password_hashes: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    queue_stats: Mapping[str, QueueStats] = field(default_factory=dict)
    # Vhost metadata this broker does not keep (RabbitMQ 3.10 ignores default_queue_type).
    unsupported: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Key:
    """What a change is about, stable across runs: the kind, the vhost and the identity inside it.

    Users belong to the whole broker (vhost ""); a vhost's own key has its name as vhost and no identity;
    a binding's identity is `Binding.key()` (source, destination type, destination, routing key, arguments).
    """

    kind: Kind
    vhost: str
    identity: tuple[str, ...] = ()


@dataclass(frozen=True)
class FieldDiff:
    """One field that differs: its value on the broker and in the file (ABSENT when a side has none).

    `immutable` fields cannot change in place (vocabulary.IMMUTABLE_FIELDS): a difference forces a replace.
    `label` is how the text plan names the field; `says` replaces the whole line where the values cannot be
    shown (a password).
    """

    field: str
    before: Any = ABSENT
    after: Any = ABSENT
    immutable: bool = False
    label: str = ""
    says: str = ""

    @property
    def text(self) -> str:
        return self.says or f"{self.label or self.field} {_show(self.before)} → {_show(self.after)}"


@dataclass(frozen=True)
class Change:
    action: Action
    kind: Kind
    name: str
    key: Key
    diffs: tuple[FieldDiff, ...] = ()
    notes: tuple[str, ...] = ()        # why, where no field differs ("not in the file", "restored after ...")
    desired: Entity | None = None
    live: Entity | None = None
    messages: int | None = None
    consumers: int | None = None
    unknown: str = ""                  # why `messages` is None, when it is known why

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every field difference and note, one line each, as the text plan shows them."""
        return (*(d.text for d in self.diffs), *self.notes)

    @property
    def label(self) -> str:
        """'queue 'orders'', 'binding 'x' → queue 'q' (key 'a.#')', for messages."""
        if self.kind == "binding":
            return f"binding {self.name}"
        return f"{KIND_LABELS[self.kind]} '{self.name}'" if self.kind not in ("permission", "topic_permission") \
            else f"{KIND_LABELS[self.kind]} of {self.name}"


def identify(entity: Entity, vhost: str) -> tuple[Kind, str, Key]:
    """The kind, display name and key of an entity of the target vhost."""
    if isinstance(entity, model.VHost):
        return "vhost", entity.name, Key("vhost", entity.name)
    if isinstance(entity, model.User):
        return "user", entity.name, Key("user", "", (entity.name,))
    if isinstance(entity, model.Permission):
        return "permission", permission_name(entity), Key("permission", entity.vhost, (entity.user,))
    if isinstance(entity, model.TopicPermission):
        return ("topic_permission", topic_permission_name(entity),
                Key("topic_permission", entity.vhost, (entity.user, entity.exchange)))
    if isinstance(entity, model.Policy):
        kind: Kind = "operator_policy" if entity.operator else "policy"
        return kind, entity.name, Key(kind, vhost, (entity.name,))
    if isinstance(entity, model.Exchange):
        return "exchange", entity.name, Key("exchange", vhost, (entity.name,))
    if isinstance(entity, model.Queue):
        return "queue", entity.name, Key("queue", vhost, (entity.name,))
    if isinstance(entity, model.Parameter):
        return "parameter", parameter_name(entity), Key("parameter", vhost, (entity.component, entity.name))
    if isinstance(entity, model.GlobalParameter):
        return "global_parameter", entity.name, Key("global_parameter", "", (entity.name,))
    return "binding", binding_name(entity), Key("binding", vhost, entity.key())


def make_change(action: Action, vhost: str, desired: Entity | None, live: Entity | None = None,
                diffs: Iterable[FieldDiff] = (), notes: Iterable[str] = ()) -> Change:
    """A change named and keyed after its entity (the desired one, else the live one)."""
    entity = desired if desired is not None else live
    assert entity is not None, "a change needs an entity"
    kind, name, key = identify(entity, vhost)
    return Change(action, kind, name, key, tuple(diffs), tuple(notes), desired, live)


def entity_key(kind: Kind, vhost: str, name: str) -> Key:
    """The key of a named entity: an exchange, queue, policy or user, or a vhost."""
    if kind == "vhost":
        return Key("vhost", name)
    return Key(kind, "" if kind == "user" else vhost, (name,))


@dataclass(frozen=True)
class Plan:
    vhost: str
    changes: tuple[Change, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changes

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def summary(self) -> dict[str, int]:
        return {action: self.count(action) for action in ACTIONS}


# --- the diff ----------------------------------------------------------------------------------------------

def diff(desired: model.Topology, live: Live, prune: bool = False) -> Plan:
    """Every change that makes the live vhost match the file, ordered so that each one can run in turn."""
    notes = list(_notes(desired, live))
    desired = desired.public()
    changes = [
        *_vhost_changes(desired, live),
        *_user_changes(desired, live),
        *_permission_changes(desired, live),
        *_topic_permission_changes(desired, live),
        *_policy_changes(desired, live, prune),
        *_global_parameter_changes(desired, live),
        *_parameter_changes(desired, live, prune),
    ]
    exchanges = _exchange_changes(desired, live, prune)
    queues = _queue_changes(desired, live, prune)
    replaced = {c.key for c in (*exchanges, *queues) if c.action == "replace"}
    changes += [*exchanges, *queues, *_binding_changes(desired, live, prune, replaced)]
    return Plan(desired.vhost, order(changes), tuple(notes))


def order(changes: Iterable[Change]) -> tuple[Change, ...]:
    """Creates, updates and replaces in dependency order; then deletes in reverse dependency order."""
    rank = {kind: i for i, kind in enumerate(KINDS)}
    items = list(changes)
    forward = sorted((c for c in items if c.action != "delete"), key=lambda c: rank[c.kind])
    backward = sorted((c for c in items if c.action == "delete"), key=lambda c: -rank[c.kind])
    return tuple(forward + backward)


def with_stats(plan: Plan, stats: Mapping[str, QueueStats]) -> Plan:
    """The plan with live message and consumer counts on each queue it replaces or deletes."""
    def counted(change: Change) -> Change:
        found = stats.get(change.name)
        if change.kind != "queue" or change.action not in ("replace", "delete") or found is None:
            return change
        return _with(change, found)
    return replace(plan, changes=tuple(counted(c) for c in plan.changes))


def queues_needing_stats(plan: Plan) -> list[str]:
    """Every queue the plan removes: each is counted again right before the plan is shown."""
    return [c.name for c in plan.changes if c.kind == "queue" and c.action in ("replace", "delete")]


def destroy(desired: model.Topology, live: Live, acting_user: str | None = None,
            vhost_messages: Mapping[str, QueueStats] | None = None) -> Plan:
    """Delete what the file declares and the broker has, never external or built-in entities.

    `vhost_messages` holds, for each declared vhost, the messages in all its queues.
    """
    declared = diff(desired, Live(model.Topology(desired.vhost)), prune=False)
    present = existing(live.topology)
    notes = []
    changes = []
    for change in declared.changes:
        if change.key not in present:
            continue
        if change.kind == "global_parameter":
            notes.append(f"global parameter '{change.name}' is kept: destroy never removes cluster-wide settings")
            continue
        if change.kind == "user" and change.name == acting_user:
            notes.append(f"user '{change.name}' is kept: mqspec is logged in as this user")
            continue
        deletion = replace(change, action="delete", diffs=(), notes=(), desired=None, live=change.desired)
        if change.kind == "queue":
            deletion = _counted(deletion, live)
        elif change.kind == "vhost":
            deletion = _with(deletion, (vhost_messages or {}).get(change.name) or QueueStats())
        changes.append(deletion)
    return Plan(desired.vhost, order(changes), tuple(notes))


def existing(topology: model.Topology) -> set[Key]:
    """The key of every entity in a topology, as plan changes key them."""
    entities: list[Entity] = [*topology.vhosts, *topology.users, *topology.permissions, *topology.topic_permissions,
                              *topology.policies, *topology.exchanges, *topology.queues, *topology.bindings,
                              *topology.parameters, *topology.global_parameters]
    return {identify(entity, topology.vhost)[2] for entity in entities}


# --- guards ------------------------------------------------------------------------------------------------

def refusals(plan: Plan, allow_replace: bool, force: bool, migrate: bool = False) -> list[str]:
    """Why apply (or destroy) must not run this plan, one sentence per change; empty when it may.

    `migrate` (apply --migrate) is consent to replace queues by moving their messages through a holding queue.
    """
    found: list[str] = []
    for change in plan.changes:
        if migrate and change.action == "replace" and change.kind == "queue" and _movable(change):
            continue
        if change.action == "replace" and not allow_replace:
            found.append(f"refusing to replace {change.label} ({'; '.join(change.reasons)}): replacing deletes it and "
                         "declares it again; rerun with --allow-replace")
        if change.action in ("replace", "delete") and change.kind in ("queue", "vhost") and not force:
            found += _message_guard(change)
    return found


def _movable(change: Change) -> bool:
    """A stream cannot be migrated: reading it removes nothing, so there is no move to make crash-safe."""
    return not (isinstance(change.live, model.Queue) and change.live.type == "stream")


def _message_guard(change: Change) -> list[str]:
    verb = "replace" if change.action == "replace" else "delete"
    what = change.label if change.kind == "queue" else f"{change.label} with all its queues"
    if change.messages is None and change.unknown:
        return [f"refusing to {verb} {what}: how many messages it holds cannot be known ({change.unknown}); "
                "rerun with --force to discard whatever it holds"]
    if change.messages is None:
        return [f"refusing to {verb} {what}: the broker has not reported how many messages it holds yet; "
                "rerun in a few seconds, or with --force to discard whatever it holds"]
    if change.messages > 0 and change.action == "replace" and change.kind == "queue" and _movable(change):
        return [f"refusing to {verb} {what}: it holds {_count(change.messages, 'message')} that would be lost; "
                "rerun with --migrate to move them to the new queue, or with --force to discard them"]
    if change.messages > 0:
        return [f"refusing to {verb} {what}: it holds {_count(change.messages, 'message')} that would be lost; "
                "rerun with --force to discard them"]
    return []


# --- entity by entity --------------------------------------------------------------------------------------

def _notes(desired: model.Topology, live: Live) -> Iterator[str]:
    live_exchanges = {e.name for e in live.topology.exchanges}
    live_queues = {q.name for q in live.topology.queues}
    for exchange in desired.exchanges:
        if exchange.external and exchange.name not in live_exchanges and not is_builtin_exchange(exchange.name):
            yield f"external exchange '{exchange.name}' does not exist on the broker"
    for queue in desired.queues:
        if queue.external and queue.name not in live_queues:
            yield f"external queue '{queue.name}' does not exist on the broker"
        elif queue.owner is not None:
            yield (f"queue '{queue.name}' belongs to consumer '{queue.owner}': its connection declares and binds it "
                   "when the workload starts, not apply")
        elif queue.exclusive and not queue.external:
            yield (f"queue '{queue.name}' is exclusive and no single consumer owns it: nothing declares it (it would "
                   "live only as long as the connection that declares it); give it exactly one consumer")
    if "default_queue_type" in live.unsupported:
        for vhost in desired.vhosts:
            if vhost.default_queue_type:
                yield f"vhost '{vhost.name}': this broker does not keep default_queue_type; it is not compared"


def _updated(vhost: str, desired: Entity, found: Entity, diffs: list[FieldDiff]) -> Iterator[Change]:
    """An update when some field differs (a replace when one of them cannot change in place)."""
    if diffs:
        action: Action = "replace" if any(d.immutable for d in diffs) else "update"
        yield make_change(action, vhost, desired, found, diffs)


def _vhost_changes(desired: model.Topology, live: Live) -> Iterator[Change]:
    existing = {v.name: v for v in live.topology.vhosts}
    for vhost in desired.vhosts:
        found = existing.get(vhost.name)
        if found is None:
            yield make_change("create", desired.vhost, vhost)
            continue
        diffs = [*_field("vhost", "description", found.description, vhost.description),
                 *_field("vhost", "tags", sorted(found.tags), sorted(vhost.tags))]
        if vhost.default_queue_type and "default_queue_type" not in live.unsupported:
            diffs += _field("vhost", "default_queue_type", found.default_queue_type, vhost.default_queue_type)
        diffs += [d for key, value in vhost.limits.items()
                  for d in _field("vhost", f"limits.{key}", found.limits.get(key, ABSENT), value, f"limit {key}")]
        yield from _updated(desired.vhost, vhost, found, diffs)


def _user_changes(desired: model.Topology, live: Live) -> Iterator[Change]:
    existing = {u.name: u for u in live.topology.users}
    for user in desired.users:
        found = existing.get(user.name)
        if found is None:
            note = ("password set" if user.password is not None else "password hash set" if user.password_hash is not None
                    else "no password: it cannot log in with a password")
            yield make_change("create", desired.vhost, user, notes=(note,))
            continue
        diffs = _field("user", "tags", sorted(found.tags), sorted(user.tags))
        if user.password is not None:
            diffs += _password_diff(user.password, live.password_hashes.get(user.name, ("", "")))
        elif user.password_hash is not None:
            diffs += _hash_diff(user, live.password_hashes.get(user.name, ("", "")))
        diffs += [d for key, value in user.limits.items()
                  for d in _field("user", f"limits.{key}", found.limits.get(key, ABSENT), value, f"limit {key}")]
        yield from _updated(desired.vhost, user, found, diffs)


def _password_diff(password: str, stored: tuple[str, str]) -> list[FieldDiff]:
    """Never the password itself, nor its hash: only whether it differs."""
    algorithm, password_hash = stored
    same = password_matches(password, password_hash, algorithm) if password_hash else False
    if same is None:
        return [FieldDiff("password", says=f"password (cannot compare: the broker hashes it with {algorithm}; set)")]
    return [] if same else [FieldDiff("password", says="password differs")]


def _hash_diff(user: model.User, stored: tuple[str, str]) -> list[FieldDiff]:
    algorithm = user.hashing_algorithm or SHA256
    return [] if stored == (algorithm, user.password_hash) else [FieldDiff("password_hash", says="password_hash differs")]


def _global_parameter_changes(desired: model.Topology, live: Live) -> Iterator[Change]:
    """Only the global parameters the file names are compared; the others are the broker's or another team's."""
    existing = {p.name: p for p in live.topology.global_parameters}
    for parameter in desired.global_parameters:
        found = existing.get(parameter.name)
        if found is None:
            yield make_change("create", desired.vhost, parameter)
            continue
        yield from _updated(desired.vhost, parameter, found, _field("global_parameter", "value", found.value, parameter.value))


def parameter_name(parameter: model.Parameter) -> str:
    return f"{parameter.component}/{parameter.name}"


def _parameter_changes(desired: model.Topology, live: Live, prune: bool) -> Iterator[Change]:
    existing = {parameter_name(p): p for p in live.topology.parameters}
    declared = {parameter_name(p) for p in desired.parameters}
    for parameter in desired.parameters:
        found = existing.get(parameter_name(parameter))
        if parameter.external:
            continue
        if found is None:
            yield make_change("create", desired.vhost, parameter)
            continue
        if isinstance(found.value, dict) and isinstance(parameter.value, dict):
            diffs = _arguments("parameter", "value", found.value, parameter.value)
        else:
            diffs = _field("parameter", "value", found.value, parameter.value)
        yield from _updated(desired.vhost, parameter, found, diffs)
    if prune:
        yield from (make_change("delete", desired.vhost, None, found, notes=("not in the file",))
                    for name, found in existing.items() if name not in declared)


def _permission_changes(desired: model.Topology, live: Live) -> Iterator[Change]:
    existing = {(p.user, p.vhost): p for p in live.topology.permissions}
    for perm in desired.permissions:
        found = existing.get((perm.user, perm.vhost))
        if found is None:
            yield make_change("create", desired.vhost, perm)
            continue
        diffs = [d for attr in ("configure", "write", "read")
                 for d in _field("permission", attr, getattr(found, attr), getattr(perm, attr))]
        yield from _updated(desired.vhost, perm, found, diffs)


def _topic_permission_changes(desired: model.Topology, live: Live) -> Iterator[Change]:
    existing = {(p.user, p.vhost, p.exchange): p for p in live.topology.topic_permissions}
    for perm in desired.topic_permissions:
        found = existing.get((perm.user, perm.vhost, perm.exchange))
        if found is None:
            yield make_change("create", desired.vhost, perm)
            continue
        diffs = [d for attr in ("write", "read")
                 for d in _field("topic_permission", attr, getattr(found, attr), getattr(perm, attr))]
        yield from _updated(desired.vhost, perm, found, diffs)


def _policy_changes(desired: model.Topology, live: Live, prune: bool) -> Iterator[Change]:
    existing = {(p.operator, p.name): p for p in live.topology.policies}
    wanted = {(p.operator, p.name) for p in desired.policies}
    for policy in desired.policies:
        found = existing.get((policy.operator, policy.name))
        if found is None:
            yield make_change("create", desired.vhost, policy)
            continue
        diffs = [*_field("policy", "pattern", found.pattern, policy.pattern),
                 *_field("policy", "apply-to", found.apply_to, policy.apply_to),
                 *_field("policy", "priority", found.priority, policy.priority),
                 *_arguments("policy", "definition", found.definition, policy.definition)]
        yield from _updated(desired.vhost, policy, found, diffs)
    if prune:
        for key, found in existing.items():
            if key not in wanted:
                yield make_change("delete", desired.vhost, None, found, notes=("not in the file",))


def _exchange_changes(desired: model.Topology, live: Live, prune: bool) -> list[Change]:
    existing = {e.name: e for e in live.topology.exchanges if not is_builtin_exchange(e.name)}
    changes = []
    for exchange in desired.exchanges:
        if exchange.external or is_builtin_exchange(exchange.name):
            continue
        found = existing.get(exchange.name)
        if found is None:
            changes.append(make_change("create", desired.vhost, exchange))
            continue
        diffs = [d for attr in ("type", "durable", "auto_delete", "internal")
                 for d in _field("exchange", attr, getattr(found, attr), getattr(exchange, attr))]
        diffs += _arguments("exchange", "arguments", found.arguments, exchange.arguments)
        changes += _updated(desired.vhost, exchange, found, diffs)
    if prune:
        declared = {e.name for e in desired.exchanges}
        changes += [make_change("delete", desired.vhost, None, found, notes=("not in the file",))
                    for name, found in existing.items() if name not in declared]
    return changes


def _queue_changes(desired: model.Topology, live: Live, prune: bool) -> list[Change]:
    existing = {q.name: q for q in live.topology.queues if not q.exclusive and not is_server_named(q.name)}
    changes = []
    for queue in desired.queues:
        if queue.external or queue.exclusive:
            continue
        found = existing.get(queue.name)
        if found is None:
            changes.append(make_change("create", desired.vhost, queue))
            continue
        diffs = [d for attr in ("type", "durable", "exclusive", "auto_delete")
                 for d in _field("queue", attr, getattr(found, attr), getattr(queue, attr))]
        diffs += _arguments("queue", "arguments", found.arguments, queue.arguments)
        changes += [_counted(c, live) for c in _updated(desired.vhost, queue, found, diffs)]
    if prune:
        declared = {q.name for q in desired.queues}
        changes += [_counted(make_change("delete", desired.vhost, None, found, notes=("not in the file",)), live)
                    for name, found in existing.items() if name not in declared]
    return changes


def _counted(change: Change, live: Live) -> Change:
    stats = live.queue_stats.get(change.name)
    return _with(change, stats) if stats else change


def _with(change: Change, stats: QueueStats) -> Change:
    return replace(change, messages=stats.messages, consumers=stats.consumers, unknown=stats.unknown)


def _binding_changes(desired: model.Topology, live: Live, prune: bool, replaced: set[Key]) -> list[Change]:
    wanted = {b.key(): b for b in desired.bindings}
    existing = {b.key(): b for b in live.topology.bindings}
    vhost = desired.vhost
    changes = []
    for key, binding in wanted.items():
        ends = _replaced_ends(binding, vhost, replaced)
        if key not in existing:
            changes.append(make_change("create", vhost, binding))
        elif ends:
            changes.append(make_change("create", vhost, binding, notes=(_restore_reason(ends),)))
    for key, binding in existing.items():
        if key in wanted:
            continue
        ends = _replaced_ends(binding, vhost, replaced)
        if prune:
            changes.append(make_change("delete", vhost, None, binding, notes=("not in the file",)))
        elif ends:
            reason = f"not in the file, but it exists: {_restore_reason(ends)}"
            changes.append(make_change("create", vhost, binding, binding, notes=(reason,)))
    return changes


def _replaced_ends(binding: model.Binding, vhost: str, replaced: set[Key]) -> list[str]:
    """The ends of a binding that the plan replaces (deleting them drops the binding), as labels."""
    ends: list[tuple[Kind, str]] = [("exchange", binding.source), (binding.destination_type, binding.destination)]
    return [f"{kind} '{name}'" for kind, name in ends if entity_key(kind, vhost, name) in replaced]


def _restore_reason(ends: list[str]) -> str:
    return f"restored after replacing {' and '.join(ends)}"


def permission_name(permission: model.Permission) -> str:
    return f"user '{permission.user}' in vhost '{permission.vhost}'"


def topic_permission_name(permission: model.TopicPermission) -> str:
    return f"user '{permission.user}' on exchange '{permission.exchange}' in vhost '{permission.vhost}'"


def binding_name(binding: model.Binding) -> str:
    text = f"'{binding.source}' → {binding.destination_type} '{binding.destination}' (key '{binding.routing_key}'"
    if binding.arguments:
        text += f", arguments {_show(dict(binding.arguments))}"
    return text + ")"


# --- field differences -------------------------------------------------------------------------------------

def _field(kind: Kind, name: str, live: Any, wanted: Any, label: str = "") -> list[FieldDiff]:
    if _same(live, wanted):
        return []
    return [FieldDiff(name, live, wanted, is_immutable(kind, name), label)]


def _arguments(kind: Kind, field: str, live: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[FieldDiff]:
    """One difference per differing key; values keep their types ("5" is not 5, true is not 1).

    Exchange and queue arguments are named by their key alone in the text plan, policy definitions as
    'definition KEY'.
    """
    found = []
    for key in sorted(set(live) | set(wanted)):
        old, new = live.get(key, ABSENT), wanted.get(key, ABSENT)
        if not _same(old, new) or (key in live) != (key in wanted):
            label = key if field == "arguments" or kind == "parameter" else f"{field} {key}"
            found.append(FieldDiff(f"{field}.{key}", old, new, is_immutable(kind, field), label))
    return found


def _same(a: Any, b: Any) -> bool:
    """Equal with the same JSON type: 1 is not 1.0 or true, "5" is not 5."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (dict, list, tuple)):
        return _canonical(a) == _canonical(b)
    return bool(a == b)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _show(value: Any) -> str:
    if value is ABSENT or value is None:
        return ABSENT if value is ABSENT else "(none)"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
