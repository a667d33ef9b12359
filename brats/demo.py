"""The demo behind ``make demo``: synthetic BraTS 2017 data → checks → ``brats reproduce`` of the
three entries with the ``quick`` profile → validated submission folders (default
``<out>/submissions/<entry>/``) → leaderboard table and figures.

Everything goes under one working folder (``make demo`` publishes the submissions to the
checkout's ``submissions/output/`` instead); a second run reuses what the first made (no
retraining). The synthetic grid is 80×80×52 (3 mm voxels) so that CPU training takes minutes.
"""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

from brats.data.checks import check_dataset
from brats.data.layouts import discover
from brats.errors import BratsInputError
from brats.io import write_text
from brats.leaderboard import leaderboard, plot_leaderboard, read_metrics, to_markdown
from brats.reproduce import reproduce
from brats.submission import require_valid_submission, zip_submission
from brats.synth.generator import generate_dataset
from brats.viz import plot_case, save_figure

TRAINING_CASES = 8
VALIDATION_CASES = 3
SHAPE = (80, 80, 52)
SEED = 2017
ENTRIES = ("isensee2017", "wang2017", "kamnitsas2017")


#: Marker file the demo puts in its working folder; the demo works only in folders holding it.
MARKER = ".brats-demo"


def _claim(out: Path) -> None:
    """Make ``out`` the demo's working folder: a new or empty folder, or one an earlier demo made
    (it holds the marker, or, before the marker, a finished synthetic training split).

    Raises:
        BratsInputError: ``out`` holds files but no demo marker (it is not the demo's).
    """
    earlier = (out / MARKER).is_file() or (out / "data" / "Brats17TrainingData.done").is_file()
    if out.exists() and not earlier:
        if not out.is_dir() or any(out.iterdir()):
            raise BratsInputError(f"{out} exists and was not made by brats demo; choose a new or "
                                  "empty --out")
    out.mkdir(parents=True, exist_ok=True)
    write_text("working folder of brats demo\n", out / MARKER)


def _synth_once(folder: Path, cases: int, with_seg: bool, progress: bool) -> None:
    """Generate a split unless a finished one is there; a split the demo started but did not
    finish (``<folder>.started`` without ``<folder>.done``) is redone, any other folder of that
    name is the user's and is refused."""
    done = folder.with_name(folder.name + ".done")
    started = folder.with_name(folder.name + ".started")
    if done.is_file():
        print(f"  reusing {folder}")
        return
    if folder.exists():
        if not started.is_file():
            raise BratsInputError(f"{folder} exists and was not made by brats demo; move it away "
                                  "or choose a new --out")
        shutil.rmtree(folder)
    write_text("started\n", started)
    generate_dataset(folder, cases=cases, seed=SEED, release="2017", shape=SHAPE,
                     with_seg=with_seg, jobs=2, progress=progress)
    write_text("complete\n", done)


def publish_submission(source: Path, target: Path, images: Path) -> Path:
    """Copy a submission folder to ``target`` (and ``target.zip``) and validate it.

    Files already there with the same content are kept; a different file is never replaced.

    Returns:
        The zip file.

    Raises:
        BratsInputError: ``target`` holds a different file, or the submission fails validation.
    """
    target.mkdir(parents=True, exist_ok=True)
    for file in sorted(source.glob("*.nii.gz")):
        copy = target / file.name
        if not copy.exists():
            shutil.copy2(file, copy)
        elif not filecmp.cmp(file, copy, shallow=False):
            raise BratsInputError(f"{copy} differs from the demo's new prediction {file}; remove "
                                  f"{target} to publish the new one")
    require_valid_submission(target, images, progress=False)
    zip_path = target.with_name(target.name + ".zip")
    return zip_path if zip_path.is_file() else zip_submission(target, zip_path)


def run_demo(out: Path, progress: bool = True, submissions: Path | None = None) -> None:
    """Run the demo in ``out`` and print what it made; submission folders go to
    ``submissions/<entry>/`` (default: ``out/submissions``)."""
    submissions = out / "submissions" if submissions is None else submissions
    _claim(out)
    data = out / "data"
    train, val = data / "Brats17TrainingData", data / "Brats17ValidationData"
    total = len(ENTRIES) + 3
    print(f"[1/{total}] synthetic BraTS 2017 data ({TRAINING_CASES} training, {VALIDATION_CASES} "
          f"validation cases, {SHAPE[0]}×{SHAPE[1]}×{SHAPE[2]}) in {data}")
    _synth_once(train, TRAINING_CASES, True, progress)
    _synth_once(val, VALIDATION_CASES, False, progress)
    for folder in (train, val):
        count, problems = check_dataset(folder, jobs=2, progress=False)
        print(f"  brats check {folder.name}: {count} case(s), {len(problems)} problem(s)")
        if not problems.empty:
            print(problems.to_string(index=False))
    tables = {}
    for step, entry in enumerate(ENTRIES, start=2):
        print(f"[{step}/{total}] brats reproduce {entry} --profile quick")
        result = reproduce(entry, train, out / entry, validation_dir=val, profile="quick",
                           jobs=2, progress=progress)
        tables[entry] = read_metrics(out / entry / "cv_metrics.csv")
        archive = publish_submission(result["submission"].with_suffix(""), submissions / entry, val)
        print(f"  submission (validated): {submissions / entry}/ and {archive}")
    print(f"[{total - 1}/{total}] leaderboard (cross-validation on the synthetic training cases)")
    board = leaderboard(tables)
    markdown = to_markdown(board)
    print(markdown, end="")
    write_text(markdown, out / "leaderboard.md")
    save_figure(plot_leaderboard(tables), out / "leaderboard.png")
    print(f"[{total}/{total}] figures")
    first = discover(train)[0]
    figure = save_figure(plot_case(first.load()), out / "figures" / f"{first.id}.png")
    print(f"  {out / 'leaderboard.png'}\n  {figure}")
    print(f"demo finished: everything is under {out}")
