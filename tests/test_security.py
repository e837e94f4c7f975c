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

    assert _verify(TlsSettings(insecure=True)) is False
    context = _verify(TlsSettings())
    assert not isinstance(context, bool)
    assert context.verify_mode.name == "CERT_REQUIRED" and context.check_hostname


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
