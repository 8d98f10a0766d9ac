"""Make ``pointseq.offline`` importable without running its ``__init__`` (which loads Keras).

The fault-injection children only need the reader and writer modules; skipping the Keras
import keeps each child start well under a second.
"""

import importlib.util
import sys


def register_offline_package() -> None:
    spec = importlib.util.find_spec("pointseq.offline")
    sys.modules["pointseq.offline"] = importlib.util.module_from_spec(spec)
