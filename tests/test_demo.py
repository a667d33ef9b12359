"""``brats demo`` end to end on a tiny setting (one entry, tiny grid and training): its outputs,
the post-processed leaderboard row, the model package and the uncertainty maps, and the reuse
of all of them by a second run."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from brats import demo
from brats.config import parse_overrides
from brats.manifest import read_manifest
from brats.package import open_package
from brats.reproduce import reproduce

TINY = parse_overrides(["data.patch_size=[32, 32, 32]", "data.workers=0",
                        "network.kwargs.base_filters=4", "train.epochs=1",
                        "train.iterations_per_epoch=2", "train.val_batches=1",
                        "train.tensorboard=false"])


def test_demo_tiny_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo, "TRAINING_CASES", 4)
    monkeypatch.setattr(demo, "VALIDATION_CASES", 2)
    monkeypatch.setattr(demo, "HELD_OUT_CASES", 2)
    monkeypatch.setattr(demo, "SHAPE", (48, 48, 32))
    monkeypatch.setattr(demo, "ENTRIES", ("isensee2017",))
    monkeypatch.setattr(demo, "reproduce", functools.partial(reproduce, overrides=TINY))
    out = tmp_path / "demo"
    demo.run_demo(out, progress=False)
    printed = capsys.readouterr().out
    steps = [line.split("]")[0] + "]" for line in printed.splitlines()
             if line.startswith("[") and line[1].isdigit()]
    assert steps == [f"[{k}/6]" for k in range(1, 7)], steps
    held_out = sorted(p.name for p in (out / "isensee2017" / "held_out").glob("*.nii.gz"))
    assert held_out == ["Brats17_SYN_005_1.nii.gz", "Brats17_SYN_006_1.nii.gz"]  # after training
    held_board = (out / "leaderboard_held_out.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in held_board[2:]] == ["| isensee2017"]
    board = (out / "leaderboard.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in board[2:]] == ["| isensee2017", "| isensee2017+pp"] \
        or [line.split(" | ")[0] for line in board[2:]] == ["| isensee2017+pp", "| isensee2017"]
    rule = read_manifest(out / "isensee2017" / "cv_predictions_pp")["settings"]["rule"]
    assert set(rule) == {"largest_component", "et_threshold_voxels"}
    assert (out / "isensee2017" / "postprocessing.json").is_file()
    assert (out / "isensee2017" / "cv_metrics_pp.csv").is_file()
    package = open_package(out / "models" / "isensee2017.zip")
    assert sorted(m["name"] for m in package.manifest["members"]) == ["model/fold0",
                                                                      "model/fold1"]
    maps = out / "uncertainty" / "isensee2017"
    for case in ("Brats17_SYNVAL_001_1", "Brats17_SYNVAL_002_1"):
        assert (maps / f"{case}.nii.gz").is_file()
        for region in ("whole", "core", "enhance"):
            assert (maps / f"{case}_unc_{region}.nii.gz").is_file()
    assert not (out / "isensee2017" / "submission_pp").exists()  # the submission stays plain
    stamp = (maps / "Brats17_SYNVAL_001_1_unc_whole.nii.gz").stat().st_mtime_ns
    zipped = (out / "models" / "isensee2017.zip").stat().st_mtime_ns
    demo.run_demo(out, progress=False)  # a second run reuses the package and the maps
    assert "reusing" in capsys.readouterr().out
    assert (maps / "Brats17_SYNVAL_001_1_unc_whole.nii.gz").stat().st_mtime_ns == stamp
    assert (out / "models" / "isensee2017.zip").stat().st_mtime_ns == zipped
