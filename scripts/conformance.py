"""Conformance against real definitions files: import each whole, apply it, and compare with the broker's own import.

For each *.json in a folder, two copies are made with every vhost, user and global parameter renamed under a
fresh prefix (so the shared broker's own users, vhosts and cluster_name are never touched). One copy is imported
with `mqspec import`, applied with `mqspec apply`; the other is sent to `POST /api/definitions`. Then:

1. the live state of both copies, read back with `GET /api/definitions`, must be the same, types included
   (transient queues, which mqspec leaves out on purpose, are compared on neither side);
2. `mqspec plan` must show no changes;
3. `mqspec export` must be equivalent to the original file.

A file the broker itself refuses passes when mqspec's apply ends with one error line per refused entity, no
traceback. Everything created is deleted afterwards. Usage: scripts/conformance DIR [--url AMQP_URL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mqspec.broker.management import Management
from mqspec.core.importing import is_transient
from mqspec.core.model import BrokerSettings
from mqspec.core.vocabulary import is_builtin_exchange
from mqspec.errors import MqspecError

MQSPEC = str(Path(sys.executable).parent / "mqspec")
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
SCOPED = ("queues", "exchanges", "bindings", "policies", "parameters", "permissions", "topic_permissions")


# --- renaming under a prefix ------------------------------------------------------------------------------------

def renamed(data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The same definitions with every vhost, user and global parameter under `prefix` (a vhost-scoped file's
    entities go to the prefixed '/')."""
    def vhost(name: Any) -> str:
        return prefix + str(name)

    out: dict[str, Any] = json.loads(json.dumps(data))
    for key in SCOPED:
        for entry in _list(out, key):
            entry["vhost"] = vhost(entry.get("vhost", "/"))
            if "user" in entry:
                entry["user"] = prefix + entry["user"]
    named = {e["vhost"] for key in SCOPED for e in _list(out, key)}
    out["vhosts"] = [{**v, "name": vhost(v["name"])} for v in _list(out, "vhosts")]
    out["vhosts"] += [{"name": n} for n in sorted(named - {v["name"] for v in out["vhosts"]}) if n == vhost("/")]
    out["users"] = [{**u, "name": prefix + u["name"]} for u in _list(out, "users")]
    out["global_parameters"] = [{**g, "name": prefix + g["name"]} for g in _list(out, "global_parameters")
                                if g.get("name") != "internal_cluster_id"]
    return out


