"""Training core: splits, schedules, the loop learning a tiny case, exact resume, DDP, CLI."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from brats.config import EntryConfig, from_dict, load_config, to_dict
from brats.errors import BratsInputError
from brats.training.splits import kfold, load_or_make_splits
from brats.training.trainer import Trainer, l2_penalty, lr_factor
from tests.conftest import synthetic_cache

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(**train) -> EntryConfig:
    """A small Isensee-style config: base width 4, 32³ patches, no augmentation."""
    config = load_config(ROOT / "submissions" / "isensee2017.yaml", "quick")
    data = to_dict(config)
    data["data"].update(patch_size=[32, 32, 32], batch_size=2, workers=0, augmentation="none",
                        augmentation_kwargs={}, foreground_fraction=0.5)
    data["network"]["kwargs"] = {"base_filters": 4, "dropout": 0.3}
    data["train"].update({"epochs": 2, "iterations_per_epoch": 2, "val_batches": 1, "folds": 2,
                          "tensorboard": False, **train})
    return from_dict(EntryConfig, data)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_cache(tmp_path_factory.mktemp("train"), cases=3, seed=5)


def test_kfold_sizes_and_sklearn_agreement() -> None:
    ids = [f"c{i:02d}" for i in range(11)]
    splits = kfold(ids, 3, seed=123456)
    assert [len(s["val"]) for s in splits] == [4, 4, 3]
    assert sorted(sum((s["val"] for s in splits), [])) == ids
    for s in splits:
        assert sorted(s["train"] + s["val"]) == ids
    sklearn = pytest.importorskip("sklearn.model_selection")
    for (_, val), ours in zip(sklearn.KFold(3, shuffle=True, random_state=123456).split(ids),
                              splits):
        assert sorted(ids[i] for i in val) == sorted(ours["val"])
    with pytest.raises(BratsInputError, match="cannot make 5 folds from 3"):
        kfold(ids[:3], 5, 0)


def test_splits_are_saved_and_checked(tmp_path: Path) -> None:
    ids = [f"c{i}" for i in range(6)]
    path = tmp_path / "splits.json"
    first = load_or_make_splits(path, ids, 3, 1)
    assert load_or_make_splits(path, list(reversed(ids)), 3, 1) == first
    with pytest.raises(BratsInputError, match="saved splits are for other cases"):
        load_or_make_splits(path, ids[:5], 3, 1)


def test_learning_rate_schedules() -> None:
    config = tiny_config()
    assert lr_factor(10, config.optim, 300) == pytest.approx(0.985 ** 10)
    step = from_dict(EntryConfig, {"entry": "x", "optim": {"schedule": "step", "gamma": 0.5,
                                                          "milestones": [2, 4]}}).optim
    assert [lr_factor(e, step, 10) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]


def test_l2_penalty_skips_biases() -> None:
    layer = torch.nn.Sequential(torch.nn.Conv3d(1, 1, 1), torch.nn.InstanceNorm3d(1, affine=True))
    for p in layer.parameters():
        torch.nn.init.constant_(p, 2.0)
    assert float(l2_penalty(layer).detach()) == 8.0  # conv weight 2² + norm scale 2²; biases excluded


@pytest.mark.parametrize("data", [
    {},
    # the device backend with Isensee's spatial and intensity augmentation, one loader worker
    {"augmentation": "isensee2017", "augmentation_kwargs": {"interpolation_order": 1},
     "crop_size": [40, 40, 40], "workers": 1},
    {"augmentation_backend": "scipy"}], ids=["crop-device", "isensee-device-worker", "scipy"])
def test_resume_is_bit_for_bit(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               data: dict) -> None:
    config = tiny_config()
    config = from_dict(EntryConfig, {**to_dict(config), "data": {**to_dict(config)["data"], **data}})
    straight = Trainer(config, cache, tmp_path / "straight", fold=0, progress=False)
    straight.fit()
    original_epoch = Trainer._epoch

    def interrupted_epoch(self, epoch, *args, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt  # killed after epoch 0 was checkpointed
        return original_epoch(self, epoch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_epoch", interrupted_epoch)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, cache, tmp_path / "resumed", fold=0, progress=False).fit()
    monkeypatch.setattr(Trainer, "_epoch", original_epoch)
    resumed = Trainer(config, cache, tmp_path / "resumed", fold=0, resume=True, progress=False)
    resumed.fit()
    expected, got = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    history = [torch.load(tmp_path / run / "checkpoint_last.pt", weights_only=False)["history"]
               for run in ("straight", "resumed")]
    timing = ("seconds", "patches_per_s", "data_fraction")
    assert [{k: v for k, v in row.items() if k not in timing} for row in history[0]] == [
        {k: v for k, v in row.items() if k not in timing} for row in history[1]]
    other = from_dict(EntryConfig, {**to_dict(config), "optim": {**to_dict(config)["optim"],
                                                                 "lr": 0.1}})
    with pytest.raises(BratsInputError, match=r"other settings \(config.optim.lr: 0.005 → 0.1\)"):
        (tmp_path / "resumed" / "training_done.json").unlink()
        Trainer(other, cache, tmp_path / "resumed", fold=0, resume=True, progress=False).fit()


def test_run_folder_is_not_reused_without_resume(cache: Path, tmp_path: Path) -> None:
    config = tiny_config(epochs=1)
    Trainer(config, cache, tmp_path / "run", fold=0, progress=False).fit()
    with pytest.raises(BratsInputError, match="pass --resume"):
        Trainer(config, cache, tmp_path / "run", fold=0, progress=False).fit()
    summary = Trainer(config, cache, tmp_path / "run", fold=0, resume=True, progress=False).fit()
    assert summary["epochs"] == 1
    logged = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert logged[0].startswith("epoch,lr,train_loss,val_loss,dice_WT,dice_TC,dice_ET")
    assert len(logged) == 2


def _ddp_worker(rank: int, port: int, cache: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = Trainer(tiny_config(epochs=1), cache, Path(out) / "run", fold=0, device="cpu",
                      progress=False)
    trainer.fit()
    torch.save(trainer.model.state_dict(), Path(out) / f"rank{rank}.pt")


def test_ddp_two_processes_hold_identical_weights(cache: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(port, str(cache), str(tmp_path)), nprocs=2)
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "run" / "checkpoint_last.pt").is_file()


def test_amp_and_channels_last_run_on_the_cpu(cache: Path, tmp_path: Path) -> None:
    """The CUDA speed switches take their CPU path (bf16 autocast, channels-last 3-D)."""
    config = tiny_config(epochs=1, amp=True, channels_last=True)
    summary = Trainer(config, cache, tmp_path / "amp", fold=1, progress=False).fit()
    assert np.isfinite(summary["final"]["train_loss"])
    state = torch.load(tmp_path / "amp" / "checkpoint_last.pt", weights_only=False)
    assert state["config"]["train"]["amp"] is True
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())


def test_unknown_device_and_fold(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(BratsInputError, match="fold 7 outside 0..1"):
        Trainer(tiny_config(), cache, tmp_path / "x", fold=7, progress=False).fit()
    if not torch.cuda.is_available():
        with pytest.raises(BratsInputError, match="no CUDA device"):
            Trainer(tiny_config(), cache, tmp_path / "y", device="cuda", progress=False)


def test_init_from_another_run(cache: Path, tmp_path: Path) -> None:
    first = Trainer(tiny_config(epochs=1), cache, tmp_path / "a", fold=0, progress=False)
    first.fit()
    frozen = from_dict(EntryConfig, {**to_dict(tiny_config(epochs=1, init_from=str(tmp_path / "a"))),
                                     "optim": {**to_dict(tiny_config())["optim"], "lr": 0.0}})
    second = Trainer(frozen, cache, tmp_path / "b", fold=0, progress=False)
    second.fit()
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # lr 0: the weights are the loaded ones
    with pytest.raises(BratsInputError, match="no checkpoint_last.pt"):
        Trainer(tiny_config(epochs=1, init_from=str(tmp_path / "nothing")), cache, tmp_path / "c",
                fold=0, progress=False).fit()
