"""The error raised for any cache file that cannot be trusted."""

from __future__ import annotations

REBUILD_HINT = (
    "rebuild it with `pointseq cache build SPEC.json --force`, or delete the file "
    "and it is rebuilt on the next run"
)


class OfflineStorageError(OSError):
    """A cache file is missing, corrupt, truncated, incomplete or built from other inputs.

    Subclasses ``OSError`` because every cause is a fault of a file on disk; code that
    already handles I/O failures handles this one too.
    """


def storage_error(path: str, problem: str, *, chunk: int | None = None, rebuild: bool = True) -> OfflineStorageError:
    """An ``OfflineStorageError`` that names the file, the chunk and how to recover.

    ``rebuild=False`` leaves out the rebuild hint, for problems whose message says itself
    how to recover (a full disk).
    """
    where = f"offline cache {path!r}" + (f", chunk {chunk}" if chunk is not None else "")
    return OfflineStorageError(f"{where}: {problem}" + (f"; {REBUILD_HINT}" if rebuild else ""))


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def not_a_cache_error(path: str, problem: str) -> OfflineStorageError:
    """An ``OfflineStorageError`` for a file that is not a pointseq cache (someone's data).

    No advice to delete or rebuild it: the file is not ours to replace.
    """
    return OfflineStorageError(
        f"{path!r} is not a pointseq offline cache ({problem}); it is left alone: give the path "
        "of a cache file, or a new path to build one")


def is_hdf5_file(path: str) -> bool:
    """Whether ``path`` starts with the HDF5 signature (every cache does, even a truncated one)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False
