"""The RabbitMQ management HTTP API, through httpx. Errors become one line naming the entity."""

from __future__ import annotations

import email.utils
import html
import re
import ssl
import threading
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from mqspec.broker.http import httpx
from mqspec.core.model import BrokerSettings, TlsSettings
from mqspec.errors import BrokerUnavailable, OperationFailed, redact


def management_base(settings: BrokerSettings) -> tuple[str, tuple[str, str]]:
    """Base URL and credentials: the explicit management URL, else the AMQP host on port 15672."""
    amqp = urlsplit(settings.url)
    user = unquote(amqp.username or "guest")
    password = unquote(amqp.password or "guest")
    if settings.management_url:
        explicit = urlsplit(settings.management_url)
        if explicit.username:
            user, password = unquote(explicit.username), unquote(explicit.password or "")
        netloc = explicit.hostname or "localhost"
        if explicit.port:
            netloc = f"{netloc}:{explicit.port}"
        return f"{explicit.scheme}://{netloc}{explicit.path.rstrip('/')}", (user, password)
    scheme = "https" if amqp.scheme == "amqps" else "http"
    port = 15671 if scheme == "https" else 15672
    return f"{scheme}://{amqp.hostname or 'localhost'}:{port}", (user, password)


def _verify(tls: TlsSettings, base: str) -> ssl.SSLContext | bool:
    if not base.startswith("https:"):
        # plain HTTP never uses it: a context that trusts nothing, without loading the system's CA store (20 ms)
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.insecure:
        return False
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        from mqspec.broker.amqp import load_client_certificate

        load_client_certificate(context, tls)
    return context


def q(name: str) -> str:
    """Quote one path segment (vhost '/' becomes %2F)."""
    return quote(name, safe="")


READ_TIMEOUTS = 3      # the wait for each part of an answer, in connect timeouts (15 s by default)
DEADLINE_TIMEOUTS = 7  # the whole request, answer included, in connect timeouts (35 s by default)


