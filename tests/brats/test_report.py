"""``brats compare``: runs of any layout on explicit data, the tables, and the report folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from brats.cli import main
from brats.data.layouts import discover
from brats.errors import BratsInputError
from brats.evaluation import evaluate_folder
from brats.inference.combine import labels_to_probabilities, save_probabilities
from brats.inference.fusion import ensemble_folder
from brats.manifest import write_manifest
from brats.report import (
    breakdown,
    case_grades,
    compare,
    disagreements,
    load_run,
    load_runs,
    notebook_inputs,
    parse_run_args,
    plot_training_curves,
    reported_vs_reproduced,
    training_logs,
    volume_terciles,
    write_report,
)
from brats.stats import mean_ci
from brats.submission import submission_name, write_submission
from tests.conftest import write_tiny_dataset

LOG_COLUMNS = ["epoch", "lr", "train_loss", "val_loss", "dice_WT", "dice_TC", "dice_ET",
               "seconds", "patches_per_s", "data_fraction"]


def degrade(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``labels`` with ``fraction`` of its tumour voxels set to background."""
    out = labels.copy()
    tumour = np.flatnonzero(out)
    out.flat[np.random.default_rng(seed).choice(tumour, int(fraction * tumour.size),
                                                replace=False)] = 0
    return out


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Not the demo layout: references in one place, and elsewhere a reproduce-like run (named
    after an entry, with a training log), a bare prediction folder without metrics, and a
    ``brats ensemble`` of two probability-map folders."""
    root = tmp_path_factory.mktemp("layout")
    data = root / "datasets" / "refs"
    write_tiny_dataset(data, "2017", 4)
    cases = discover(data)
    truth = {c.id: c.load().labels for c in cases}
    entry = root / "results" / "wang2017"
    bare = root / "elsewhere" / "predict_out"
    maps = {name: root / "maps" / name for name in ("good", "poor")}
    for k, case in enumerate(cases):
        write_submission(degrade(truth[case.id], 0.1, k), case.images[0],
                         entry / "cv_predictions" / submission_name(case.id))
        write_submission(degrade(truth[case.id], 0.4, k), case.images[0],
                         bare / submission_name(case.id))
        shape = truth[case.id].shape
        for name, fraction in (("good", 0.05), ("poor", 0.6)):
            save_probabilities(maps[name] / f"{case.id}_probabilities.npz",
                               labels_to_probabilities(degrade(truth[case.id], fraction, k)),
                               {"case_id": case.id, "box": [(0, n) for n in shape]})
    evaluate_folder(entry / "cv_predictions", data, progress=False).to_csv(
        entry / "cv_metrics.csv", index=False)
    log = entry / "runs" / "wnet_axial" / "fold0"
    log.mkdir(parents=True)
    pd.DataFrame([[e, 0.01 * 0.5 ** e, 1.0 / (e + 1), 1.2 / (e + 1), 0.5 + 0.1 * e, 0.4, 0.3,
                   1.0, 10.0, 0.1] for e in range(3)], columns=LOG_COLUMNS).to_csv(
        log / "log.csv", index=False)
    ensemble = root / "ensembles" / "emma_like"
    ensemble_folder([maps["good"], maps["poor"]], data, ensemble, progress=False)
    return {"data": data, "entry": entry, "bare": bare, "ensemble": ensemble, **maps}


def test_parse_run_args(tmp_path: Path) -> None:
    (tmp_path / "a=b").mkdir()
    runs = parse_run_args(["x=/r/one", "/r/two", str(tmp_path / "a=b"), "m.csv"])
    assert runs == {"x": Path("/r/one"), "two": Path("/r/two"), "a=b": tmp_path / "a=b",
                    "m": Path("m.csv")}
    with pytest.raises(BratsInputError, match="two runs are named 'two'"):
        parse_run_args(["/r/two", "/s/two"])
    with pytest.raises(BratsInputError, match="at least one"):
        parse_run_args([])


def test_load_run_kinds(layout: dict[str, Path]) -> None:
    entry = load_run(layout["entry"], layout["data"])
    assert entry.entry == "wang2017" and entry.predictions == layout["entry"] / "cv_predictions"
    bare = load_run(layout["bare"], layout["data"], progress=False)
    assert bare.entry is None and bare.metrics["case"].nunique() == 4
    assert (bare.metrics.groupby("region")["dice"].mean() < 0.9).all()
    ensemble = load_run(layout["ensemble"], layout["data"], progress=False)
    assert ensemble.kind == "ensemble" and len(ensemble.metrics) == 12
    with pytest.raises(BratsInputError, match="pass the dataset"):
        load_run(layout["bare"])
    with pytest.raises(BratsInputError, match="not found"):
        load_run(layout["bare"] / "missing")


def test_reported_vs_reproduced(layout: dict[str, Path]) -> None:
    runs = load_runs({"W": layout["entry"], "bare": layout["bare"]}, layout["data"], False)
    means = mean_ci({n: r.metrics for n, r in runs.items()}, n_boot=100)
    table = reported_vs_reproduced(runs, means, layout["data"]).set_index(
        ["metric", "region", "published_on"])
    assert set(table["method"]) == {"W"}  # bare reproduces no entry
    # submissions/wang2017.yaml: validation WT Dice 0.9050, test ET Dice 0.7831, no test HD95.
    row = table.loc[("dice", "WT", "BraTS 2017 validation set")]
    wt = runs["W"].metrics.query("region == 'WT'")["dice"].mean()
    assert row["published"] == 0.9050 and row["reproduced"] == pytest.approx(wt)
    assert row["difference"] == pytest.approx(wt - 0.9050)
    assert row["reproduced_on"].startswith("cross-validation on ")
    assert row["reproduced_on"].endswith("(4 cases)")
    assert row["published_source"].startswith("Dice from the paper's abstract (arXiv:1709.00382)")
    assert table.loc[("dice", "ET", "BraTS 2017 test set"), "published"] == 0.7831
    assert len(table) == 3 + 3 + 3  # validation Dice and HD95, test Dice


def test_breakdowns_by_hand(tiny_2017: Path) -> None:
    assert case_grades(tiny_2017).to_dict() == {"Brats17_SYN_001_1": "HGG",
                                                "Brats17_SYN_002_1": "LGG"}
    rows = [{"case": c, "region": r, "dice": d, "hd95": 1.0, "volume_ref": v}
            for c, d, v in (("a", 0.9, 30.0), ("b", 0.2, 10.0), ("c", 0.6, 20.0),
                            ("d", 0.4, 5.0), ("e", 0.8, 50.0), ("f", 0.7, 40.0))
            for r in ("WT", "TC", "ET")]
    one = pd.DataFrame(rows)
    other = one.assign(dice=one["dice"].where(one["case"] != "b", 0.9))
    terciles = volume_terciles({"A": one, "B": other})
    assert terciles.to_dict() == {"a": "medium", "b": "small", "c": "medium", "d": "small",
                                  "e": "large", "f": "large"}
    table = breakdown({"A": one, "B": other}, terciles)
    assert table.loc[("small", "A"), "WT"] == pytest.approx((0.2 + 0.4) / 2)
    assert table.loc[("small", "B"), "WT"] == pytest.approx((0.9 + 0.4) / 2)
    assert table.loc[("large", "A"), "n"] == 2
    spread = disagreements({"A": one, "B": other}, top=2)
    assert spread[["case", "region"]].values.tolist() == [["b", "WT"], ["b", "TC"]]
    assert spread["spread"].tolist() == pytest.approx([0.7, 0.7])


def test_members_beside_ensemble(layout: dict[str, Path]) -> None:
    runs = load_runs({"emma": layout["ensemble"]}, layout["data"], False)
    comparison = compare(runs, layout["data"], n_boot=50, progress=False)
    members = comparison.members["emma"]
    assert list(members) == ["good", "poor", "ensemble"]
    good = members["good"].query("region == 'WT'")["dice"].mean()
    poor = members["poor"].query("region == 'WT'")["dice"].mean()
    # A one-hot map dropping 5 % of the tumour: WT Dice 2·0.95/1.95 on every case.
    assert good == pytest.approx(2 * 0.95 / 1.95, abs=0.01)
    assert poor == pytest.approx(2 * 0.4 / 1.4, abs=0.02)
    summary = comparison.named_tables()["members_emma"]
    assert summary.index.tolist() == ["good", "poor", "ensemble"]
    assert summary.loc["good", "Dice_WT"] == pytest.approx(good)


def test_compare_cli_report(layout: dict[str, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    args = ["--no-progress", "compare", str(layout["entry"]), f"bare={layout['bare']}",
            str(layout["ensemble"]), "--data", str(layout["data"]), "--out", str(out),
            "--boot", "100"]
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    tables = {p.stem for p in (out / "tables").glob("*.csv")}
    assert tables == {"leaderboard", "ranking", "mean_ci", "wilcoxon_holm",
                      "reported_vs_reproduced", "by_grade", "by_volume", "disagreements",
                      "per_case_dice", "members_emma_like"}
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert {"boxplot_dice", "boxplot_hd95", "scatter_dice", "training_wang2017",
            "members_emma_like", "overlay_best", "overlay_median", "overlay_worst"} == figures
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(figures)
    assert "src='figures/" not in page and "wilcoxon_holm" in page
    tests = pd.read_csv(out / "tables" / "wilcoxon_holm.csv")
    assert len(tests) == 2 * 3 * 3  # Dice and HD95 × three regions × three pairs
    grade = pd.read_csv(out / "tables" / "by_grade.csv")
    assert sorted(set(grade["group"])) == ["HGG", "LGG"] and set(grade["n"]) == {2}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "compare" and set(manifest["settings"]["runs"]) == {
        "wang2017", "bare", "emma_like"}
    assert "# Comparison of wang2017, bare, emma_like" in (out / "report.md").read_text()
    assert main(args) == 0  # same inputs: rewritten
    other = args[:4] + args[5:]  # without the ensemble
    assert main(other) == 2
    assert "made by other settings" in capsys.readouterr().err
    assert main([*other, "--overwrite"]) == 0
    assert not (out / "tables" / "members_emma_like.csv").exists()


def test_notebook_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRATS_COMPARE_RUNS", raising=False)
    monkeypatch.setenv("BRATS_DEMO_DIR", str(tmp_path / "demo"))
    (tmp_path / "demo" / "isensee2017").mkdir(parents=True)
    (tmp_path / "demo" / "isensee2017" / "cv_metrics.csv").write_text("")
    runs, data = notebook_inputs(tmp_path)
    assert runs == {"isensee2017": tmp_path / "demo" / "isensee2017"}
    assert data == tmp_path / "demo" / "data" / "Brats17TrainingData"
    (tmp_path / "compare.yaml").write_text("runs: {a: ../x, b: /y}\ndata: refs\n")
    assert notebook_inputs(tmp_path) == ({"a": tmp_path / "../x", "b": Path("/y")},
                                         tmp_path / "refs")
    (tmp_path / "compare.yaml").write_text("runs: [r1]\nextra: 1\n")
    with pytest.raises(BratsInputError, match="unknown key"):
        notebook_inputs(tmp_path)
    monkeypatch.setenv("BRATS_COMPARE_RUNS", "n=/p/q:/p/r")
    monkeypatch.setenv("BRATS_COMPARE_DATA", "/d")
    assert notebook_inputs(tmp_path) == ({"n": Path("/p/q"), "r": Path("/p/r")}, Path("/d"))


def test_training_curves(layout: dict[str, Path]) -> None:
    logs = training_logs(load_run(layout["entry"]))
    assert list(logs) == ["wnet_axial/fold0"]
    fig = plot_training_curves({**logs, "tnet/fold1": logs["wnet_axial/fold0"]}, "t")
    loss, dice, lr = fig.axes[:3]
    assert len(loss.lines) == 4 and len(dice.lines) == 2  # training + validation loss per run
    np.testing.assert_allclose(loss.lines[1].get_ydata(), [1.2, 0.6, 0.4])
    # Mean pseudo-Dice of WT 0.5 + 0.1·e, TC 0.4, ET 0.3.
    np.testing.assert_allclose(dice.lines[0].get_ydata(), [0.4, 0.4 + 0.1 / 3, 0.4 + 0.2 / 3])
    assert list(lr.lines[0].get_xdata()) == [1, 2, 3] and lr.get_yscale() == "log"
    assert loss.lines[0].get_color() != loss.lines[2].get_color()  # one colour per member
    plt.close(fig)
    assert training_logs(load_run(layout["bare"], layout["data"], progress=False)) == {}


def test_compare_errors(layout: dict[str, Path], tmp_path: Path) -> None:
    runs = load_runs({"W": layout["entry"]}, layout["data"], False)
    with pytest.raises(BratsInputError, match="dataset folder not found"):
        compare(runs, tmp_path / "nowhere")
    with pytest.raises(BratsInputError, match="no runs"):
        compare({})
    one = compare(runs, None, n_boot=20)
    assert one.tests.empty and one.by_grade.empty and "no HGG/LGG" in one.notes[0]
    assert set(one.named_tables()) == {"leaderboard", "ranking", "mean_ci",
                                       "reported_vs_reproduced", "by_volume", "per_case_dice"}
    (tmp_path / "foreign.txt").write_text("x")
    with pytest.raises(BratsInputError, match="no manifest.json"):
        write_report(one, tmp_path)


def test_reproduce_manifest_gives_entry_and_notes(layout: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "my_run"
    shutil.copytree(layout["entry"], run)
    write_manifest(run, "reproduce", {"entry": "isensee2017", "data": "/somewhere/else",
                                      "members": {"a": {}, "b": {}}})
    loaded = load_run(run, layout["data"])
    assert (loaded.kind, loaded.entry) == ("reproduce", "isensee2017")
    comparison = compare({"mine": loaded}, layout["data"], n_boot=20)
    assert f"mine was cross-validated on /somewhere/else, not on {layout['data']}" in \
        comparison.notes
    assert comparison.members == {}  # no cv_members/ in this reproduction
    assert set(comparison.reported["entry"]) == {"isensee2017"}
    assert comparison.reported["published"].tolist()[:3] == [0.896, 0.797, 0.732]  # WT, TC, ET


def test_members_of_run_sources(layout: dict[str, Path], tmp_path: Path) -> None:
    """A run source's member predictions sit in the ensemble's work folder."""
    from brats.training.checkpoint import LAST

    source = tmp_path / "runs" / "deepmedic"
    source.mkdir(parents=True)
    (source / LAST).write_bytes(b"")
    work = tmp_path / "fused_members"
    shutil.copytree(layout["bare"], work / "deepmedic" / "predictions")
    fused = tmp_path / "fused"
    shutil.copytree(layout["entry"] / "cv_predictions", fused)
    write_manifest(fused, "ensemble", {}, sources=[str(source)], work=str(work))
    members = compare({"emma": load_run(fused, layout["data"], progress=False)},
                      layout["data"], n_boot=20, progress=False).members["emma"]
    assert list(members) == ["deepmedic", "ensemble"]
    bare = load_run(layout["bare"], layout["data"], progress=False).metrics
    pd.testing.assert_frame_equal(members["deepmedic"], bare)
    shutil.rmtree(work)
    with pytest.raises(BratsInputError, match="cannot score that member"):
        compare({"emma": load_run(fused, layout["data"], progress=False)}, layout["data"],
                n_boot=20, progress=False)
