"""AMQP 0-9-1 over pika: connection parameters from BrokerSettings, and pika's errors as one line each.

Every URL in `BrokerSettings.urls` names a node; `connect` tries them in order (cluster failover).
TLS uses an ssl context with certificate verification on unless the scenario says `insecure: true`,
which prints a warning once. Passwords never appear in a message: MqspecError redacts URLs and
the messages built here name only user, host, port and vhost.
"""

from __future__ import annotations

import re
import ssl
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions as pe
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from mqspec.core.model import BrokerSettings, TlsSettings
from mqspec.core.vocabulary import vhost_of as vhost_of
from mqspec.errors import BrokerUnavailable, MqspecError, OperationFailed, redact


def user_of(url: str) -> str:
    return unquote(urlsplit(url).username or "guest")


def endpoint(url: str) -> str:
    """host:port of an AMQP URL, for messages."""
    parts = urlsplit(url)
    default = 5671 if parts.scheme == "amqps" else 5672
    try:
        port = parts.port or default
    except ValueError:
        port = default
    return f"{parts.hostname or 'localhost'}:{port}"


def load_client_certificate(context: ssl.SSLContext, tls: TlsSettings) -> None:
    """The client certificate and key; an encrypted key needs tls.key_password and never prompts."""
    assert tls.cert_file is not None
    password = tls.key_password or ""

    def give_password() -> str:
        if not password:
            raise ssl.SSLError(f"the key file {tls.key_file or tls.cert_file} is encrypted")
        return password

    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=give_password)
    except ssl.SSLError as exc:
        if not password and "encrypted" in str(exc):
            raise BrokerUnavailable(f"TLS key file {tls.key_file or tls.cert_file} is encrypted: set tls.key_password "
                                    "(e.g. key_password: ${MQSPEC_TLS_KEY_PASSWORD})") from None
        wrong = password and _is_encrypted(tls.key_file or tls.cert_file)
        reason = "wrong tls.key_password" if wrong else (exc.reason or str(exc))
        raise BrokerUnavailable(f"cannot load the TLS client certificate {tls.cert_file}: {reason}") from None
    except OSError as exc:
        raise BrokerUnavailable(f"cannot read the TLS client certificate or key ({tls.cert_file}, {tls.key_file}): "
                                f"{exc.strerror or exc}") from None


def _is_encrypted(path: str) -> bool:
    try:
        with open(path, "rb") as pem:
            head = pem.read(1 << 16)
    except OSError:
        return False
    return b"ENCRYPTED" in head


def ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """Verification on by default; `insecure` turns it off (the command's pipeline warns about it, once)."""
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        load_client_certificate(context, tls)
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def parameters(settings: BrokerSettings, url: str, connection_name: str | None = None) -> pika.URLParameters:
    """pika parameters for one node: heartbeat, bounded connect timeout, connection name and TLS."""
    try:
        params = pika.URLParameters(url)
    except Exception as exc:  # noqa: BLE001 - pika raises several types for bad URLs
        raise BrokerUnavailable(f"invalid AMQP URL {redact(url)}: {redact(str(exc))}") from None
    params.connection_attempts = 1
    params.retry_delay = 0
    params.socket_timeout = settings.connect_timeout
    params.stack_timeout = settings.connect_timeout + 1
    params.blocked_connection_timeout = None
    if settings.heartbeat is not None:
        params.heartbeat = max(0, round(settings.heartbeat))
    name = connection_name or settings.connection_name
    if name:
        properties = dict(params.client_properties or {})
        properties["connection_name"] = name
        params.client_properties = properties
    if urlsplit(url).scheme == "amqps":
        host = settings.tls.server_name or urlsplit(url).hostname
        params.ssl_options = pika.SSLOptions(ssl_context(settings.tls), server_hostname=host)
    return params


def all_parameters(settings: BrokerSettings, connection_name: str | None = None) -> list[pika.URLParameters]:
    return [parameters(settings, url, connection_name) for url in settings.urls]


def connect(settings: BrokerSettings, connection_name: str | None = None) -> pika.BlockingConnection:
    """A blocking connection to the first node that answers; the last node's failure is the error."""
    failure: MqspecError | None = None
    for url in settings.urls:
        try:
            return pika.BlockingConnection(parameters(settings, url, connection_name))
        except AMQPConnectorException as exc:  # a handshake that timed out: try the next node
            failure = translate(exc, url)
        except pe.AMQPError as exc:
            failure = translate(exc, url)
            if not isinstance(exc, (pe.AMQPConnectionError, pe.ConnectionClosed)) or isinstance(
                    exc, (pe.ProbableAuthenticationError, pe.ProbableAccessDeniedError)):
                break
        except OSError as exc:
            failure = BrokerUnavailable(f"cannot connect to {endpoint(url)}: {_os_reason(exc)}")
    assert failure is not None
    raise failure


