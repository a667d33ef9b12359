"""Benchmark scoring a whole validation folder with ``brats.evaluation.evaluate_folder``.

Usage::

    python benchmarks/evaluation/bench_evaluation.py [--quick] [--cases 50] [--jobs 2]
        [--shape X Y Z] [--work DIR] [--out DIR]

``--cases`` synthetic training cases (``brats.synth.generate_dataset``, default 50 × 240×240×155,
written once and reused) are the references. Each gets a perturbed prediction written as a
submission file (``brats.submission.write_submission``): the reference shifted by one voxel per
axis, WT dilated by one voxel, TC eroded by one voxel (ET kept inside it), plus a radius-3 ET ball
on a brain voxel away from the tumour. Timed: ``evaluate_folder(predictions, references,
jobs=…)`` end to end (matching files, reading both NIfTIs, WT/TC/ET Dice, HD95, sensitivity,
specificity, volumes), with ``--jobs`` processes and with one. Results: ``<out>/evaluation.json``
and ``.md``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import environment, header_lines, load_average, target_row, write_result  # noqa: E402
from brats.data.labels import REGIONS, labels_from_regions  # noqa: E402
from brats.data.layouts import discover  # noqa: E402
from brats.data.nifti import read_nifti  # noqa: E402
from brats.evaluation import evaluate_folder  # noqa: E402
from brats.submission import submission_name, write_submission  # noqa: E402
from brats.synth import generate_dataset  # noqa: E402

SECONDS_TARGET = 60.0
TARGET_CASES = 50


def perturb(labels: np.ndarray, brain: np.ndarray, seed: int) -> np.ndarray:
    """A plausible prediction: shifted, WT dilated, TC eroded, one false-positive ET ball."""
    moved = np.roll(labels, (1, -1, 1), axis=(0, 1, 2))
    wt = ndi.binary_dilation(np.isin(moved, REGIONS["WT"]))
    tc = ndi.binary_erosion(np.isin(moved, REGIONS["TC"]))
    pred = labels_from_regions(wt, tc, (moved == 4) & tc)
    far = np.argwhere(brain & ~ndi.binary_dilation(wt, iterations=10))
    if len(far):
        centre = far[np.random.default_rng(seed).integers(len(far))]
        grid = np.indices(labels.shape, sparse=True)
        pred[sum((g - c) ** 2 for g, c in zip(grid, centre)) <= 9] = 4
    return pred


def folders(work: Path, shape: tuple[int, int, int], cases: int, seed: int, jobs: int) -> tuple[Path, Path]:
    """``(references, predictions)`` folders (made once, reused)."""
    root = work / f"evaluation-{cases}cases-{'x'.join(map(str, shape))}-seed{seed}"
    if not (root / ".complete").is_file():
        shutil.rmtree(root, ignore_errors=True)
        generate_dataset(root / "references", cases=cases, seed=seed, shape=shape, jobs=jobs)
        (root / "predictions").mkdir()
        for index, case in enumerate(tqdm(discover(root / "references"), desc="predictions", unit="case")):
            labels, _, _ = read_nifti(case.seg)
            brain = read_nifti(case.images[0])[0] != 0
            write_submission(perturb(np.asarray(labels, np.uint8), brain, seed + index), case.images[0],
                             root / "predictions" / submission_name(case.id), release=case.release)
        (root / ".complete").touch()
    return root / "references", root / "predictions"


def targets(result: dict) -> list[dict]:
    m, cases = result["measured"], result["settings"]["cases"]
    seconds = m["seconds_jobs"]
    scaled = seconds * TARGET_CASES / cases
    grid = "×".join(map(str, result["settings"]["shape"]))
    name = f"score {TARGET_CASES} cases of {grid}, jobs={result['settings']['jobs']}"
    if cases != TARGET_CASES:
        name += f" (scaled from {cases} cases)"
    return [target_row("evaluation", name, scaled, "s", f"< {SECONDS_TARGET:g}", scaled < SECONDS_TARGET),
            target_row("evaluation", "score one case, one process", m["seconds_per_case_1_job"], "s", "—",
                       None)]


def write_markdown(result: dict) -> list[str]:
    s, m = result["settings"], result["measured"]
    lines = header_lines("Evaluation benchmark: scoring a validation folder", result["environment"],
                         s["quick"])
    lines += [
        f"* {s['cases']} synthetic cases of {'×'.join(map(str, s['shape']))}, predictions = reference "
        "shifted by one voxel, WT dilated, TC eroded, one false-positive ET ball",
        f"* `evaluate_folder(predictions, references, convention='{s['convention']}')`: reading, "
        "matching and WT/TC/ET Dice, HD95, sensitivity, specificity and volumes",
        "",
        "| processes | seconds, whole folder | s/case | cases/s |",
        "|---|---|---|---|",
        f"| {s['jobs']} | **{m['seconds_jobs']:.1f}** | {m['seconds_jobs'] / s['cases']:.3f} | "
        f"{s['cases'] / m['seconds_jobs']:.2f} |",
        f"| 1 | {m['seconds_1_job']:.1f} | {m['seconds_per_case_1_job']:.3f} | "
        f"{s['cases'] / m['seconds_1_job']:.2f} |",
        "",
        "* Mean Dice WT / TC / ET over the folder: "
        + " / ".join(f"{m['mean_dice'][r]:.3f}" for r in REGIONS) + "; mean HD95 "
        + " / ".join(f"{m['mean_hd95'][r]:.2f}" for r in REGIONS) + " mm",
        "",
        "Regenerate with `python benchmarks/evaluation/bench_evaluation.py " + " ".join(s["argv"]) + "`.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 4 cases of 48³ (results go to <out>/quick)")
    ap.add_argument("--cases", type=int, default=None, help=f"cases (default {TARGET_CASES}, quick 4)")
    ap.add_argument("--shape", type=int, nargs=3, default=None, help="case grid (default 240 240 155)")
    ap.add_argument("--jobs", type=int, default=2, help="evaluate_folder processes (also used to generate)")
    ap.add_argument("--convention", default="brats-legacy", help="metrics convention")
    ap.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "brats-benchmarks",
                    help="folder for the synthetic references and predictions (reused)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default benchmarks/results, quick: benchmarks/results/quick)")
    args = ap.parse_args(argv)
    shape = tuple(args.shape or ((48, 48, 48) if args.quick else (240, 240, 155)))
    cases = args.cases or (4 if args.quick else TARGET_CASES)
    out = args.out or REPO / "benchmarks" / "results" / ("quick" if args.quick else "")

    references, predictions = folders(args.work, shape, cases, args.seed, args.jobs)  # type: ignore[arg-type]
    env = environment(1)
    with threadpool_limits(1):
        start = time.perf_counter()
        table = evaluate_folder(predictions, references, convention=args.convention, jobs=args.jobs)
        seconds_jobs = time.perf_counter() - start
        start = time.perf_counter()
        evaluate_folder(predictions, references, convention=args.convention, jobs=1)
        seconds_1 = time.perf_counter() - start
    means = table.groupby("region")[["dice", "hd95"]].mean()
    measured = {"seconds_jobs": seconds_jobs, "seconds_1_job": seconds_1,
                "seconds_per_case_1_job": seconds_1 / cases,
                "mean_dice": {r: float(means.loc[r, "dice"]) for r in REGIONS},
                "mean_hd95": {r: float(means.loc[r, "hd95"]) for r in REGIONS}}
    result = {
        "benchmark": "evaluation",
        "environment": {**env, "load_average_after": load_average()},
        "settings": {"quick": args.quick, "shape": list(shape), "cases": cases, "jobs": args.jobs,
                     "convention": args.convention, "seed": args.seed, "argv": raw_argv},
        "measured": measured,
    }
    result["targets"] = targets(result)
    write_result(out, "evaluation", result, write_markdown(result))
    print(f"{cases} cases scored in {seconds_jobs:.1f} s with {args.jobs} processes, {seconds_1:.1f} s with "
          f"one; wrote {out}/evaluation.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
