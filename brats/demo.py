"""The demo behind ``make demo``: synthetic BraTS 2017 data → checks → ``brats reproduce`` of the
three entries with the ``quick`` profile (each with its tuned post-processing scored as
``<entry>+pp``) → validated submission folders (default ``<out>/submissions/<entry>/``) → a model
package of Isensee et al.'s fold models and, predicted from it, QU-BraTS uncertainty maps of the
validation cases → leaderboard table (plain and post-processed rows) and figures → each
entry's submission models scored on labelled held-out synthetic cases (other seed, never
trained on or tuned on).

Everything goes under one working folder (``make demo`` publishes the submissions to the
checkout's ``submissions/output/`` instead); a second run reuses what the first made (no
retraining). The synthetic grid is 80×80×52 (3 mm voxels) so that CPU training takes minutes.
"""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import pandas as pd

from brats.config import EntryConfig
from brats.data.checks import check_dataset
from brats.data.layouts import discover
from brats.errors import BratsInputError
from brats.evaluation import evaluate_folder
from brats.inference.predictor import find_runs, predict_folder
from brats.io import write_text
from brats.leaderboard import leaderboard, load_tables, plot_leaderboard, to_markdown
from brats.package import export_package
from brats.reproduce import reproduce, submission_runs
from brats.submission import require_valid_submission, zip_submission
from brats.synth.generator import generate_dataset
from brats.viz import plot_case, save_figure

TRAINING_CASES = 8
VALIDATION_CASES = 3
HELD_OUT_CASES = 4
SHAPE = (80, 80, 52)
SEED = 2017
ENTRIES = ("isensee2017", "wang2017", "kamnitsas2017")
#: The entry whose runs the demo packs (``brats export``) and predicts with uncertainty maps.
PACKAGED_ENTRY = "isensee2017"


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


def _synth_once(folder: Path, cases: int, with_seg: bool, progress: bool,
                first: int = 0) -> None:
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
                     with_seg=with_seg, jobs=2, progress=progress, first=first)
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


def package_and_uncertainty(out: Path, entry: str, images: Path, progress: bool = True
                            ) -> tuple[Path, Path]:
    """Pack the reproduced ``entry``'s runs into ``out/models/<entry>.zip`` (``brats export``;
    an existing package is reused) and predict ``images`` from it with QU-BraTS uncertainty
    maps into ``out/uncertainty/<entry>/`` (``brats predict --model … --uncertainty``; cases
    already there are kept). Returns ``(package, uncertainty folder)``."""
    package = out / "models" / f"{entry}.zip"
    if package.is_file():
        print(f"  reusing {package}")
    else:
        package.parent.mkdir(parents=True, exist_ok=True)
        export_package(find_runs([out / entry / "runs"]), package)
    folder = out / "uncertainty" / entry
    predict_folder([], images, folder, model=package, uncertainty_dir=folder, resume=True,
                   progress=progress)
    return package, folder


def score_held_out(out: Path, entry: str, config: EntryConfig, held_out: Path,
                   progress: bool = True) -> pd.DataFrame:
    """Predict the labelled ``held_out`` cases with the models of ``entry``'s submission
    (:func:`brats.reproduce.submission_runs`) into ``out/<entry>/held_out/`` (cases already
    there are kept) and score them (``brats evaluate``)."""
    folder = out / entry / "held_out"
    predict_folder(submission_runs(config, out / entry / "runs"), held_out, folder, resume=True,
                   progress=progress)
    return evaluate_folder(folder, held_out, progress=False)


def run_demo(out: Path, progress: bool = True, submissions: Path | None = None) -> None:
    """Run the demo in ``out`` and print what it made; submission folders go to
    ``submissions/<entry>/`` (default: ``out/submissions``)."""
    submissions = out / "submissions" if submissions is None else submissions
    _claim(out)
    data = out / "data"
    train, val = data / "Brats17TrainingData", data / "Brats17ValidationData"
    held_out = data / "HeldOutData"
    total = len(ENTRIES) + 5
    print(f"[1/{total}] synthetic BraTS 2017 data ({TRAINING_CASES} training, {VALIDATION_CASES} "
          f"validation, {HELD_OUT_CASES} labelled held-out cases, {SHAPE[0]}×{SHAPE[1]}×"
          f"{SHAPE[2]}) in {data}")
    _synth_once(train, TRAINING_CASES, True, progress)
    _synth_once(val, VALIDATION_CASES, False, progress)
    _synth_once(held_out, HELD_OUT_CASES, True, progress, first=TRAINING_CASES)
    for folder in (train, val):
        count, problems = check_dataset(folder, jobs=2, progress=False)
        print(f"  brats check {folder.name}: {count} case(s), {len(problems)} problem(s)")
        if not problems.empty:
            print(problems.to_string(index=False))
    configs = {}
    for step, entry in enumerate(ENTRIES, start=2):
        print(f"[{step}/{total}] brats reproduce {entry} --profile quick")
        result = reproduce(entry, train, out / entry, validation_dir=val, profile="quick",
                           jobs=2, progress=progress)
        configs[entry] = result["config"]
        archive = publish_submission(result["submission"].with_suffix(""), submissions / entry, val)
        print(f"  submission (validated): {submissions / entry}/ and {archive}")
    print(f"[{total - 3}/{total}] brats export {PACKAGED_ENTRY} → model package; brats predict "
          "--model … --uncertainty on the validation cases")
    package, maps = package_and_uncertainty(out, PACKAGED_ENTRY, val, progress)
    print(f"  {package}\n  {maps}/ (<case>.nii.gz and <case>_unc_whole/_core/_enhance.nii.gz)")
    print(f"[{total - 2}/{total}] leaderboard (cross-validation on the synthetic training cases; "
          "+pp: with the post-processing tuned on it)")
    tables = load_tables([out / entry for entry in ENTRIES], list(ENTRIES))
    board = leaderboard(tables)
    markdown = to_markdown(board)
    print(markdown, end="")
    write_text(markdown, out / "leaderboard.md")
    save_figure(plot_leaderboard({e: tables[e] for e in ENTRIES}), out / "leaderboard.png")
    print(f"[{total - 1}/{total}] the submission models on the {HELD_OUT_CASES} held-out cases")
    held = {entry: score_held_out(out, entry, configs[entry], held_out, progress)
            for entry in ENTRIES}
    markdown = to_markdown(leaderboard(held))
    print(markdown, end="")
    write_text(markdown, out / "leaderboard_held_out.md")
    print(f"[{total}/{total}] figures")
    first = discover(train)[0]
    figure = save_figure(plot_case(first.load()), out / "figures" / f"{first.id}.png")
    print(f"  {out / 'leaderboard.png'}\n  {figure}")
    print(f"demo finished: everything is under {out}")
