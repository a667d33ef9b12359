"""The notebooks are stored without outputs and run end to end on a small demo-like folder, and
on runs and data kept elsewhere (the same inputs `brats compare` takes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbclient
import nbformat
import numpy as np
import pandas as pd
import pytest

from brats.cli import main
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


def execute(name: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    """Run a notebook from ``notebooks/`` with the environment variables ``env`` (the others of
    its parameters cell unset); returns its cells by id."""
    for key in ("BRATS_DEMO_DIR", "BRATS_COMPARE_RUNS", "BRATS_COMPARE_DATA",
                "BRATS_VALIDATION_DATA"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return {cell.id: cell for cell in notebook.cells}


def outputs(cell: dict, mime: str) -> list[str]:
    return [out["data"][mime] for out in cell["outputs"] if mime in out.get("data", {})]


def stdout(cell: dict) -> str:
    return "".join(out["text"] for out in cell["outputs"] if out.get("name") == "stdout")


@pytest.mark.parametrize("name", ["compare_methods.ipynb", "explore_data.ipynb"])
def test_stored_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert code[0].id == "parameters"


def test_compare_methods_runs(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = execute("compare_methods.ipynb", monkeypatch, BRATS_DEMO_DIR=str(demo_dir))
    assert "2 method(s): isensee2017, wang2017" in stdout(cells["setup"])
    board = outputs(cells["leaderboard"], "text/plain")[0]
    assert "rank_score" in board and "Dice_WT" in board
    assert board.index("isensee2017") < board.index("wang2017")  # fewer voxels dropped ranks first
    assert "stability" in outputs(cells["ranking"], "text/plain")[0]
    assert "p_holm" in outputs(cells["tests"], "text/plain")[0]
    reported = outputs(cells["reported"], "text/plain")[0]
    assert "BraTS 2017 validation set" in reported and "BraTS 2017 test set" in reported
    grade, volume, spread = outputs(cells["breakdowns"], "text/plain")
    assert "HGG" in grade and "small" in volume and "spread" in spread
    assert len(outputs(cells["boxplots"], "image/png")) == 2
    assert len(outputs(cells["scatter"], "image/png")) == 1
    assert all(case.id in outputs(cells["scatter"], "text/plain")[-1]
               for case in discover(demo_dir / "data" / "Brats17TrainingData"))
    assert outputs(cells["training"], "image/png") == []  # the fake runs kept no training logs
    assert len(outputs(cells["overlays"], "image/png")) == 3


def test_explore_data_runs(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = execute("explore_data.ipynb", monkeypatch, BRATS_DEMO_DIR=str(demo_dir))
    table = outputs(cells["table"], "text/plain")[0]
    assert "WT_ml" in table and "Brats17_SYN_004_1" in table
    for cell_id in ("volumes", "histograms", "case"):
        assert len(outputs(cells[cell_id], "image/png")) == 1, cell_id
    validation_id = discover(demo_dir / "data" / "Brats17ValidationData")[0].id
    assert validation_id in outputs(cells["validation"], "text/plain")[0]


def test_other_layout_notebooks_and_cli(demo_dir: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs and data far from each other and from any demo folder: the notebooks take them from
    the environment, and `brats compare` writes a report with the same leaderboard."""
    data = tmp_path / "datasets" / "refs"
    shutil.copytree(demo_dir / "data" / "Brats17TrainingData", data)
    mine = tmp_path / "experiments" / "run_a"
    theirs = tmp_path / "other" / "place" / "wang2017"
    shutil.copytree(demo_dir / "isensee2017", mine)
    shutil.copytree(demo_dir / "wang2017", theirs)
    cells = execute("compare_methods.ipynb", monkeypatch, BRATS_DEMO_DIR=str(tmp_path / "none"),
                    BRATS_COMPARE_RUNS=f"mine={mine}:{theirs}", BRATS_COMPARE_DATA=str(data))
    assert "2 method(s): mine, wang2017" in stdout(cells["setup"])
    assert len(outputs(cells["overlays"], "image/png")) == 3
    reported = outputs(cells["reported"], "text/plain")[0]
    assert "wang2017" in reported and "mine" not in reported  # run_a is named mine, no entry
    out = tmp_path / "report"
    assert main(["--no-progress", "compare", f"mine={mine}", str(theirs), "--data", str(data),
                 "--out", str(out), "--boot", "2000"]) == 0
    board = pd.read_csv(out / "tables" / "leaderboard.csv", index_col="method")
    assert board.index.tolist() == ["mine", "wang2017"]
    shown = outputs(cells["leaderboard"], "text/plain")[0]
    assert f"{board.loc['mine', 'Dice_WT']:.3f}" in shown
    means = pd.read_csv(out / "tables" / "mean_ci.csv").set_index(["method", "metric", "region"])
    low, high = means.loc[("wang2017", "dice", "WT"), ["ci_low", "ci_high"]]
    assert low < board.loc["wang2017", "Dice_WT"] < high
    assert f"{low:.3f}" in outputs(cells["means"], "text/plain")[0]  # same seed, same interval
    assert len(list((out / "figures").glob("overlay_*.png"))) == 3
    cells = execute("explore_data.ipynb", monkeypatch, BRATS_DEMO_DIR=str(tmp_path / "none"),
                    BRATS_COMPARE_DATA=str(data))
    assert "Brats17_SYN_004_1" in outputs(cells["table"], "text/plain")[0]
    assert "no validation folder" in stdout(cells["validation"])
