"""httpx without its command-line client.

httpx imports its own CLI (click, rich and pygments' lexer table: 90 ms of every mqspec start) unless that import
fails. mqspec never runs it, so the import is made to fail, the way Python documents: a None in sys.modules.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

__all__ = ("httpx",)
