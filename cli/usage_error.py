"""UsageError: a ``pointseq`` command called wrongly (exit status 2)."""


class UsageError(Exception):
    """A command was called wrongly; ``pointseq`` reports it with exit status 2.

    Its own module, so that ``python -m pointseq.cli.main`` and the console script raise and
    catch the same class.
    """
