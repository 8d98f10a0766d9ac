"""Training and whole-tile prediction throughput of each model type, through `pointseq.Segmenter`.

Workload: synthetic georeferenced tiles (`pointseq.tiles.synthetic`): ``--tiles`` tiles to train
on, one more to predict. Per model type (``--models``, default every registered type): the
cache is built, then a warm-up fit of a few updates, then the timed fit of ``--updates``
updates from a fresh output folder (the cache is reused, so the fit time is training alone,
read from the data-wait profiler's wall time), then whole-tile prediction of the held-out tile
(the first call traces the model: timed apart). Prints one JSON object: fields/s in training,
points/s in prediction, the device Keras ran on and the backend.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import pointseq  # noqa: E402
from pointseq.pointclouds import read_point_cloud  # noqa: E402
from pointseq.tiles import MODEL_TYPES  # noqa: E402
from pointseq.tiles.synthetic import make_tiles, write_tiles  # noqa: E402


def device() -> str:
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    if backend == "jax":
        import jax

        return str(jax.devices()[0])
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return gpus[0].name if gpus else "cpu"


def bench_model(name: str, tiles: list[str], folder: str, updates: int, batch_size: int) -> dict:
    cache = os.path.join(folder, f"{name}_cache.h5")
    warm = pointseq.Segmenter(name, updates=min(updates, 20), batch_size=batch_size, cache=cache)
    warm.fit(tiles[:-1], output=os.path.join(folder, f"{name}_warm"), verbose=0)
    run = os.path.join(folder, f"{name}_run")
    shutil.rmtree(run, ignore_errors=True)
    seg = pointseq.Segmenter(name, updates=updates, batch_size=batch_size, cache=cache)
    start = time.perf_counter()
    seg.fit(tiles[:-1], output=run, verbose=0)
    fit_s = time.perf_counter() - start
    train_s = seg.report["profiler"]["wall_s"]
    cloud = read_point_cloud(tiles[-1], label=None)
    start = time.perf_counter()
    seg.predict(cloud)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    seg.predict(cloud)
    predict_s = time.perf_counter() - start
    done = seg.report["updates"]
    return {"model": name, "updates": done, "batch_size": batch_size, "train_s": train_s, "fit_call_s": fit_s,
            "train_fields_per_s": done * batch_size / train_s, "predict_points": len(cloud),
            "predict_s": predict_s, "predict_first_call_s": first_s, "predict_points_per_s": len(cloud) / predict_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODEL_TYPES), help="comma-separated model types")
    parser.add_argument("--tiles", type=int, default=3, help="tiles to train on (one more is predicted)")
    parser.add_argument("--size", type=float, default=45.0, help="tile side in metres")
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench_models_")
    try:
        tiles = write_tiles(os.path.join(folder, "tiles"), make_tiles(args.tiles + 1, seed=0, size=args.size))
        results = [bench_model(name.strip(), tiles, folder, args.updates, args.batch_size)
                   for name in args.models.split(",") if name.strip()]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"benchmark": "model_throughput", "backend": keras.backend.backend(), "device": device(),
                      "tile_size_m": args.size, "models": results}, indent=1))


if __name__ == "__main__":
    main()
