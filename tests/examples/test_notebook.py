"""The example notebook runs headless, top to bottom, on a LocalCluster."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]


def test_analyses_notebook_executes(cache_home, tmp_path, monkeypatch):
    notebook = nbformat.read(REPO / "examples" / "analyses.ipynb", as_version=4)
    # run in an empty folder so the notebook captures its own tiny stores (no stores/ there)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 7  # histogram, heatmap, PCA, PCK, J&F, co-segmentation, cosine curves
