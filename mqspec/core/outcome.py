"""What running a plan did: each change's step, done, failed (with its error) or not attempted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from mqspec.core.plan import Change
from mqspec.errors import EXIT_FAILED, EXIT_OK

Status = Literal["done", "failed", "not attempted"]


class Step(NamedTuple):
    change: Change
    status: Status
    error: str = ""
    exit_code: int = EXIT_OK


@dataclass(frozen=True)
class Outcome:
    steps: tuple[Step, ...]

    def having(self, status: Status) -> list[Step]:
        return [s for s in self.steps if s.status == status]

    @property
    def ok(self) -> bool:
        return all(s.status == "done" for s in self.steps)

    @property
    def exit_code(self) -> int:
        codes = [s.exit_code or EXIT_FAILED for s in self.steps if s.status == "failed"]
        if not codes and not self.ok:
            return EXIT_FAILED
        return max(codes, default=EXIT_OK)