def translate(exc: BaseException, url: str, operation: str | None = None) -> MqspecError:
    """One line saying what happened and to what; never a password."""
    user, vhost, where = user_of(url), vhost_of(url), endpoint(url)
    if isinstance(exc, MqspecError):
        return exc
    if isinstance(exc, pe.ProbableAuthenticationError):
        return BrokerUnavailable(f"authentication refused for user '{user}' at {where}")
    if isinstance(exc, pe.ProbableAccessDeniedError):
        text = _reply_text(exc)
        if "not found" in text:
            return BrokerUnavailable(f"vhost '{vhost}' not found at {where}")
        return BrokerUnavailable(f"access refused: user '{user}' may not use vhost '{vhost}' at {where}")
    if isinstance(exc, pe.ChannelClosedByBroker):
        return channel_error(exc.reply_code, exc.reply_text, user, vhost, operation)
    if isinstance(exc, pe.ConnectionClosedByBroker):
        return BrokerUnavailable(f"broker at {where} closed the connection: {exc.reply_code} {exc.reply_text}")
    if isinstance(exc, pe.IncompatibleProtocolError):
        return BrokerUnavailable(f"no AMQP broker answered at {where} (the connection was dropped during the handshake)")
    if isinstance(exc, (pe.AMQPConnectionError, pe.StreamLostError, pe.ConnectionClosed, AMQPConnectorException)):
        return BrokerUnavailable(f"cannot connect to {where}: {_connect_reason(exc, where)}")
    return OperationFailed(f"AMQP error{_on(operation)} at {where}: {redact(str(exc)) or type(exc).__name__}")


def channel_error(code: int, text: str, user: str, vhost: str, operation: str | None = None) -> MqspecError:
    """Channel-level refusals: 403 names user/vhost/entity/operation, 404 the missing thing, 406 the property."""
    text = redact(text)
    entity = _entity(text)
    doing = operation or "perform this operation"
    if code == 403:
        subject = f" on {entity}" if entity and entity not in doing else ""
        return BrokerUnavailable(f"access refused: user '{user}' may not {doing}{subject} in vhost '{vhost}' ({text})")
    if code == 404:
        if "vhost" in text and entity is None:
            return OperationFailed(f"vhost '{vhost}' not found")
        return OperationFailed(f"not found: {entity or 'entity'} in vhost '{vhost}'{_while(operation)} ({text})")
    if code == 406:
        prop = re.search(r"inequivalent arg '([^']+)'", text)
        if prop:
            return OperationFailed(f"{entity or 'entity'} in vhost '{vhost}' exists with a different '{prop.group(1)}'"
                                   f"{_while(operation)} ({text})")
        return OperationFailed(f"precondition failed{_while(operation)} in vhost '{vhost}': {text}")
    if code == 405:
        return OperationFailed(f"{entity or 'entity'} in vhost '{vhost}' is locked by another connection"
                               f"{_while(operation)} ({text})")
    return OperationFailed(f"broker closed the channel{_while(operation)}: {code} {text}")


_ENTITY = re.compile(r"\b(queue|exchange)\s+(?:name\s+)?'([^']*)'")


def _entity(text: str) -> str | None:
    match = _ENTITY.search(text)
    return f"{match.group(1)} '{match.group(2)}'" if match else None


def _reply_text(exc: BaseException) -> str:
    """pika nests the cause in args (often with an empty str()); look at both forms."""
    return " ".join(f"{a!s} {a!r}" for a in exc.args)


def _connect_reason(exc: BaseException, where: str) -> str:
    cause = _root_cause(exc)
    if isinstance(cause, ssl.SSLError):
        return _os_reason(cause)
    text = _reply_text(exc)
    if "Refused" in text or "refused" in text:
        return "connection refused"
    if "timed out" in text.lower() or "timeout" in text.lower():
        return "timed out"
    if "Name or service not known" in text or "getaddrinfo" in text.lower():
        return f"unknown host {where.rsplit(':', 1)[0]}"
    if "SSL" in text or "certificate" in text.lower():
        return f"TLS handshake failed ({redact(text)[:200]})"
    return redact(" ".join(str(a) for a in exc.args))[:200] or type(exc).__name__


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error of pika's connection workflow: a socket, TLS or protocol failure."""
    seen = 0
    while seen < 8:
        seen += 1
        nested = [*getattr(exc, "exceptions", ()), *(a for a in exc.args if isinstance(a, BaseException))]
        if not nested:
            return exc
        exc = nested[-1]
    return exc


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS handshake failed: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return str(exc.strerror or exc)


def _on(operation: str | None) -> str:
    return f" during {operation}" if operation else ""


def _while(operation: str | None) -> str:
    return f" (while trying to {operation})" if operation else ""
