"""Options of the commands that touch a broker, as plain values the CLI fills in."""

from __future__ import annotations

from typing import NamedTuple


class ApplyOptions(NamedTuple):
    topology_only: bool = False
    allow_replace: bool = False
    force: bool = False
    prune: bool = False
    output: str = "text"          # text | json
    report: str | None = None     # JSON report path
    junit: str | None = None      # JUnit XML path
    workers: int | None = None    # overrides workload.workers
    strict: bool = False          # warnings refuse the file, as in validate --strict
    engine: str | None = None     # overrides workload.engine: "local" or "dask://HOST:PORT"
    html: str | None = None       # self-contained HTML report path
    metrics: str | None = None    # [HOST]:PORT to serve Prometheus metrics on while the run goes
    migrate: bool = False         # replace queues that hold messages by moving them through a holding queue
    migrate_via: str = "auto"     # auto | shovel | relay
    migrate_wait_consumers: float = 0.0   # seconds to wait for a migrated queue's consumers to go


class PlanOptions(NamedTuple):
    prune: bool = False
    output: str = "text"
    detailed_exitcode: bool = False
    strict: bool = False


class DestroyOptions(NamedTuple):
    force: bool = False
    dry_run: bool = False
    output: str = "text"
    strict: bool = False
