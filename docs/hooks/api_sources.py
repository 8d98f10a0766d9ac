"""MkDocs hook: a source tree mkdocstrings can read statically.

The package's folders sit at the top of the repository and install as subpackages of
``pointseq`` (``package-dir`` in pyproject.toml), which griffe's static finder cannot follow.
This hook lays ``build/api_src/pointseq/`` out as the installed package would be, from the
``package-dir`` table itself: copies of the root package's few modules (griffe looks for a
package's submodules beside the real path of its ``__init__.py``) and symbolic links to the
subpackages' folders; mkdocs.yml points mkdocstrings' ``paths`` there.
"""

from __future__ import annotations

import os
import shutil
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TREE = os.path.join(ROOT, "build", "api_src")


def _link(target: str, link: str) -> None:
    if os.path.islink(link) or os.path.exists(link):
        if os.path.islink(link) and os.readlink(link) == target:
            return
        os.remove(link)
    os.symlink(target, link)


def lay_out_sources() -> str:
    """Create (or refresh) the tree; returns its folder."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        package_dir = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    top = os.path.join(TREE, "pointseq")
    os.makedirs(top, exist_ok=True)
    for name in os.listdir(os.path.join(ROOT, package_dir["pointseq"])):
        if name.endswith(".py"):
            target = os.path.join(top, name)
            if os.path.islink(target):
                os.remove(target)
            shutil.copyfile(os.path.join(ROOT, package_dir["pointseq"], name), target)
    for package, folder in package_dir.items():
        if package.count(".") == 1:
            _link(os.path.join(ROOT, folder), os.path.join(top, package.split(".")[1]))
    return TREE


# Laid out when MkDocs loads this hook (while it reads mkdocs.yml), before mkdocstrings
# resolves its ``paths``: a path that does not exist yet would be dropped.
lay_out_sources()
