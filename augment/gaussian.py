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
    count = math.prod(shape)
    pairs = (count + 1) // 2
    words = rng.bit_generator.random_raw((pairs + 1) // 2).view(np.uint32)[:pairs]
    out = np.empty(2 * pairs, dtype=np.float32)
    radius, second = out[:pairs], out[pairs:]
    bits = np.bitwise_and(words, _RADIUS_MASK)
    np.take(_radius_table(float(scale)), bits, out=radius, mode="clip")
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
    return out[:count].reshape(shape)
