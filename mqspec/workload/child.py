"""A job's own process under a Dask task: `python -m mqspec.workload.child FD PARENT_PID`, the job's pickle on stdin.

FD is the child's end of the task's pipe (messages.py's protocol, as for a local worker). The task
starts it with subprocess rather than multiprocessing: a Dask worker under a nanny is a daemonic
process, which multiprocessing refuses children, and forking a process whose Dask threads hold locks
is unsafe. From here on it is a local worker (`worker.main`): its own interpreter for the publisher,
dead with the task's thread (the kernel's parent-death signal), stopped by an end of file on FD.
"""

from __future__ import annotations

import pickle
import sys
from multiprocessing.connection import Connection

from mqspec.workload.worker import Job, main


def run(argv: list[str]) -> None:
    fd, parent_pid = int(argv[1]), int(argv[2])
    job = pickle.load(sys.stdin.buffer)
    if not isinstance(job, Job):
        raise SystemExit(f"mqspec.workload.child: expected a Job on stdin, got {type(job).__name__}")
    main(job, Connection(fd), parent_pid)


if __name__ == "__main__":
    run(sys.argv)
