"""Reads one YAML document into plain data, remembering where every value came from.

The reader is built on YAML events rather than PyYAML's composer so that it can enforce
limits (file size, nesting depth, alias expansion), reject duplicate keys, and interpolate
${ENV} variables while it still knows each scalar's line and column.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml

from mqspec.core import scalars
from mqspec.core.inputs import InputFiles
from mqspec.core.problems import Problem, shorten

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 1_000_000
MAX_EXPANDED_BYTES = 64 * 1024 * 1024  # text of every scalar, each alias counted again
MERGE_KEY = "<<"

PathKey = tuple[str | int, ...]
Mark = tuple[int, int]

_SAFE_TAGS = frozenset({f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null")})
_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{([^}]*)\}?")


class Disputed(NamedTuple):
    """A plain scalar that YAML 1.1 and YAML 1.2 read differently."""

    path: PathKey
    mark: Mark
    text: str
    yaml11: Any
    yaml12: Any


@dataclass
class Document:
    """Parsed data plus the source position of each path inside it."""

    path: str
    data: Any
    marks: dict[PathKey, Mark] = field(default_factory=dict)
    interpolated: set[PathKey] = field(default_factory=set)
    # problems that did not stop parsing (duplicate keys, unset variables)
    problems: list[Problem] = field(default_factory=list)
    # passwords met through ${ENV}: the caller scrubs them from everything it prints
    secrets: set[str] = field(default_factory=set)
    # plain scalars YAML 1.1 tools read otherwise than mqspec (YAML 1.2): `NO`, `on`, `01234`
    disputed: list[Disputed] = field(default_factory=list)
    # the files it names, as the edge found them (core/inputs.py): the core never reads the file system
    inputs: InputFiles = field(default_factory=InputFiles)

    def mark(self, path: PathKey) -> Mark:
        """The position of path, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.marks.get(path[:end])
            if found is not None:
                return found
        return (1, 1)

    def problem(self, path: PathKey, message: str, hint: str = "", severity: str = "error") -> Problem:
        line, col = self.mark(path)
        return Problem(self.path, line, col, json_path(path), message, hint, severity)


class DocumentError(Exception):
    """Raised with every problem found while reading; nothing usable was produced."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\]")


def parse_json_path(text: str) -> PathKey | None:
    """The inverse of json_path: '$.queues[0]['x-a']' -> ('queues', 0, 'x-a'); None if it is not one."""
    if not text.startswith("$"):
        return None
    parts: list[str | int] = []
    position = 1
    while position < len(text):
        match = _PATH_PART.match(text, position)
        if match is None:
            return None
        name, index, quoted = match.groups()
        parts.append(name if name is not None else int(index) if index is not None else ast.literal_eval(quoted))
        position = match.end()
    return tuple(parts)


class JsonPathMarks(Mapping[str, Mark]):
    """A document's marks looked up by JSON path text, without converting every path up front."""

    def __init__(self, marks: dict[PathKey, Mark]) -> None:
        self._marks = marks

    def __getitem__(self, text: str) -> Mark:
        key = parse_json_path(text)
        if key is None or key not in self._marks:
            raise KeyError(text)
        return self._marks[key]

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and (key := parse_json_path(text)) is not None and key in self._marks

    def __iter__(self) -> Iterator[str]:
        return (json_path(key) for key in self._marks)

    def __len__(self) -> int:
        return len(self._marks)


def json_path(path: PathKey) -> str:
    text = "$"
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            text += f".{part}"
        else:
            text += f"[{part!r}]"
    return text


def parse_bytes(raw: bytes, path: str, env: Mapping[str, str]) -> Document:
    text = _decode(raw, path)
    if not text.strip():
        raise DocumentError([Problem(path, 1, 1, "$", "file is empty", "start from `mqspec init NAME`")])
    return _Builder(path, env).build(text)


