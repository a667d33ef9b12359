"""A Wang stage trains with the shared trainer: binary target, axial slabs, valid slice output."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from brats.config import EntryConfig, from_dict
from brats.training.trainer import Trainer
from tests.conftest import synthetic_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_cache(tmp_path_factory.mktemp("wang"), cases=3, seed=4)


@pytest.mark.parametrize("network, target, roi", [("wang_wnet", "WT", None),
                                                  ("wang_enet", "ET", "TC")])
def test_stage_trains_on_slabs(cache: Path, tmp_path: Path, network: str, target: str,
                               roi: str | None) -> None:
    config = from_dict(EntryConfig, {
        "entry": "wang-stage", "package": "cascade",
        "data": {"patch_size": [19, 32, 32], "output_crop": [4, 0, 0], "view": "axial",
                 "target": target, "roi": roi, "batch_size": 2, "workers": 0,
                 "augmentation": "flips", "intensity": "none", "foreground_fraction": 0.5,
                 "lgg_weight": 3.0, "require_foreground": roi is not None},
        "network": {"name": network, "kwargs": {"base_filters": 8}},
        "loss": {"name": "wang_dice"},
        "optim": {"name": "adam", "lr": 1e-3, "schedule": "constant"},
        "train": {"epochs": 1, "iterations_per_epoch": 2, "val_batches": 1, "folds": 3,
                  "tensorboard": False}})
    summary = Trainer(config, cache, tmp_path / "run", fold=0, progress=False).fit()
    final = summary["final"]
    assert math.isfinite(final["train_loss"]) and math.isfinite(final[f"dice_{target}"])
    others = [r for r in ("WT", "TC", "ET") if r != target]
    assert all(math.isnan(final[f"dice_{r}"]) for r in others)
