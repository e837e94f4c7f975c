"""scripts/conformance on small files written here: one the broker takes, one it refuses; nothing is left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from mqspec.broker.management import Management
from tests.conftest import ROOT

GOOD: dict[str, Any] = {
    "vhosts": [{"name": "shop", "description": "the shop", "tags": ["t"]}],
    "users": [{"name": "app", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
               "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "", "limits": {"max-connections": 3}}],
    "permissions": [{"user": "app", "vhost": "shop", "configure": ".*", "write": ".*", "read": ".*"}],
    "global_parameters": [{"name": "cluster_name", "value": "conformance"}],
    "parameters": [{"vhost": "shop", "component": "vhost-limits", "name": "limits", "value": {"max-queues": 10}}],
    "policies": [{"vhost": "shop", "name": "ttl", "pattern": "^o", "apply-to": "queues",
                  "definition": {"message-ttl": 1000}, "priority": 1}],
    "exchanges": [{"name": "orders", "vhost": "shop", "type": "headers", "durable": True, "auto_delete": False,
                   "internal": False, "arguments": {}}],
    "queues": [{"name": "o.q", "vhost": "shop", "durable": True, "auto_delete": False, "arguments": {"x-max-length": 5}},
               {"name": "celeryev.05337a16-8a3c-4c2e-9f7e-0123456789ab", "vhost": "shop", "durable": False,
                "auto_delete": True, "arguments": {}}],
    "bindings": [{"source": "orders", "vhost": "shop", "destination": "o.q", "destination_type": "queue",
                  "routing_key": "", "arguments": {"x-match": "any", "n": 1}}],
}
REFUSED: dict[str, Any] = {"queues": [{"name": "q", "vhost": "nowhere", "durable": True, "auto_delete": False,
                                       "arguments": {}}]}


def test_conformance_passes_a_good_file_names_a_refused_one_and_leaves_nothing_behind(
        tmp_path: Path, management: Management) -> None:
    (tmp_path / "good.json").write_text(json.dumps(GOOD))
    (tmp_path / "refused.json").write_text(json.dumps(REFUSED))
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "conformance.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    assert (result.returncode, lines[0], lines[-1]) == (0, "PASS     good.json", "2 of 2 files conform"), result.stdout
    assert lines[1] == "REFUSED  refused.json"
    assert lines[2].startswith("         broker: broker refused the definitions: ['no_such_vhost', 'mqspec-conf-")
    assert "mqspec error: vhost 'mqspec-conf-" in lines[3] and "-m-nowhere' not found (NOT_FOUND)" in lines[3]
    assert "Traceback" not in result.stdout + result.stderr
    left = [v["name"] for v in management.get("/vhosts", "vhosts") if v["name"].startswith("mqspec-conf-")]
    left += [u["name"] for u in management.get("/users", "users") if u["name"].startswith("mqspec-conf-")]
    left += [g["name"] for g in management.get("/global-parameters", "globals") if g["name"].startswith("mqspec-conf-")]
    assert left == []


def test_conformance_fails_when_mqspec_and_the_broker_disagree(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import conformance
    finally:
        sys.path.pop(0)
    mine = conformance.normalized(conformance.renamed(GOOD, "p-"), "p-")
    changed = json.loads(json.dumps(GOOD))
    changed["queues"][0]["arguments"] = {"x-max-length": "5"}       # the same value with another type
    theirs = conformance.normalized(conformance.renamed(changed, "p-"), "p-")
    found = conformance.differences(mine, theirs, ("a", "b"))
    assert len(found) == 2 and all(line.startswith("queues: only in ") for line in found)
