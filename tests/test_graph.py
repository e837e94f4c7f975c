"""mqspec graph: Mermaid and Graphviz text, files by extension, rendering through Graphviz when it is there."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mqspec.commands.graph import markdown
from mqspec.core.model import Scenario
from mqspec.pipeline import load
from mqspec.report import graph
from tests.conftest import mqspec

SHOP = """\
version: 1
name: shop
description: Orders go to billing; everything is audited; unroutable events are caught.
topology:
  exchanges:
    - {name: shop.events, type: topic, alternate_exchange: shop.unrouted}
    - {name: shop.audit, type: fanout, internal: true}
    - {name: shop.unrouted, type: fanout}
    - {name: shop.docs, type: headers}
  queues:
    - {name: billing, type: quorum, dead_letter: {exchange: shop.unrouted, routing_key: failed}}
    - {name: audit.log, max_length: 1000}
    - {name: unrouted, message_ttl: 1h}
    - {name: pdfs}
  bindings:
    - {exchange: shop.events, queue: billing, keys: ["order.*", "refund.*"]}
    - {exchange: shop.events, to_exchange: shop.audit, keys: ["#"]}
    - {exchange: shop.audit, queue: audit.log}
    - {exchange: shop.unrouted, queue: unrouted}
    - {exchange: shop.docs, queue: pdfs, match: any, headers: {format: pdf, x-say: 'say "hi"'}}
workload:
  producers:
    - {name: orders, exchange: shop.events, routing_keys: [order.created, refund.x, order.paid, order.shipped], messages: 1}
    - {name: hello, queue: billing, messages: 1}
  consumers:
    - {name: biller, queue: billing, instances: 2}
  rpc_servers: [{name: server, queue: pdfs}]
  rpc_clients: [{name: client, queue: pdfs}]
"""


@pytest.fixture
def shop_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(SHOP)
    return path


@pytest.fixture
def shop(shop_file: Path) -> Scenario:
    scenario = load(str(shop_file)).scenario
    assert scenario is not None
    return scenario


MERMAID = """\
flowchart LR
  e1{{"shop.events<br/>topic"}}
  e2{{"shop.audit<br/>fanout, internal"}}
  e3{{"shop.unrouted<br/>fanout"}}
  e4{{"shop.docs<br/>headers"}}
  q1[("billing<br/>quorum")]
  q2[("audit.log")]
  q3[("unrouted")]
  q4[("pdfs")]
  p1[/"orders"/]
  p2[/"hello"/]
  c1(["biller<br/>×2"])
  c2(["server<br/>rpc server"])
  p3[/"client<br/>rpc client"/]
  e1 -->|"order.*, refund.*"| q1
  e1 ==>|"#35;"| e2
  e2 --> q2
  e3 --> q3
  e4 -->|"any: format=pdf x-say=say #quot;hi#quot;"| q4
  e1 -.->|"alternate"| e3
  q1 -.->|"dead-letter: failed"| e3
  p1 -->|"order.created, refund.x, order.paid +1 more"| e1
  p2 -->|"(default exchange)"| q1
  q1 --> c1
  q4 --> c2
  p3 -->|"request"| q4
  classDef exchange fill:#fff4d6,stroke:#b7791f
  class e1,e2,e3,e4 exchange
  classDef queue fill:#e6f0ff,stroke:#2b6cb0
  class q1,q2,q3,q4 queue
  classDef producer fill:#e9f7ef,stroke:#2f855a
  class p1,p2,p3 producer
  classDef consumer fill:#f3e8ff,stroke:#6b46c1
  class c1,c2 consumer
