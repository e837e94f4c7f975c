"""One scenario from several files: include: and a folder; duplicates name both places; problems point at their file."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import mqspec

ROOT_FILE = """version: 1
name: shop
include: [teams/]
topology:
  exchanges:
    - {name: orders, type: topic}
"""
BILLING = """topology:
  queues:
    - {name: billing}
  bindings:
    - {exchange: orders, queue: billing, keys: ["order.paid"]}
"""
SHIPPING = """topology:
  queues:
    - {name: shipping}
  bindings:
    - {exchange: orders, queue: shipping, keys: ["order.#"]}
"""


def layout(tmp_path: Path, shipping: str = SHIPPING) -> Path:
    (tmp_path / "teams").mkdir()
    (tmp_path / "teams" / "billing.yaml").write_text(BILLING)
    (tmp_path / "teams" / "shipping.yaml").write_text(shipping)
    root = tmp_path / "shop.yaml"
    root.write_text(ROOT_FILE)
    return root


def test_included_files_add_to_the_topology_lists(tmp_path: Path) -> None:
    root = layout(tmp_path)
    assert mqspec("validate", str(root)).exit_code == 0
    exported = json.loads(mqspec("export", str(root)).stdout)
    assert sorted(q["name"] for q in exported["queues"]) == ["billing", "shipping"]
    assert sorted(b["routing_key"] for b in exported["bindings"]) == ["order.#", "order.paid"]


def test_the_same_queue_in_two_files_is_an_error_naming_both_places(tmp_path: Path) -> None:
    root = layout(tmp_path, shipping="topology:\n  queues:\n    - {name: shipping}\n    - {name: billing}\n")
    result = mqspec("validate", str(root))
    shipping = tmp_path / "teams" / "shipping.yaml"
    assert result.exit_code == 2
    assert (f"{shipping}:4:7: $.topology.queues[2]: queue 'billing' is declared twice: {tmp_path / 'teams' / 'billing.yaml'}:3 "
            f"and {shipping}:4 (hint: keep one of them: each entity belongs to one file)") in result.output


def test_a_problem_in_an_included_file_is_reported_at_its_own_line(tmp_path: Path) -> None:
    root = layout(tmp_path, shipping="topology:\n  queues:\n    - {name: shipping, durable: maybe}\n")
    result = mqspec("validate", str(root))
    assert result.exit_code == 2
    assert f"{tmp_path / 'teams' / 'shipping.yaml'}:3:" in result.output


def test_an_included_file_may_not_carry_a_broker_section(tmp_path: Path) -> None:
    root = layout(tmp_path, shipping="broker: {url: 'amqp://x'}\ntopology:\n  queues: [{name: shipping}]\n")
    result = mqspec("validate", str(root))
    assert result.exit_code == 2
    assert (f"{tmp_path / 'teams' / 'shipping.yaml'}:1:1: $.broker: 'broker' has no effect in an included file: only "
            "the root file's counts (hint: move it to the root file, or remove it)") in result.output


def test_plan_reads_a_folder(url: str, tmp_path: Path) -> None:
    folder = tmp_path / "cluster"
    folder.mkdir()
    (folder / "a-exchanges.yaml").write_text("version: 1\nname: shop\ntopology:\n  exchanges: [{name: orders, type: topic}]\n")
    (folder / "b-queues.yaml").write_text(BILLING)
    result = mqspec("--url", url, "plan", str(folder))
    assert result.exit_code == 0, result.output
    assert "+ exchange 'orders'" in result.stdout and "+ queue 'billing'" in result.stdout
    assert "+ binding 'orders' → queue 'billing' (key 'order.paid')" in result.stdout
