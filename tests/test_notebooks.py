"""The three notebooks run top to bottom (on a tiny comparison), as CI executes them."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

from keras_focal.training.comparison import CompareConfig, compare

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")


@pytest.fixture(scope="module")
def tiny_results(prepared_trus, tmp_path_factory):
    """A comparison made as a user makes one: from another working directory, with relative paths.

    The notebooks then read it from theirs (notebooks/), as they would read
    a comparison made anywhere else.
    """
    workdir = tmp_path_factory.mktemp("elsewhere")
    previous = os.getcwd()
    os.chdir(workdir)
    try:
        config = CompareConfig(
            data=os.path.relpath(prepared_trus), out="cmp", models=["unet"], losses=["ce", "adfl"], optimizers=["adam"],
            folds=[0], seeds=[0], run_options={"epochs": 1, "model_options": {"base_filters": 4, "depth": 2}},
        )
        compare(config, verbose=0, log=lambda line: None)
    finally:
        os.chdir(previous)
    return str(workdir / "cmp")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["01_focal_loss_stability.ipynb", "02_compare_losses.ipynb", "03_qualitative.ipynb"])
def test_notebook_runs(name, tiny_results, monkeypatch):
    monkeypatch.setenv("KERAS_FOCAL_RESULTS", tiny_results)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}).execute()
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