"""


def test_mermaid_draws_shapes_labelled_bindings_thick_e2e_and_dashed_alternate_and_dead_letter_edges(shop: Scenario) -> None:
    assert graph.mermaid(shop) == MERMAID


def test_dot_draws_the_same_graph_with_graphviz_shapes_and_escaping(shop: Scenario) -> None:
    text = graph.dot(shop)
    assert text.startswith('digraph "shop" {\n  rankdir=LR;\n')
    assert '  e1 [label="shop.events\\ntopic", shape=hexagon, style=filled, fillcolor="#fff4d6", color="#b7791f"];\n' in text
    assert '  q1 [label="billing\\nquorum", shape=cylinder, style=filled, fillcolor="#e6f0ff", color="#2b6cb0"];\n' in text
    assert '  p1 [label="orders", shape=parallelogram,' in text
    assert '  c1 [label="biller\\n×2", shape=box, style="rounded,filled",' in text
    assert '  e1 -> e2 [label="#", style=bold, penwidth=2];\n' in text
    assert '  e1 -> e3 [label="alternate", style=dashed];\n' in text
    assert '  q1 -> e3 [label="dead-letter: failed", style=dashed, color="#c53030"];\n' in text
    assert '  e4 -> q4 [label="any: format=pdf x-say=say \\"hi\\""];\n' in text
    assert text.endswith("}\n")


def test_default_exchange_and_built_ins_get_nodes_when_referenced(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nname: s\ntopology:\n  queues: [{name: logs, dead_letter: {exchange: ''}}]\n"
                    "  bindings: [{exchange: amq.topic, queue: logs, keys: ['log.#']}]\n")
    scenario = load(str(path)).scenario
    assert scenario is not None
    text = graph.mermaid(scenario)
    assert '  e1{{"amq.topic<br/>topic"}}\n' in text
    assert '  e2{{"(default exchange)<br/>direct"}}\n' in text
    assert '  q1 -.->|"dead-letter"| e2\n' in text


def test_graph_prints_mermaid_by_default_and_dot_on_request(shop_file: Path) -> None:
    result = mqspec("graph", str(shop_file))
    assert (result.exit_code, result.stdout) == (0, MERMAID)
    result = mqspec("graph", str(shop_file), "--format", "dot")
    assert result.exit_code == 0 and result.stdout.startswith('digraph "shop" {')


def test_graph_writes_text_files_chosen_by_extension(shop_file: Path, shop: Scenario, tmp_path: Path) -> None:
    for name, expected in (("g.mmd", graph.mermaid(shop)), ("g.dot", graph.dot(shop)), ("g.gv", graph.dot(shop))):
        result = mqspec("graph", str(shop_file), "-o", str(tmp_path / name))
        assert (result.exit_code, result.stdout) == (0, f"wrote {tmp_path / name}\n")
        assert (tmp_path / name).read_text() == expected


def test_graph_writes_markdown_with_a_mermaid_block_for_github(shop_file: Path, tmp_path: Path) -> None:
    result = mqspec("graph", str(shop_file), "-o", str(tmp_path / "g.md"))
    assert result.exit_code == 0
    assert (tmp_path / "g.md").read_text() == (
        f"<!-- generated by `mqspec graph {shop_file} -o <this file>`; regenerate it rather than editing it -->\n"
        "# shop\n\nOrders go to billing; everything is audited; unroutable events are caught.\n\n```mermaid\n" + MERMAID + "```\n")


def test_rendering_without_graphviz_says_how_to_install_it(shop_file: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = mqspec("graph", str(shop_file), "-o", str(tmp_path / "g.svg"), env={"PATH": str(empty)})
    assert result.exit_code == 1
    assert result.stderr == (f"error: Graphviz 'dot' is not installed, so {tmp_path / 'g.svg'} cannot be rendered; install Graphviz "
                             "(apt-get install graphviz, or brew install graphviz), or write text with -o graph.dot or -o graph.mmd\n")
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.parametrize(("name", "magic"), [("g.svg", b"<?xml"), ("g.png", b"\x89PNG")])
def test_rendering_through_graphviz_when_it_is_installed(shop_file: Path, tmp_path: Path, name: str, magic: bytes) -> None:
    result = mqspec("graph", str(shop_file), "-o", str(tmp_path / name), env={"PATH": os.environ.get("PATH", "")})
    if shutil.which("dot") is None:  # an optional tool: without it the command must explain itself, never crash
        assert result.exit_code == 1 and "Graphviz 'dot' is not installed" in result.stderr
        return
    assert (result.exit_code, result.stdout) == (0, f"wrote {tmp_path / name} (rendered by Graphviz dot)\n")
    assert (tmp_path / name).read_bytes().startswith(magic)


def test_graph_of_an_invalid_file_lists_its_errors_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nname: bad\ntopology:\n  queues: [{name: q, durabel: true}]\n")
    result = mqspec("graph", str(path))
    assert result.exit_code == 2
    assert result.stderr.endswith(f"found; nothing was changed (mqspec validate {path} lists them)\n")
    assert "durabel" in result.stderr


def test_the_readme_graph_in_docs_is_what_the_command_writes_for_the_topics_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    scenario = load("scenarios/05-topics.yaml").scenario
    assert scenario is not None
    assert (root / "docs" / "graph-05-topics.md").read_text() == markdown(scenario), \
        "regenerate: mqspec graph scenarios/05-topics.yaml -o docs/graph-05-topics.md"


@pytest.mark.parametrize("name", ["g.jpg", "graph"])
def test_graph_refuses_an_output_extension_it_cannot_write(shop_file: Path, tmp_path: Path, name: str) -> None:
    result = mqspec("graph", str(shop_file), "-o", str(tmp_path / name))
    found = "extension '.jpg'" if name.endswith(".jpg") else "no extension"
    assert (result.exit_code, result.stdout, result.stderr) == (
        2, "", f"error: -o {tmp_path / name}: {found} is not one mqspec can write; use one of "
               ".mmd, .mermaid, .dot, .gv, .md, .svg, .png, .pdf\n")
    assert not (tmp_path / name).exists()


def test_graph_refuses_dot_asked_for_into_a_mermaid_file(shop_file: Path, tmp_path: Path) -> None:
    result = mqspec("graph", str(shop_file), "--format", "dot", "-o", str(tmp_path / "g.mmd"))
    assert (result.exit_code, result.stderr) == (
        2, f"error: -o {tmp_path / 'g.mmd'} is a Mermaid file but --format dot was given; use -o with .dot or .gv for "
           "Graphviz text\n")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is optional; its absence is tested above")
def test_mermaid_format_rendered_to_an_image_says_the_image_comes_from_dot(shop_file: Path, tmp_path: Path) -> None:
    image = tmp_path / "g.svg"
    result = mqspec("graph", str(shop_file), "--format", "mermaid", "-o", str(image))
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, f"wrote {image} (rendered by Graphviz dot)\n",
        f"note: {image} is rendered from the Graphviz (dot) form of the graph; Mermaid text is written only to .mmd, "
        ".mermaid or .md files\n")
    assert image.read_bytes().startswith(b"<?xml")
