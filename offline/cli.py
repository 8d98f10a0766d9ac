"""The ``pointseq`` command line: subcommands registered by modules.

Each module in ``COMMAND_MODULES`` that exists provides ``register(subparsers)``, which
adds its subcommand and sets ``func(args) -> int`` as the parser default. A module that
is not installed is skipped, so its command does not appear.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from offline.usage_error import UsageError

COMMAND_MODULES = ("offline.cache_cli", "offline.demo", "offline.train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pointseq", description="Point-cloud sequencers for Keras: offline cache tools."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pointseq``; returns the exit status (0 ok, 1 failure, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on usage errors and --help
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"pointseq {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
