"""Problems rendered for people (one line each) or for programs (JSON)."""

from __future__ import annotations

import json

from mqspec.core.problems import Problem


def text(problems: list[Problem]) -> str:
    return "\n".join(p.render() for p in problems)


def as_json(results: dict[str, list[Problem]]) -> str:
    files = [
        {"file": name, "valid": not any(p.severity == "error" for p in found), "problems": [p.as_dict() for p in found]}
        for name, found in results.items()
    ]
    return json.dumps({"files": files}, indent=2)
