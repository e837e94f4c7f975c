"""Error types and the exit codes they map to."""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_BROKER = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143   # 128 + SIGTERM, what a shell reports for a process ended by SIGTERM

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")


class MqspecError(Exception):
    """An error that ends a command with a message and an exit code, never a traceback."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))
        self.message = redact(message)


class Terminated(KeyboardInterrupt):
    """SIGTERM during a run: ends it like Ctrl-C (a partial report), with exit code 143."""


class InvalidInput(MqspecError):
    exit_code = EXIT_INVALID


class BrokerUnavailable(MqspecError):
    """Unreachable broker, refused authentication or refused access."""

    exit_code = EXIT_BROKER


class OperationFailed(MqspecError):
    exit_code = EXIT_FAILED


def redact(text: str) -> str:
    """Hide the password of every URL in text: amqp://user:secret@host -> amqp://user:***@host."""
    return _URL_CREDENTIALS.sub(_hide_password, text)


def _hide_password(found: re.Match[str]) -> str:
    if found["pw"] in _PLACEHOLDERS:  # the documentation's own example, as in a hint: no secret
        return found[0]
    return f"{found['scheme']}{found['user']}:***@"


_PLACEHOLDERS = ("PASSWORD", "PASS", "***")


class Redactor:
    """Removes known secret values (passwords from ${ENV}) from any text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 3:
            self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        text = redact(text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

