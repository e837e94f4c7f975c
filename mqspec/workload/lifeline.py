"""Worker processes die with their parent, whatever signal ends it.

Three lines of defence, because any one can be missing:

* on Linux the kernel's parent-death signal (prctl PR_SET_PDEATHSIG): SIGKILL of mqspec kills its
  workers at once, and the kernel closes their sockets, so the broker drops their connections;
* the pipe: a forked worker closes the parent's ends of every pipe it inherited, so the parent's
  death is an end-of-file on the worker's pipe, which stops the worker's clients;
* a watchdog: the worker compares os.getppid() with its parent's pid on every progress tick.

The worker also names itself (`mqspec-worker-N` in /proc/PID/comm, `ps -o comm`), so a person or
a test can find it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from multiprocessing.connection import Connection

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
NAME_MAX = 15  # the kernel keeps 16 bytes, the last one NUL


def _prctl(option: int, value: int | bytes) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def set_name(name: str) -> None:
    """The process's short name, as `ps` and /proc/PID/comm show it (Linux; elsewhere nothing)."""
    _prctl(PR_SET_NAME, name.encode("ascii", "replace")[:NAME_MAX])


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel for SIGKILL when the parent dies; exit now if it is already gone."""
    _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent_pid:   # the parent died before the request took effect
        os._exit(1)


def close_inherited(ends: tuple[Connection, ...]) -> None:
    """Close the parent's ends of pipes a forked child inherited (closing the objects, not bare
    descriptors, so nothing closes a reused descriptor number later)."""
    for end in ends:
        with contextlib.suppress(OSError):
            end.close()


def parent_alive(parent_pid: int) -> bool:
    return os.getppid() == parent_pid
