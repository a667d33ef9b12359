"""A run folder knows what made it: re-runs with other settings, --resume, --overwrite, logs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from brats.cli import main
from brats.manifest import read_manifest
from tests.conftest import synthetic_cache

TINY = ["--profile", "quick", "--no-progress", "data.workers=0", "train.tensorboard=false",
        "network.kwargs.base_filters=2", "train.iterations_per_epoch=1", "train.val_batches=1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_cache(tmp_path_factory.mktemp("runs"), cases=3, seed=2, shape=(48, 48, 32))


def train(cache: Path, out: Path, *extra: str) -> int:
    return main(["train", "isensee2017", "--data", str(cache), "--out", str(out), *TINY, *extra])


def epochs_in(run: Path) -> int:
    return torch.load(run / "checkpoint_last.pt", weights_only=False)["epoch"] + 1


def test_resume_with_more_epochs_continues_to_the_new_end(cache, tmp_path, capsys):
    run = tmp_path / "r0"
    assert train(cache, run, "train.epochs=2") == 0
    assert train(cache, run, "--resume", "train.epochs=3") == 0
    out = capsys.readouterr().out
    assert "trained 1 epoch(s) now, 3 in all" in out
    assert epochs_in(run) == 3
    assert len(pd.read_csv(run / "log.csv")) == 3
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 3
    assert read_manifest(run)["settings"]["config"]["train"]["epochs"] == 3
    log = (run / "train.log").read_text()
    assert "continuing" in log and "train.epochs 2 → 3" in log and "epoch 3/3" in log
    assert (run / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # finished: the same settings again do nothing and say so
    assert train(cache, run, "--resume", "train.epochs=3") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert epochs_in(run) == 3
    # fewer epochs than already trained
    assert train(cache, run, "--resume", "train.epochs=2") == 2
    assert "already trained 3 epochs" in capsys.readouterr().err


def test_other_settings_are_refused_until_overwrite(cache, tmp_path, capsys):
    run = tmp_path / "r1"
    assert train(cache, run, "train.epochs=1") == 0
    capsys.readouterr()
    before = (run / "checkpoint_last.pt").read_bytes()
    assert train(cache, run, "--resume", "train.epochs=1", "network.kwargs.base_filters=4") == 2
    err = capsys.readouterr().err
    assert err.startswith("brats: error: ") and err.count("\n") == 1
    assert "config.network.kwargs.base_filters: 2 → 4" in err and "--overwrite" in err
    assert (run / "checkpoint_last.pt").read_bytes() == before
    assert train(cache, run, "train.epochs=1") == 2
    assert "--resume" in capsys.readouterr().err
    (run / "notes.txt").write_text("mine")
    assert train(cache, run, "--overwrite", "train.epochs=1", "network.kwargs.base_filters=4") == 2
    assert "notes.txt" in capsys.readouterr().err           # a user file is never removed
    (run / "notes.txt").unlink()
    assert train(cache, run, "--overwrite", "train.epochs=1", "network.kwargs.base_filters=4") == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["network"]["kwargs"][
        "base_filters"] == 4
    state = torch.load(run / "checkpoint_last.pt", weights_only=False)
    assert state["network_kwargs"]["base_filters"] == 4 and state["epoch"] == 0


def test_folders_that_are_not_runs(cache, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "data.csv").write_text("x")
    assert train(cache, foreign, "train.epochs=1") == 2
    assert "not a run folder" in capsys.readouterr().err
    assert (foreign / "data.csv").read_text() == "x"
    # a run that died before its first checkpoint leaves only its own files: it starts again
    crashed = tmp_path / "crashed"
    assert train(cache, crashed, "train.epochs=1") == 0
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "log.csv", "training_done.json"):
        (crashed / name).unlink(missing_ok=True)
    assert train(cache, crashed, "train.epochs=1") == 0
    assert epochs_in(crashed) == 1
    assert json.loads((crashed / "training_done.json").read_text())["epochs"] == 1
