"""The files a scenario names (producers' body_file, broker.tls), as the edge found them.

The core never touches the file system: the edge (mqspec/pipeline.py) asks `named` which files a document
names, reads them, and hands the core what it found. Paths are the ones `input_path` gives: a relative path
starts at the scenario's folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mqspec.core import shapes

TLS_FILES = ("ca_file", "cert_file", "key_file")


@dataclass(frozen=True)
class InputFiles:
    """What the edge found: the bytes of each body file, which named paths are files, and where each named path
    (and the scenario's folder) leads once symbolic links are followed."""

    bodies: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))
    existing: frozenset[str] = frozenset()
    real: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Named:
    bodies: tuple[str, ...]
    others: tuple[str, ...]
    folder: str


def input_path(scenario_path: str, text: str) -> str:
    """Where a file named in the scenario is (TLS files, body_file): a relative path starts at the scenario's folder.

    The one place such a path is resolved; the loader stores the result, the checks look there.
    """
    return str(Path(scenario_path).parent / Path(text).expanduser())


def folder_of(scenario_path: str) -> str:
    return str(Path(scenario_path).parent)


def named(data: Any, scenario_path: str) -> Named:
    """The body files and TLS files a document names (patterns expanded and as written), and its folder."""
    workload = data.get("workload") if isinstance(data, dict) else None
    producers = workload.get("producers") if isinstance(workload, dict) else None
    written = [p for p in producers if isinstance(p, dict)] if isinstance(producers, list) else []
    expanded = [p for _, p in shapes.expand(producers)] if isinstance(producers, list) else []
    bodies = {input_path(scenario_path, p["body_file"]) for p in [*written, *expanded]
              if isinstance(p, dict) and isinstance(p.get("body_file"), str)}
    broker = data.get("broker") if isinstance(data, dict) else None
    tls = broker.get("tls") if isinstance(broker, dict) else None
    others = {input_path(scenario_path, tls[key]) for key in TLS_FILES
              if isinstance(tls, dict) and isinstance(tls.get(key), str)}
    return Named(tuple(sorted(bodies)), tuple(sorted(others)), folder_of(scenario_path))
