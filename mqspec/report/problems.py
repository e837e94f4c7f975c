"""Problems rendered for people (one line each) or for programs (JSON)."""

from __future__ import annotations

import json

from mqspec.core.problems import Problem, escape, short_quotes

SAME_SHAPE_SHOWN = 20


def text(problems: list[Problem]) -> str:
    """One line per problem; past the first 20 of one shape (the same message about other names), one line counts the rest."""
    shown: dict[tuple[str, str], int] = {}
    lines: list[str] = []
    for found in problems:
        key = (found.severity, found.shape())
        count = shown[key] = shown.get(key, 0) + 1
        if count <= SAME_SHAPE_SHOWN:
            lines.append(found.render())
    for (_, message), count in shown.items():
        if count > SAME_SHAPE_SHOWN:
            lines.append(f"... and {count - SAME_SHAPE_SHOWN:,} more like this: {short_quotes(escape(message))}")
    return "\n".join(lines)


def as_json(results: dict[str, list[Problem]]) -> str:
    files = [
        {"file": name, "valid": not any(p.severity == "error" for p in found), "problems": [p.as_dict() for p in found]}
        for name, found in results.items()
    ]
    return json.dumps({"files": files}, indent=2)