def _list(data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


# --- semantic comparison ----------------------------------------------------------------------------------------

def normalized(data: Mapping[str, Any], prefix: str, salted: Iterable[str] = ()) -> dict[str, list[str]]:
    """Each section as sorted canonical JSON, names without the prefix, defaults filled in, transient queues out.

    `salted`: users whose file gives a plain password; each import salts it afresh, so their hashes are not compared.
    """
    fresh = set(salted)
    def strip(value: Any) -> Any:
        return value[len(prefix):] if isinstance(value, str) and value.startswith(prefix) else value

    def mine(entry: Mapping[str, Any], field: str) -> bool:
        return isinstance(entry.get(field), str) and entry[field].startswith(prefix)

    transient = {(q.get("vhost"), q.get("name")) for q in _list(data, "queues") if is_transient(q) or _plugins(q["name"])}
    sections: dict[str, Iterable[dict[str, Any]]] = {
        "vhosts": (_vhost(v, strip) for v in _list(data, "vhosts") if mine(v, "name")),
        "users": ({"name": strip(u["name"]),
                   "password_hash": "(salted afresh)" if strip(u["name"]) in fresh else u.get("password_hash") or "",
                   "hashing_algorithm": u.get("hashing_algorithm") or "rabbit_password_hashing_sha256",
                   "tags": sorted(_tags(u.get("tags"))), "limits": u.get("limits") or {}}
                  for u in _list(data, "users") if mine(u, "name")),
        "permissions": ({**p, "user": strip(p["user"]), "vhost": strip(p["vhost"])}
                        for p in _list(data, "permissions") if mine(p, "vhost")),
        "topic_permissions": ({**p, "user": strip(p["user"]), "vhost": strip(p["vhost"])}
                              for p in _list(data, "topic_permissions") if mine(p, "vhost")),
        "global_parameters": ({"name": strip(g["name"]), "value": g.get("value")}
                              for g in _list(data, "global_parameters") if mine(g, "name")),
        "parameters": ({**p, "vhost": strip(p["vhost"])} for p in _list(data, "parameters") if mine(p, "vhost")),
        "policies": ({"vhost": strip(p["vhost"]), "name": p["name"], "pattern": p.get("pattern"),
                      "apply-to": p.get("apply-to", "all"), "definition": p.get("definition") or {},
                      "priority": p.get("priority", 0)} for p in _list(data, "policies") if mine(p, "vhost")),
        "exchanges": ({"vhost": strip(e["vhost"]), "name": e["name"], "type": e.get("type"),
                       "durable": e.get("durable", True), "auto_delete": e.get("auto_delete", False),
                       "internal": e.get("internal", False), "arguments": e.get("arguments") or {}}
                      for e in _list(data, "exchanges")
                      if mine(e, "vhost") and not is_builtin_exchange(e["name"]) and not _plugins(e["name"])),
        "queues": (_queue(q, strip) for q in _list(data, "queues")
                   if mine(q, "vhost") and (q.get("vhost"), q.get("name")) not in transient),
        "bindings": ({"vhost": strip(b["vhost"]), "source": b["source"], "destination": b["destination"],
                      "destination_type": b.get("destination_type"), "routing_key": b.get("routing_key", ""),
                      "arguments": b.get("arguments") or {}}
                     for b in _list(data, "bindings") if mine(b, "vhost") and b.get("source") and not _plugins(b["source"])
                     and (b["destination_type"] == "exchange" or (b.get("vhost"), b["destination"]) not in transient)),
    }
    return {key: sorted(json.dumps(e, sort_keys=True) for e in entries) for key, entries in sections.items()}


def _plugins(name: str) -> bool:
    """Exchanges and queues a federation link declares for itself."""
    return name.startswith("federation: ")


def with_vhost_metadata(data: Mapping[str, Any], vhosts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """GET /api/definitions with each vhost's description and tags from GET /api/vhosts (RabbitMQ 3.10 leaves
    them out of its definitions)."""
    listed = {v["name"]: v for v in vhosts}
    return {**data, "vhosts": [{**v, "description": listed.get(v["name"], {}).get("description", v.get("description", "")),
                                "tags": listed.get(v["name"], {}).get("tags", v.get("tags", []))}
                               for v in _list(data, "vhosts")]}


def _vhost(entry: Mapping[str, Any], strip: Callable[[Any], Any]) -> dict[str, Any]:
    metadata = entry.get("metadata") or {}
    return {"name": strip(entry["name"]), "description": entry.get("description") or metadata.get("description") or "",
            "tags": sorted(_tags(entry.get("tags", metadata.get("tags"))))}


def _queue(entry: Mapping[str, Any], strip: Callable[[Any], Any]) -> dict[str, Any]:
    arguments = dict(entry.get("arguments") or {})
    queue_type = arguments.pop("x-queue-type", None) or entry.get("type") or "classic"
    return {"vhost": strip(entry["vhost"]), "name": entry["name"], "type": queue_type,
            "durable": entry.get("durable", True), "auto_delete": entry.get("auto_delete", False), "arguments": arguments}


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return [str(t) for t in value] if isinstance(value, list) else []


def differences(left: Mapping[str, list[str]], right: Mapping[str, list[str]], names: tuple[str, str],
                sections: Iterable[str] | None = None) -> list[str]:
    found = []
    for key in sections or left.keys():
        only_left = sorted(set(left.get(key, [])) - set(right.get(key, [])))
        only_right = sorted(set(right.get(key, [])) - set(left.get(key, [])))
        found += [f"{key}: only in {names[0]}: {e}" for e in only_left]
        found += [f"{key}: only in {names[1]}: {e}" for e in only_right]
    return found


# --- one file ---------------------------------------------------------------------------------------------------

class Run:
    def __init__(self, management: Management, url: str, work: Path) -> None:
        self.management = management
        self.url = url
        self.work = work
        self.salted: list[str] = []

    def mqspec(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MQSPEC_URL": self.url}
        return subprocess.run([MQSPEC, "--url", self.url, *args], capture_output=True, text=True, env=env, timeout=600)

    def check(self, path: Path) -> tuple[str, list[str]]:
        """('pass' | 'refused' | 'fail', details)."""
        data = json.loads(path.read_text(encoding="utf-8"))
        tag = uuid.uuid4().hex[:8]
        mine, theirs = f"mqspec-conf-{tag}-m-", f"mqspec-conf-{tag}-b-"
        try:
            return self._check(path.stem, data, mine, theirs)
        finally:
            self.clean(renamed(data, mine), mine)
            self.clean(renamed(data, theirs), theirs)

    def _check(self, stem: str, data: dict[str, Any], mine: str, theirs: str) -> tuple[str, list[str]]:
        ours = self.work / f"{stem}.mqspec.json"
        ours.write_text(json.dumps(renamed(data, mine)))
        scenario = self.work / f"{stem}.yaml"
        imported = self.mqspec("import", "--from-definitions", str(ours), "-o", str(scenario))
        if imported.returncode not in (0, 1) or "Traceback" in imported.stderr:
            return "fail", [f"import exited {imported.returncode}: {imported.stderr.strip()}"]
        refused = self._broker_import(renamed(data, theirs))
        applied = self.mqspec("apply", str(scenario), "--topology-only")
        if "Traceback" in applied.stdout + applied.stderr:
            return "fail", ["apply printed a traceback", applied.stderr.strip()]
        if refused is not None:
            return self._refused(refused, applied)
        self.salted = [u["name"] for u in _list(data, "users") if u.get("password")]
        problems = self._same_live_state(mine, theirs)
        if applied.returncode != 0:
            # The broker's import drops some refused entities without a word (a binding to a missing exchange);
            # mqspec must name each one and apply everything else the same.
            return self._dropped_by_the_broker(applied, problems)
        plan = self.mqspec("plan", str(scenario), "--detailed-exitcode")
        if plan.returncode != 0:
            problems.append(f"plan after apply exited {plan.returncode}: {plan.stdout.strip()} {plan.stderr.strip()}")
        problems += self._export_matches(scenario, renamed(data, mine), mine)
        return ("fail", problems) if problems else ("pass", [])

    def _broker_import(self, data: dict[str, Any]) -> str | None:
        try:
            self.management.post("/definitions", "the definitions", data)
        except MqspecError as exc:
            return exc.message
        return None

    def _refused(self, refused: str, applied: subprocess.CompletedProcess[str]) -> tuple[str, list[str]]:
        errors = [line for line in applied.stderr.splitlines() if line.startswith("error: ")]
        if applied.returncode == 0:
            return "fail", [f"the broker refused the file ({refused}) but mqspec applied it without an error"]
        if not errors:
            return "fail", [f"the broker refused the file ({refused}); mqspec exited {applied.returncode} naming nothing"]
        return "refused", [f"broker: {refused}", *(f"mqspec {line}" for line in errors)]

    def _dropped_by_the_broker(self, applied: subprocess.CompletedProcess[str],
                               problems: list[str]) -> tuple[str, list[str]]:
        errors = [line for line in applied.stderr.splitlines() if line.startswith("error: ")]
        unnamed = [line for line in errors if "'" not in line]
        if problems or unnamed or not errors:
            return "fail", [f"apply exited {applied.returncode} where the broker's import succeeded:", *errors,
                            *problems]
        return "refused", ["broker: accepted the file and left these out without a word", *(f"mqspec {e}" for e in errors)]

    def _same_live_state(self, mine: str, theirs: str) -> list[str]:
        live = with_vhost_metadata(self.management.get("/definitions", "the definitions"),
                                   self.management.get("/vhosts", "the vhosts"))
        return differences(normalized(live, mine, self.salted), normalized(live, theirs, self.salted),
                           ("mqspec's apply", "the broker's import"))

    def _export_matches(self, scenario: Path, original: dict[str, Any], prefix: str) -> list[str]:
        exported = self.mqspec("export", str(scenario))
        if exported.returncode != 0:
            return [f"export exited {exported.returncode}: {exported.stderr.strip()}"]
        # a user with no password in the file is left out of an export, by design and with a warning: importing
        # it would clear the password of an existing user
        original = {**original, "users": [u for u in _list(original, "users") if u.get("password_hash") or u.get("password")]}
        return differences(normalized(json.loads(exported.stdout), prefix, self.salted),
                           normalized(original, prefix, self.salted),
                           ("the export", "the original"))

    def clean(self, data: Mapping[str, Any], prefix: str) -> None:
        m = self.management
        for v in _list(data, "vhosts"):
            m.delete(f"/vhosts/{_q(v['name'])}", "vhost")
        for u in _list(data, "users"):
            m.delete(f"/users/{_q(u['name'])}", "user")
        for g in _list(data, "global_parameters"):
            m.delete(f"/global-parameters/{_q(g['name'])}", "global parameter")
        leftovers = [v["name"] for v in m.get("/vhosts", "vhosts") if v["name"].startswith(prefix)]
        for name in leftovers:
            m.delete(f"/vhosts/{_q(name)}", "vhost")


def _q(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/conformance", description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--url", default=os.environ.get("MQSPEC_URL", DEFAULT_URL))
    args = parser.parse_args(argv)
    files = sorted(Path(args.folder).glob("*.json"))
    if not files:
        print(f"error: no *.json files in {args.folder}", file=sys.stderr)
        return 2
    failed = 0
    with Management(BrokerSettings(urls=(args.url,))) as management, tempfile.TemporaryDirectory() as work:
        run = Run(management, args.url, Path(work))
        for path in files:
            outcome, details = run.check(path)
            failed += outcome == "fail"
            print(f"{outcome.upper():8} {path.name}")
            for line in details:
                print(f"         {line}")
    print(f"{len(files) - failed} of {len(files)} files conform")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
