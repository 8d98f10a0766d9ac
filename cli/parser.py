"""The ``pointseq`` argument parser: every subcommand's arguments, and nothing heavy.

Each subcommand names the function that runs it as ``"module:function"``; `main` imports
that module only after parsing, so ``--help``, ``--version`` and usage errors answer
without importing Keras or TensorFlow.
"""

from __future__ import annotations

import argparse

from pointseq import __version__


def _demo(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo", help="train, predict and evaluate the dense and shadow models on synthetic LiDAR tiles")
    parser.add_argument("--output", default="demo_output",
                        help="folder for the tiles, train specs, models, predictions and evaluations")
    parser.add_argument("--tiles", type=int, default=5, help="synthetic tiles, the last held out (default 5)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs per model (default: the recipe's, 6 dense)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic tiles (default 0)")
    parser.add_argument("--models", default="pointnet,shadow",
                        help="comma-separated model types to run (default pointnet,shadow)")
    parser.add_argument("--quiet", action="store_true", help="print only the final figures")
    parser.set_defaults(run="pointseq.cli.demo:run")


def _cluster_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """``--workers N`` (a local Dask cluster) or ``--scheduler ADDRESS`` (an existing one)."""
    parser.add_argument("--workers", type=int, default=None,
                        help=f"{what} on a local Dask cluster of N worker processes (pointseq[distributed])")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help=f"{what} on an existing Dask cluster, e.g. tcp://10.0.0.1:8786")


def _cache(commands: argparse._SubParsersAction) -> None:
    cache = commands.add_parser("cache", help="build, inspect and verify offline cache files")
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build the cache a spec file describes")
    build.add_argument("spec", help="JSON spec: {'sequencer': {...}, 'data': {'X': ..., 'y': ...}}")
    build.add_argument("--force", action="store_true", help="rebuild even when a valid cache exists")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    _cluster_flags(build, "build a sharded cache (offline_storage names its folder)")
    build.add_argument("--shards", type=int, default=None,
                       help="shard files of a sharded build (default: one per worker)")
    build.set_defaults(run="pointseq.cli.cache:run_build")
    info = actions.add_parser("info", help="counts, shapes, dtypes, sizes and config of a cache")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(run="pointseq.cli.cache:run_info")
    verify = actions.add_parser("verify", help="read every chunk and check checksums and offsets")
    verify.add_argument("file")
    _cluster_flags(verify, "verify the shards of a sharded cache")
    verify.set_defaults(run="pointseq.cli.cache:run_verify")


def _train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="train a model on your data from a JSON spec")
    parser.add_argument("spec", help="train spec JSON (see the docs)")
    parser.add_argument("--restart", action="store_true",
                        help="start afresh in an output folder that holds a run (default: resume it)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="print the data-wait profiler's figures on every epoch line (report.json has them anyway)")
    parser.set_defaults(run="pointseq.cli.train:run")


def _codes(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integer class codes, got {text!r}") from None


def _predict(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("predict", help="classify every point of whole tiles with a trained model")
    parser.add_argument("train_output", metavar="TRAIN_OUTPUT_DIR", help="the output folder of pointseq train")
    parser.add_argument("inputs", metavar="INPUT", nargs="+", help="point-cloud files (LAS/LAZ, PLY, text, npy)")
    parser.add_argument("--output", required=True, help="folder for the classified LAS/LAZ files")
    parser.add_argument("--write-classification", action="store_true",
                        help="also write the predicted codes into the classification dimension")
    parser.add_argument("--probabilities", action="store_true", help="add one prob_<class> dimension per class")
    parser.add_argument("--batch-size", type=int, default=16, help="fields per prediction batch (default 16)")
    parser.add_argument("--block-points", type=int, default=None, metavar="N",
                        help="cut tiles of more than N points into xy blocks of about N points each, with the "
                             "same result as the whole tile (bounds memory; default 2000000)")
    parser.add_argument("--preview", action="store_true",
                        help="also write <name>_preview.png: the tile from above in its predicted classes")
    parser.add_argument("--allow-unit-mismatch", action="store_true",
                        help="predict a tile whose CRS states another coordinate unit than the training files' "
                             "(default: refuse it; fields and features would be cut at the wrong size)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run="pointseq.cli.predict:run")


def _evaluate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="OA, per-class P/R/F1/IoU, mIoU and confusion matrix of predictions")
    parser.add_argument("files", metavar="FILE", nargs="+", help="point-cloud files with reference and prediction")
    parser.add_argument("--reference-dimension", default="classification")
    parser.add_argument("--prediction-dimension", default="prediction")
    parser.add_argument("--classes", metavar="TRAIN_OUTPUT_DIR", help="use the class map of a training output")
    parser.add_argument("--ignore", type=_codes, default=[], metavar="CODES",
                        help="comma-separated codes left out of the figures (e.g. 7,18)")
    parser.add_argument("--output", default="evaluation", help="folder for evaluation.json, confusion_matrix.png and <name>_errors.png per file")
    parser.set_defaults(run="pointseq.cli.evaluate:run")


SUBCOMMANDS = (_demo, _cache, _train, _predict, _evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pointseq",
        description="Point-cloud data for Keras: the demo, offline caches, training, prediction and evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"pointseq {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's own log lines (silenced by default)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(commands)
    return parser
