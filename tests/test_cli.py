"""The ``brats`` command, called in-process: exit codes and one-line errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from brats.cli import build_parser, main


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([*args, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_clean_dataset(tiny_2017: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["check", str(tiny_2017)], capsys)
    assert code == 0
    assert "2 case(s), no problems found" in out


def test_check_prints_a_table_and_exits_1(tiny_2017: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    first, second = sorted(tiny_2017.rglob("*_t1.nii.gz"))
    (first.parent / first.name.replace("_t1.", "_flair.")).unlink()
    (second.parent / second.name.replace("_t1.", "_t2.")).write_bytes(b"junk")
    code, out, _ = run(["check", str(tiny_2017)], capsys)
    assert code == 1
    assert "missing modality flair" in out
    assert "cannot read NIfTI" in out
    assert "2 problem(s)" in out


def test_bad_input_is_one_line_without_traceback(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["check", str(tmp_path / "absent")], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0
    assert err.startswith("brats: error: ") and "dataset folder not found" in err
    assert "Traceback" not in err


def test_prepare_and_show(tiny_2017: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["prepare", str(tiny_2017), "--out", str(tmp_path / "cache")], capsys)
    assert code == 0 and "2 case(s) (2 with labels), release 2017" in out
    case_dir = next(tiny_2017.rglob("*_t1.nii.gz")).parent
    figure = tmp_path / "fig.png"
    code, out, _ = run(["show", str(case_dir), "--out", str(figure)], capsys)
    assert code == 0 and figure.stat().st_size > 10_000
    code, _, err = run(["show", str(case_dir), "--out", str(figure)], capsys)
    assert code == 2 and "exists; pass --overwrite" in err
    code, _, err = run(["show", str(tiny_2017), "--out", str(tmp_path / "f2.png")], capsys)
    assert code == 2 and "holds 2 cases; pick one with --case" in err


def test_display_orientation_is_radiological() -> None:
    from brats.data.geometry import brats_affine
    from brats.viz import to_display

    volume = np.zeros((4, 6, 5, 3))
    volume[0, 0, 0, 0] = 1  # BraTS voxel (0, 0, 0): the most right-ward, anterior corner (L, P axes)
    shown = to_display(volume, brats_affine((6, 5, 3)))
    assert shown.shape == (4, 6, 5, 3)
    # LAS display: x still runs towards the patient's left, y is flipped to run anterior.
    assert shown[0, 0, 4, 0] == 1


def test_validate_zips_a_good_submission_and_rejects_a_bad_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from brats.data.layouts import discover
    from brats.submission import write_submission
    from tests.conftest import make_arrays, write_tiny_dataset

    images = tmp_path / "val"
    write_tiny_dataset(images, "2017", 2, with_seg=False)
    sub = tmp_path / "sub"
    for i, case in enumerate(discover(images), start=1):
        write_submission(make_arrays(i)[1], case.images[0], sub / f"{case.id}.nii.gz")
    code, out, _ = run(["validate", str(sub), "--images", str(images)], capsys)
    assert code == 0 and (tmp_path / "sub.zip").is_file() and "valid submission" in out
    next(sub.iterdir()).unlink()
    code, out, _ = run(["validate", str(sub), "--images", str(images), "--zip",
                        str(tmp_path / "other.zip")], capsys)
    assert code == 1 and "missing prediction" in out and not (tmp_path / "other.zip").exists()


def test_leaderboard_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    for name, dice in (("good", 0.9), ("bad", 0.5)):
        pd.DataFrame([{"case": c, "region": r, "dice": dice, "hd95": 1 / dice}
                      for c in ("a", "b") for r in ("WT", "TC", "ET")]).to_csv(
            tmp_path / f"{name}.csv", index=False)
    code, out, _ = run(["leaderboard", str(tmp_path / "bad.csv"), str(tmp_path / "good.csv"),
                        "--out", str(tmp_path / "board.md"), "--plot",
                        str(tmp_path / "board.png")], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[2].startswith("| good | 0.900") and lines[3].startswith("| bad | 0.500")
    assert (tmp_path / "board.md").read_text() == out
    assert (tmp_path / "board.png").stat().st_size > 10_000


def test_synth_writes_a_dataset_and_refuses_a_full_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    code, text, _ = run(["synth", str(out), "--cases", "2", "--seed", "3", "--shape", "48", "48",
                         "31", "--no-seg"], capsys)
    assert code == 0 and "wrote 2 synthetic validation" in text
    assert sorted(p.name for p in out.iterdir()) == ["Brats17_SYNVAL_001_1", "Brats17_SYNVAL_002_1"]
    code, _, err = run(["synth", str(out), "--cases", "1", "--shape", "48", "48", "31"], capsys)
    assert code == 2 and "not empty" in err


@pytest.mark.parametrize("argv, flags", [
    (["check", "d"], (False, False, False)),
    (["--no-progress", "check", "d"], (True, False, False)),
    (["check", "d", "--no-progress"], (True, False, False)),
    (["-v", "check", "d"], (False, True, False)),
    (["check", "--verbose", "d"], (False, True, False)),
    (["--quiet", "--no-progress", "train", "isensee2017", "--data", "c", "--out", "r"],
     (True, False, True)),
    (["-q", "entries", "--no-progress"], (True, False, True)),
])
def test_global_flags_before_or_after_the_subcommand(argv: list[str],
                                                     flags: tuple[bool, bool, bool]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.no_progress, args.verbose, args.quiet) == flags


def test_no_progress_before_the_subcommand_hides_the_bars(
        tiny_2017: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tiny_2017)]) == 0
    assert "2/2" in capsys.readouterr().err
    assert main(["--no-progress", "check", str(tiny_2017)]) == 0
    assert capsys.readouterr().err == ""


def test_verbosity_flags_configure_logging(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("brats.training.trainer")
    for flags, shown in (([], ["info", "warning"]), (["-q"], ["warning"]),
                         (["--verbose"], ["debug", "info", "warning"])):
        assert main([*flags, "entries"]) == 0
        capsys.readouterr()
        for level in ("debug", "info", "warning"):
            getattr(log, level)(f"{level} line")
        err = capsys.readouterr().err
        assert [w for w in ("debug", "info", "warning") if f"{w} line" in err] == shown
    with pytest.raises(SystemExit) as exc:
        main(["-v", "entries", "-q"])
    assert exc.value.code == 2
    assert "at most one of --verbose and --quiet" in capsys.readouterr().err


def test_entries_lists_each_entry_with_description_and_profiles(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["entries"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines[::2]] == ["isensee2017", "kamnitsas2017",
                                                         "wang2017"]
    assert lines[0] == ("isensee2017: residual 3D U-Net, 128³ patches, multi-class soft Dice, "
                        "mirror TTA, 5-fold ensemble")
    assert lines[1::2] == ["    profiles: paper, quick"] * 3
