"""The error raised for any cache file that cannot be trusted."""

from __future__ import annotations

REBUILD_HINT = (
    "rebuild it with `pointseq cache build SPEC.json --force`, or delete the file "
    "and it is rebuilt on the next run"
)


SHARD_REBUILD_HINT = "rerun `pointseq cache build SPEC.json --workers N`, which rebuilds only missing shards"


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
BUILD_ADVICE = "give the path of a cache file, or a new path to build one"
INSPECT_ADVICE = "give the path of a cache file or of a sharded cache's folder"


class NotACacheError(OfflineStorageError):
    """A file that is not a pointseq cache (someone's data): ``path``, ``problem`` and ``advice``.

    No advice to delete or rebuild it: the file is not ours to replace. ``advice`` says what
    to give instead: where a cache is built (the default), a new path is one answer too.
    """

    def __init__(self, path: str, problem: str, advice: str = BUILD_ADVICE) -> None:
        super().__init__(f"{path!r} is not a pointseq offline cache ({problem}); it is left alone: {advice}")
        self.path, self.problem, self.advice = path, problem, advice

    def __reduce__(self) -> tuple:
        return type(self), (self.path, self.problem, self.advice)  # raised on a Dask worker, pickled back


def is_hdf5_file(path: str) -> bool:
    """Whether ``path`` starts with the HDF5 signature (every cache does, even a truncated one)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def has_damaged_hdf5_signature(path: str) -> bool:
    """Whether ``path``'s first 8 bytes differ from the HDF5 signature while the superblock after
    them is intact (a version 2/3 superblock, as caches have, whose checksum holds with the
    signature restored): an HDF5 file damaged in its signature, not someone's other file."""
    from pointseq.offline.superblock import lookup3

    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:8] == HDF5_SIGNATURE or head[8] not in (2, 3):
                return False
            size = 12 + 4 * head[9]  # four addresses of size-of-offsets bytes
            f.seek(0)
            block = f.read(size + 4)
    except OSError:
        return False
    if len(block) < size + 4:
        return False
    return int.from_bytes(block[size:size + 4], "little") == lookup3(HDF5_SIGNATURE + block[8:size])
