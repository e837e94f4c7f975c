"""Run `mqspec ARGS...` under cProfile with the process's CPU time as the clock (not wall time).

cProfile sees only the main thread, but with `time.process_time` as its timer the CPU of every thread
(Dask's client event loop thread included) is charged to whatever the main thread was doing then.

    .venv/bin/python benchmarks/cprofile_cpu.py OUT.prof apply FILE --engine dask://...
"""

from __future__ import annotations

import cProfile
import sys
import time

from mqspec.cli import entry


def main() -> int:
    out, sys.argv = sys.argv[1], ["mqspec", *sys.argv[2:]]
    profiler = cProfile.Profile(time.process_time)
    code = 0
    try:
        code = profiler.runcall(entry) or 0
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        profiler.dump_stats(out)
    return code


if __name__ == "__main__":
    sys.exit(main())
