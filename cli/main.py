"""The ``pointseq`` command: parse first, then import only the subcommand that runs.

Exit status: 0 success, 1 a faulty or foreign cache, 2 a usage error or unreadable input
(one line on stderr), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from typing import Callable, Iterator, Sequence

from pointseq.cli.parser import build_parser
from pointseq.cli.usage_error import UsageError, is_storage_error, one_line


@contextlib.contextmanager
def native_stderr_quiet(quiet: bool = True) -> Iterator[None]:
    """Hide what C++ code writes to the stderr file descriptor in the block: the log lines
    TensorFlow writes while it loads (absl logs them before any setting applies), its later
    error lines too (cuInit on a machine without a GPU); real failures still raise Python
    exceptions. Wrap the imports that load Keras in it."""
    if not quiet:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _load(target: str, quiet: bool) -> Callable[[argparse.Namespace], int]:
    """Import the subcommand's module (``quiet``: `native_stderr_quiet`)."""
    module, _, function = target.partition(":")
    with native_stderr_quiet(quiet):
        loaded = importlib.import_module(module)
    return getattr(loaded, function)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pointseq``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on usage errors, --help and --version
        return int(exc.code or 0)
    try:
        return int(_load(args.run, quiet=not args.verbose)(args))
    except UsageError as exc:
        print(f"pointseq {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\npointseq {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as exc:
        if is_storage_error(exc):
            print(f"pointseq {args.command}: {exc}", file=sys.stderr)
            return 1
        # The library's errors on the user's inputs (a bad spec value, an unreadable file): one line.
        print(f"pointseq {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
