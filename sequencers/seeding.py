"""Every random stream of the library, derived in one place.

Each stream is a `numpy.random.SeedSequence` of its key under its own spawn key, so no two
streams can coincide: the fields cut from cloud 3 never share numbers with the augmentation
of batch 0 of epoch 3. Keys are plain integers, so any process derives the same numbers.
"""

from __future__ import annotations

import numpy as np

# Spawn keys: one per stream. Augmentation keeps the empty key (the documented
# ``SeedSequence([seed, epoch, idx])``).
AUGMENTATION_STREAM: tuple[int, ...] = ()
SHUFFLE_STREAM = (1,)
VISIT_ORDER_STREAM = (2,)
FIELD_STREAM = (3,)
SYNTHETIC_TILE_STREAM = (4,)


def _generator(entropy: list[int], spawn_key: tuple[int, ...]) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=spawn_key)))


def draw_seed() -> int:
    """A fresh seed from the OS, for ``seed=None`` (drawn once, then kept and reported)."""
    return int(np.random.SeedSequence().generate_state(1)[0])


def augmentation_rng(seed: int, epoch: int, idx: int) -> np.random.Generator:
    """The generator that augments training batch ``idx`` of ``epoch``."""
    return _generator([seed, epoch, idx], AUGMENTATION_STREAM)


def shuffle_rng(seed: int, pass_index: int) -> np.random.Generator:
    """The generator of the sample order of one pass over the data."""
    return _generator([seed, pass_index], SHUFFLE_STREAM)


def visit_order_rng(seed: int, pass_index: int) -> np.random.Generator:
    """The generator of the chunk and batch visit order of one pass over a cache."""
    return _generator([seed, pass_index], VISIT_ORDER_STREAM)


def field_rng(seed: int, cloud_index: int) -> np.random.Generator:
    """The generator that cuts receptive fields from cloud ``cloud_index`` of a source."""
    return _generator([seed, cloud_index], FIELD_STREAM)


def synthetic_tile_rng(seed: int, tile_index: int) -> np.random.Generator:
    """The generator that draws synthetic tile ``tile_index`` of a demo data set."""
    return _generator([seed, tile_index], SYNTHETIC_TILE_STREAM)
