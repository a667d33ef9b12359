"""Tuned post-processing (brats.postprocess): the rules on tiny arrays, the tuner on hand-built
cross-validation cases, the rule file and ``brats postprocess`` on tiny NIfTI folders."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brats.cli import main
from brats.errors import BratsInputError
from brats.manifest import read_manifest
from brats.postprocess import (
    PostprocessRule,
    apply_rule,
    case_table,
    choose_rule,
    find_rule,
    keep_largest_component,
    postprocess_folder,
    read_rule,
    relabel_small_et,
    rule_scores,
    tune,
    write_rule,
)
from brats.submission import write_submission

SHAPE = (20, 20, 20)


def test_relabel_small_et_below_threshold_only() -> None:
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0, 0, :3] = 4  # 3 ET voxels
    labels[1, 1, 1] = 2
    small = relabel_small_et(labels, 5)
    assert np.count_nonzero(small == 4) == 0 and np.count_nonzero(small == 1) == 3
    assert small[1, 1, 1] == 2 and labels[0, 0, 0] == 4  # the input is left alone
    assert np.array_equal(relabel_small_et(labels, 3), labels)  # 3 voxels at threshold 3 stay
    assert np.array_equal(relabel_small_et(labels, 0), labels)  # 0 is off


def test_keep_largest_component_per_region() -> None:
    labels = np.zeros((5, 5, 9), np.uint8)
    labels[:2, :2, :2] = 2  # WT component of 8 voxels
    labels[0, 0, 0] = 4
    labels[1, 1, 1] = 4  # ET: two voxels touching at a corner only → two 6-components
    labels[4, 4, 8] = 1  # far WT/TC component of 1 voxel
    wt = keep_largest_component(labels, "WT")
    assert wt[4, 4, 8] == 0 and np.count_nonzero(wt) == 8
    tc = keep_largest_component(labels, "TC")  # three 1-voxel TC components: first kept
    assert tc[0, 0, 0] == 4 and tc[1, 1, 1] == 2 and tc[4, 4, 8] == 2
    et = keep_largest_component(labels, "ET")
    assert et[0, 0, 0] == 4 and et[1, 1, 1] == 1 and et[4, 4, 8] == 1
    with pytest.raises(BratsInputError, match="region 'NCR'"):
        keep_largest_component(labels, "NCR")


def test_apply_rule_components_then_threshold() -> None:
    labels = np.zeros((4, 4, 8), np.uint8)
    labels[:2, :2, :2] = 4  # 8 ET voxels
    labels[3, 3, 7] = 4  # 1 far ET voxel
    assert np.count_nonzero(apply_rule(labels, PostprocessRule((), 10)) == 4) == 0
    kept = apply_rule(labels, PostprocessRule(("ET",), 9))  # 8 left after the component step
    assert np.count_nonzero(kept == 4) == 0 and np.count_nonzero(kept == 1) == 9
    assert np.count_nonzero(apply_rule(labels, PostprocessRule(("ET",), 8)) == 4) == 8
    with pytest.raises(BratsInputError, match="largest_component"):
        PostprocessRule(("XX",), 0)
    with pytest.raises(BratsInputError, match="et_threshold_voxels"):
        PostprocessRule((), -1)


def _two_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """Case A: a spurious 10-voxel ET where the reference has NCR/NET; case B: a true 200-voxel
    ET. WT and TC are perfect in both."""
    ref_a = np.zeros(SHAPE, np.uint8)
    ref_a[2:8, 2:8, 2:8] = 2
    ref_a[3:5, 3:8, 3:4] = 1
    pred_a = ref_a.copy()
    pred_a[3:5, 3:8, 3:4] = 4  # 10 voxels
    ref_b = np.zeros(SHAPE, np.uint8)
    ref_b[5:15, 5:15, 5:15] = 2
    ref_b[6:11, 6:11, 6:14] = 4  # 200 voxels
    return [(pred_a, ref_a), (ref_b.copy(), ref_b)]


def test_tuner_picks_threshold_between_spurious_and_true_et() -> None:
    table = pd.concat([case_table(p, r, c) for (p, r), c in zip(_two_cases(), "AB")])
    plain = table[table["largest_component"] == ""].set_index("case")
    assert plain.loc["A", "et_voxels"] == 10 and plain.loc["B", "et_voxels"] == 200
    assert plain.loc["A", "dice_ET"] == 0 and plain.loc["A", "dice_ET_empty"] == 1
    assert plain.loc["B", "dice_ET_empty"] == 0
    scores = rule_scores(table, (0, 5, 50, 200, 250))
    none = scores[scores["largest_component"] == ""].set_index("et_threshold_voxels")["score"]
    # A: (1 + 1 + ET)/3, B: 1 while its 200 voxels stay (threshold ≤ 200)
    assert none.to_dict() == pytest.approx({0: 5 / 6, 5: 5 / 6, 50: 1.0, 200: 1.0, 250: 5 / 6})
    assert choose_rule(scores) == PostprocessRule((), 50)  # smallest of the best, no components


def test_tuner_keeps_largest_wt_component_when_it_helps() -> None:
    ref = np.zeros(SHAPE, np.uint8)
    ref[2:5, 2:5, 2:5] = 2  # 27 WT voxels
    ref[3, 3, 3] = 4
    pred = ref.copy()
    pred[14:16, 14:16, 14:16] = 2  # spurious 8-voxel WT blob
    scores = rule_scores(case_table(pred, ref), (0, 5))
    by_rule = scores.set_index(["largest_component", "et_threshold_voxels"])["score"]
    assert by_rule[("", 0)] == pytest.approx((54 / 62 + 2) / 3)
    assert by_rule[("WT", 0)] == pytest.approx(1.0)
    assert by_rule[("WT", 5)] == pytest.approx(2 / 3)  # the true 1-voxel ET would be lost
    assert choose_rule(scores) == PostprocessRule(("WT",), 0)


def _write_cases(folder: Path, maps: dict[str, np.ndarray]) -> None:
    image = nib.Nifti1Image(np.zeros(SHAPE, np.uint8), np.diag([-1.0, -1.0, 1.0, 1.0]))
    for case, labels in maps.items():
        write_submission(labels, image, folder / f"{case}.nii.gz")


@pytest.fixture()
def cv_folders(tmp_path: Path) -> tuple[Path, Path]:
    """A flat cross-validation folder and a flat reference folder of the two hand-built cases."""
    cases = dict(zip(("Brats17_SYN_001_1", "Brats17_SYN_002_1"), _two_cases()))
    _write_cases(tmp_path / "cv", {c: p for c, (p, _) in cases.items()})
    _write_cases(tmp_path / "ref", {c: r for c, (_, r) in cases.items()})
    return tmp_path / "cv", tmp_path / "ref"


def test_tune_writes_rule_with_provenance(cv_folders: tuple[Path, Path], tmp_path: Path) -> None:
    cv, ref = cv_folders
    record = tune(cv, ref, thresholds=(100, 0, 50), progress=False)
    assert record["rule"] == {"largest_component": [], "et_threshold_voxels": 50}
    assert record["score"]["plain"] == pytest.approx(5 / 6)
    assert record["score"]["postprocessed"] == pytest.approx(1.0)
    path = write_rule(record, tmp_path / "run")
    assert path == tmp_path / "run" / "postprocessing.json"
    stored = json.loads(path.read_text())
    assert stored["settings"]["cv_predictions"] == str(cv.resolve())
    assert stored["settings"]["et_thresholds_voxels"] == [0, 50, 100]
    assert stored["settings"]["cases"] == 2 and "candidates" not in stored
    assert read_rule(path) == PostprocessRule((), 50)
    with pytest.raises(BratsInputError, match="exists"):
        write_rule(record, path)
    nested = tmp_path / "run" / "runs" / "model" / "fold0"
    nested.mkdir(parents=True)
    assert find_rule([nested]) == path
    with pytest.raises(BratsInputError, match="no postprocessing.json"):
        find_rule([tmp_path / "cv"])
    (tmp_path / "bad.json").write_text('{"kind": "postprocessing", "rule": {"threshold": 5}}')
    with pytest.raises(BratsInputError, match="unknown rule key"):
        read_rule(tmp_path / "bad.json")


def test_postprocess_folder_relabels_and_records(cv_folders: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    cv, _ = cv_folders
    with pytest.raises(BratsInputError, match="pass --release"):
        postprocess_folder(cv, tmp_path / "pp", PostprocessRule((), 50), progress=False)
    files = postprocess_folder(cv, tmp_path / "pp", PostprocessRule((), 50), release="2017",
                               progress=False)
    assert [f.name for f in files] == ["Brats17_SYN_001_1.nii.gz", "Brats17_SYN_002_1.nii.gz"]
    a = np.asanyarray(nib.load(files[0]).dataobj)
    b = np.asanyarray(nib.load(files[1]).dataobj)
    assert np.count_nonzero(a == 4) == 0 and np.count_nonzero(a == 1) == 10
    assert np.count_nonzero(b == 4) == 200
    manifest = read_manifest(tmp_path / "pp")
    assert manifest["kind"] == "postprocess"
    assert manifest["settings"]["rule"] == {"largest_component": [], "et_threshold_voxels": 50}
    with pytest.raises(BratsInputError, match="not empty"):
        postprocess_folder(cv, tmp_path / "pp", PostprocessRule((), 100), release="2017",
                           progress=False)


def test_cli_tune_and_apply(cv_folders: tuple[Path, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    cv, ref = cv_folders
    rule = tmp_path / "rule.json"
    args = ["postprocess", "tune", str(cv), "--data", str(ref), "--out", str(rule),
            "--thresholds", "0", "50", "300", "--no-progress"]
    assert main(args) == 0
    assert "ET below 50 voxels → NCR/NET" in capsys.readouterr().out
    assert read_rule(rule) == PostprocessRule((), 50)
    assert main(args) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    out = tmp_path / "applied"
    assert main(["postprocess", "apply", str(cv), "--rule", str(rule), "--output", str(out),
                 "--release", "2017", "--no-progress"]) == 0
    assert np.count_nonzero(np.asanyarray(nib.load(
        out / "Brats17_SYN_001_1.nii.gz").dataobj) == 4) == 0
    assert main(["postprocess", "tune", str(cv), "--data", str(ref), "--thresholds", "-5"]) == 2


def test_leaderboard_tables_of_reproduce_folders(tmp_path: Path) -> None:
    from brats.leaderboard import leaderboard, load_tables

    rows = [{"case": c, "region": r, "dice": d, "hd95": 1.0} for c in ("a", "b")
            for r, d in (("WT", 0.8), ("TC", 0.6), ("ET", 0.0 if c == "a" else 0.5))]
    plain = pd.DataFrame(rows)
    post = plain.assign(dice=np.where(plain["region"] == "ET", 1.0, plain["dice"]))
    for name, tables in (("x", (plain, post)), ("y", (plain,))):
        (tmp_path / name).mkdir()
        for file, table in zip(("cv_metrics.csv", "cv_metrics_pp.csv"), tables):
            table.to_csv(tmp_path / name / file, index=False)
    tables = load_tables([tmp_path / "x", tmp_path / "y"], ["x", "y"])
    assert list(tables) == ["x", "x+pp", "y"]
    board = leaderboard(tables)
    assert board.loc["x+pp", "Dice_ET"] == pytest.approx(1.0)
    assert board.loc["x", "Dice_ET"] == pytest.approx(0.25)
    assert board.index[0] == "x+pp"
    with pytest.raises(BratsInputError, match="named 'x\\+pp'"):
        load_tables([tmp_path / "x", tmp_path / "y" / "cv_metrics.csv"], ["x", "x+pp"])
    with pytest.raises(BratsInputError, match="no cv_metrics.csv"):
        load_tables([tmp_path], ["root"])
