"""Names and constants of the offline cache file format, version 1.

```
/                      attrs: format, format_version, batch_size, chunk_size, num_batches,
                       num_samples, num_chunks, structure, config, fingerprint, complete
/ordered_keys          names of the input elements, in the order of X<k>
/data/<c>/X<k>         chunk c, input element k: rows of all its batches concatenated
/data/<c>/batch_offsets      (n+1,) int64 row offsets of the chunk's n batches, or (n+1, K)
                             when the elements of a batch do not share their row count
/references/<c>/Y<k>   chunk c, reference element k (targets, then sample weights)
/references/<c>/batch_offsets  likewise for the references
```
Each chunk group carries ``complete=True``, written last.
"""

from __future__ import annotations

FORMAT_NAME = "pointseq-offline"
FORMAT_VERSION = 1

DATA_GROUP = "data"
REFERENCES_GROUP = "references"
OFFSETS = "batch_offsets"
ORDERED_KEYS = "ordered_keys"
INPUT_PREFIX = "X"
REFERENCE_PREFIX = "Y"

COMPRESSIONS = ("none", "lzf", "gzip")


def chunk_name(chunk: int) -> str:
    """Group name of chunk ``chunk`` under /data and /references."""
    return str(int(chunk))


def normalize_compression(compression: str | None) -> str | None:
    """Map the user's compression option to the h5py filter name (``None`` for none)."""
    if compression is None:
        return None
    if not isinstance(compression, str) or compression.lower() not in COMPRESSIONS:
        raise ValueError(
            f"compression must be one of None, {', '.join(repr(c) for c in COMPRESSIONS)}; "
            f"got {compression!r}"
        )
    compression = compression.lower()
    return None if compression == "none" else compression


def check_chunk_size(chunk_size: int) -> int:
    """Validate ``chunk_size`` (batches per chunk)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


def temp_path(path: str) -> str:
    """Where a cache is written before it is renamed into place."""
    return f"{path}.tmp"
