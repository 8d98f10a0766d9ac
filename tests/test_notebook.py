"""The quickstart notebook runs top to bottom (small settings)."""

import os

import nbformat
from nbclient import NotebookClient

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "quickstart.ipynb")


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("POINTSEQ_QUICKSTART_EPOCHS", "2")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel plots inline
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(
        o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    )
    assert "held-out point accuracy" in outputs
    assert "num_batches" in outputs
    images = [o for cell in nb.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the augmented-sample plot produced no image"
    accuracy = float(outputs.split("held-out point accuracy: ")[1].split()[0])
    assert 0.0 <= accuracy <= 1.0
