"""Problems found in a scenario file: data first, rendered later."""

from __future__ import annotations

import re
from typing import NamedTuple

# Characters a terminal acts on or hides: C0/C1 controls (ESC starts colour and cursor sequences), bidi
# overrides that reorder what is shown, line separators and zero-width characters.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


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
        return escape(f"{text} (hint: {self.hint})" if self.hint else text)

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
