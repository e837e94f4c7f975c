"""mqspec validate: the three layers, every problem at once, and the model it builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mqspec.core import units
from mqspec.core.loader import Overrides
from mqspec.core.model import Binding, Queue
from mqspec.pipeline import load
from tests.conftest import mqspec

TOPICS = """\
version: 1
name: topics
topology:
  exchanges:
    - {name: topic_logs, type: topic}
  queues:
    - {name: orange, message_ttl: 60s, max_length_bytes: 10MiB, dead_letter: {exchange: dlx, routing_key: dead}}
    - {name: rabbits, type: quorum, delivery_limit: 5, arguments: {x-consumer-timeout: 60000}}
  bindings:
    - {exchange: topic_logs, queue: orange, keys: ["*.orange.*"]}
    - {exchange: topic_logs, queue: rabbits, keys: ["*.*.rabbit", "lazy.#"]}
    - {exchange: dlx, to_exchange: topic_logs}
"""


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_friendly_queue_fields_become_typed_x_arguments(tmp_path: Path) -> None:
    text = TOPICS.replace("    - {name: topic_logs, type: topic}\n", "    - {name: topic_logs, type: topic}\n    - {name: dlx}\n")
    loaded = load(str(_write(tmp_path, text)))
    assert loaded.scenario is not None, loaded.problems
    orange = loaded.scenario.topology.queue("orange")
    assert orange == Queue("orange", arguments={"x-message-ttl": 60000, "x-max-length-bytes": 10 * 1024 * 1024,
                                                "x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "dead"})
    rabbits = loaded.scenario.topology.queue("rabbits")
    assert rabbits is not None and rabbits.type == "quorum"
    assert rabbits.broker_arguments() == {"x-delivery-limit": 5, "x-consumer-timeout": 60000, "x-queue-type": "quorum"}


def test_each_binding_key_becomes_one_binding(tmp_path: Path) -> None:
    text = TOPICS.replace("    - {name: topic_logs, type: topic}\n", "    - {name: topic_logs, type: topic}\n    - {name: dlx}\n")
    loaded = load(str(_write(tmp_path, text)))
    assert loaded.scenario is not None, loaded.problems
    bindings = loaded.scenario.topology.bindings
    assert [b.routing_key for b in bindings] == ["*.orange.*", "*.*.rabbit", "lazy.#", ""]
    assert bindings[3] == Binding("dlx", "topic_logs", "exchange", "")


def test_every_problem_in_every_file_is_reported_at_once(tmp_path: Path) -> None:
    first = _write(tmp_path, "version: 1\nname: a\ntopology:\n  queues:\n    - {name: q, durabel: true}\n    - {name: r, tpye: quorum}\n",
                   "a.yaml")
    second = _write(tmp_path, "version: 1\nname: b\ntopology:\n  queues:\n    - {name: q, type: quorum, exclusive: true}\n", "b.yaml")
    result = mqspec("validate", str(first), str(second))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{first}:5:17: $.topology.queues[0].durabel: unknown key 'durabel'; did you mean 'durable'? (hint: rename it to 'durable')",
        f"{first}:6:17: $.topology.queues[1].tpye: unknown key 'tpye'; did you mean 'type'? (hint: rename it to 'type')",
        f"{second}:5:31: $.topology.queues[0].exclusive: quorum queue 'q' must have exclusive: false "
        "(hint: set exclusive: false, or use type: classic)",
    ]


def test_valid_file_says_valid_and_exits_zero(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nname: ok\ntopology:\n  queues:\n    - {name: q, max_length: 10}\n")
    result = mqspec("validate", str(path))
    assert (result.exit_code, result.stdout) == (0, f"{path}: valid\n")


def test_json_format_lists_problems_with_positions(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nname: j\ntopology:\n  queues:\n    - {name: q, type: quorom}\n")
    result = mqspec("validate", "--format", "json", str(path))
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report == {"files": [{"file": str(path), "valid": False, "problems": [{
        "file": str(path), "line": 5, "col": 17, "path": "$.topology.queues[0].type",
        "message": "\"quorom\" is not one of: classic, quorum, stream; did you mean 'quorum'?", "hint": "use 'quorum'",
        "severity": "error"}]}]}


def test_literal_password_warns_and_strict_turns_it_into_failure(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nname: p\ntopology:\n  users:\n    - {name: app, password: hunter22}\n")
    relaxed = mqspec("validate", str(path))
    assert relaxed.exit_code == 0
    assert f"{path}:5:19: warning: $.topology.users[0].password: password is written literally in the file" in relaxed.output
    assert "hunter22" not in relaxed.output
    assert mqspec("validate", "--strict", str(path)).exit_code == 2


def test_password_from_environment_does_not_warn(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nname: p\ntopology:\n  users:\n    - {name: app, password: '${APP_PW}'}\n")
    result = mqspec("validate", str(path), env={"APP_PW": "s3cret-value"})
    assert (result.exit_code, result.output) == (0, f"{path}: valid\n")


def test_environment_default_is_used_and_typed_when_unquoted(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nname: e\ntopology:\n  queues:\n    - name: q\n      max_length: ${LIMIT:-250}\n")
    loaded = load(str(path), env={})
    assert loaded.scenario is not None, loaded.problems
    assert loaded.scenario.topology.queues[0].arguments == {"x-max-length": 250}


def test_url_precedence_is_flag_then_file_then_default(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nname: u\nbroker: {url: 'amqp://a:b@filehost:5672/shop'}\n")
    from_file = load(str(path), env={}).scenario
    from_flag = load(str(path), Overrides(url="amqp://x:y@flaghost/other"), env={}).scenario
    assert from_file is not None and from_flag is not None
    assert (from_file.broker.url, from_file.topology.vhost) == ("amqp://a:b@filehost:5672/shop", "shop")
    assert (from_flag.broker.url, from_flag.topology.vhost) == ("amqp://x:y@flaghost/other", "other")


def test_env_url_overrides_the_file_through_the_cli(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nname: u\nbroker: {url: 'amqp://a:b@filehost:5672/shop'}\ntopology:\n  queues: [{name: q}]\n")
    result = mqspec("validate", str(path), env={"MQSPEC_URL": "amqp://guest:guest@localhost/%2F"})
    assert result.exit_code == 0


@pytest.mark.parametrize(("text", "expected"), [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), (2, 2.0)])
def test_durations_parse_to_seconds(text: str | int, expected: float) -> None:
    assert units.seconds(text) == expected


@pytest.mark.parametrize(("text", "expected"), [(100, 100), ("4KiB", 4096), ("1MB", 1_000_000), ("10MiB", 10_485_760)])
def test_sizes_parse_to_bytes(text: str | int, expected: int) -> None:
    assert units.size_bytes(text) == expected


@pytest.mark.parametrize(("text", "expected"), [(250, 250.0), ("1000/s", 1000.0), ("60/m", 1.0)])
def test_rates_parse_to_messages_per_second(text: str | int, expected: float) -> None:
    assert units.per_second(text) == expected


def test_merge_keys_and_x_fields_reuse_defaults_and_local_keys_win(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nname: m\nx-queue-defaults: &q {durable: true, message_ttl: 1h, max_length: 100000}\n"
                            "topology:\n  queues:\n    - {<<: *q, name: orders}\n    - {<<: *q, name: invoices, max_length: 500}\n")
    loaded = load(str(path), env={})
    assert loaded.scenario is not None, loaded.problems
    assert [dict(q.arguments) for q in loaded.scenario.topology.queues] == [
        {"x-message-ttl": 3600000, "x-max-length": 100000}, {"x-message-ttl": 3600000, "x-max-length": 500}]


def test_a_typo_does_not_hide_a_dangling_binding(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nname: t\ntopology:\n  queues:\n    - {name: q, durabel: true, exclsuive: false}\n"
                            "  bindings:\n    - {exchange: nope, queue: q}\n")
    result = mqspec("validate", str(path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{path}:5:17: $.topology.queues[0].durabel: unknown key 'durabel'; did you mean 'durable'? (hint: rename it to 'durable')",
        f"{path}:5:32: $.topology.queues[0].exclsuive: unknown key 'exclsuive'; did you mean 'exclusive'? "
        "(hint: rename it to 'exclusive')",
        f"{path}:7:8: $.topology.bindings[0].exchange: binding source exchange 'nope' is not declared "
        "(hint: declare it under topology.exchanges, or mark it `external: true` there if it exists already)",
    ]


def test_a_numeric_password_from_the_environment_stays_text_and_secret(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nname: p\ntopology:\n  users:\n    - name: app\n      password: ${APP_PW}\n")
    loaded = load(str(path), env={"APP_PW": "987654"})
    assert loaded.scenario is not None, loaded.problems
    assert loaded.scenario.topology.users[0].password == "987654"
    broken = _write(tmp_path, "version: 1\nname: p\ntopology:\n  users:\n    - {name: app, password: [1, 2]}\n", "b.yaml")
    result = mqspec("validate", str(broken))
    assert result.stderr == (f"{broken}:5:19: $.topology.users[0].password: password must be text "
                             "(hint: write password: ${APP_PASSWORD} and export APP_PASSWORD)\n")


@pytest.mark.parametrize(("value", "message"), [
    (".inf", ".inf is not a finite number (hint: write an ordinary number)"),
    ("99999999999999999999999", "number 99999999999999999999999 is too large (AMQP carries 64-bit integers) (hint: use a smaller number)"),
    ("!!binary aGk=", "unsupported YAML tag !!binary (hint: remove the tag; scenario values are plain strings, numbers and booleans)"),
])
def test_values_amqp_cannot_carry_are_refused_at_their_place(tmp_path: Path, value: str, message: str) -> None:
    path = _write(tmp_path, f"version: 1\nname: s\ntopology:\n  queues:\n    - name: q\n      max_length: {value}\n")
    result = mqspec("validate", str(path))
    assert (result.exit_code, result.stderr) == (2, f"{path}:6:19: $.topology.queues[0].max_length: {message}\n")


def test_whole_floats_become_integers(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 1\nname: f\ntopology:\n  queues:\n    - {name: q, max_length: 10.0, max_length_bytes: 100.0}\n")
    loaded = load(str(path), env={})
    assert loaded.scenario is not None, loaded.problems
    assert loaded.scenario.topology.queues[0].arguments == {"x-max-length": 10, "x-max-length-bytes": 100}


def test_tls_files_are_relative_to_the_scenario_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not checked here")
    path = _write(tmp_path, "version: 1\nname: t\nbroker:\n  url: amqps://app@rabbit:5671/%2F\n  tls: {ca_file: ca.pem}\n")
    loaded = load(str(path), env={})
    assert loaded.scenario is not None, loaded.problems
    assert loaded.scenario.broker.tls.ca_file == str(tmp_path / "ca.pem")


def test_a_bug_while_checking_one_file_is_reported_for_it_and_the_others_still_get_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mqspec.commands import validate as command

    broken = _write(tmp_path, "version: 1\nname: a\n", "broken.yaml")
    fine = _write(tmp_path, "version: 1\nname: b\n", "fine.yaml")
    real_check = command.check_file

    def check_file(ctx: object, path: str) -> object:
        if path == str(broken):
            raise TypeError("boom")
        return real_check(ctx, path)  # type: ignore[arg-type]

    monkeypatch.setattr(command, "check_file", check_file)
    result = mqspec("validate", str(broken), str(fine))
    assert result.exit_code == 2
    assert result.stderr == (f"{broken}:1:1: $: mqspec failed while checking this file (TypeError: boom) "
                             "(hint: this is a bug in mqspec; please report it with the file)\n")
    assert result.stdout == f"{fine}: valid\n"


def test_read_wait_reads_as_auto_a_duration_or_0_and_a_long_one_is_refused(tmp_path: Path) -> None:
    base = "version: 1\nname: waits\ntopology:\n  queues: [{name: q}]\nworkload:\n  read_wait: %s\n  consumers: [{name: c, queue: q}]\n"
    for text, expected in (("auto", "auto"), ("5ms", 0.005), ("0", 0.0)):
        loaded = load(str(_write(tmp_path, base % text)))
        assert loaded.scenario is not None and loaded.scenario.workload.read_wait == expected, loaded.problems
    path = _write(tmp_path, base % "1s")
    result = mqspec("validate", str(path))
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"{path}:6:3: $.workload.read_wait: read_wait of 1s would hold heartbeats, acks and "
                                     "the end of the run that long (hint: give at most 100ms, or auto)")
