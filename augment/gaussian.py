"""Fast float32 Gaussian noise.

``Generator.standard_normal(dtype=np.float32)`` runs a scalar ziggurat, several times slower
than the rest of an augmentation pass. The Box-Muller transform below turns raw 64-bit
words of the same generator into normals with a handful of vectorised float32 ufuncs, so
the stream stays keyed by the caller's generator and reproducible.

Each 64-bit word gives two 23-bit uniforms, hence two normals. The smallest radius uniform
is 2**-23, so samples are bounded by sqrt(2 * 23 * ln 2) ~= 5.65 standard deviations; the
mass beyond that is ~2e-8.
"""

from __future__ import annotations

import math

import numpy as np

_MANTISSA_SHIFT = np.uint32(32 - 23)
_ONE_BITS = np.uint32(0x3F800000)  # float32 1.0: OR-ing 23 random mantissa bits gives [1, 2)


def normal_float32(
    rng: np.random.Generator, size: int | tuple[int, ...], scale: float = 1.0
) -> np.ndarray:
    """Float32 samples of N(0, scale**2) with shape ``size``, drawn from ``rng``."""
    shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    count = math.prod(shape)
    pairs = (count + 1) // 2
    bits = rng.bit_generator.random_raw(pairs).view(np.uint32)
    bits >>= _MANTISSA_SHIFT
    bits |= _ONE_BITS
    uniforms = bits.view(np.float32)  # [1, 2)
    radius, angle = uniforms[:pairs], uniforms[pairs:]
    # 2 - [1, 2) is (0, 1]: never 0, so the log is finite.
    np.subtract(np.float32(2.0), radius, out=radius)
    np.log(radius, out=radius)
    radius *= np.float32(-2.0 * scale * scale)
    np.sqrt(radius, out=radius)
    # [1, 2) * 2 pi spans one full period; sin and cos do not care where it starts.
    angle *= np.float32(2.0 * math.pi)
    sines = np.sin(angle)
    np.cos(angle, out=angle)
    angle *= radius
    radius *= sines
    # The uniforms' buffer now holds the 2 * pairs normals.
    return uniforms[:count].reshape(shape)
