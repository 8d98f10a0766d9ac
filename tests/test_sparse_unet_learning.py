"""The sparse-conv U-Net learns what the per-cell shadow model cannot: local surface orientation.

Scenes of a few noisy planes at random heights and positions, each horizontal (class 0) or
vertical (class 1); the cells carry no features, only their place in the grid. A cell's
class is the orientation of the surface through its neighbours: a 3x3x3 convolution sees it,
a per-cell model with pooling to parents hardly does.
"""

import keras
import numpy as np
import pytest

from pointseq.pointclouds.sparse_grid import build_sparse_grid
from pointseq.sequencers.models.shadow_model import build_shadow_segmentation_model
from pointseq.sequencers.models.sparse_unet import build_sparse_unet
from pointseq.sequencers.shadow_sequencer import SparseShadowSequencer

DEPTH = 3
UPDATES = 24


def plane_scene(rng, num_points=240):
    planes = int(rng.integers(2, 4))
    per = num_points // planes
    points, labels = [], []
    for _ in range(planes):
        a, b = rng.uniform(0.0, 3.0, (2, per))
        level = np.full(per, rng.uniform(0.0, 3.0))
        axis = int(rng.integers(0, 3))  # which coordinate is constant: 2 -> horizontal
        columns = [a, b]
        columns.insert(axis, level)
        points.append(np.stack(columns, axis=1) + rng.normal(0.0, 0.02, (per, 3)))
        labels.append(np.full(per, int(axis != 2)))
    return np.concatenate(points), np.concatenate(labels)


def scenes(count, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        points, labels = plane_scene(rng)
        out.append(build_sparse_grid(points, None, labels, cell_size=0.25, depth=DEPTH))
    return out


def accuracy(model, seq, grids):
    z = model.predict(seq, verbose=0)
    predicted = np.concatenate(seq.post_process_output(z)).argmax(axis=-1)
    return float(np.mean(predicted == np.concatenate([g.labels for g in grids])))


@pytest.mark.slow
def test_sparse_unet_beats_the_per_cell_model_and_the_majority_at_equal_updates():
    train, test = scenes(32, seed=0), scenes(16, seed=1)
    rows = tuple(max(g.num_cells(t) for g in train + test) for t in range(DEPTH))
    seq = SparseShadowSequencer(train, batch_size=8, seed=0, max_rows=rows)
    test_seq = SparseShadowSequencer(test, batch_size=8, shuffle=False, training=False, max_rows=rows)
    labels = np.concatenate([g.labels for g in test])
    majority = max(np.mean(labels == 0), np.mean(labels == 1))
    scores = {}
    for name, build in (("unet", lambda: build_sparse_unet(1, 2, DEPTH, width=8)),
                        ("per_cell", lambda: build_shadow_segmentation_model(1, 2, DEPTH, rows, width=16))):
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
        model.fit(seq, epochs=UPDATES // len(seq), verbose=0)
        scores[name] = accuracy(model, test_seq, test)
    assert scores["unet"] > majority + 0.12, (scores, majority)
    assert scores["unet"] > scores["per_cell"] + 0.15, (scores, majority)
