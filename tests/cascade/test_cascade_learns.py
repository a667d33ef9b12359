"""Proof that the cascade learns: small WNet/TNet/ENet (axial view) trained on one tiny synthetic
case, then the whole cascade predicts it with WT Dice > 0.7."""

from __future__ import annotations

from pathlib import Path

import torch

from brats.config import EntryConfig, from_dict, load_config, to_dict
from brats.data.layouts import discover
from brats.inference.predictor import load_member, predict_case
from brats.metrics import case_metrics
from brats.preprocess.cache import prepare_dataset
from brats.synth.generator import generate_dataset
from brats.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]


def test_cascade_learns_a_synthetic_case(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "data", cases=1, seed=11, shape=(64, 64, 42), progress=False)
    prepare_dataset(tmp_path / "data", tmp_path / "cache", progress=False)
    config = load_config(ROOT / "submissions" / "wang2017.yaml", "quick")
    runs = []
    for name, steps in (("wnet_axial", 150), ("tnet_axial", 40), ("enet_axial", 40)):
        data = to_dict(config.member(name))
        data["data"].update(workers=0, patch_size=[19, 32, 32] if name == "wnet_axial"
                            else data["data"]["patch_size"])
        data["network"]["kwargs"] = {"base_filters": 8}
        data["optim"]["lr"] = 3e-3
        data["train"].update(epochs=steps // 10, iterations_per_epoch=10, val_batches=0,
                             tensorboard=False)
        Trainer(from_dict(EntryConfig, data), tmp_path / "cache", tmp_path / name, fold=None,
                progress=False, member=name).fit()
        runs.append(tmp_path / name)
    members = [load_member(run, torch.device("cpu")) for run in runs]
    case = discover(tmp_path / "data")[0]
    labels, _, _ = predict_case(members, case, torch.device("cpu"))
    data = case.load()
    scores = {r["region"]: r["dice"] for r in case_metrics(labels, data.labels,
                                                           spacing=data.spacing)}
    assert scores["WT"] > 0.7, scores
