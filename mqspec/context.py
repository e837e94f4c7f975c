"""One command invocation's state, built once by the CLI and passed down.

Nothing that changes lives at module level: the redactor, the warn-once flags and the output streams
belong to one invocation, so two commands run in one process never see
each other's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import typer

from mqspec.core.loader import Overrides
from mqspec.errors import Redactor


@dataclass
class Context:
    overrides: Overrides = field(default_factory=Overrides)
    debug: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    redactor: Redactor = field(default_factory=Redactor)
    warned: set[str] = field(default_factory=set)

    def out(self, text: str, nl: bool = True) -> None:
        """Standard output, secrets scrubbed."""
        typer.echo(self.redactor(text), nl=nl)

    def err(self, text: str, nl: bool = True) -> None:
        """Standard error, secrets scrubbed."""
        typer.echo(self.redactor(text), err=True, nl=nl)

    def echo(self, text: str, err: bool = False, nl: bool = True) -> None:
        typer.echo(self.redactor(text), err=err, nl=nl)

    def warn_once(self, key: str, text: str) -> None:
        """A warning said once per invocation, however often its cause is met."""
        if key not in self.warned:
            self.warned.add(key)
            self.err(f"warning: {text}")