class Management:
    """A thin client: JSON in, JSON out, one clear error per failure.

    Every request is bounded three ways: connecting by the connect timeout, each wait for more of the answer by
    READ_TIMEOUTS connect timeouts, and the whole request by DEADLINE_TIMEOUTS of them, so that a listener that
    trickles a byte a second cannot hold mqspec forever. `timeout` replaces the connect timeout.
    """

    def __init__(self, settings: BrokerSettings, timeout: float | None = None) -> None:
        self.base, auth = management_base(settings)
        self.user = auth[0]
        self.broker_time: float | None = None  # the Date of the last answer, by the broker's clock
        connect = timeout or settings.connect_timeout
        self.read_timeout = connect * READ_TIMEOUTS
        self.deadline = connect * DEADLINE_TIMEOUTS
        self._client = httpx.Client(base_url=self.base + "/api", auth=auth, verify=_verify(settings.tls, self.base),
                                    timeout=httpx.Timeout(self.read_timeout, connect=connect, pool=self.deadline))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Management:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, what: str, body: Any = None, missing_ok: bool = False) -> Any:
        """Send one request; `what` names the entity for error messages ("queue 'orders' in vhost '/'")."""
        try:
            response = self._send(method, path, body)
        except _Overdue:
            raise BrokerUnavailable(f"management API at {self.base} timed out while working on {what} (no complete "
                                    f"answer within {self.deadline:g} s)") from None
        except httpx.ConnectTimeout:
            raise BrokerUnavailable(f"management API at {self.base} timed out while working on {what} (no connection "
                                    f"within {self.deadline / DEADLINE_TIMEOUTS:g} s)") from None
        except httpx.TimeoutException:
            raise BrokerUnavailable(f"management API at {self.base} timed out while working on {what} (no answer for "
                                    f"{self.read_timeout:g} s)") from None
        except httpx.HTTPError as exc:
            raise ManagementUnreachable(f"cannot reach the management API at {self.base} ({_reason(exc)}); "
                                        "is the rabbitmq_management plugin enabled?") from None
        self.broker_time = _date_of(response)
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise _http_error(response, what, self.user)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise BrokerUnavailable(f"management API at {self.base} answered {what} with something that is not JSON "
                                    f"(HTTP {response.status_code}, {kind}); is it the RabbitMQ management API?") from None

    def _send(self, method: str, path: str, body: Any) -> httpx.Response:
        """The request, on a thread of its own so that the whole of it can be bounded by the deadline."""
        outcome: list[httpx.Response | BaseException] = []
        finished = threading.Event()

        def send() -> None:
            try:
                outcome.append(self._client.request(method, path, json=body))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
                outcome.append(exc)
            finally:
                finished.set()

        threading.Thread(target=send, name="mqspec-management", daemon=True).start()
        if not finished.wait(self.deadline):
            raise _Overdue()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def get(self, path: str, what: str, missing_ok: bool = False) -> Any:
        return self.request("GET", path, what, missing_ok=missing_ok)

    def put(self, path: str, what: str, body: Any) -> None:
        self.request("PUT", path, what, body)

    def post(self, path: str, what: str, body: Any) -> Any:
        return self.request("POST", path, what, body)

    def delete(self, path: str, what: str, missing_ok: bool = True) -> None:
        self.request("DELETE", path, what, missing_ok=missing_ok)

    def overview(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/overview", "the broker overview")
        return result

    def create_vhost(self, name: str, description: str = "") -> None:
        self.put(f"/vhosts/{q(name)}", f"vhost '{name}'", {"description": description})

    def delete_vhost(self, name: str) -> None:
        self.delete(f"/vhosts/{q(name)}", f"vhost '{name}'")

    def vhost_exists(self, name: str) -> bool:
        return self.get(f"/vhosts/{q(name)}", f"vhost '{name}'", missing_ok=True) is not None

    def set_permissions(self, user: str, vhost: str, configure: str = ".*", write: str = ".*", read: str = ".*") -> None:
        self.put(f"/permissions/{q(vhost)}/{q(user)}", f"permissions of user '{user}' in vhost '{vhost}'",
                 {"configure": configure, "write": write, "read": read})


class AccessRefused(BrokerUnavailable):
    """The management API knows the user and refuses it this request (HTTP 401 or 403 with a reason)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def not_management_user(self) -> bool:
        """The user has no management tag: it may not use the management API at all."""
        return self.reason == "Not management user"


class _Overdue(Exception):
    """The whole request took longer than the deadline."""


class ManagementUnreachable(BrokerUnavailable):
    """No management API answered at all (as opposed to one that refused)."""


# The management API answers 401 both for bad credentials and for a logged-in user without the right.
_NOT_PERMITTED = ("Access refused.", "Not administrator user", "User not authorised to access object", "Not management user")
_VERBS = MappingProxyType({"GET": "read", "PUT": "declare", "POST": "create", "DELETE": "delete"})


def _date_of(response: httpx.Response) -> float | None:
    """The broker's clock from the answer's Date header (seconds since the epoch), to judge statistics' age."""
    try:
        return email.utils.parsedate_to_datetime(response.headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def _reason(exc: Exception) -> str:
    text = redact(str(exc)) or type(exc).__name__
    return text.split("\n")[0]


def _one_line(reason: str) -> str:
    """The broker's reason as one readable line: HTML entities decoded ("&lt;&lt;" is "<<"), whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(reason)).strip()


def _http_error(response: httpx.Response, what: str, user: str) -> Exception:
    try:
        body = response.json()
        reason = str(body.get("reason", response.text)) if isinstance(body, dict) else response.text
    except ValueError:
        reason = response.text.strip()[:200]
    reason = _one_line(redact(reason))
    if response.status_code == 401 and reason not in _NOT_PERMITTED:
        return BrokerUnavailable(f"management API refused the credentials of user '{user}' (HTTP 401)")
    if response.status_code in (401, 403):
        verb = _VERBS.get(response.request.method, "change")
        return AccessRefused(f"access refused: user '{user}' may not {verb} {what} ({reason})", reason)
    if response.status_code == 404:
        return OperationFailed(f"not found: {what} ({reason})")
    return OperationFailed(f"broker refused {what}: {reason} (HTTP {response.status_code})")
