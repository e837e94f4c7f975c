"""The documentation stays true: the reference matches the schema, the README stays short, links resolve."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

from tests.conftest import ROOT, mqspec

GENERATOR = ROOT / "scripts" / "gen-reference"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _render_reference() -> str:
    generator = runpy.run_path(str(GENERATOR), run_name="gen_reference")
    schema = json.loads((ROOT / "schemas" / "mqspec.schema.json").read_text(encoding="utf-8"))
    text: str = generator["render"](schema)
    return text


def _relative_links(page: Path) -> list[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    targets = (match.group(1) for match in _LINK.finditer(text))
    return [target for target in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", target)]


def test_reference_doc_is_current_with_the_schema() -> None:
    committed = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert committed == _render_reference(), "docs/reference.md is stale: run scripts/gen-reference and commit the result"


def test_reference_generator_is_deterministic() -> None:
    assert _render_reference() == _render_reference()


def test_reference_lists_every_property_path_of_the_schema() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    for path in ("topology.queues[].dead_letter.routing_key", "workload.consumers[].multi_ack", "expect[].routes[].to",
                 "broker.tls.insecure", "topology.operator_policies[].apply_to"):
        assert f"`{path}`" in reference


def test_readme_is_at_most_160_lines() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 160, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_relative_link_in_readme_and_docs_points_at_a_file_that_exists() -> None:
    broken = [f"{page.relative_to(ROOT)}: {target}"
              for page in DOCS for target in _relative_links(page)
              if not (page.parent / target.split("#", 1)[0]).exists()]
    assert broken == []


def test_docs_name_no_placeholder_urls() -> None:
    places = [*DOCS, ROOT / "schemas" / "mqspec.schema.json", ROOT / "mqspec" / "commands" / "init.py"]
    found = [str(page.relative_to(ROOT)) for page in places
             if re.search(r"github\.com/mqspec/mqspec|mqspec\.dev", page.read_text(encoding="utf-8"))]
    assert found == []


def test_init_template_names_the_schema_id(tmp_path: Path) -> None:
    schema_id = json.loads((ROOT / "schemas" / "mqspec.schema.json").read_text(encoding="utf-8"))["$id"]
    target = tmp_path / "orders.yaml"
    assert mqspec("init", "orders", "-o", str(target)).exit_code == 0
    assert schema_id == "urn:mqspec:scenario:v1"
    assert f"({schema_id})" in target.read_text(encoding="utf-8").splitlines()[1]
