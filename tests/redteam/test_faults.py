"""Faults beyond single bad arguments: file modes, a full disk, damaged caches that ``brats
prepare`` rebuilds, checkpoints that load with ``weights_only=True`` and a run folder left by a
crash before its first checkpoint."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from brats.io import write_text
from brats.preprocess.cache import load_index, load_prepared
from tests.redteam.cases import TRAIN_FAST
from tests.redteam.conftest import Session
from tests.redteam.test_redteam import checksums, run_cli


def test_outputs_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_text("x", tmp_path / "a.txt")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640  # 0666 less 027, not 0600


def test_full_disk_is_one_line_and_leaves_no_partial_file(session: Session, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        (disk / "filler").write_bytes(b"\0" * 60_000)
        code, _, err = run_cli(["show", str(session.case_dirs[0]), "--out", str(disk / "f.png")])
        assert code == 2 and err.count("\n") == 1 and "No space left" in err
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_prepare_rebuilds_damaged_and_changed_cases_only(session: Session, tmp_path: Path) -> None:
    data = shutil.copytree(session.data, tmp_path / "data")
    cache = tmp_path / "cache"
    assert run_cli(["prepare", str(data), "--out", str(cache)])[0] == 0
    first, second = load_index(cache)["cases"]
    kept = (cache / f"{second}_image.npy").stat().st_mtime_ns
    reference = np.load(cache / f"{first}_image.npy")
    (cache / f"{first}_image.npy").write_bytes(b"\x93NUMPY truncated")
    code, _, err = run_cli(["train", "isensee2017", "--data", str(cache), "--out",
                            str(tmp_path / "run"), *TRAIN_FAST])
    assert code == 2 and f"brats prepare {data.resolve()} --out {cache}" in err
    assert run_cli(["prepare", str(data), "--out", str(cache)])[0] == 0  # redoes the damaged case
    assert np.array_equal(load_prepared(cache, first).image, reference)
    assert (cache / f"{second}_image.npy").stat().st_mtime_ns == kept
    # a source file that changed since the cache was built: its case is rebuilt from the new file
    flair = next(data.rglob(f"{second}_flair.nii.gz"))
    shutil.copy2(next(data.rglob(f"{second}_t2.nii.gz")), flair)
    assert run_cli(["prepare", str(data), "--out", str(cache)])[0] == 0
    rebuilt = load_prepared(cache, second).image
    assert np.array_equal(rebuilt[3], rebuilt[2])  # flair now holds the t2 intensities


def test_checkpoints_are_plain_and_a_crash_before_the_first_resumes(session: Session,
                                                                     tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "isensee2017", "--data", str(session.cache), "--out", str(run),
            "--device", "cpu", *TRAIN_FAST]
    assert run_cli(args)[0] == 0
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)  # no pickled objects
    assert state["epoch"] == 0 and isinstance(state["rng"]["numpy"][1], list)
    # as after a crash before the first checkpoint: only the run's own files are left
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "log.csv", "training_done.json"):
        (run / name).unlink(missing_ok=True)
    assert run_cli([*args, "--resume"])[0] == 0
    assert torch.load(run / "checkpoint_last.pt", weights_only=True)["epoch"] == 0
    # 64 damaged bytes: resuming is refused and the file is left for the user to inspect
    data = bytearray((run / "checkpoint_last.pt").read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    (run / "checkpoint_last.pt").write_bytes(bytes(data))
    before = checksums(run)
    code, _, err = run_cli([*args, "--resume", "train.epochs=2"])
    assert code == 2 and "checkpoint is damaged" in err
    assert checksums(run) == before
