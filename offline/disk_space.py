"""Whether a file may grow by a number of bytes: free disk space and the process's file-size limit."""

from __future__ import annotations

import os

try:
    import resource
except ImportError:  # not POSIX: no file-size limit to honour
    resource = None

# HDF5 adds metadata (chunk indexes, headers) and may leave free-space gaps: room to spare.
_SLACK_FRACTION = 0.1
_SLACK_BYTES = 1 << 20


def needed_bytes(nbytes: int) -> int:
    """Bytes to ask for before writing ``nbytes`` of array data into an HDF5 file."""
    return int(nbytes * (1 + _SLACK_FRACTION)) + _SLACK_BYTES


def free_bytes(path: str) -> int:
    """Bytes the file ``path`` (which exists) may still grow by: the smaller of the space free to
    unprivileged users on its file system and the headroom under ``RLIMIT_FSIZE``."""
    stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
    free = stat.f_bavail * stat.f_frsize
    if resource is not None:
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            free = min(free, max(0, limit - os.path.getsize(path)))
    return int(free)


def check_space_for(path: str, nbytes: int) -> str | None:
    """None when ``path`` can take ``nbytes`` more of array data, else what is missing."""
    need, free = needed_bytes(nbytes), free_bytes(path)
    if free >= need:
        return None
    return (f"the disk is full: writing the next chunk needs about {need} bytes, "
            f"{free} are free for {path!r}")
