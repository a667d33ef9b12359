"""The notebooks are stored without outputs and run end to end on a small demo-like folder."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import numpy as np
import pytest

from brats.data.layouts import discover
from brats.evaluation import evaluate_folder
from brats.submission import submission_name, write_submission
from brats.synth.generator import generate_dataset

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SHAPE = (48, 48, 32)
#: Entry → fraction of tumour voxels its fake predictions drop.
ENTRIES = {"isensee2017": 0.05, "wang2017": 0.3}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the demo writes, without training: synthetic data, and per entry cross-validation
    predictions (the ground truth with some tumour voxels dropped) and their metrics."""
    root = tmp_path_factory.mktemp("demo_output")
    train = root / "data" / "Brats17TrainingData"
    generate_dataset(train, cases=4, seed=3, shape=SHAPE, progress=False)
    generate_dataset(root / "data" / "Brats17ValidationData", cases=1, seed=3, shape=SHAPE,
                     with_seg=False, progress=False)
    rng = np.random.default_rng(0)
    cases = discover(train)
    truths = {case.id: case.load().labels for case in cases}
    for entry, fraction in ENTRIES.items():
        predictions = root / entry / "cv_predictions"
        for case in cases:
            labels = truths[case.id].copy()
            tumour = np.flatnonzero(labels)
            labels.flat[rng.choice(tumour, int(fraction * tumour.size), replace=False)] = 0
            write_submission(labels, case.images[0], predictions / submission_name(case.id))
        metrics = evaluate_folder(predictions, train, progress=False)
        metrics.to_csv(root / entry / "cv_metrics.csv", index=False)
        (root / entry / "cache").mkdir()
    return root


def execute(name: str, demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run a notebook from ``notebooks/`` on ``demo_dir``; returns its cells by id."""
    monkeypatch.setenv("BRATS_DEMO_DIR", str(demo_dir))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return {cell.id: cell for cell in notebook.cells}


def outputs(cell: dict, mime: str) -> list[str]:
    return [out["data"][mime] for out in cell["outputs"] if mime in out.get("data", {})]


@pytest.mark.parametrize("name", ["compare_methods.ipynb", "explore_data.ipynb"])
def test_stored_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_compare_methods_runs(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = execute("compare_methods.ipynb", demo_dir, monkeypatch)
    stdout = "".join(out["text"] for out in cells["setup"]["outputs"] if out.get("name") == "stdout")
    assert "2 method(s): isensee2017, wang2017" in stdout
    board = outputs(cells["leaderboard"], "text/plain")[0]
    assert "rank_score" in board and "Dice_WT" in board
    assert board.index("isensee2017") < board.index("wang2017")  # fewer voxels dropped ranks first
    assert len(outputs(cells["boxplots"], "image/png")) == 2
    assert len(outputs(cells["scatter"], "image/png")) == 1
    assert all(case.id in outputs(cells["scatter"], "text/plain")[0]
               for case in discover(demo_dir / "data" / "Brats17TrainingData"))
    assert len(outputs(cells["overlays"], "image/png")) == 3


def test_explore_data_runs(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = execute("explore_data.ipynb", demo_dir, monkeypatch)
    table = outputs(cells["table"], "text/plain")[0]
    assert "WT_ml" in table and "Brats17_SYN_004_1" in table
    for cell_id in ("volumes", "histograms", "case"):
        assert len(outputs(cells[cell_id], "image/png")) == 1, cell_id
    validation_id = discover(demo_dir / "data" / "Brats17ValidationData")[0].id
    assert validation_id in outputs(cells["validation"], "text/plain")[0]