def _decode(raw: bytes, path: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DocumentError([Problem(path, line, col, "$", f"invalid UTF-8 byte 0x{raw[exc.start]:02x} at offset {exc.start}",
                                     "save the file as UTF-8 text")]) from None
    if "\x00" in text:
        offset = text.index("\x00")
        line = text.count("\n", 0, offset) + 1
        raise DocumentError([Problem(path, line, 1, "$", "file contains a NUL byte; it is not a text file",
                                     "pass a YAML scenario file")])
    return text.removeprefix("\ufeff")


# NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR: line breaks to YAML 1.1 (and PyYAML), ordinary characters to
# YAML 1.2 and to editors, which count lines by \n, \r\n and \r only.
_UNICODE_LINE_BREAKS = "\x85\u2028\u2029"


def _hide_unicode_line_breaks(text: str) -> tuple[str, dict[int, int]]:
    """The text with NEL, U+2028 and U+2029 swapped for private-use characters the file does not hold, and the
    table that swaps them back in scalars: so lines are counted as editors count them and values keep them."""
    present = [c for c in _UNICODE_LINE_BREAKS if c in text]
    if not present:
        return text, {}
    stand_ins = (chr(code) for code in range(0xE000, 0xF900) if chr(code) not in text)
    swap = {ord(c): ord(next(stand_ins)) for c in present}
    return text.translate(swap), {stand_in: original for original, stand_in in swap.items()}


class _Limit(Exception):
    def __init__(self, mark: Mark, message: str, hint: str) -> None:
        super().__init__(message)
        self.where, self.message, self.hint = mark, message, hint


@dataclass
class _Frame:
    value: dict[str, Any] | list[Any]
    path: PathKey
    anchor: str | None
    start_nodes: int
    start_bytes: int
    pending_key: str | None = None
    key_marks: dict[str, Mark] = field(default_factory=dict)


class _Builder:
    def __init__(self, path: str, env: Mapping[str, str]) -> None:
        self.doc = Document(path, None)
        self.env = env
        self.stack: list[_Frame] = []
        self.nodes = 0
        self.bytes = 0
        self.anchors: dict[str, tuple[Any, int, int]] = {}
        self.problems: list[Problem] = []
        self.documents = 0

    def build(self, text: str) -> Document:
        text, restore = _hide_unicode_line_breaks(text)
        try:
            handlers = self._handlers()
            for event in yaml.parse(text, Loader=_LOADER):
                handler = handlers.get(type(event))
                if handler is None:
                    continue
                if restore and type(event) is yaml.ScalarEvent:
                    event.value = event.value.translate(restore)
                handler(event)
        except _Limit as exc:
            self.problems.append(Problem(self.doc.path, exc.where[0], exc.where[1], "$", exc.message, exc.hint))
            raise DocumentError(self.problems) from None
        except yaml.YAMLError as exc:
            self.problems.append(_yaml_problem(self.doc.path, exc, text))
            raise DocumentError(self.problems) from None
        if self.doc.data is None and self.problems:
            raise DocumentError(self.problems)
        if not isinstance(self.doc.data, dict):
            kind = "empty" if self.doc.data is None else type(self.doc.data).__name__
            raise DocumentError([Problem(self.doc.path, 1, 1, "$", f"top level must be a mapping, got {kind}",
                                         "a scenario starts with `version: 1` and `name: ...`")])
        self.doc.problems = self.problems
        return self.doc

    def _handlers(self) -> dict[type[Any], Callable[[Any], None]]:
        """What each kind of YAML event does, looked up by its exact class (the hot loop: 20 events per entry)."""
        return {yaml.ScalarEvent: self._on_scalar, yaml.AliasEvent: self._alias,
                yaml.MappingStartEvent: self._open, yaml.SequenceStartEvent: self._open,
                yaml.MappingEndEvent: self._on_close, yaml.SequenceEndEvent: self._on_close,
                yaml.DocumentStartEvent: self._on_document}

    def _on_document(self, event: Any) -> None:
        self.documents += 1
        if self.documents > 1:
            raise _Limit(_mark(event), "file holds more than one YAML document", "keep one scenario per file")

    def _on_close(self, event: Any) -> None:
        self._close()

    def _on_scalar(self, event: Any) -> None:
        """A scalar: a key, or a value put in place. The hot path (84,000 scalars in a file of 6,000 entries), so
        _expecting_key, _child_path and _attach are written out here."""
        top = self.stack[-1] if self.stack else None
        container = None if top is None else top.value
        if top is not None and top.pending_key is None and type(container) is dict:
            self._key(event)
            return
        if top is None:
            path: PathKey = ()
        elif isinstance(container, list):
            path = (*top.path, len(container))
        else:
            path = (*top.path, str(top.pending_key))
        start = event.start_mark
        mark = (start.line + 1, start.column + 1)
        value = self._scalar(event, path, mark)
        size = len(value) if type(value) is str else 0
        self.nodes += 1
        self.bytes += size
        if self.nodes > MAX_NODES or self.bytes > MAX_EXPANDED_BYTES:
            self._count(0, event)
        self.doc.marks.setdefault(path, mark)
        if event.anchor:
            self.anchors[event.anchor] = (value, 1, size)
        if top is None or top.pending_key == MERGE_KEY:
            self._attach(value)
        elif isinstance(container, list):
            container.append(value)
        elif isinstance(container, dict) and top.pending_key is not None:
            container[top.pending_key] = value
            top.pending_key = None

    def _count(self, amount: int, event: Any, size: int = 0) -> None:
        self.nodes += amount
        self.bytes += size
        if self.nodes > MAX_NODES:
            raise _Limit(_mark(event), f"document expands to more than {MAX_NODES:,} values (alias bomb?)",
                         "use fewer aliases or a smaller file")
        if self.bytes > MAX_EXPANDED_BYTES:
            raise _Limit(_mark(event), f"document expands to more than {MAX_EXPANDED_BYTES // 2**20} MiB of text (alias bomb?)",
                         "use fewer aliases of long values, or a smaller file")

    def _child_path(self) -> PathKey:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return (*top.path, len(top.value))
        assert top.pending_key is not None
        return (*top.path, top.pending_key)

    def _open(self, event: Any) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise _Limit(_mark(event), f"nesting deeper than {MAX_DEPTH} levels", "flatten the document")
        if self._expecting_key():
            raise _Limit(_mark(event), "a mapping key must be a plain value, not a list or mapping",
                         "write the key as a string")
        self._count(1, event)
        path = self._child_path()
        self.doc.marks.setdefault(path, _mark(event))
        if event.tag not in (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
            self.problems.append(self.doc_problem(_mark(event), path, f"unsupported YAML tag {_short_tag(event.tag)}",
                                                  "remove the tag"))
        value: dict[str, Any] | list[Any] = {} if isinstance(event, yaml.MappingStartEvent) else []
        self.stack.append(_Frame(value, path, event.anchor, self.nodes, self.bytes))

    def _close(self) -> None:
        frame = self.stack.pop()
        if frame.anchor:
            self.anchors[frame.anchor] = (frame.value, self.nodes - frame.start_nodes + 1, self.bytes - frame.start_bytes)
        self._attach(frame.value)

    def _expecting_key(self) -> bool:
        return bool(self.stack) and isinstance(self.stack[-1].value, dict) and self.stack[-1].pending_key is None

    def _add(self, value: Any, event: Any, weight: tuple[int, int] | None) -> None:
        if self._expecting_key():
            self._key(event)
            return
        nodes, size = (1, len(value) if isinstance(value, str) else 0) if weight is None else weight
        self._count(nodes, event, size)
        path = self._child_path()
        self.doc.marks.setdefault(path, _mark(event))
        if isinstance(event, yaml.ScalarEvent) and event.anchor:
            self.anchors[event.anchor] = (value, 1, size)
        self._attach(value)

    def _key(self, event: Any) -> None:
        top = self.stack[-1]
        assert isinstance(top.value, dict)
        if isinstance(event, yaml.AliasEvent):
            raise _Limit(_mark(event), "an alias cannot be used as a mapping key", "write the key out")
        key = str(event.value)
        mark = _mark(event)
        if key in top.key_marks and key != MERGE_KEY:
            first = top.key_marks[key]
            self.problems.append(self.doc_problem(mark, (*top.path, key),
                                                  f"duplicate key '{key}' (first defined at line {first[0]})",
                                                  "remove one of them; YAML would silently keep only the last"))
        top.key_marks[key] = mark
        top.pending_key = key
        self.doc.marks[(*top.path, key)] = mark

    def doc_problem(self, mark: Mark, path: PathKey, message: str, hint: str) -> Problem:
        return Problem(self.doc.path, mark[0], mark[1], json_path(path), message, hint)

    def _attach(self, value: Any) -> None:
        if not self.stack:
            self.doc.data = value
            return
        top = self.stack[-1]
        if isinstance(top.value, list):
            top.value.append(value)
        elif top.pending_key == MERGE_KEY:
            self._merge(top, value)
            top.pending_key = None
        else:
            assert top.pending_key is not None
            top.value[top.pending_key] = value
            top.pending_key = None

    def _merge(self, top: _Frame, value: Any) -> None:
        """YAML merge keys (<<: *defaults): keys written in the mapping itself win."""
        assert isinstance(top.value, dict)
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(source, dict) for source in sources):
            self.problems.append(self.doc_problem(top.key_marks[MERGE_KEY], (*top.path, MERGE_KEY),
                                                  "a merge key (<<) takes a mapping or a list of mappings",
                                                  "write <<: *anchor where &anchor names a mapping"))
            return
        for source in sources:
            for key, item in source.items():
                if key not in top.key_marks:
                    top.value.setdefault(key, item)

    def _alias(self, event: Any) -> None:
        if event.anchor not in self.anchors:
            raise _Limit(_mark(event), f"alias *{event.anchor} refers to no anchor", f"define &{event.anchor} before using it")
        value, nodes, size = self.anchors[event.anchor]
        self._add(value, event, (nodes, size))

    def _scalar(self, event: Any, path: PathKey, mark: Mark) -> Any:
        value: str = event.value
        plain = event.implicit[0]
        tag = event.tag
        if tag is None and plain and "$" not in value and scalars.plain_text(value):
            return value  # plain text to both YAML 1.2 and 1.1 (most names and keys): nothing to resolve or compare
        if tag not in (None, "!") and tag not in _SAFE_TAGS:
            self.problems.append(self.doc_problem(_mark(event), path, f"unsupported YAML tag {_short_tag(tag)}",
                                                  "remove the tag; scenario values are plain strings, numbers and booleans"))
            return value
        interpolated = False
        if "$" in value and tag in (None, "!", "tag:yaml.org,2002:str"):
            value = self._interpolate(value, event)
            interpolated = path in self.doc.interpolated
            if path and str(path[-1]).endswith("password"):
                self.doc.secrets.add(value)
                return value  # a password stays text, whatever it looks like
        if tag is None or tag == "!":
            if not plain:
                return value
            constructed = scalars.resolve(value)
            if not interpolated:
                self._compare_with_yaml11(value, constructed, event, path)
        else:
            try:
                constructed = scalars.construct(tag, value)
            except scalars.Unreadable as exc:
                self.problems.append(self.doc_problem(_mark(event), path, f"cannot read value: {exc}",
                                                      "write it as a plain string, number or boolean"))
                return value
        if isinstance(constructed, str):
            return constructed
        return self._number(constructed, event, path)

    def _compare_with_yaml11(self, text: str, value: Any, event: Any, path: PathKey) -> None:
        if len(text) > 100 or value in (scalars.TOO_LARGE, -scalars.TOO_LARGE):
            return  # refused anyway, or too long to be worth a warning (int() of it may refuse)
        older = scalars.yaml11(text)
        if not scalars.same(older, value):
            self.doc.disputed.append(Disputed(path, _mark(event), text, older, value))

    def _number(self, value: Any, event: Any, path: PathKey) -> Any:
        """Numbers the broker can carry: whole floats become ints; NaN, infinity and huge ints are refused."""
        if isinstance(value, float):
            if not math.isfinite(value):
                self.problems.append(self.doc_problem(_mark(event), path, f"{shorten(event.value)} is not a finite number",
                                                      "write an ordinary number"))
                return None
            return scalars.whole(value)
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            message = f"number {shorten(event.value)} is too large (AMQP carries 64-bit integers)"
            self.problems.append(self.doc_problem(_mark(event), path, message, "use a smaller number"))
            return None
        return value

    def _interpolate(self, value: str, event: Any) -> str:
        path = self._child_path()

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            if match.group(1) is None:
                if not match.group(0).startswith("${"):
                    return match.group(0)
                self.problems.append(self.doc_problem(_mark(event), path, f"malformed variable reference '{match.group(0)}'",
                                                      "write ${NAME} or ${NAME:-default}"))
                return ""
            name, default = match.group(1), match.group(2)
            if name in self.env and (self.env[name] != "" or default is None):
                return self.env[name]
            if default is not None:
                return default
            self.problems.append(self.doc_problem(_mark(event), path, f"environment variable {name} is not set",
                                                  f"export {name}=... or write ${{{name}:-default}}"))
            return ""

        result = _ENV_REF.sub(substitute, value)
        if result != value:
            self.doc.interpolated.add(path)
        return result


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _mark(event: Any) -> Mark:
    return (event.start_mark.line + 1, event.start_mark.column + 1)


def _yaml_problem(path: str, exc: yaml.YAMLError, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return Problem(path, line, col, "$", f"unreadable character #x{exc.character:04x} (control characters are not allowed)",
                       "remove the character or save the file as UTF-8 text")
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    lines = re.split(r"\r\n|\r|\n", text)  # as editors count lines (str.splitlines also breaks at \x0c, \x1c...)
    has_tab = 0 < line <= len(lines) and "\t" in lines[line - 1][: col + 1]
    hint = "indent with spaces; YAML does not allow tabs" if has_tab else "check indentation and quoting"
    if 0 < line <= len(lines) and "${" in lines[line - 1] and "{" in lines[line - 1].split("${")[0]:
        hint = "quote values that contain ${...} inside a {...} flow mapping, e.g. max_length: \"${LIMIT:-10}\""
    return Problem(path, line, col, "$", message, hint)
