"""A job's own process under a Dask task, started one of two ways:

* from the Dask worker's multiprocessing fork server (`forked`), which has imported the worker
  code once, so a job's process costs a fork, not an interpreter start (0.3-0.4 s of CPU here);
* as `python -m mqspec.workload.child FD PARENT_PID` with the job's pickle on stdin (`run`), when
  the Dask worker is a daemonic process (under a nanny, unless `distributed.worker.daemon: False`),
  which multiprocessing refuses children.

Either way it is then a local worker (`worker.main`): its own interpreter for the publisher, dead
with its parent (the kernel's parent-death signal; the fork server exits when the Dask worker does),
stopped by an end of file on its pipe.
"""

from __future__ import annotations

import os
import pickle
import sys
from multiprocessing.connection import Connection

from mqspec.workload.worker import Job, main


def forked(job: Job, pipe: Connection) -> None:
    """Target of a fork-server Process: its parent is the fork server, whose death is ours."""
    main(job, pipe, os.getppid())


def run(argv: list[str]) -> None:
    fd, parent_pid = int(argv[1]), int(argv[2])
    job = pickle.load(sys.stdin.buffer)
    if not isinstance(job, Job):
        raise SystemExit(f"mqspec.workload.child: expected a Job on stdin, got {type(job).__name__}")
    main(job, Connection(fd), parent_pid)


if __name__ == "__main__":
    run(sys.argv)
