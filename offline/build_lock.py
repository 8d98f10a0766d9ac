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

    The lock file stays beside the cache after a build; the operating system drops the lock
    when its holder exits, so a killed build never blocks the next one. A build that fails
    removes the lock file if it created it (the directory is left as it was); a waiter that
    then gets the lock on the removed file notices and locks the current one instead.
    """
    if fcntl is None:
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)  # a cache in a new folder
    fd, created = _acquire(path + ".lock")
    try:
        yield
    except BaseException:
        if created:
            remove_if_present(path + ".lock")
        raise
    finally:
        os.close(fd)  # closing releases the lock


def _acquire(lock_path: str) -> tuple[int, bool]:
    """A locked descriptor of the file now at ``lock_path``, and whether this call created it."""
    while True:
        try:
            fd, created = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            try:
                fd, created = os.open(lock_path, os.O_RDWR), False
            except FileNotFoundError:  # removed between the two opens
                continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                return fd, created
        except FileNotFoundError:
            pass
        os.close(fd)  # locked a file a failed build has removed: try the current one


def remove_if_present(path: str) -> None:
    """Remove ``path``; a file already gone is fine."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
