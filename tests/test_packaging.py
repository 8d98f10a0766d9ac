"""The distribution ships every package and subpackage the code imports."""

import os
import tomllib

from setuptools import find_packages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_package_directory_is_installed():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        config = tomllib.load(f)
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = set(find_packages(ROOT, include=include))
    on_disk = {
        os.path.relpath(folder, ROOT).replace(os.sep, ".")
        for top in ("augment", "sequencers", "offline")
        for folder, _, files in os.walk(os.path.join(ROOT, top))
        if "__init__.py" in files
    }
    assert "sequencers.callbacks" in on_disk
    assert shipped == on_disk
