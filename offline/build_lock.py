"""build_lock: one cache build at a time per path, across processes."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

try:
    import fcntl
except ImportError:  # not POSIX: builds are not serialised across processes
    fcntl = None


@contextlib.contextmanager
def build_lock(path: str) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` while building ``path``.

    The lock file stays beside the cache (removing it would race with a waiter that has
    already opened it); the operating system drops the lock when its holder exits, so a
    killed build never blocks the next one.
    """
    if fcntl is None:
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)  # a cache in a new folder
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
