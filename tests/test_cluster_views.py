"""route, graph and lint across every vhost of a file, with no broker."""

from __future__ import annotations

from pathlib import Path

from mqspec.pipeline import load
from tests.conftest import mqspec

FILE = """version: 1
name: two
topology:
  exchanges:
    - {name: front, type: fanout}
    - {name: logs, vhost: audit, type: topic}
  queues:
    - {name: inbox}
    - {name: all-logs, vhost: audit}
  bindings:
    - {exchange: front, queue: inbox}
    - {exchange: logs, queue: all-logs, vhost: audit, keys: ['#']}
"""


def scenario(tmp_path: Path) -> str:
    path = tmp_path / "two.yaml"
    path.write_text(FILE)
    return str(path)


def test_route_follows_the_bindings_of_the_vhost_given_with_vhost(tmp_path: Path) -> None:
    path = scenario(tmp_path)
    routed = mqspec("route", path, "--vhost", "audit", "-e", "logs", "-k", "anything", "--format", "json")
    assert routed.exit_code == 0, routed.output
    assert '"all-logs"' in routed.stdout
    default = mqspec("route", path, "-e", "front")
    assert default.exit_code == 0 and "inbox" in default.stdout


def test_route_says_in_which_vhost_an_exchange_is_declared(tmp_path: Path) -> None:
    path = scenario(tmp_path)
    result = mqspec("route", path, "-e", "logs", "-k", "x")
    assert (result.exit_code, result.stderr) == (
        2, f"error: exchange 'logs' is not declared in vhost '/' of {path} (it is declared in vhost 'audit': give "
           "--vhost audit)\n")
    missing = mqspec("route", path, "--vhost", "nope", "-e", "logs")
    assert (missing.exit_code, missing.stderr) == (2, f"error: vhost 'nope' is not in {path}; it has '/', 'audit'\n")


def test_entities_that_name_no_vhost_belong_to_the_default_vhost_only(tmp_path: Path) -> None:
    loaded = load(scenario(tmp_path))
    assert loaded.scenario is not None
    by_vhost = {t.vhost: t for t in loaded.scenario.every_vhost()}
    assert [q.name for q in by_vhost["/"].queues] == ["inbox"]
    assert [q.name for q in by_vhost["audit"].queues] == ["all-logs"]
    assert [e.name for e in by_vhost["audit"].exchanges] == ["logs"]
    assert len(by_vhost["audit"].bindings) == 1


def test_graph_groups_each_vhosts_entities(tmp_path: Path) -> None:
    mermaid = mqspec("graph", scenario(tmp_path)).stdout
    assert '  subgraph v1["vhost /"]\n' in mermaid and '  subgraph v2["vhost audit"]\n' in mermaid
    audit = mermaid[mermaid.index('subgraph v2'):]
    assert 'all-logs' in audit[:audit.index("  end")] and "inbox" not in audit[:audit.index("  end")]
    dot = mqspec("graph", scenario(tmp_path), "--format", "dot").stdout
    assert '  subgraph cluster_2 {\n    label="vhost audit";\n' in dot


def test_lint_looks_at_every_vhost(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(FILE.replace("{exchange: logs, queue: all-logs, vhost: audit, keys: ['#']}",
                                 "{exchange: logs, queue: all-logs, vhost: audit, keys: ['']}"))
    result = mqspec("validate", str(path))
    assert ("binding of queue 'all-logs' to topic exchange 'logs' has the empty key: it matches only messages whose "
            "routing key is empty") in result.output
