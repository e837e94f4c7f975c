"""Durations, sizes and rates as people write them, as numbers the broker understands."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z/]*)\s*$")
_DURATION_SECONDS = MappingProxyType({"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0})
_SIZE_BYTES = MappingProxyType({
    "": 1, "B": 1, "kB": 1000, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2,
    "GB": 1000**3, "GiB": 1024**3,
})
_RATE_PER_SECOND = MappingProxyType({"": 1.0, "/s": 1.0, "/m": 1 / 60, "/h": 1 / 3600})


def _split(value: str, units: Mapping[str, float] | Mapping[str, int], what: str) -> tuple[float, float]:
    match = _NUMBER_UNIT.match(value)
    if match is None or match.group(2) not in units:
        raise ValueError(f"not a {what}: {value!r}")
    return float(match.group(1)), float(units[match.group(2)])


def seconds(value: float | int | str) -> float:
    """'500ms' -> 0.5, '5m' -> 300.0, 2 -> 2.0."""
    if isinstance(value, (int, float)):
        return float(value)
    number, factor = _split(value, _DURATION_SECONDS, "duration")
    return number * factor


def is_duration(value: object) -> bool:
    """A string such as '10m' or '500ms' (a unit given)."""
    if not isinstance(value, str):
        return False
    match = _NUMBER_UNIT.match(value)
    return match is not None and match.group(2) in _DURATION_SECONDS and match.group(2) != ""


def milliseconds(value: float | int | str) -> int:
    """A duration as the whole milliseconds the broker's x-arguments take."""
    return round(seconds(value) * 1000)


def size_bytes(value: int | str) -> int:
    """'4KiB' -> 4096, '1MB' -> 1000000, 100 -> 100."""
    if isinstance(value, int):
        return value
    number, factor = _split(value, _SIZE_BYTES, "size")
    return round(number * factor)


def per_second(value: float | int | str) -> float:
    """'1000/s' -> 1000.0, '60/m' -> 1.0, 250 -> 250.0."""
    if isinstance(value, (int, float)):
        return float(value)
    number, factor = _split(value, _RATE_PER_SECOND, "rate")
    return number * factor


def format_duration(value_seconds: float) -> str:
    if value_seconds < 1:
        return f"{value_seconds * 1000:g}ms"
    return f"{value_seconds:g}s"
