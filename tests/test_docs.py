"""Every ```python block of README.md and docs/**/*.md runs: a renamed argument breaks the
build, not the user.

A page's blocks run in order in one namespace (a later block uses what an earlier one made),
in a fresh folder holding the files the docs name: ``a.laz``, ``b.laz``, ``c.laz`` (classified
training and validation tiles) and ``new.laz`` (a tile to classify), small synthetic tiles.
Training is shortened to a few updates (the recipe's training length is the only thing
changed: the blocks run as written). Shell and JSON examples use other fences and are not run.
"""

import glob
import os
import shutil
import traceback

import pytest

from pointseq.pointclouds import field_encoders
from pointseq.tiles import MODEL_TYPES
from pointseq.tiles.synthetic import make_tiles, write_tiles
from test_layout import python_blocks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
DOCUMENTED_FILES = ("a.laz", "b.laz", "c.laz", "new.laz")
SHORT_TRAINING = {"updates": 4, "epochs": 1}


def page_blocks(path):
    with open(path, encoding="utf-8") as f:
        return python_blocks(f.read())


PAGES_WITH_CODE = [p for p in PAGES if page_blocks(p)]


@pytest.fixture(scope="module")
def documented_tiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("documented_tiles")
    written = write_tiles(str(folder), make_tiles(len(DOCUMENTED_FILES), seed=5, size=30.0, density=4.0))
    for source, name in zip(written, DOCUMENTED_FILES):
        os.replace(source, folder / name)
    return folder


@pytest.fixture
def short_training(monkeypatch):
    """The recipe's training length cut to a few updates; model types and encoders a page
    registers are removed afterwards."""
    for entry in MODEL_TYPES.values():
        for key, value in SHORT_TRAINING.items():
            monkeypatch.setitem(entry.defaults, key, value)
    types, encoders = dict(MODEL_TYPES), dict(field_encoders.ENCODERS)
    yield
    MODEL_TYPES.clear()
    MODEL_TYPES.update(types)
    field_encoders.ENCODERS.clear()
    field_encoders.ENCODERS.update(encoders)


def test_the_readme_and_the_getting_started_page_have_code_that_runs():
    names = [os.path.relpath(p, ROOT) for p in PAGES_WITH_CODE]
    assert "README.md" in names and os.path.join("docs", "index.md") in names
    assert len(page_blocks(os.path.join(ROOT, "docs", "index.md"))) >= 4


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: os.path.relpath(p, ROOT))
def test_page_code_runs(page, documented_tiles, short_training, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    for name in DOCUMENTED_FILES:
        shutil.copyfile(documented_tiles / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for k, block in enumerate(page_blocks(page)):
        try:
            exec(compile(block, f"{os.path.relpath(page, ROOT)} block {k}", "exec"), namespace)
        except Exception:  # noqa: BLE001 - any error of a documented example fails, shown with its block
            pytest.fail(f"{os.path.relpath(page, ROOT)}, Python block {k} raised:\n{block}\n\n{traceback.format_exc()}")


def test_only_python_fences_are_collected(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n```python\nx = 1\n```\n\n```bash\nnot python\n```\n```json\n{}\n```\n```python\nx.no_such\n```\n")
    assert page_blocks(page) == ["x = 1", "x.no_such"]


def test_the_benchmarks_page_is_generated_from_results_json():
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("benchmarks_hook", os.path.join(ROOT, "docs", "hooks", "benchmarks.py"))
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    with open(hook.RESULTS, encoding="utf-8") as f:
        results = json.load(f)
    page = hook.on_page_markdown(f"intro\n\n{hook.MARKER}\n\nafter", page=None)
    assert hook.MARKER not in page and page.startswith("intro") and page.endswith("after")
    assert "| key | value |" not in page, "a benchmark of results.json has no rows in docs/hooks/benchmarks.py"
    assert page.count("\n## ") == len(results["benchmarks"])
    assert f"{results['benchmarks']['bench_augment']['speedup_vs_loop']:.2f}x" in page
    changed = {**results, "benchmarks": {"bench_new": {"ratio": 1.5}}}
    assert "| ratio | 1.5 |" in hook.benchmark_markdown(changed)  # an unknown benchmark shows its numbers
