"""One tiny synthetic dataset, validation split, cache, predictions and metrics CSVs per session,
shared read-only by every red-team case."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from brats.cli import main

SHAPE = ("24", "24", "16")


@dataclass(frozen=True)
class Session:
    """The shared inputs. ``root`` holds them all (its checksums are compared around every case)."""

    root: Path
    data: Path
    val: Path
    cache: Path
    preds: Path
    metrics: Path
    metrics2: Path

    @property
    def case_dirs(self) -> list[Path]:
        """The training case folders, sorted."""
        return sorted(p.parent for p in self.data.rglob("*_t1.nii.gz"))


@pytest.fixture(scope="session")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """Two 24×24×16 training cases, one validation case, their cache, the references copied as
    predictions and two metrics CSVs (made by ``brats evaluate``)."""
    root = tmp_path_factory.mktemp("redteam")
    data, val = root / "Brats17TrainingData", root / "Brats17ValidationData"
    for args in (["synth", str(data), "--cases", "2", "--shape", *SHAPE],
                 ["synth", str(val), "--cases", "1", "--no-seg", "--shape", *SHAPE],
                 ["prepare", str(data), "--out", str(root / "cache")]):
        assert main([*args, "--no-progress", "-q"]) == 0
    preds = root / "preds"
    preds.mkdir()
    for seg in data.rglob("*_seg.nii.gz"):
        shutil.copy(seg, preds / seg.name.replace("_seg", ""))
    for name in ("metrics.csv", "metrics2.csv"):
        assert main(["evaluate", str(preds), str(data), "--out", str(root / name),
                     "--no-progress", "-q"]) == 0
    return Session(root, data, val, root / "cache", preds, root / "metrics.csv",
                   root / "metrics2.csv")
