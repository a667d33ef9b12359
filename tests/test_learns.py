"""Proof that each entry learns: small versions of its networks, trained with the shared trainer
on 8 synthetic cases, score two *held-out* synthetic cases (other seeds, never trained on) far
above chance on WT, TC and ET. One dataset serves the three entries."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brats.config import EntryConfig, from_dict, load_config, to_dict
from brats.data.layouts import discover
from brats.inference.fusion import ensemble_folder
from brats.inference.predictor import load_member, predict_case
from brats.metrics import case_metrics
from brats.preprocess.cache import prepare_dataset
from brats.submission import submission_name
from brats.synth.generator import generate_dataset
from brats.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training cases (seed 11) prepared into ``cache/``, 2 held-out cases (seed 99) in
    ``held_out/``, 64×64×42 voxels."""
    root = tmp_path_factory.mktemp("learns")
    generate_dataset(root / "train", cases=8, seed=11, shape=(64, 64, 42), progress=False)
    generate_dataset(root / "held_out", cases=2, seed=99, shape=(64, 64, 42), progress=False)
    prepare_dataset(root / "train", root / "cache", progress=False)
    return root


def train(config: EntryConfig, member: str, steps: int, data: Path, out: Path, **changes) -> Path:
    """Train ``member`` of ``config`` for ``steps`` steps on every training case."""
    settings = to_dict(config.member(member))
    settings["data"]["workers"] = 0
    settings["train"].update(epochs=steps // 10, iterations_per_epoch=10, val_batches=0,
                             tensorboard=False)
    for section, values in changes.items():
        settings[section].update(values)
    Trainer(from_dict(EntryConfig, settings), data / "cache", out / member, fold=None,
            progress=False, member=member).fit()
    return out / member


def held_out_dice(labels_per_case: list[np.ndarray], data: Path) -> dict[str, float]:
    """Mean Dice per region over the held-out cases."""
    scores: dict[str, list[float]] = {}
    for labels, case in zip(labels_per_case, discover(data / "held_out")):
        reference = case.load()
        for row in case_metrics(labels, reference.labels, spacing=reference.spacing):
            scores.setdefault(row["region"], []).append(row["dice"])
    return {region: float(np.mean(values)) for region, values in scores.items()}


def predicted(members: list, data: Path) -> list[np.ndarray]:
    return [predict_case(members, case, CPU)[0] for case in discover(data / "held_out")]


def test_isensee_unet_learns(data: Path, tmp_path: Path) -> None:
    config = load_config(ROOT / "submissions" / "isensee2017.yaml", "quick")
    run = train(config, "model", 200, data, tmp_path,
                network={"kwargs": {"base_filters": 8, "dropout": 0.0}})
    member = load_member(run, CPU, overrides={"num_mirrors": 1})
    dice = held_out_dice(predicted([member], data), data)
    assert dice["WT"] > 0.6 and dice["TC"] > 0.5 and dice["ET"] > 0.3, dice


def test_wang_cascade_learns_wt_tc_and_et(data: Path, tmp_path: Path) -> None:
    """Axial WNet → TNet → ENet through the whole cascade (boxes, masks, fusion)."""
    config = load_config(ROOT / "submissions" / "wang2017.yaml", "quick")
    runs = [train(config, name, steps, data, tmp_path, network={"kwargs": {"base_filters": 8}})
            for name, steps in (("wnet_axial", 300), ("tnet_axial", 100), ("enet_axial", 100))]
    members = [load_member(run, CPU) for run in runs]
    dice = held_out_dice(predicted(members, data), data)
    assert dice["WT"] > 0.8 and dice["TC"] > 0.3 and dice["ET"] > 0.3, dice


def test_emma_members_learn_and_their_ensemble_is_no_worse(data: Path, tmp_path: Path) -> None:
    """DeepMedic (tiles) and a 3-D FCN (whole volume), fused by ``brats ensemble`` from their
    saved probability maps."""
    config = load_config(ROOT / "submissions" / "kamnitsas2017.yaml", "quick")
    runs = {name: train(config, name, 120, data, tmp_path)
            for name in ("deepmedic", "fcn_ce_uniform")}
    fused = ensemble_folder(list(runs.values()), data / "held_out", tmp_path / "fused",
                            work_dir=tmp_path / "members", progress=False)
    cases = discover(data / "held_out")

    def read(paths: list[Path]) -> list[np.ndarray]:
        return [np.asanyarray(nib.load(p).dataobj) for p in paths]

    members = {name: held_out_dice(read([tmp_path / "members" / name / "predictions"
                                         / submission_name(c.id) for c in cases]), data)
               for name in runs}
    ensemble = held_out_dice(read(fused), data)
    for dice in members.values():
        assert dice["WT"] > 0.75 and dice["TC"] > 0.5, members
    assert ensemble["WT"] > 0.8 and ensemble["TC"] > 0.6 and ensemble["ET"] > 0.3, ensemble
    assert ensemble["WT"] >= min(d["WT"] for d in members.values()) - 1e-9, (ensemble, members)
