"""Plain YAML scalars read as YAML 1.2's core schema reads them, and where YAML 1.1 tools read them otherwise.

YAML 1.1 (PyYAML, Go's yaml.v2, many CI tools) reads `NO`, `on` and `yes` as booleans, `01234` as the
octal 668, `1_000` as 1000 and `1:20` as 80; YAML 1.2 reads the first three and the last two as text and
`01234` as 1234. mqspec follows 1.2, so what a header or argument says in the file is what reaches the
broker, and the lint warns where another tool reading the same file would see something else.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import yaml

_NULL = re.compile(r"null|Null|NULL|~|")
_TRUE = re.compile(r"true|True|TRUE")
_FALSE = re.compile(r"false|False|FALSE")
_DECIMAL = re.compile(r"[-+]?[0-9]+")
_OCTAL = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?(\.inf|\.Inf|\.INF)")
_NAN = re.compile(r"\.nan|\.NaN|\.NAN")
# First characters of the plain scalars YAML 1.2 or 1.1 may read as something other than text.
MAYBE_TYPED = frozenset("-+.0123456789nNtTfF~yYoO=")

_YAML11_WORDS: Mapping[str, bool | None] = MappingProxyType({
    **{word: True for word in ("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")},
    **{word: False for word in ("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")},
    **{word: None for word in ("null", "Null", "NULL")},
    # YAML 1.1's bool type also has y and n (Go's yaml.v2 reads them so; PyYAML does not)
    "y": True, "Y": True, "n": False, "N": False,
})
# The words, the only plain scalars starting with a letter that either version reads as other than text.
_TYPED_WORDS = frozenset(_YAML11_WORDS)
_PLAIN_DECIMAL = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
NOT_TEXT = "not text"
TOO_LARGE = 2**64  # stands for any whole number past 64 bits; the reader refuses it
_MOST_DIGITS = 20


class Unreadable(ValueError):
    """An explicitly tagged scalar (!!int, !!bool, ...) whose text is not a value of that type."""


def plain_text(text: str) -> bool:
    """Whether YAML 1.2 and 1.1 both read this plain scalar as the text itself (most names and keys): the fast
    answer, with no pattern tried."""
    if not text:
        return False
    first = text[0]
    return first not in MAYBE_TYPED or (first.isalpha() and text not in _TYPED_WORDS)


def resolve(text: str) -> Any:
    """A plain scalar as YAML 1.2's core schema reads it: null, bool, int, float, or the text itself."""
    if text and text[0] not in MAYBE_TYPED:
        return text
    if _NULL.fullmatch(text):
        return None
    if _TRUE.fullmatch(text):
        return True
    if _FALSE.fullmatch(text):
        return False
    return _number(text, text)


def _number(text: str, otherwise: Any) -> Any:
    if _DECIMAL.fullmatch(text):
        if len(text.lstrip("+-").lstrip("0")) > _MOST_DIGITS:
            return -TOO_LARGE if text.startswith("-") else TOO_LARGE  # int() refuses 4,300 digits and more
        return int(text)
    if _OCTAL.fullmatch(text):
        return int(text[2:], 8)
    if _HEX.fullmatch(text):
        return int(text[2:], 16)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.fullmatch(text):
        return math.nan
    return otherwise


def whole(value: float) -> int | float:
    """A whole float as the int it equals (the broker's tables and the file both read 2.0 as 2)."""
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


def construct(tag: str, text: str) -> Any:
    """A scalar with an explicit core tag (!!str, !!int, !!float, !!bool, !!null), read by YAML 1.2's rules."""
    kind = tag.rsplit(":", 1)[-1]
    if kind == "str":
        return text
    if kind == "null" and _NULL.fullmatch(text):
        return None
    if kind == "bool" and (_TRUE.fullmatch(text) or _FALSE.fullmatch(text)):
        return bool(_TRUE.fullmatch(text))
    if kind == "int" and (_DECIMAL.fullmatch(text) or _OCTAL.fullmatch(text) or _HEX.fullmatch(text)):
        return _number(text, None)
    if kind == "float" and (value := _number(text, None)) is not None:
        return float(value)
    raise Unreadable(f"{text!r} is not a YAML 1.2 !!{kind}")


def yaml11(text: str) -> Any:
    """What a YAML 1.1 tool (PyYAML's safe loader) reads a plain scalar as; NOT_TEXT for values it cannot make."""
    if not text:
        return None
    if text[0] not in MAYBE_TYPED:
        return text
    if text[0].isalpha():
        return _YAML11_WORDS.get(text, text)  # a word: only bool and null words are typed in YAML 1.1
    if _PLAIN_DECIMAL.fullmatch(text):
        return int(text)  # the common case, read alike by both versions, without PyYAML's slower path
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    if tag == "tag:yaml.org,2002:str":
        return text
    try:
        return _CONSTRUCTOR.construct_object(yaml.ScalarNode(tag, text))
    except (yaml.YAMLError, ValueError, OverflowError):
        return NOT_TEXT


def same(a: Any, b: Any) -> bool:
    """Equal values of the same type (True is not 1, 1.0 is not 1); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def describe(value: Any) -> str:
    """A reading as a person would say it: false, 668, 1.1, null, the string 'NO', the date 2001-12-14."""
    if value is NOT_TEXT:
        return "a value it cannot read"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, (int, float)):
        return plain(value)
    return f"the {type(value).__name__} {value}"


def plain(value: int | float) -> str:
    """A number written so that YAML 1.1 and 1.2 read it alike (floats keep a dot: 1.0e+300, not 1e+300)."""
    if isinstance(value, int) or not math.isfinite(value):
        return str(value) if isinstance(value, int) else (".nan" if math.isnan(value) else "-.inf" if value < 0 else ".inf")
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + (f"e{'+' if not exponent.startswith('-') else ''}{exponent.lstrip('+')}" if e else "")
