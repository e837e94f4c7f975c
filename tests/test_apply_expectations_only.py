"""A file with expectations but no workload still has them checked live by apply."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import mqspec

ROUTES_ONLY = """\
version: 1
name: routes-only
topology:
  exchanges:
    - {name: logs, type: direct}
  queues:
    - {name: errors, max_length: 100}
  bindings:
    - {exchange: logs, queue: errors, keys: [error]}
expect:
  - routes:
      - {exchange: logs, key: error, to: [errors]}
  - {queue: errors, depth: DEPTH}
"""


def test_routes_and_depth_are_checked_without_a_workload(url: str, tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES_ONLY.replace("DEPTH", "0"))
    result = mqspec("--url", url, "apply", str(path))
    assert result.exit_code == 0, result.output
    assert "PASS route: 'error' on logs reaches errors" in result.stdout
    assert "PASS queue 'errors' depth 0" in result.stdout


def test_a_wrong_depth_without_a_workload_fails_apply(url: str, tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES_ONLY.replace("DEPTH", "5"))
    result = mqspec("--url", url, "apply", str(path))
    assert result.exit_code == 1
    assert "FAIL queue 'errors' depth 5" in result.stdout


def test_topology_only_skips_the_expectations(url: str, tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES_ONLY.replace("DEPTH", "5"))
    result = mqspec("--url", url, "apply", "--topology-only", str(path))
    assert result.exit_code == 0
    assert "expectations" not in result.stdout
