"""Names and constants of the offline cache file format, version 2.

```
/                      attrs: format, format_version, batch_size, chunk_size, num_batches,
                       num_samples, num_chunks, structure, config, fingerprint, complete
/ordered_keys          names of the input elements, in the order of X<k> (fixed-length bytes)
/data/<c>/X<k>         chunk c, input element k: rows of all its batches concatenated
/data/<c>/batch_offsets      (n+1,) int64 row offsets of the chunk's n batches, or (n+1, K)
                             when the elements of a batch do not share their row count
/references/<c>/Y<k>   chunk c, reference element k (targets, then sample weights)
/references/<c>/batch_offsets  likewise for the references
```
Each chunk group carries ``complete=True``, written last.

Version 2 (version 1 plus integrity): the file is written in HDF5's 1.10 format
(``LIBVER``), whose superblock, object headers (attributes included) and chunk indexes carry
checksums, so a flipped bit in metadata is an error, never a missed chunk read as zeros.
Text attributes are fixed-length bytes stored in the object header, never variable-length
strings in the global heap (a damaged heap could hang the reader).
"""

from __future__ import annotations

import numpy as np

FORMAT_NAME = "pointseq-offline"
FORMAT_VERSION = 2
LIBVER = ("v110", "latest")  # HDF5 1.10 file format or newer: checksummed metadata

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


def text_attribute(text: str) -> np.bytes_:
    """A text attribute value stored as fixed-length bytes in the object header."""
    return np.bytes_(text.encode("utf-8"))


def attribute_text(value: object) -> str:
    """The text of an attribute written by :func:`text_attribute` (or a plain str one)."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a text attribute, got {type(value).__name__}")
