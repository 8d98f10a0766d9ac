"""Draw the getting-started page's pictures (docs/images/demo_*.png) from the demo's tiles.

    python docs/make_demo_pictures.py [--output docs/images]

Five synthetic 45 m tiles of seed 0 (the demo's), the dense model trained on the first four
with the recipe's settings, the last tile predicted: its top-down preview, its error map, and
the loss with the held-out mean IoU after every epoch (a callback predicts the held-out tile
at each epoch's end, which `pointseq train` does not do: it scores validation files once, at
the end). Prints the figures it measured.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import keras
import numpy as np

from pointseq.pointclouds import ClassMap, classification_metrics, read_point_cloud
from pointseq.sequencers import build_sequencer
from pointseq.tiles import model_type, predict_cloud, save_error_map, save_prediction_preview, save_training_curves
from pointseq.tiles import recipe
from pointseq.tiles.pipeline import make_pipeline
from pointseq.tiles.synthetic import make_tiles, write_tiles
from pointseq.tiles.training import resolve_train_spec, training_plan


class HeldOutIoU(keras.callbacks.Callback):
    """Adds ``val_mean_iou``, the held-out tile's mean IoU, to the logs after every epoch."""

    def __init__(self, pipeline: dict, cloud, reference: np.ndarray, scored: np.ndarray) -> None:
        super().__init__()
        self.pipeline, self.cloud, self.reference, self.scored = pipeline, cloud, reference, scored

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        prediction = predict_cloud(self.model, self.pipeline, self.cloud).argmax(axis=1)
        classes = ClassMap.from_config(self.pipeline["class_map"]).num_classes
        metrics = classification_metrics(self.reference[self.scored], prediction[self.scored], classes)
        if logs is not None:
            logs["val_mean_iou"] = metrics.mean_iou


def main(output: str) -> None:
    work = tempfile.mkdtemp(prefix="pointseq_pictures_")
    paths = write_tiles(os.path.join(work, "tiles"), make_tiles(5, seed=0, size=45.0, density=10.0))
    spec = resolve_train_spec({"sequencer": {"type": "OfflineSequencer", "offline_storage": os.path.join(work, "c.h5"),
                                             "chunk_randomization": True, "batch_randomization": True,
                                             "offline_pcloud": {"paths": paths[:4]}},
                               "model": {"type": "pointnet"}, "output": os.path.join(work, "run")})
    train = build_sequencer(spec["sequencer"])
    plan = training_plan(len(train), spec["updates"], spec.get("passes"))
    train = build_sequencer({**spec["sequencer"], "epoch_size": plan["epoch_size"]})
    pipeline = make_pipeline(spec["model"], train.pcloud_config)
    class_map = ClassMap.from_config(pipeline["class_map"])
    held_out = read_point_cloud(paths[4])
    reference, weights = class_map.to_ids(held_out.labels)
    keras.utils.set_random_seed(0)
    model = model_type("pointnet").build(spec["model"], train[0][0], class_map.num_classes)
    recipe.compile_for_recipe(model, train.pcloud_config["class_counts"], plan["updates"], spec["learning_rate"])
    history = model.fit(train, epochs=plan["epochs"], shuffle=False, verbose=2,
                        callbacks=[HeldOutIoU(pipeline, held_out, reference, weights > 0)])
    prediction = predict_cloud(model, pipeline, held_out).argmax(axis=1)
    os.makedirs(output, exist_ok=True)
    save_prediction_preview(held_out.points, class_map.to_codes(prediction), os.path.join(output, "demo_preview.png"),
                            title="held-out demo tile, classified")
    save_error_map(held_out.points, np.where(weights > 0, reference, -1), prediction,
                   os.path.join(output, "demo_errors.png"))
    save_training_curves(history.history, os.path.join(output, "demo_curves.png"), title="dense model, demo tiles")
    print({k: [round(v, 3) for v in values] for k, values in history.history.items() if k in ("loss", "val_mean_iou")})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "images"))
    main(parser.parse_args().output)
