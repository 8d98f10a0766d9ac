"""``pointseq predict TRAIN_OUTPUT_DIR INPUT... --output DIR``: classify every point of whole tiles.

Each input is read in float64, cut into covering fields, predicted a block of fields at a
time through a predict-mode sequencer and propagated back to every point
(`tile_pipeline.predict_cloud`). The output (``DIR/<input name>``, LAS/LAZ; other inputs
become ``.laz``) keeps every point in its order and every dimension of a LAS/LAZ input, and
adds the extra-bytes dimension ``prediction`` (the source class codes), with
``--probabilities`` one ``prob_<class>`` float32 dimension per class, and with
``--write-classification`` the codes in ``classification`` too. Files are written under a
temporary name and renamed, so a failure never leaves half a file.

Memory: the tile's xyz (float64) and the dimensions its features need (a LAS/LAZ input is read
and its output written a chunk of points at a time, `pointclouds.las_stream`), its per-point
probability sums, and the fields of one spatial block: a tile of more than ``--block-points``
points (default 2,000,000) is cut in xy blocks of about that many points, each reading its
neighbours' points within reach of its fields, with exactly the whole tile's fields and result
(`pointclouds.blocks`, README).
"""

from __future__ import annotations

import argparse
import os
import re

import numpy as np

from pointseq.cli.tile_pipeline import load_training_output, predict_cloud
from pointseq.cli.usage_error import UsageError, inputs_as_usage_errors
from pointseq.pointclouds import ClassMap, FeatureSpec, read_point_cloud, write_point_cloud
from pointseq.pointclouds.blocks import DEFAULT_BLOCK_POINTS
from pointseq.pointclouds.las_stream import read_las_columns, write_las_streaming
from pointseq.pointclouds.reading import LAS_SUFFIXES


def output_path(folder: str, source: str) -> str:
    """``folder/<name>``: a LAS/LAZ input keeps its suffix, any other becomes ``.laz``."""
    stem, suffix = os.path.splitext(os.path.basename(source))
    return os.path.join(folder, stem + (suffix if suffix.lower() in LAS_SUFFIXES else ".laz"))


def _output_folder(folder: str, inputs: list[str]) -> None:
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"--output {folder!r} is a file, expected a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--output {folder!r} cannot be created: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--output {folder!r} is not writable")
    targets = [output_path(folder, p) for p in inputs]
    clash = [p for p in inputs if os.path.abspath(output_path(folder, p)) == os.path.abspath(p)]
    if clash:
        raise UsageError(f"--output {folder!r} would overwrite the inputs {clash}; choose another folder")
    if len(set(targets)) != len(targets):
        raise UsageError(f"inputs {inputs} share file names, so their outputs in {folder!r} would collide")


def _probability_names(class_map: ClassMap) -> list[str]:
    return [("prob_" + re.sub(r"[^A-Za-z0-9_]", "_", name))[:32] for name in class_map.names]


def predict_file(model, pipeline: dict, path: str, folder: str, args: argparse.Namespace) -> str:
    """Predict one input and write its output; returns the output path."""
    is_las = os.path.splitext(path)[1].lower() in LAS_SUFFIXES
    with inputs_as_usage_errors(f"input {path!r}"):  # LAS/LAZ: xyz and the features' dimensions only
        needed = FeatureSpec.from_spec(pipeline["features"]).dimensions
        cloud = read_las_columns(path, needed) if is_las else read_point_cloud(path, label=None)
    if not args.quiet:
        print(f"{path}: {len(cloud)} points")
    probabilities = predict_cloud(model, pipeline, cloud, batch_size=args.batch_size, progress=not args.quiet,
                                  block_points=args.block_points or DEFAULT_BLOCK_POINTS)
    class_map = ClassMap.from_config(pipeline["class_map"])
    codes = class_map.to_codes(probabilities.argmax(axis=1))
    extra = {"prediction": codes.astype(np.uint8 if codes.max(initial=0) <= 255 else np.uint16)}
    if args.probabilities:
        extra.update(zip(_probability_names(class_map), probabilities.T))
    target = output_path(folder, path)
    classification = codes if args.write_classification else None
    with inputs_as_usage_errors(f"output {target!r}"):  # a LAS/LAZ source is copied chunk by chunk
        if is_las:
            write_las_streaming(target, path, extra=extra, classification=classification)
        else:
            write_point_cloud(target, cloud, extra=extra, classification=classification)
    return target


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.block_points is not None and args.block_points < 1:
        raise UsageError(f"--block-points must be >= 1 (points per spatial block), got {args.block_points}")
    missing = [p for p in args.inputs if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"inputs do not exist: {missing}")
    _output_folder(args.output, args.inputs)
    model, pipeline = load_training_output(args.train_output)
    for path in args.inputs:
        print(f"wrote {predict_file(model, pipeline, path, args.output, args)}")
    return 0
