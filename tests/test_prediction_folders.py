"""Prediction, ensemble and reproduce folders you can trust: manifests, ``--continue`` and
``--overwrite``, ``--checkpoint final|best`` and ``inference.*`` overrides, from the command line
on tiny synthetic data."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from brats.cli import main
from brats.config import load_config
from brats.entries import resolve_entry
from brats.inference import predictor
from brats.manifest import MANIFEST_NAME, file_fingerprint, read_manifest
from brats.preprocess.cache import prepare_dataset
from brats.training.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from brats.training.trainer import Trainer

TINY = ["data.patch_size=[32, 32, 32]", "data.workers=0", "network.kwargs.base_filters=4",
        "train.epochs=1", "train.iterations_per_epoch=2", "train.val_batches=1",
        "train.tensorboard=false"]
CASES = ["Brats17_SYNVAL_001_1", "Brats17_SYNVAL_002_1"]



@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(training data, validation data, a run trained on every case for one epoch)."""
    from brats.config import parse_overrides
    from brats.synth.generator import generate_dataset

    root = tmp_path_factory.mktemp("folders")
    generate_dataset(root / "train", cases=4, seed=1, shape=(64, 64, 42), progress=False)
    generate_dataset(root / "val", cases=2, seed=2, shape=(64, 64, 42), with_seg=False,
                     progress=False)
    prepare_dataset(root / "train", root / "cache", progress=False)
    config = load_config(resolve_entry("isensee2017"), "quick", parse_overrides(TINY))
    Trainer(config.member("model"), root / "cache", root / "run", fold=None, progress=False).fit()
    return root / "train", root / "val", root / "run"


def stamps(folder: Path, pattern: str = "*.nii.gz") -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob(pattern))}


def predict(run: Path, val: Path, out: Path, *extra: str) -> int:
    return main(["predict", str(run), "--input", str(val), "--output", str(out), "--no-progress",
                 *extra])


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("brats: error: "), err
    return err


