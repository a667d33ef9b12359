"""Proof that the EMMA members learn and that their ensemble is no worse than its worse member:
a narrow DeepMedic and a narrow 3D FCN, trained with the shared trainer on one tiny synthetic
case, predicted with the shared inference code (tiles for DeepMedic, whole volume for the FCN),
and fused by ``brats ensemble`` from their saved probability maps."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from brats.config import EntryConfig, from_dict, load_config, to_dict
from brats.data.layouts import discover
from brats.inference.fusion import ensemble_folder
from brats.metrics import case_metrics
from brats.preprocess.cache import prepare_dataset
from brats.submission import submission_name
from brats.synth.generator import generate_dataset
from brats.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]


def wt_dice(prediction: Path, case) -> float:
    data = case.load()
    labels = np.asanyarray(nib.load(prediction).dataobj)
    scores = {r["region"]: r["dice"] for r in case_metrics(labels, data.labels, spacing=data.spacing)}
    return scores["WT"]


def test_members_learn_and_the_ensemble_is_no_worse(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "data", cases=1, seed=11, shape=(64, 64, 42), progress=False)
    prepare_dataset(tmp_path / "data", tmp_path / "cache", progress=False)
    config = load_config(ROOT / "submissions" / "kamnitsas2017.yaml", "quick")
    runs = {}
    for name, epochs in (("deepmedic", 8), ("fcn_ce_uniform", 12)):
        data = to_dict(config.member(name))
        data["train"].update(epochs=epochs, iterations_per_epoch=10, val_batches=0,
                             tensorboard=False)
        Trainer(from_dict(EntryConfig, data), tmp_path / "cache", tmp_path / name, fold=None,
                progress=False, member=name).fit()
        runs[name] = tmp_path / name
    fused = ensemble_folder(list(runs.values()), tmp_path / "data", tmp_path / "fused",
                            work_dir=tmp_path / "members", progress=False)
    case = discover(tmp_path / "data")[0]
    member_dice = {name: wt_dice(tmp_path / "members" / name / "predictions"
                                 / submission_name(case.id), case) for name in runs}
    ensemble_dice = wt_dice(fused[0], case)
    assert min(member_dice.values()) > 0.7, member_dice
    assert ensemble_dice >= min(member_dice.values()), (ensemble_dice, member_dice)
    assert len(list((tmp_path / "members" / "deepmedic" / "probabilities").glob("*.npz"))) == 1
