"""End to end on tiny synthetic data: brats train / predict / reproduce from the command line."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brats.cli import main
from brats.manifest import read_manifest

TINY = ["data.patch_size=[32, 32, 32]", "data.workers=0", "network.kwargs.base_filters=4",
        "train.epochs=1", "train.iterations_per_epoch=2", "train.val_batches=1",
        "train.tensorboard=false"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from brats.synth.generator import generate_dataset

    root = tmp_path_factory.mktemp("e2e")
    generate_dataset(root / "train", cases=4, seed=1, shape=(64, 64, 42), progress=False)
    generate_dataset(root / "val", cases=2, seed=2, shape=(64, 64, 42), with_seg=False,
                     progress=False)
    return root / "train", root / "val"


def test_reproduce_quick_end_to_end_and_resume(datasets: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    train, val = datasets
    out = tmp_path / "isensee"
    args = ["reproduce", "isensee2017", "--data", str(train), "--validation", str(val), "--out",
            str(out), "--profile", "quick", "--no-progress", *TINY]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| method | Dice_WT | Dice_TC | Dice_ET | HD95_WT | HD95_TC | HD95_ET |" in printed
    assert sorted(p.name for p in (out / "runs" / "model").iterdir()) == ["fold0", "fold1"]
    metrics = pd.read_csv(out / "cv_metrics.csv")
    assert metrics["case"].nunique() == 4 and set(metrics["region"]) == {"WT", "TC", "ET"}
    submission = sorted(p.name for p in (out / "submission").glob("*.nii.gz"))
    assert submission == ["Brats17_SYNVAL_001_1.nii.gz", "Brats17_SYNVAL_002_1.nii.gz"]
    assert (out / "submission.zip").is_file()
    assert len(list((out / "probabilities").glob("*_probabilities.npz"))) == 2
    stamp = (out / "runs" / "model" / "fold0" / "checkpoint_last.pt").stat().st_mtime_ns
    assert main(args) == 0  # a second run resumes: nothing is retrained
    assert (out / "runs" / "model" / "fold0" / "checkpoint_last.pt").stat().st_mtime_ns == stamp


def test_train_then_predict_with_shards(datasets: tuple[Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    train, val = datasets
    cache = tmp_path / "cache"
    assert main(["prepare", str(train), "--out", str(cache), "--no-progress"]) == 0
    run = tmp_path / "run"
    assert main(["train", "isensee2017", "--data", str(cache), "--fold", "all", "--out", str(run),
                 "--profile", "quick", "--no-progress", *TINY]) == 0
    assert (run / "checkpoint_last.pt").is_file() and (run / "config.yaml").is_file()
    preds = tmp_path / "preds"
    shards = {"1/2": ["Brats17_SYNVAL_001_1.nii.gz"],
              "2/2": ["Brats17_SYNVAL_001_1.nii.gz", "Brats17_SYNVAL_002_1.nii.gz"]}
    for shard, done in shards.items():  # processes sharing a folder each pass --continue
        assert main(["predict", str(run), "--input", str(val), "--output", str(preds), "--tta",
                     "1", "--shard", shard, "--continue", "--no-progress"]) == 0
        assert sorted(f.name for f in preds.glob("*.nii.gz")) == done  # each shard its own case
    files = sorted(preds.glob("*.nii.gz"))
    assert [f.name for f in files] == ["Brats17_SYNVAL_001_1.nii.gz", "Brats17_SYNVAL_002_1.nii.gz"]
    image = nib.load(next(val.rglob("Brats17_SYNVAL_001_1_t1.nii.gz")))
    pred = nib.load(files[0])
    assert pred.shape == image.shape and np.array_equal(pred.affine, image.affine)
    assert set(np.unique(np.asanyarray(pred.dataobj))) <= {0, 1, 2, 4}
    capsys.readouterr()
    assert main(["train", "isensee2017", "--data", str(cache), "--out", str(run), "--profile",
                 "quick", "--no-progress", *TINY]) == 2
    assert "other settings (fold: None → 0)" in capsys.readouterr().err
    stamp = files[0].stat().st_mtime_ns
    assert main(["predict", str(run), "--input", str(val), "--output", str(preds), "--tta", "1",
                 "--continue", "--no-progress"]) == 0  # every case already predicted
    assert files[0].stat().st_mtime_ns == stamp
    assert main(["predict", str(tmp_path / "nothing"), "--input", str(val), "--output",
                 str(tmp_path / "p2"), "--no-progress"]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_reproduce_emma_quick_end_to_end(datasets: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    train, val = datasets
    out = tmp_path / "emma"
    assert main(["reproduce", "kamnitsas2017", "--data", str(train), "--validation", str(val),
                 "--out", str(out), "--profile", "quick", "--no-progress", "train.epochs=1",
                 "train.iterations_per_epoch=2", "train.val_batches=1"]) == 0
    assert "| kamnitsas2017 |" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "deepmedic", "fcn_ce_uniform", "unet_ce_uniform"]
    for member in ("deepmedic", "fcn_ce_uniform", "unet_ce_uniform"):
        log = pd.read_csv(out / "runs" / member / "fold1" / "log.csv")
        assert len(log) == 1  # the command-line override beat the member's own epochs
        # submission_models: all — one more run per member on every training case
        assert sorted(p.name for p in (out / "runs" / member).iterdir()) == ["all", "fold0", "fold1"]
    used = read_manifest(out / "submission")["runs"]
    assert sorted(Path(p).relative_to(out / "runs").as_posix() for p in used.values()) == [
        "deepmedic/all", "fcn_ce_uniform/all", "unet_ce_uniform/all"]
    metrics = pd.read_csv(out / "cv_metrics.csv")
    assert metrics["case"].nunique() == 4
    assert (out / "submission.zip").is_file()
    # each member's own cross-validation predictions, scored beside the mean by brats compare
    from brats.report import load_run, member_tables

    cases = sorted(p.name for p in (out / "cv_predictions").glob("*.nii.gz"))
    differs = []
    for member in ("deepmedic", "fcn_ce_uniform", "unet_ce_uniform"):
        assert sorted(p.name for p in (out / "cv_members" / member).glob("*.nii.gz")) == cases
        differs += [not np.array_equal(np.asanyarray(nib.load(out / "cv_members" / member / c)
                                                     .dataobj),
                                       np.asanyarray(nib.load(out / "cv_predictions" / c).dataobj))
                    for c in cases]
    assert any(differs)  # the members' own maps, not copies of the mean
    tables = member_tables(load_run(out, train, progress=False), train, progress=False)
    assert list(tables) == ["deepmedic", "fcn_ce_uniform", "unet_ce_uniform", "ensemble"]
    assert all(len(t) == 12 for t in tables.values())
    fused = tmp_path / "fused"
    assert main(["ensemble", str(out / "probabilities"), str(out / "runs" / "deepmedic"),
                 "--input", str(val), "--output", str(fused), "--weights", "2", "1",
                 "--no-progress"]) == 0
    assert len(list(fused.glob("*.nii.gz"))) == 2
    assert len(list((tmp_path / "fused_members" / "deepmedic" / "probabilities").glob("*.npz"))) == 2


def test_reproduce_and_predict_with_tuned_postprocessing(
        datasets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from brats.postprocess import apply_rule, read_rule

    train, val = datasets
    out = tmp_path / "isensee"
    assert main(["reproduce", "isensee2017", "--data", str(train), "--validation", str(val),
                 "--out", str(out), "--profile", "quick", "--postprocess", "tuned",
                 "--no-progress", *TINY]) == 0
    assert "| isensee2017+pp |" in capsys.readouterr().out
    rule = read_rule(out / "postprocessing.json")
    tuned = read_manifest(out / "cv_predictions_pp")
    assert tuned["kind"] == "postprocess" and tuned["settings"]["rule"] == rule.to_dict()
    rows = (out / "leaderboard_row.md").read_text().splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == ["| isensee2017", "| isensee2017+pp"]
    assert pd.read_csv(out / "cv_metrics_pp.csv")["case"].nunique() == 4
    names = ["Brats17_SYNVAL_001_1.nii.gz", "Brats17_SYNVAL_002_1.nii.gz"]
    assert sorted(p.name for p in (out / "submission_pp").glob("*.nii.gz")) == names
    assert (out / "submission_pp.zip").is_file() and (out / "submission.zip").is_file()
    for name in names:  # submission_pp is the plain submission post-processed
        plain = np.asanyarray(nib.load(out / "submission" / name).dataobj)
        pp = np.asanyarray(nib.load(out / "submission_pp" / name).dataobj)
        assert np.array_equal(pp, apply_rule(plain, rule))
    preds = tmp_path / "preds"
    assert main(["predict", str(out / "runs" / "model" / "fold0"), "--input", str(val),
                 "--output", str(preds), "--tta", "1", "--postprocess", "tuned",
                 "--no-progress"]) == 0
    assert read_manifest(preds)["settings"]["postprocess"] == rule.to_dict()
    assert main(["predict", str(out / "runs" / "model" / "fold0"), "--input", str(val),
                 "--output", str(tmp_path / "plain"), "--tta", "1", "--no-progress"]) == 0
    assert "postprocess" not in read_manifest(tmp_path / "plain")["settings"]
    for name in names:
        plain = np.asanyarray(nib.load(tmp_path / "plain" / name).dataobj)
        assert np.array_equal(np.asanyarray(nib.load(preds / name).dataobj),
                              apply_rule(plain, rule))
    assert main(["predict", str(out / "runs" / "model" / "fold0"), "--input", str(val),
                 "--output", str(tmp_path / "p2"), "--postprocess-rule",
                 str(out / "postprocessing.json"), "--no-progress"]) == 2
    assert "--postprocess-rule needs --postprocess tuned" in capsys.readouterr().err
    assert main(["leaderboard", str(out), "--no-progress"]) == 0
    board = capsys.readouterr().out
    assert "| isensee |" in board and "| isensee+pp |" in board
