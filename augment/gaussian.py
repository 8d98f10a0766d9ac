"""Fast float32 Gaussian noise.

``Generator.standard_normal(dtype=np.float32)`` runs a scalar ziggurat, several times slower
than the rest of an augmentation pass. The Box-Muller transform below turns raw 64-bit
words of the same generator into normals with a handful of vectorised float32 operations,
so the stream stays keyed by the caller's generator and reproducible.

Each 32-bit half of a word gives one pair of normals: 16 bits pick the radius
``sqrt(-2 ln u)`` from a table of its 2**16 values (a lookup instead of a log and a square
root), 15 bits an angle on a half turn and 1 bit the sign of the sine, which is then
``sqrt(1 - cos**2)`` (a square root instead of a second transcendental). The smallest
radius uniform is 2**-16, so samples are bounded by sqrt(2 * 16 * ln 2) ~= 4.71 standard
deviations (the mass beyond is ~2.5e-6): far finer than point jitter needs.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any

import numpy as np

_RADIUS_BITS, _ANGLE_BITS = 16, 15
_RADIUS_MASK = np.uint32((1 << _RADIUS_BITS) - 1)
_ANGLE_MASK = np.uint32((1 << _ANGLE_BITS) - 1)
_SIGN = np.uint32(0x80000000)
_ONE_BITS = np.uint32(0x3F800000)  # float32 1.0: OR-ing mantissa bits below gives [1, 2)


@functools.lru_cache(maxsize=16)
def _radius_table(scale: float) -> np.ndarray:
    """``scale * sqrt(-2 ln u)`` for the 2**16 uniforms ``u = 1 - k / 2**16`` in (0, 1]."""
    uniforms = 1.0 - np.arange(1 << _RADIUS_BITS, dtype=np.float64) / (1 << _RADIUS_BITS)
    table = (scale * np.sqrt(-2.0 * np.log(uniforms))).astype(np.float32)
    table.flags.writeable = False
    return table


def normal_float32(
    rng: np.random.Generator, size: int | tuple[int, ...], scale: float = 1.0
) -> np.ndarray:
    """Float32 samples of N(0, scale**2) with shape ``size``, drawn from ``rng``."""
    shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    out = np.empty(shape, dtype=np.float32)
    fill_normal_float32(rng, out, scale)
    return out


def fill_normal_float32(rng: np.random.Generator, out: np.ndarray, scale: float = 1.0) -> None:
    """Overwrite the C-contiguous float32 array ``out`` with samples of N(0, scale**2).

    Works in steps of at most ``2 * _PAIRS_PER_STEP`` values with per-thread scratch, so no
    temporary reaches the size at which malloc maps fresh pages for each call (threads that
    TensorFlow starts, where Keras runs a PyDataset, fault those in every time).
    """
    if out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array, got {out.dtype} {out.flags}")
    flat = out.reshape(-1)
    table = _radius_table(float(scale))
    for start in range(0, flat.size, 2 * _PAIRS_PER_STEP):
        chunk = flat[start : start + 2 * _PAIRS_PER_STEP]
        pairs = (chunk.size + 1) // 2
        words = rng.bit_generator.random_raw((pairs + 1) // 2).view(np.uint32)[:pairs]
        target = chunk if chunk.size % 2 == 0 else thread_scratch("odd normals", 2 * pairs, np.float32)
        _box_muller(words, target[:pairs], target[pairs:], table)
        if target is not chunk:
            chunk[...] = target[: chunk.size]


_PAIRS_PER_STEP = 1 << 14  # 64 KiB of random words per step
_SCRATCH: dict[tuple[int, str, str], np.ndarray] = {}
_MAX_SCRATCH = 256  # entries; past this the table is emptied (threads come and go)


def thread_scratch(name: str, size: int, dtype: Any) -> np.ndarray:
    """This OS thread's reusable array ``name`` of ``size`` elements of ``dtype``.

    Keyed by the OS thread id, not a ``threading.local``: TensorFlow runs a PyDataset's
    generator on its own threads under a Python thread state made afresh for each call,
    which would empty a thread-local every batch. Only the thread itself uses its entry.
    """
    dtype = np.dtype(dtype)
    key = (threading.get_ident(), name, dtype.name)
    array = _SCRATCH.get(key)
    if array is None or array.size < size:
        if len(_SCRATCH) >= _MAX_SCRATCH:
            _SCRATCH.clear()
        array = np.empty(max(size, 2 * _PAIRS_PER_STEP), dtype=dtype)
        _SCRATCH[key] = array
    return array[:size]


def _box_muller(words: np.ndarray, radius: np.ndarray, second: np.ndarray, table: np.ndarray) -> None:
    """Turn 32-bit ``words`` into normals: ``radius`` gets r cos(a), ``second`` r sin(a)."""
    bits = thread_scratch("normal bits", words.size, np.uint32)
    # Indices of numpy's own index type: take would convert uint32 ones into a temporary.
    index = thread_scratch("normal index", words.size, np.intp)
    np.bitwise_and(words, _RADIUS_MASK, out=index, casting="safe")
    np.take(table, index, out=radius, mode="clip")
    np.right_shift(words, np.uint32(_RADIUS_BITS), out=bits)
    bits &= _ANGLE_MASK
    bits <<= np.uint32(23 - _ANGLE_BITS)
    bits |= _ONE_BITS
    cosine = bits.view(np.float32)  # [1, 2); times pi spans half a turn: every cosine once
    cosine *= np.float32(math.pi)
    np.cos(cosine, out=cosine)
    np.square(cosine, out=second)
    np.subtract(np.float32(1.0), second, out=second)
    np.maximum(second, np.float32(0.0), out=second)
    np.sqrt(second, out=second)
    words &= _SIGN  # the sign bit picks the sine's half turn
    second.view(np.uint32)[...] |= words
    second *= radius
    np.multiply(radius, cosine, out=radius)
