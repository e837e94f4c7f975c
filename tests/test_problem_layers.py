"""A wrong value in one place hides no RabbitMQ rule broken elsewhere: every layer's problems come at once."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import mqspec

DECLARE = "(hint: declare it under topology.queues, or mark it `external: true` there if it exists already)"


def _validate(tmp_path: Path, text: str) -> tuple[int, list[str]]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    result = mqspec("validate", str(path))
    return result.exit_code, [line.replace(str(path), "s.yaml") for line in result.output.splitlines()]


def test_a_misspelt_exchange_type_hides_no_dangling_binding_elsewhere(tmp_path: Path) -> None:
    code, lines = _validate(tmp_path, "version: 1\nname: t\ntopology:\n  exchanges:\n    - {name: events, type: topik}\n"
                                      "  queues:\n    - {name: q}\n  bindings:\n    - {exchange: events, queue: missing}\n")
    assert code == 2
    assert lines == [
        "s.yaml:5:22: $.topology.exchanges[0].type: \"topik\" is not a valid value; did you mean 'topic'? "
        "(hint: direct, fanout, topic, headers, or a plugin type starting with x-.)",
        f"s.yaml:9:26: $.topology.bindings[0].queue: binding destination queue 'missing' is not declared {DECLARE}",
    ]


def test_a_misspelt_queue_type_skips_only_the_rules_of_that_queue(tmp_path: Path) -> None:
    code, lines = _validate(tmp_path, "version: 1\nname: t\ntopology:\n  queues:\n    - {name: votes, type: quorom, durable: false}\n"
                                      "workload:\n  consumers:\n    - {name: c, queue: votez}\n")
    assert code == 2
    assert lines == [
        "s.yaml:5:21: $.topology.queues[0].type: \"quorom\" is not one of: classic, quorum, stream; did you mean 'quorum'? "
        "(hint: use 'quorum')",
        f"s.yaml:8:17: $.workload.consumers[0].queue: consumer queue 'votez' is not declared; did you mean 'votes'? {DECLARE}",
    ]


def test_headers_bound_to_an_exchange_of_unknown_type_are_not_blamed_on_the_type(tmp_path: Path) -> None:
    code, lines = _validate(tmp_path, "version: 1\nname: t\ntopology:\n  exchanges:\n    - {name: docs, type: headerz}\n"
                                      "  queues:\n    - {name: q}\n  bindings:\n"
                                      "    - {exchange: docs, queue: q, match: all, headers: {a: b}}\n"
                                      "    - {exchange: docs, queue: nope}\n")
    assert code == 2
    assert lines == [
        "s.yaml:5:20: $.topology.exchanges[0].type: \"headerz\" is not a valid value; did you mean 'headers'? "
        "(hint: direct, fanout, topic, headers, or a plugin type starting with x-.)",
        f"s.yaml:10:24: $.topology.bindings[1].queue: binding destination queue 'nope' is not declared {DECLARE}",
    ]


def test_a_name_that_is_not_text_or_missing_hides_no_dangling_reference(tmp_path: Path) -> None:
    code, lines = _validate(tmp_path, "version: 1\nname: t\ntopology:\n  exchanges:\n    - {name: e}\n  queues:\n    - {name: 123}\n"
                                      "    - {durable: true}\n  bindings:\n    - {exchange: e, queue: \"123\"}\n"
                                      "    - {exchange: e, queue: other}\n")
    assert code == 2
    assert lines == [
        "s.yaml:7:8: $.topology.queues[0].name: expected a string, got 123 "
        "(hint: put it in quotes; YAML read it as a number, boolean or date)",
        "s.yaml:8:7: $.topology.queues[1]: missing required key 'name' (hint: add 'name: ...')",
        f"s.yaml:11:21: $.topology.bindings[1].queue: binding destination queue 'other' is not declared {DECLARE}",
    ]
