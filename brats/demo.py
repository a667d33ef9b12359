"""The demo behind ``make demo``: synthetic BraTS 2017 data → check → prepare → figure.

Everything goes under one working folder; a second run reuses what the first made.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from brats.data.checks import check_dataset
from brats.preprocess.cache import prepare_dataset
from brats.synth.generator import generate_dataset
from brats.viz import plot_case, save_figure

TRAINING_CASES = 6
VALIDATION_CASES = 2
SEED = 2017


def _synth_once(folder: Path, cases: int, with_seg: bool, progress: bool) -> None:
    """Generate a split unless a finished one is there; a half-written demo split is redone."""
    done = folder.with_name(folder.name + ".done")
    if done.is_file():
        print(f"reusing {folder}")
        return
    if folder.exists():
        shutil.rmtree(folder)
    generate_dataset(folder, cases=cases, seed=SEED, release="2017", with_seg=with_seg, jobs=2,
                     progress=progress)
    done.write_text("complete\n")


def run_demo(out: Path, progress: bool = True) -> None:
    """Run the demo in ``out`` and print what it made."""
    data = out / "data"
    train, val = data / "Brats17TrainingData", data / "Brats17ValidationData"
    print(f"[1/4] synthetic BraTS 2017 data in {data}")
    _synth_once(train, TRAINING_CASES, True, progress)
    _synth_once(val, VALIDATION_CASES, False, progress)
    print("[2/4] brats check")
    for folder in (train, val):
        count, problems = check_dataset(folder, jobs=2, progress=progress)
        print(f"  {folder.name}: {count} case(s), {len(problems)} problem(s)")
        if not problems.empty:
            print(problems.to_string(index=False))
    print("[3/4] brats prepare")
    records = prepare_dataset(train, out / "cache" / "train", jobs=2, progress=progress)
    prepare_dataset(val, out / "cache" / "validation", jobs=2, progress=progress)
    table = pd.DataFrame([{
        "case": r.id, "grade": r.grade,
        "crop": "×".join(str(b - a) for a, b in r.box),
        **{f"{k} [mL]": round(v * float(pd.Series(r.spacing).prod()) / 1000, 1)
           for k, v in r.region_voxels.items()},
    } for r in records])
    print(table.to_string(index=False))
    print("[4/4] brats show")
    from brats.data.layouts import discover

    first = discover(train)[0]
    figure = out / "figures" / f"{first.id}.png"
    save_figure(plot_case(first.load()), figure)
    print(f"  figure: {figure}")
    print(f"demo finished: data in {data}, cache in {out / 'cache'}, figure in {figure}")
