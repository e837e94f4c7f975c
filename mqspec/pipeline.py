"""The one way a command reads a scenario: read at the edge, load, check every rule, lint.

validate, plan, apply, destroy, export, route and graph all go through `load_valid` or `check_file`, so a
file is valid for one exactly when it is valid for all, and an invalid file is refused (exit 2) before any
broker is touched. Lint adds warnings only; `--strict` makes warnings fail everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from mqspec import collector
from mqspec.context import Context
from mqspec.core import inputs, lint
from mqspec.core.compose import compose, origin_of
from mqspec.core.document import Document, DocumentError, parse_bytes
from mqspec.core.inputs import InputFiles
from mqspec.core.loader import Loaded, Overrides, load_document
from mqspec.core.model import Scenario
from mqspec.core.problems import Problem, errors, warnings
from mqspec.errors import InvalidInput
from mqspec.files import read_bounded
from mqspec.report import problems as problem_report

INSECURE_WARNING = "TLS certificate verification is off (tls.insecure: true); the broker's identity is not checked"


def load(path: str, overrides: Overrides = Overrides(), env: Mapping[str, str] | None = None) -> Loaded:
    """Read the file (bounded), then load it; lint warnings are added to a valid scenario's problems.

    A folder, or a file with `include:`, is read file by file and composed into one scenario (core/compose.py).
    """
    environment = os.environ if env is None else env
    try:
        if os.path.isdir(path):
            root, parts = _folder(path, environment)
        else:
            raw = read_bounded(path)
            if b"include" not in raw:
                return _linted(_load_one(raw, path, overrides, environment))
            root, parts = parse_bytes(raw, path, environment), []
        parts, reading = _included(root, parts, environment)
    except DocumentError as exc:
        return Loaded(None, exc.problems)
    if not parts and not reading and "include" not in (root.data if isinstance(root.data, dict) else {}):
        return _linted(_load_one(read_bounded(root.path), root.path, overrides, environment))
    merged, origins, composing = compose(root, parts)
    merged.inputs = read_inputs(merged)
    loaded = _linted(load_document(merged, overrides))
    twice = tuple(p.path for p in composing if "is declared twice" in p.message)
    problems = [*reading, *composing, *(p for p in loaded.problems if not p.path.startswith(twice) or not twice)]
    placed = [p._replace(file=origin_of(p.path, origins) or p.file) if p.file == root.path else p for p in problems]
    return loaded._replace(scenario=None if errors(problems) else loaded.scenario, problems=placed)


def _load_one(raw: bytes, path: str, overrides: Overrides, env: Mapping[str, str]) -> Loaded:
    try:
        doc = parse_bytes(raw, path, env)
    except DocumentError as exc:
        return Loaded(None, exc.problems)
    doc.inputs = read_inputs(doc)
    return load_document(doc, overrides)


def read_inputs(doc: Document) -> InputFiles:
    """The files the document names, read here at the edge (core/inputs.py): body files' bytes, which named
    paths are files, and where each leads once symbolic links are followed."""
    named = inputs.named(doc.data, doc.path)
    existing = frozenset(path for path in (*named.bodies, *named.others) if os.path.isfile(path))
    bodies = {path: Path(path).read_bytes() for path in named.bodies if path in existing}
    real = {path: os.path.realpath(path) for path in (*named.bodies, named.folder)}
    return InputFiles(MappingProxyType(bodies), existing, MappingProxyType(real))


def _linted(loaded: Loaded) -> Loaded:
    if loaded.scenario is None:
        return loaded
    return loaded._replace(problems=[*loaded.problems, *lint.check(loaded.scenario)])


_SCENARIO_SUFFIXES = (".yaml", ".yml")


def _folder(path: str, env: Mapping[str, str]) -> tuple[Document, list[Document]]:
    """Every scenario file of a folder, sorted: the root is the first that has a broker, workload or expect
    section (else the first), the others are included."""
    files = sorted(str(Path(path) / name) for name in os.listdir(path) if name.endswith(_SCENARIO_SUFFIXES))
    if not files:
        raise DocumentError([Problem(path, 0, 0, "$", "no .yaml or .yml files in this folder",
                                     "give a scenario file, or a folder of them")])
    docs = [parse_bytes(read_bounded(file), file, env) for file in files]
    root = next((d for d in docs if isinstance(d.data, dict) and {"broker", "workload", "expect"} & set(d.data)), docs[0])
    return root, [d for d in docs if d is not root]


def _included(root: Document, parts: list[Document], env: Mapping[str, str]) -> tuple[list[Document], list[Problem]]:
    """The parts with every file they (and the root) include, depth first, each file once."""
    problems: list[Problem] = []
    seen = {os.path.realpath(root.path), *(os.path.realpath(p.path) for p in parts)}
    ordered: list[Document] = []

    def visit(doc: Document) -> None:
        names = doc.data.get("include", []) if isinstance(doc.data, dict) else []
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list):
            problems.append(doc.problem(("include",), "include must be a list of file paths",
                                        "write include: [other.yaml]"))
            return
        for index, name in enumerate(names):
            if not isinstance(name, str):
                problems.append(doc.problem(("include", index), "an included path must be text", "write a file path"))
                continue
            for file in _expand(Path(doc.path).parent / name):
                if os.path.realpath(file) in seen:
                    continue
                seen.add(os.path.realpath(file))
                try:
                    part = parse_bytes(read_bounded(file), file, env)
                except DocumentError as exc:
                    where = doc.problem(("include", index), f"cannot include {name}: {exc.problems[0].message}",
                                        exc.problems[0].hint)
                    problems.append(where if exc.problems[0].line == 0 else exc.problems[0])
                    continue
                ordered.append(part)
                visit(part)

    visit(root)
    for part in parts:
        ordered.append(part)
        visit(part)
    return ordered, problems


def _expand(path: Path) -> list[str]:
    if path.is_dir():
        return sorted(str(path / name) for name in os.listdir(path) if name.endswith(_SCENARIO_SUFFIXES))
    return [str(path)]


def check_file(ctx: Context, path: str) -> Loaded:
    """Every problem of one file, in file order; the file's secrets join the invocation's redactor."""
    with collector.paused():
        loaded = load(path, ctx.overrides, ctx.env)
    for secret in loaded.secrets:
        ctx.redactor.add(secret)
    return loaded._replace(problems=sorted(loaded.problems, key=lambda p: (p.line, p.col)))


def failing(problems: list[Problem], strict: bool) -> list[Problem]:
    return errors(problems) + (warnings(problems) if strict else [])


def load_valid(ctx: Context, path: str, strict: bool = False) -> Scenario:
    """The scenario, or every problem printed and InvalidInput raised (exit 2) before any broker is touched."""
    loaded = check_file(ctx, path)
    if loaded.problems:
        ctx.err(problem_report.text(loaded.problems))
    refused = failing(loaded.problems, strict)
    if loaded.scenario is None or refused:
        count = len(refused) or 1
        what = "warning" if strict and not errors(loaded.problems) else "problem"
        raise InvalidInput(f"{path}: {count} {what}{'' if count == 1 else 's'} found; nothing was changed "
                           f"(mqspec validate {path} lists them)")
    if loaded.scenario.broker.tls.insecure:
        ctx.warn_once("insecure", INSECURE_WARNING)
    return loaded.scenario
