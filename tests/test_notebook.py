"""The quickstart notebook runs top to bottom and its model learns: held-out mean IoU clearly
above always predicting the majority class."""

import os
import re

import nbformat
from nbclient import NotebookClient

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "quickstart.ipynb")
MARGIN = 0.2  # over the majority-class baseline's mean IoU


def test_quickstart_notebook_runs_and_learns(tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel plots inline
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "saved without outputs"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(
        o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    )
    found = re.search(r"held-out mean IoU: ([0-9.]+) \(majority-class baseline ([0-9.]+)\)", outputs)
    assert found, outputs[-2000:]
    mean_iou, baseline = float(found.group(1)), float(found.group(2))
    assert mean_iou > baseline + MARGIN
    images = [o for cell in nb.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 4  # the augmented field, the top-down comparison, the confusion matrix, the preview
    assert "building a batch took" in outputs  # the profiler's report
    sources = "".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert re.findall(r"^from (\S+) import", sources, re.M) and all(
        m.startswith("pointseq") or m in ("matplotlib.pyplot", "IPython.display") for m in re.findall(r"^from (\S+) import", sources, re.M))
