"""The Dask cluster a ``--workers`` or ``--scheduler`` command runs on (``pointseq[distributed]``)."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any, Iterator

from pointseq.cli.usage_error import UsageError

INSTALL_HINT = "pip install 'pointseq[distributed]'"


def wants_cluster(args: argparse.Namespace) -> bool:
    """Whether the command asked for a Dask cluster; checks ``--workers`` and ``--scheduler``."""
    workers, scheduler = getattr(args, "workers", None), getattr(args, "scheduler", None)
    if workers is not None and scheduler is not None:
        raise UsageError(f"give --workers ({workers}) or --scheduler ({scheduler!r}), not both")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    return workers is not None or scheduler is not None


@contextlib.contextmanager
def dask_client(workers: int | None, scheduler: str | None) -> Iterator[Any]:
    """A client of a new local cluster of ``workers`` processes, or of the one at ``scheduler``."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        flag = "--scheduler" if scheduler is not None else "--workers"
        raise UsageError(f"{flag} runs on Dask, which is not installed: {INSTALL_HINT}") from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=30)
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"--scheduler {scheduler!r}: cannot connect ({exc})") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            yield client
