"""TLS options hold against a real TLS endpoint: verification on by default, a CA file, server name, insecure."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import mqspec


@dataclass
class TlsEndpoint:
    """A TLS server on loopback that completes handshakes and then hangs up: TLS, but no broker."""

    port: int
    cert: Path
    handshakes: list[str] = field(default_factory=list)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def _serve(server: socket.socket, context: ssl.SSLContext, endpoint: TlsEndpoint) -> None:
    while True:
        try:
            client, _ = server.accept()
        except OSError:
            return
        try:
            with context.wrap_socket(client, server_side=True) as tls:
                endpoint.handshakes.append(tls.version() or "?")
        except (ssl.SSLError, OSError):
            client.close()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEndpoint]:
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    endpoint = TlsEndpoint(server.getsockname()[1], cert)
    thread = threading.Thread(target=_serve, args=(server, context, endpoint), daemon=True)
    thread.start()
    yield endpoint
    server.close()


def _apply(tmp_path: Path, endpoint: TlsEndpoint, tls: str) -> tuple[int, str]:
    path = tmp_path / "tls.yaml"
    path.write_text(f"""\
version: 1
name: tls
broker:
  url: amqps://guest:guest@localhost:{endpoint.port}/%2F
  management_url: http://127.0.0.1:1
  connect_timeout: 2s
  tls: {tls}
topology:
  queues:
    - {{name: app.q, external: true}}
workload:
  consumers:
    - {{name: c, queue: app.q, idle_timeout: 1s}}
""")
    result = mqspec("apply", str(path))
    return result.exit_code, result.stderr


def test_certificate_verification_is_on_by_default(tmp_path: Path, endpoint: TlsEndpoint) -> None:
    before = len(endpoint.handshakes)
    code, stderr = _apply(tmp_path, endpoint, "{}")
    assert code == 3
    assert f"error: cannot connect to localhost:{endpoint.port}: TLS handshake failed" in stderr
    assert "certificate verify failed" in stderr
    assert len(endpoint.handshakes) == before


def test_ca_file_makes_the_self_signed_broker_trusted(tmp_path: Path, endpoint: TlsEndpoint) -> None:
    before = len(endpoint.handshakes)
    code, stderr = _apply(tmp_path, endpoint, f"{{ca_file: {endpoint.cert}}}")
    assert code == 3, stderr
    assert len(endpoint.handshakes) > before, "the TLS handshake should complete with the CA file"
    assert "TLS handshake failed" not in stderr


def test_server_name_is_verified_against_the_certificate(tmp_path: Path, endpoint: TlsEndpoint) -> None:
    before = len(endpoint.handshakes)
    code, stderr = _apply(tmp_path, endpoint, f"{{ca_file: {endpoint.cert}, server_name: other.example}}")
    assert code == 3
    assert "TLS handshake failed" in stderr and "other.example" in stderr
    assert len(endpoint.handshakes) == before


def test_insecure_skips_verification_and_warns(tmp_path: Path, endpoint: TlsEndpoint) -> None:
    before = len(endpoint.handshakes)
    code, stderr = _apply(tmp_path, endpoint, "{insecure: true}")
    assert code == 3
    assert "warning: TLS certificate verification is off (tls.insecure: true)" in stderr
    assert len(endpoint.handshakes) > before


def test_a_verification_failure_is_one_line_naming_the_reason(tmp_path: Path, endpoint: TlsEndpoint) -> None:
    code, stderr = _apply(tmp_path, endpoint, "{}")
    assert code == 3
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot connect to localhost:{endpoint.port}: TLS handshake failed: certificate verify failed: ")
    assert "self" in last and "signed certificate" in last
    assert "AMQPConnectionWorkflowFailed" not in stderr


def _encrypted_client_key(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(cert), "-days", "1",
                    "-subj", "/CN=client", "-passout", "pass:s3cret-phrase"], check=True, capture_output=True)
    return cert, key


def test_an_encrypted_key_without_key_password_is_refused_without_prompting(tmp_path: Path, endpoint: TlsEndpoint) -> None:
    cert, key = _encrypted_client_key(tmp_path)
    code, stderr = _apply(tmp_path, endpoint, f"{{ca_file: {endpoint.cert}, cert_file: {cert}, key_file: {key}}}")
    assert code == 3
    assert stderr.strip().splitlines()[-1] == (f"error: TLS key file {key} is encrypted: set tls.key_password "
                                               "(e.g. key_password: ${MQSPEC_TLS_KEY_PASSWORD})")


def test_key_password_from_the_environment_unlocks_the_key_and_is_never_shown(
        tmp_path: Path, endpoint: TlsEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _encrypted_client_key(tmp_path)
    monkeypatch.setenv("TEST_KEY_PW", "s3cret-phrase")
    before = len(endpoint.handshakes)
    tls = f"{{ca_file: {endpoint.cert}, cert_file: {cert}, key_file: {key}, key_password: '${{TEST_KEY_PW}}'}}"
    code, stderr = _apply(tmp_path, endpoint, tls)
    assert code == 3, stderr  # the endpoint is TLS but no broker
    assert len(endpoint.handshakes) > before, stderr
    assert "encrypted" not in stderr and "s3cret-phrase" not in stderr
    monkeypatch.setenv("TEST_KEY_PW", "wrong-phrase")
    code, stderr = _apply(tmp_path, endpoint, tls)
    assert code == 3
    assert f"cannot load the TLS client certificate {cert}: wrong tls.key_password" in stderr
    assert "wrong-phrase" not in stderr
