"""Reading input files at the edge: bounded in size and time, whatever the file claims to be.

The core never opens a file; it is handed bytes read here.
"""

from __future__ import annotations

import os
import stat

from mqspec.core.document import MAX_FILE_BYTES, DocumentError
from mqspec.core.problems import Problem


def read_bounded(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or a DocumentError saying why not.

    FIFOs, sockets and devices are refused before a byte is read (a FIFO would block, /dev/zero would
    never end), and at most limit + 1 bytes are ever read, whatever the size reported by stat.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise DocumentError([Problem(path, 0, 0, "$", f"cannot read file: {exc.strerror or exc}", "check the path")]) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DocumentError([Problem(path, 0, 0, "$", f"not a regular file ({_kind(mode)})",
                                         "give the path of a scenario file")])
        raw = _read_at_most(fd, limit + 1)
    except OSError as exc:
        raise DocumentError([Problem(path, 0, 0, "$", f"cannot read file: {exc.strerror or exc}", "check the path")]) from None
    finally:
        os.close(fd)
    if len(raw) > limit:
        size = max(os.path.getsize(path), len(raw))
        raise DocumentError([Problem(path, 1, 1, "$", f"file is {size:,} bytes, over the {limit:,}-byte limit",
                                     "split the scenario into smaller files")])
    return raw


def _read_at_most(fd: int, count: int) -> bytes:
    chunks: list[bytes] = []
    left = count
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"
