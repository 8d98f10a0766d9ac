"""KPConv on a real LiDAR tile, split spatially: train on the west part, score the held-out east.

Covering fields (`sampler_from_spec`) + the ``hierarchical_fps`` encoder + `build_kpconv_model`;
the held-out part is cut into covering fields, predicted and propagated to every point
(`propagation.propagate`). Prints one JSON line: settings, per-class IoU, mean IoU, seconds.

    python benchmarks/kpconv_real_tile.py --tile autzen_trim.laz --radius 10 --updates 300

The kept points' own IoU (before propagation) is printed too: on autzen, propagating from
fewer kept points than the neighbourhood holds costs more than the model's errors.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

DATA = "/work/data/laspy-2.7.0/tests/data"
FEET = 0.3048
IGNORED_CODES = (7, 18)  # ASPRS low and high noise


def read_tile(path: str, feet: bool):
    """Points (metres, float64), features (intensity, return ratio, returns), ASPRS codes."""
    import laspy

    las = laspy.read(path)
    xyz = np.column_stack([las.x, las.y, las.z]).astype(np.float64) * (FEET if feet else 1.0)
    returns = np.maximum(np.asarray(las.number_of_returns, dtype=np.float64), 1.0)
    intensity = np.asarray(las.intensity, dtype=np.float64)
    features = np.column_stack([intensity / max(1.0, np.percentile(intensity, 99)),
                                np.asarray(las.return_number) / returns, (returns - 1.0) / 3.0])
    return xyz, features.astype(np.float32), np.asarray(las.classification).astype(np.int64)


def class_ids(codes: np.ndarray):
    """Codes -> dense class ids; ignored codes -> num_classes."""
    kept = np.unique(codes[~np.isin(codes, IGNORED_CODES)])
    table = np.full(256, kept.size, dtype=np.int64)
    table[kept] = np.arange(kept.size)
    return table[codes], [int(c) for c in kept]


def encode(sampler, encoder, xyz, features, labels, rng):
    fields = sampler(xyz, rng, labels)
    return fields, encoder.encode(xyz, fields, features)


def train(args, sampler, encoder, samples, num_features, num_classes):
    import keras

    from pointseq.augment import Augmentor
    from pointseq.sequencers import Sequencer
    from pointseq.sequencers.models.kpconv_model import kpconv_model_for_encoder
    from pointseq.sequencers.models.losses import WeightedSparseCrossEntropy

    keras.utils.set_random_seed(args.seed)
    model = kpconv_model_for_encoder(encoder, num_features, num_classes, width=args.width,
                                     radius_factor=args.radius_factor)
    counts = np.bincount(samples["labels"].ravel(), minlength=num_classes + 1)[:num_classes]
    weights = (counts.sum() / np.maximum(counts, 1) / num_classes) ** 0.5 if args.balance else np.ones(num_classes)
    model.compile(keras.optimizers.Adam(args.lr), WeightedSparseCrossEntropy(list(weights), ignore_label=num_classes))
    augmentor = Augmentor.from_spec({"transformations": [
        {"type": "Rotation", "axis": [0, 0, 1], "angle": {"type": "uniform", "start": -3.1416, "end": 3.1416}},
        {"type": "Scale", "factor": {"type": "uniform", "start": 0.9, "end": 1.1}}]})
    seq = Sequencer(encoder.inputs(samples), samples["labels"], args.batch, augmentor=augmentor,
                    augment_inputs=encoder.coordinate_names(), shuffle=True, seed=args.seed)
    epochs = max(1, int(np.ceil(args.updates / len(seq))))
    start = time.perf_counter()
    model.fit(seq, epochs=epochs, steps_per_epoch=min(len(seq), args.updates), verbose=0)
    return model, time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", default="autzen_trim.laz")
    parser.add_argument("--feet", type=int, default=1, help="coordinates in US feet (autzen)")
    parser.add_argument("--radius", type=float, default=10.0, help="field radius, metres")
    parser.add_argument("--separation", type=float, default=0.7, help="training fields' separation factor")
    parser.add_argument("--points", default="512,128,32", help="points per depth")
    parser.add_argument("--encoding-neighbors", type=int, default=1, help="kept points each point reads back")
    parser.add_argument("--pwise", default="16,16,8")
    parser.add_argument("--down", default="1,8,8")
    parser.add_argument("--up", default="1,1,1")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--radius-factor", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--balance", type=int, default=1, help="sqrt inverse-frequency class weights")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from pointseq.pointclouds.field_encoders import encoder_from_spec
    from pointseq.pointclouds.metrics import classification_metrics
    from pointseq.pointclouds.propagation import propagate
    from pointseq.pointclouds.receptive_fields import sampler_from_spec

    def ints(text: str) -> list[int]:
        return [int(v) for v in text.split(",")]

    points = ints(args.points)
    xyz, features, codes = read_tile(os.path.join(DATA, args.tile), bool(args.feet))
    labels, kept_codes = class_ids(codes)
    num_classes = len(kept_codes)
    west = xyz[:, 0] < np.quantile(xyz[:, 0], 0.6)
    hood = {"type": "sphere", "radius": args.radius, "separation_factor": args.separation}
    spec = {"type": "hierarchical_fps", "num_points_per_depth": points, "num_pwise_neighbors": ints(args.pwise),
            "num_downsampling_neighbors": ints(args.down), "num_upsampling_neighbors": ints(args.up)}
    rng = np.random.default_rng(args.seed)
    common = {"type": "CoveringFieldSampler", "num_points": points[0], "num_encoding_neighbors": args.encoding_neighbors}
    train_sampler = sampler_from_spec({**common, "neighborhood": hood})
    encoder = encoder_from_spec(spec)
    encoder.bind(train_sampler)
    start = time.perf_counter()
    _, samples = encode(train_sampler, encoder, xyz[west], features[west], labels[west], rng)
    encode_s = time.perf_counter() - start
    model, train_s = train(args, train_sampler, encoder, samples, features.shape[1], num_classes)

    test_sampler = sampler_from_spec({**common, "neighborhood": {**hood, "separation_factor": 1.0}})
    fields, test = encode(test_sampler, encoder, xyz[~west], features[~west], labels[~west], rng)
    start = time.perf_counter()
    probabilities = model.predict(encoder.inputs(test), batch_size=32, verbose=0)
    predicted = propagate(fields, encoder.to_points(probabilities, test)).argmax(axis=1)
    predict_s = time.perf_counter() - start
    metrics = classification_metrics(labels[~west], predicted, num_classes + 1, ignored=[num_classes])
    kept = classification_metrics(test["labels"].ravel(), probabilities.argmax(-1).ravel(), num_classes + 1,
                                  ignored=[num_classes])  # the fields' kept points, before propagation
    result = {"tile": args.tile, **{k: v for k, v in vars(args).items() if k != "tile"},
              "classes": kept_codes, "train_fields": int(len(samples["labels"])),
              "iou": [round(float(v), 4) for v in metrics.iou[:num_classes]],
              "mean_iou": round(float(np.nanmean(metrics.iou[:num_classes])), 4),
              "overall_accuracy": round(float(metrics.overall_accuracy), 4),
              "kept_points_iou": [round(float(v), 4) for v in kept.iou[:num_classes]],
              "majority_share": round(float(np.bincount(labels[~west]).max() / (~west).sum()), 4),
              "encode_s": round(encode_s, 1), "train_s": round(train_s, 1), "predict_s": round(predict_s, 1)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
