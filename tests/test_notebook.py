"""The walkthrough notebook executes headless with tiny settings, so it cannot rot; its outputs
are cleared in git."""

import os

import pytest

NB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks",
                  "walkthrough.ipynb")


def test_notebook_outputs_are_cleared_in_git():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NB, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("LRF_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # the kernel's temporary folders (the walkthrough's export folder among them) go under
    # pytest's folder, not /tmp
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    nb = nbformat.read(NB, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()   # raises CellExecutionError, naming the cell, on any failure
    assert list(scratch.glob("lrf-walkthrough-*")), "the notebook's work folder is not in TMPDIR"
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.outputs if o.get("output_type") == "stream")
    assert "runtime fp32 vs PyTorch reference" in text and "int8 vs fp32 image PSNR" in text
    fp32_psnr = float(text.split("turbo 4 steps: ")[1].split(" dB")[0].replace("inf", "1e9"))
    assert fp32_psnr >= 40.0
