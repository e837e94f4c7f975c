"""Problems found in a scenario file: data first, rendered later."""

from __future__ import annotations

import re
from typing import NamedTuple

# Characters a terminal acts on or hides: C0/C1 controls (ESC starts colour and cursor sequences), bidi
# overrides that reorder what is shown, line separators and zero-width characters.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


# Quoted values past 256 characters: longer than any name RabbitMQ takes, so not a gap between two quoted names.
_LONG_QUOTED = re.compile(r"'([^'\n]{257,})'")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBERS = re.compile(r"[0-9]+")


class Problem(NamedTuple):
    """One thing wrong (or worth a warning) at a place in a file."""

    file: str
    line: int
    col: int
    path: str
    message: str
    hint: str = ""
    severity: str = "error"

    def render(self) -> str:
        """One line for a terminal; characters from the file that a terminal would act on are escaped."""
        warning = "warning: " if self.severity == "warning" else ""
        text = f"{self.file}:{self.line}:{self.col}: {warning}{self.path}: {self.message}"
        return escape(short_quotes(f"{text} (hint: {self.hint})" if self.hint else text))

    def shape(self) -> str:
        """The message with its quoted values and numbers taken out: problems of one shape say the same thing."""
        return _NUMBERS.sub("N", _QUOTED.sub("'…'", self.message))

    def as_dict(self) -> dict[str, object]:
        return self._asdict()


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def warnings(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "warning"]


def escape(text: str) -> str:
    """Control, bidi and zero-width characters written as escapes: '\\x1b', '\\u202e'."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shorten(text: str, limit: int = 60) -> str:
    """A value short enough to quote in a message: at most `limit` characters, cut with '…'."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_quotes(text: str) -> str:
    """Each long quoted value cut to 60 characters with '…': a 7 MiB name is not printed whole."""
    if len(text) < 257:
        return text
    return _LONG_QUOTED.sub(lambda m: f"'{shorten(m.group(1))}'", text)
