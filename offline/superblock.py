"""Clear the "open for writing" flag that a killed writer leaves in an HDF5 superblock.

HDF5's 1.10 file format (superblock version 3) marks a file as open for writing while a
writer has it and clears the mark on close. A build that was killed leaves the mark, and
HDF5 then refuses to open the file at all ("may use h5clear"). The cache's temp file is
only ever written by its own builder under the build lock, so a leftover mark is stale:
clearing it (as ``h5clear -s`` does) lets the next build resume instead of starting over.
"""

from __future__ import annotations

import struct

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _MASK; a ^= _rot(c, 4); c = (c + b) & _MASK
    b = (b - a) & _MASK; b ^= _rot(a, 6); a = (a + c) & _MASK
    c = (c - b) & _MASK; c ^= _rot(b, 8); b = (b + a) & _MASK
    a = (a - c) & _MASK; a ^= _rot(c, 16); c = (c + b) & _MASK
    b = (b - a) & _MASK; b ^= _rot(a, 19); a = (a + c) & _MASK
    c = (c - b) & _MASK; c ^= _rot(b, 4); b = (b + a) & _MASK
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rot(b, 14)) & _MASK
    a ^= c; a = (a - _rot(c, 11)) & _MASK
    b ^= a; b = (b - _rot(a, 25)) & _MASK
    c ^= b; c = (c - _rot(b, 16)) & _MASK
    a ^= c; a = (a - _rot(c, 4)) & _MASK
    b ^= a; b = (b - _rot(a, 14)) & _MASK
    c ^= b; c = (c - _rot(b, 24)) & _MASK
    return c


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum of HDF5 metadata."""
    a = b = c = (0xDEADBEEF + len(data) + initval) & _MASK
    rest = data
    while len(rest) > 12:
        x, y, z = struct.unpack_from("<III", rest)
        a, b, c = _mix((a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK)
        rest = rest[12:]
    if not rest:
        return c
    x, y, z = struct.unpack("<III", rest.ljust(12, b"\0"))
    return _final((a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK)


def clear_write_flag(path: str) -> bool:
    """Clear a stale "open for writing" mark in ``path``'s superblock; True if one was cleared.

    Only a version 3 superblock at the start of the file with a valid checksum is touched.
    """
    with open(path, "r+b") as f:
        head = f.read(12)
        if len(head) < 12 or head[:8] != _SIGNATURE or head[8] != 3 or head[11] == 0:
            return False
        size = 12 + 4 * head[9]  # four addresses of size-of-offsets bytes
        f.seek(0)
        block = f.read(size + 4)
        if len(block) < size + 4 or struct.unpack_from("<I", block, size)[0] != lookup3(block[:size]):
            return False
        fixed = block[:11] + b"\0" + block[12:size]
        f.seek(0)
        f.write(fixed + struct.pack("<I", lookup3(fixed)))
    return True
