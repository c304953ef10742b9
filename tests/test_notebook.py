"""The example notebook runs headless from a fresh kernel (so it can never rot) and is committed without outputs.

Running it takes about a minute and repeats what the API tests check, so it is marked ``slow``: ``nox -s notebooks``
(which CI runs) executes this file whole, ``nox -s tests`` only the output check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "compare_detectors.ipynb"


def test_notebook_is_committed_without_outputs() -> None:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code, "the notebook has no code"
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, "strip the outputs before committing"
    assert "widgets" not in notebook["metadata"]


@pytest.mark.slow
def test_notebook_runs_headless(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient")  # a dev extra: installed in CI
    nbformat = pytest.importorskip("nbformat")
    monkeypatch.setenv("DETBENCH_HOME", str(tmp_path / "home"))  # the kernel inherits the environment
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the leaderboard and the robustness curve
    runs = [json.loads(p.read_text()) for p in (tmp_path / "home" / "runs" / "demo").glob("*/*/run.json")]
    labels = {(r["label"], (r["perturbation"] or {}).get("spec", "clean")) for r in runs}
    assert {("linear-probe", "clean"), ("mpft", "clean"), ("external:highpass", "clean"),
            ("external:highpass", "jpeg:50"), ("linear-probe", "jpeg:50")} <= labels
    exported = (tmp_path / "compare_detectors_files" / "exported_scores.csv").read_text().splitlines()
    assert exported[0].startswith("filename,linear-probe@") and len(exported) == 5
