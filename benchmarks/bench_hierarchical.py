"""Hierarchical FPS fields vs a per-field loop with the original's kernels; KPConv throughput.

1. Hierarchical fields of a synthetic georeferenced tile (default 1M points, 4 depths): the
   covering sampler plus the ``hierarchical_fps`` encoder (every field at once), against a loop
   over the same fields' neighbourhoods doing what the original does per field: open3d's
   furthest-point sampling per depth (a per-field numpy FPS when open3d is missing) and one
   scipy KD-tree per depth and field for the k-NN, down- and upsampling maps. The loop is given
   the neighbourhoods for free (ours computes them inside its time).
2. KPConv training throughput (fields/s, after a warm-up) and whole-tile prediction throughput
   (points/s: cut, encode, predict, propagate) on this machine.

Prints one JSON object.  python benchmarks/bench_hierarchical.py [--points 1000000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.spatial import cKDTree

DEPTHS = {"num_points_per_depth": [512, 128, 32, 8], "num_pwise_neighbors": [16, 16, 8, 4],
          "num_downsampling_neighbors": [1, 8, 8, 4], "num_upsampling_neighbors": [1, 1, 1, 1]}


def synthetic_tile(count: int, seed: int = 0) -> np.ndarray:
    """Undulating terrain with boxes on it, at a 5e6 offset, about 11 points per m^2."""
    rng = np.random.default_rng(seed)
    side = np.sqrt(count / 11.0)
    xy = rng.uniform(0, side, (count, 2))
    z = 2.0 * np.sin(xy[:, 0] / 20) * np.cos(xy[:, 1] / 15) + rng.normal(0, 0.05, count)
    z += 6.0 * ((xy % 40) < 12).all(axis=1)
    return np.column_stack([xy, z]) + np.array([5e6, 5e6, 300.0])


def fps_numpy(coords: np.ndarray, num: int) -> np.ndarray:
    chosen = np.zeros(num, dtype=np.int64)
    nearest = np.sum((coords - coords[0]) ** 2, axis=1)
    for i in range(1, num):
        chosen[i] = nearest.argmax()
        nearest = np.minimum(nearest, np.sum((coords - coords[chosen[i]]) ** 2, axis=1))
    return coords[chosen]


def fps_kernel():
    """open3d's furthest-point down-sampling per field (the original's kernel), else numpy."""
    try:
        import open3d
    except ImportError:
        return "numpy", fps_numpy

    def fps(coords: np.ndarray, num: int) -> np.ndarray:
        cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(coords))
        return np.asarray(cloud.farthest_point_down_sample(num).points)

    return "open3d", fps


def per_field_loop(points, fields, fps) -> float:
    """Seconds for the original's per-field hierarchy on the fields' neighbourhoods."""
    start = time.perf_counter()
    counts, pwise = DEPTHS["num_points_per_depth"], DEPTHS["num_pwise_neighbors"]
    down, up = DEPTHS["num_downsampling_neighbors"], DEPTHS["num_upsampling_neighbors"]
    for f in range(len(fields)):
        members = fields.member_indices[fields.member_offsets[f]:fields.member_offsets[f + 1]]
        current = points[members] - fields.centres[f]
        for t, num in enumerate(counts):
            sampled = fps(current, num) if len(current) > num else current[np.arange(num) % len(current)]
            tree = cKDTree(current)
            tree.query(sampled, k=down[t])
            sampled_tree = cKDTree(sampled)
            sampled_tree.query(current, k=up[t])
            sampled_tree.query(sampled, k=pwise[t])
            current = sampled
    return time.perf_counter() - start


def vectorised(points, radius):
    from pointseq.pointclouds.field_encoders import encoder_from_spec
    from pointseq.pointclouds.receptive_fields import CoveringFieldSampler

    start = time.perf_counter()
    sampler = CoveringFieldSampler(DEPTHS["num_points_per_depth"][0], {"type": "sphere", "radius": radius,
                                                                        "separation_factor": 1.0})
    fields = sampler(points)
    cut = time.perf_counter() - start
    encoder = encoder_from_spec({"type": "hierarchical_fps", **DEPTHS})
    encoder.bind(sampler)
    encoder.encode(points, fields, None)
    return fields, cut, time.perf_counter() - start


def kpconv_throughput(args) -> dict:
    import keras

    from pointseq.pointclouds.field_encoders import encoder_from_spec
    from pointseq.pointclouds.propagation import propagate
    from pointseq.pointclouds.receptive_fields import CoveringFieldSampler
    from pointseq.sequencers.models.kpconv_model import kpconv_model_for_encoder

    points_per_depth = [int(v) for v in args.model_points.split(",")]
    spec = {"type": "hierarchical_fps", "num_points_per_depth": points_per_depth,
            "num_pwise_neighbors": [16, 16, 8][:len(points_per_depth)],
            "num_downsampling_neighbors": [1, 8, 8][:len(points_per_depth)],
            "num_upsampling_neighbors": [1] * len(points_per_depth)}
    tile = synthetic_tile(args.predict_points, seed=1)
    start = time.perf_counter()
    sampler = CoveringFieldSampler(points_per_depth[0], {"type": "sphere", "radius": args.model_radius,
                                                         "separation_factor": 1.0})
    encoder = encoder_from_spec(spec)
    encoder.bind(sampler)
    fields = sampler(tile)
    samples = encoder.encode(tile, fields, None)
    encode_s = time.perf_counter() - start
    model = kpconv_model_for_encoder(encoder, 0, 3, width=args.width)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    batch = {k: v[:args.batch] for k, v in encoder.inputs(samples).items()}
    labels = np.zeros((args.batch, points_per_depth[0]), dtype=np.int32)
    model.train_on_batch(batch, labels)
    start = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(batch, labels)
    train_fields_s = args.steps * args.batch / (time.perf_counter() - start)
    model.predict(encoder.inputs(samples), batch_size=32, verbose=0)  # warm-up (compile)
    start = time.perf_counter()
    fields = sampler(tile)
    samples = encoder.encode(tile, fields, None)
    propagate(fields, encoder.to_points(model.predict(encoder.inputs(samples), batch_size=32, verbose=0), samples))
    predict_s = time.perf_counter() - start
    return {"backend": keras.backend.backend(), "model_points_per_depth": points_per_depth, "width": args.width,
            "train_fields_per_s": round(train_fields_s, 1), "predict_tile_points": args.predict_points,
            "predict_points_per_s": round(args.predict_points / predict_s), "predict_encode_s": round(encode_s, 2),
            "predict_total_s": round(predict_s, 2), "fields": len(fields)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--radius", type=float, default=5.0)
    parser.add_argument("--loop-fields", type=int, default=400, help="fields timed in the loop (scaled to all)")
    parser.add_argument("--model-points", default="256,64,16")
    parser.add_argument("--model-radius", type=float, default=15.0)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--predict-points", type=int, default=200_000)
    parser.add_argument("--skip-model", action="store_true")
    args = parser.parse_args()
    points = synthetic_tile(args.points)
    fields, cut_s, ours_s = vectorised(points, args.radius)
    name, fps = fps_kernel()
    sample = np.linspace(0, len(fields) - 1, min(args.loop_fields, len(fields))).astype(np.int64)
    from dataclasses import replace

    subset = replace(fields, centres=fields.centres[sample],
                     member_offsets=np.concatenate([[0], np.cumsum(np.diff(fields.member_offsets)[sample])]),
                     member_indices=np.concatenate([fields.member_indices[fields.member_offsets[f]:
                                                                          fields.member_offsets[f + 1]] for f in sample]))
    loop_s = per_field_loop(points, subset, fps) * len(fields) / len(sample)
    result = {"points": args.points, "fields": len(fields), **DEPTHS, "fps_kernel": name,
              "vectorised_s": round(ours_s, 2), "vectorised_cut_s": round(cut_s, 2),
              "loop_s_scaled": round(loop_s, 2), "loop_fields_timed": len(sample),
              "speedup": round(loop_s / ours_s, 2)}
    if not args.skip_model:
        result["kpconv"] = kpconv_throughput(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
