"""UsageError: a ``pointseq`` command called wrongly, or on inputs it cannot read (exit 2)."""

from __future__ import annotations

import builtins
import contextlib
import sys
from typing import Iterator


class UsageError(Exception):
    """A command was called wrongly; ``pointseq`` reports it with exit status 2.

    Its own module, so that ``python -m pointseq.cli.main`` and the console script raise and
    catch the same class.
    """


@contextlib.contextmanager
def inputs_as_usage_errors(what: str) -> Iterator[None]:
    """Report a failure to read or check the user's inputs (a bad spec value, an unreadable
    point-cloud file) as a one-line `UsageError` (exit 2). A faulty cache file,
    ``OfflineStorageError``, passes through: it has exit status 1 of its own."""
    try:
        yield
    except UsageError:
        raise
    except Exception as exc:
        if is_storage_error(exc):
            raise
        raise UsageError(f"{what}: {one_line(exc)}") from None


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an ``OfflineStorageError`` (a faulty cache, exit 1). Looked up among
    the loaded modules: an error raised before the cache code loaded cannot be one, and a
    usage error found before Keras loads is answered without loading it."""
    errors = sys.modules.get("pointseq.offline.errors")
    return errors is not None and isinstance(exc, errors.OfflineStorageError)


def one_line(exc: BaseException) -> str:
    """The error's message on one line, prefixed with its type when it is a library's own."""
    cause = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, FileNotFoundError) and exc.filename and exc.strerror:
        cause = f"{exc.strerror}: {exc.filename!r}"
    if getattr(builtins, type(exc).__name__, None) is not type(exc):
        cause = f"{type(exc).__name__}: {cause}"  # a library's own error: name it
    return cause