def test_existing_folder_needs_continue_or_overwrite(setup, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _, val, run = setup
    out = tmp_path / "p"
    probs = tmp_path / "p_probabilities"
    assert predict(run, val, out, "--save-probabilities", "inference.num_mirrors=1") == 0
    manifest = read_manifest(out)
    assert manifest["kind"] == "predict" and read_manifest(probs)["settings"] == manifest["settings"]
    assert manifest["settings"]["probabilities"] == str(probs.resolve())
    assert manifest["outputs"] == [f"{c}.nii.gz" for c in CASES]
    assert manifest["runs"] == {"model": str(run.resolve())}
    member = manifest["settings"]["members"]["model"]
    assert member["checkpoint"] == "final" and member["file"] == LAST
    assert member["sha256"] == file_fingerprint(run / LAST)["sha256"]
    assert member["inference"]["num_mirrors"] == 1 and member["inference"]["mirror_axes"] == [0, 1, 2]

    (probs / f"{CASES[1]}_probabilities.npz").unlink()
    before = stamps(out)
    capsys.readouterr()
    assert predict(run, val, out, "--save-probabilities", "inference.num_mirrors=1") == 2
    assert "is not empty; pass --continue" in error_line(capsys)
    assert stamps(out) == before
    assert predict(run, val, out, "--save-probabilities", "--continue",
                   "inference.num_mirrors=1") == 0
    after = stamps(out)
    assert after[f"{CASES[0]}.nii.gz"] == before[f"{CASES[0]}.nii.gz"]
    assert after[f"{CASES[1]}.nii.gz"] > before[f"{CASES[1]}.nii.gz"]  # lacked its map: redone
    assert sorted(stamps(probs, "*.npz")) == [f"{c}_probabilities.npz" for c in CASES]

    assert predict(run, val, out, "--save-probabilities", "--overwrite",
                   "inference.num_mirrors=1") == 0
    assert all(stamps(out)[name] > after[name] for name in after)

    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert predict(run, val, out, "--overwrite", "inference.num_mirrors=1") == 2
    assert "no manifest.json says brats wrote (notes.txt)" in error_line(capsys)
    assert (out / "notes.txt").is_file() and len(stamps(out)) == 2


def test_probabilities_not_recorded_are_a_difference(setup, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _, val, run = setup
    out = tmp_path / "p"
    assert predict(run, val, out, "--tta", "1") == 0
    capsys.readouterr()
    assert predict(run, val, out, "--tta", "1", "--continue", "--save-probabilities") == 2
    assert "other settings (probabilities: None → '" in error_line(capsys)
    assert not (tmp_path / "p_probabilities").exists()


def test_inference_overrides_reach_the_members(setup, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _, val, run = setup
    loaded = []
    load = predictor.load_member
    monkeypatch.setattr(predictor, "load_member",
                        lambda *a, **k: loaded.append(load(*a, **k)) or loaded[-1])
    out = tmp_path / "p"
    assert predict(run, val, out, "inference.amp=true", "inference.num_mirrors=1") == 0
    assert [(m.inference.amp, m.inference.num_mirrors, m.inference.overlap) for m in loaded] == [
        (True, 1, 0.5)]
    inference = read_manifest(out)["settings"]["members"]["model"]["inference"]
    assert inference["amp"] is True and inference["num_mirrors"] == 1

    capsys.readouterr()
    assert predict(run, val, out, "--continue", "inference.amp=true",
                   "inference.num_mirrors=2") == 2
    assert "(members.model.inference.num_mirrors: 1 → 2)" in error_line(capsys)
    assert predict(run, val, tmp_path / "q", "train.epochs=3") == 2
    err = error_line(capsys)
    assert "train.epochs=3: only inference settings" in err and "inference.num_mirrors" in err
    assert predict(run, val, tmp_path / "q", "inference.ampp=true") == 2
    assert "did you mean 'amp'" in error_line(capsys)
    assert predict(run, val, tmp_path / "q", "--tta", "2", "inference.num_mirrors=1") == 2
    assert "disagree" in error_line(capsys)
    assert not (tmp_path / "q").exists()


def test_checkpoint_final_or_best(setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    _, val, trained = setup
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert predict(run, val, tmp_path / "b", "--checkpoint", "best") == 2
    assert "no checkpoint_best.pt" in error_line(capsys)
    state = load_checkpoint(run / LAST)
    state["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(state, run / BEST)
    loaded = []
    load = predictor.load_member
    monkeypatch.setattr(predictor, "load_member",
                        lambda *a, **k: loaded.append(load(*a, **k)) or loaded[-1])
    for which, name in (("best", BEST), ("final", LAST)):
        out = tmp_path / which
        args = ["--checkpoint", which] if which == "best" else []
        assert predict(run, val, out, "--tta", "1", *args) == 0
        member = read_manifest(out)["settings"]["members"]["model"]
        assert member["checkpoint"] == which and member["file"] == name
        assert member["sha256"] == file_fingerprint(run / name)["sha256"]
        weights = load_checkpoint(run / name)["model"]
        network = loaded[-1].network.state_dict()
        assert all(torch.equal(network[k], weights[k]) for k in weights)
    assert read_manifest(tmp_path / "best")["settings"] != read_manifest(tmp_path / "final")["settings"]


def test_ensemble_manifest_overrides_and_modes(setup, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _, val, run = setup
    maps = tmp_path / "pred_probabilities"
    assert predict(run, val, tmp_path / "pred", "--tta", "1", "--save-probabilities") == 0
    out = tmp_path / "e"
    args = ["ensemble", str(maps), str(run), "--input", str(val), "--output", str(out),
            "--no-progress"]
    assert main([*args, "inference.num_mirrors=1"]) == 0
    manifest = read_manifest(out)
    assert manifest["kind"] == "ensemble"
    assert list(manifest["settings"]["sources"]) == ["pred_probabilities", "run"]
    maps_source, run_source = manifest["settings"]["sources"].values()
    assert maps_source == {"weight": 1.0, "maps": read_manifest(maps)["settings"]}
    assert run_source["weight"] == 1.0
    assert run_source["runs"]["model"]["inference"]["num_mirrors"] == 1
    work = tmp_path / "e_members" / "run" / "predictions"
    assert read_manifest(work)["settings"]["members"] == run_source["runs"]
    before = stamps(out)
    capsys.readouterr()
    assert main([*args, "inference.num_mirrors=1"]) == 2
    assert "is not empty" in error_line(capsys)
    assert main([*args, "--continue", "inference.num_mirrors=1"]) == 0
    assert stamps(out) == before
    assert main([*args, "--continue", "inference.num_mirrors=2"]) == 2
    assert "(sources.run.runs.model.inference.num_mirrors: 1 → 2)" in error_line(capsys)
    assert main([*args, "--overwrite", "inference.num_mirrors=2"]) == 0
    assert read_manifest(work)["settings"]["members"]["model"]["inference"]["num_mirrors"] == 2
    assert all(stamps(out)[name] > before[name] for name in before)
    capsys.readouterr()
    assert main(["ensemble", str(maps), "--input", str(val), "--output", str(tmp_path / "x"),
                 "inference.amp=true"]) == 2
    assert "every source here is a folder of probability maps" in error_line(capsys)


def test_reproduce_rerun_with_other_settings(setup, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    train, val, _ = setup
    out = tmp_path / "r"
    args = ["reproduce", "isensee2017", "--data", str(train), "--validation", str(val), "--out",
            str(out), "--profile", "quick", "--no-progress", *TINY]
    assert main([*args, "inference.num_mirrors=1"]) == 0
    assert read_manifest(out)["kind"] == "reproduce"
    for folder in ("cv_predictions", "submission"):
        members = read_manifest(out / folder)["settings"]["members"]
        assert sorted(members) == ["model/fold0", "model/fold1"]
        assert {m["inference"]["num_mirrors"] for m in members.values()} == {1}
    last = out / "runs" / "model" / "fold0" / LAST
    assert load_checkpoint(last)["config"]["inference"]["num_mirrors"] == 2  # the profile's
    trained, cv = last.stat().st_mtime_ns, stamps(out / "cv_predictions")
    assert len(cv) == 4
    capsys.readouterr()
    assert main([*args, "inference.num_mirrors=2"]) == 2
    err = error_line(capsys)
    assert "members.model.inference.num_mirrors: 1 → 2" in err and "--overwrite" in err
    assert main([*args, "inference.num_mirrors=2", "--overwrite"]) == 0
    assert last.stat().st_mtime_ns == trained  # inference settings do not retrain
    redone = stamps(out / "cv_predictions")
    assert all(redone[name] > cv[name] for name in cv)
    members = read_manifest(out / "submission")["settings"]["members"]
    assert {m["inference"]["num_mirrors"] for m in members.values()} == {2}
    assert (out / "submission" / MANIFEST_NAME).is_file()
    with zipfile.ZipFile(out / "submission.zip") as archive:
        assert sorted(archive.namelist()) == [f"{c}.nii.gz" for c in CASES]
    assert main([*args, "inference.num_mirrors=2"]) == 0  # same settings: resumes
    assert stamps(out / "cv_predictions") == redone
