"""``pointseq predict TRAIN_OUTPUT_DIR INPUT... --output DIR``: classify every point of whole tiles.

Each input goes through `pointseq.tiles.prediction.predict_file` (covering fields, the model
type's encoder, propagation back to every point) into ``DIR/<input name>`` (LAS/LAZ; other
inputs become ``.laz``); ``--preview`` adds ``DIR/<input stem>_preview.png``, the tile from
above in its predicted classes. The output folder is created when the first output is written (after
its input was read and predicted), so a call that fails on its inputs or on the training
output leaves no folder behind.
"""

from __future__ import annotations

import argparse
import os

from pointseq.cli.usage_error import UsageError, inputs_as_usage_errors


def _check_output_folder(folder: str, inputs: list[str]) -> list[str]:
    """The output paths; UsageError when the folder is a file or outputs would collide."""
    from pointseq.tiles.prediction import output_path

    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"--output {folder!r} is a file, expected a folder")
    targets = [output_path(folder, p) for p in inputs]
    clash = [p for p, t in zip(inputs, targets) if os.path.abspath(t) == os.path.abspath(p)]
    if clash:
        raise UsageError(f"--output {folder!r} would overwrite the inputs {clash}; choose another folder")
    if len(set(targets)) != len(targets):
        raise UsageError(f"inputs {inputs} share file names, so their outputs in {folder!r} would collide")
    return targets


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.block_points is not None and args.block_points < 1:
        raise UsageError(f"--block-points must be >= 1 (points per spatial block), got {args.block_points}")
    missing = [p for p in args.inputs if not os.path.isfile(p)]
    if missing:
        raise UsageError(f"inputs do not exist: {missing}")
    from pointseq.cli.main import native_stderr_quiet

    with native_stderr_quiet(not args.verbose):  # Keras loads now, after the arguments were checked
        from pointseq.pointclouds.blocks import DEFAULT_BLOCK_POINTS
        from pointseq.tiles.pipeline import load_training_output
        from pointseq.tiles.prediction import predict_file, preview_path

    targets = _check_output_folder(args.output, args.inputs)
    with inputs_as_usage_errors(f"training output {args.train_output!r}"):
        model, pipeline = load_training_output(args.train_output)
    for path, target in zip(args.inputs, targets):
        if not args.quiet:
            print(f"{path}:")
        with inputs_as_usage_errors(f"input {path!r}"):
            _, codes, _ = predict_file(model, pipeline, path, target, probabilities=args.probabilities,
                                       write_classification=args.write_classification, batch_size=args.batch_size,
                                       block_points=args.block_points or DEFAULT_BLOCK_POINTS,
                                       progress=not args.quiet, allow_unit_mismatch=args.allow_unit_mismatch,
                                       preview=args.preview)
        print(f"wrote {target} ({len(codes)} points)")
        if args.preview:
            print(f"wrote {preview_path(target)}")
    return 0
