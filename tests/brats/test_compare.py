"""Method comparison: run discovery, per-case tables, best/median/worst picks and the figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from brats.compare import (
    find_runs,
    load_metrics,
    per_case_scores,
    pick_cases,
    plot_overlays,
    plot_pairwise_scatter,
    plot_region_boxplots,
    prediction_paths,
)
from brats.data.layouts import discover
from brats.errors import BratsInputError
from brats.submission import write_submission
from tests.conftest import make_arrays, write_tiny_dataset


def table(scores: dict[str, float], hd95: float = 5.0) -> pd.DataFrame:
    """Long metrics table: WT Dice from ``scores`` (case → Dice), TC = WT − 0.1, ET = WT − 0.2."""
    return pd.DataFrame([{"case": case, "region": region, "dice": value - shift, "hd95": hd95,
                          "sensitivity": 1.0}
                         for case, value in scores.items()
                         for region, shift in (("WT", 0.0), ("TC", 0.1), ("ET", 0.2))])


@pytest.fixture()
def tables() -> dict[str, pd.DataFrame]:
    return {"A": table({"c1": 0.9, "c2": 0.5, "c3": 0.7, "c4": 0.8}),
            "B": table({"c1": 0.6, "c2": 0.8, "c3": 0.7, "c4": 0.85}, hd95=3.0)}


def test_find_runs_and_load_metrics(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> None:
    for name in ("wang2017", "isensee2017"):
        (tmp_path / name).mkdir()
        tables["A"].to_csv(tmp_path / name / "cv_metrics.csv", index=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "leaderboard.md").write_text("")
    runs = find_runs(tmp_path)
    assert list(runs) == ["isensee2017", "wang2017"]
    loaded = load_metrics({"dir": runs["wang2017"], "csv": runs["isensee2017"] / "cv_metrics.csv"})
    assert list(loaded) == ["dir", "csv"]
    pd.testing.assert_frame_equal(loaded["dir"].reset_index(drop=True), tables["A"])
    assert prediction_paths(runs, "Brats17_SYN_002_1")["wang2017"] == \
        tmp_path / "wang2017" / "cv_predictions" / "Brats17_SYN_002_1.nii.gz"


def test_find_runs_errors(tmp_path: Path) -> None:
    with pytest.raises(BratsInputError, match="not found"):
        find_runs(tmp_path / "missing")
    (tmp_path / "data").mkdir()
    with pytest.raises(BratsInputError, match="no run found"):
        find_runs(tmp_path)
    with pytest.raises(BratsInputError, match="no runs"):
        load_metrics({})


def test_per_case_scores(tables: dict[str, pd.DataFrame]) -> None:
    scores = per_case_scores(tables)
    assert scores.shape == (4, 6)
    assert scores.index.tolist() == ["c1", "c2", "c3", "c4"]
    assert scores.columns.tolist() == [(m, r) for m in ("A", "B") for r in ("WT", "TC", "ET")]
    assert scores.loc["c2", ("B", "WT")] == pytest.approx(0.8)
    assert scores.loc["c1", ("A", "ET")] == pytest.approx(0.7)
    assert per_case_scores(tables, "hd95")[("B", "TC")].tolist() == [3.0] * 4
    with pytest.raises(BratsInputError, match="no 'volume_pred' column"):
        per_case_scores(tables, "volume_pred")


def test_per_case_scores_missing_case_is_nan(tables: dict[str, pd.DataFrame]) -> None:
    partial = {"A": tables["A"], "C": table({"c1": 0.4})}
    scores = per_case_scores(partial)
    assert scores.shape == (4, 6)
    assert np.isnan(scores.loc["c3", ("C", "WT")])


def test_pick_cases(tables: dict[str, pd.DataFrame]) -> None:
    # A's WT Dice best first: c1 0.9, c4 0.8, c3 0.7, c2 0.5 → median index (4 − 1) // 2 = 1.
    assert pick_cases(tables, "A") == {"best": "c1", "median": "c4", "worst": "c2"}
    assert pick_cases(tables, "B", region="ET") == {"best": "c4", "median": "c2", "worst": "c1"}
    # HD95: lower is better.
    hd = {"A": pd.DataFrame({"case": ["x", "y", "z"], "region": "TC", "dice": 1.0,
                             "hd95": [9.0, 1.0, 4.0]})}
    assert pick_cases(hd, "A", region="TC", metric="hd95") == {"best": "y", "median": "z",
                                                               "worst": "x"}


def test_pick_cases_errors(tables: dict[str, pd.DataFrame]) -> None:
    with pytest.raises(BratsInputError, match="unknown method 'C'"):
        pick_cases(tables, "C")
    with pytest.raises(BratsInputError, match="unknown region"):
        pick_cases(tables, "A", region="NCR")
    with pytest.raises(BratsInputError, match="no best or worst"):
        pick_cases(tables, "A", metric="volume_pred")
    with pytest.raises(BratsInputError, match="no case scored"):
        pick_cases({"A": tables["A"].assign(dice=np.nan)}, "A")


def test_region_boxplots(tables: dict[str, pd.DataFrame]) -> None:
    fig = plot_region_boxplots(tables, "dice")
    assert [ax.get_title() for ax in fig.axes] == ["WT Dice", "TC Dice", "ET Dice"]
    dots = [line for line in fig.axes[0].lines if line.get_marker() == "o"]
    assert [len(line.get_ydata()) for line in dots] == [4, 4]
    assert sorted(dots[1].get_ydata()) == pytest.approx([0.6, 0.7, 0.8, 0.85])
    plt.close(fig)


def test_pairwise_scatter(tables: dict[str, pd.DataFrame]) -> None:
    fig = plot_pairwise_scatter(tables, "A", "B")
    assert len(fig.axes) == 3
    wt = fig.axes[0]
    points = np.asarray(wt.collections[0].get_offsets())
    np.testing.assert_allclose(points, [[0.9, 0.6], [0.5, 0.8], [0.7, 0.7], [0.8, 0.85]])
    assert "A better: 1, B better: 2" in wt.get_title()
    assert wt.get_xlabel() == "A" and wt.get_ylabel() == "B"
    diagonal = wt.lines[0]
    assert list(diagonal.get_xdata()) == list(diagonal.get_ydata())
    plt.close(fig)
    fig = plot_pairwise_scatter(tables, "A", "B", metric="hd95")
    assert "A better: 0, B better: 4" in fig.axes[1].get_title()
    plt.close(fig)
    with pytest.raises(BratsInputError, match="unknown method 'Z'"):
        plot_pairwise_scatter(tables, "A", "Z")


def test_plot_overlays(tmp_path: Path) -> None:
    train = tmp_path / "train"
    write_tiny_dataset(train, "2017", 1)
    case = discover(train)[0]
    _, labels = make_arrays(1)
    perturbed = labels.copy()
    perturbed[perturbed == 1] = 0
    first = write_submission(labels, case.images[0], tmp_path / "a" / f"{case.id}.nii.gz")
    second = write_submission(perturbed, case.images[0], tmp_path / "b" / f"{case.id}.nii.gz")
    fig = plot_overlays(case, {"exact": first, "no core": second})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["FLAIR", "ground truth", "exact (WT Dice 1.00)"]
    assert titles[3].startswith("no core (WT Dice 0.")
    assert [len(ax.images) for ax in fig.axes] == [1, 2, 2, 2]
    assert len(fig.legends[0].get_texts()) == 3
    plt.close(fig)
    fig = plot_overlays(case, {}, slice_index=0, title="t")
    assert len(fig.axes) == 2 and fig._suptitle.get_text() == "t"
    plt.close(fig)
    with pytest.raises(BratsInputError, match="not found"):
        plot_overlays(case, {"missing": tmp_path / "c" / f"{case.id}.nii.gz"})
    with pytest.raises(BratsInputError, match="slice 99"):
        plot_overlays(case, {}, slice_index=99)
    val = tmp_path / "val"
    write_tiny_dataset(val, "2017", 1, with_seg=False)
    with pytest.raises(BratsInputError, match="no ground-truth"):
        plot_overlays(discover(val)[0], {})
