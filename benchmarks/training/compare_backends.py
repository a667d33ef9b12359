"""Does the augmentation backend change what the network learns? The Isensee quick profile trained
with ``data.augmentation_backend=device`` and ``=scipy``, the same seeds, scored on held-out cases.

Usage::

    python benchmarks/training/compare_backends.py [--work DIR] [--out DIR] [--jobs N]
        [--backends device,scipy] [--quick]

Data as the demo makes them (``brats.demo``): synthetic BraTS 2017 cases of 80×80×52 (3 mm
voxels), 8 training cases (seed 2017) and 3 held-out cases with labels (seed 2018). For each
backend, ``brats reproduce isensee2017 --profile quick data.augmentation_backend=<backend>``
(two folds; each fold's ``log.csv`` gives the training seconds and ``data_fraction``), then the
held-out cases predicted by both folds (the reproduction's submission) and scored with
``brats.evaluation.evaluate_folder``. The noise to compare the difference with is the spread
between the two folds' cross-validation Dice of the same backend, and the standard deviation
over the held-out cases. Results: ``<out>/augmentation_backends.json`` and ``.md``; ``--quick``
(1 epoch, 4 + 2 cases of 48×48×40) writes to ``<out>/quick``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import environment, header_lines, load_average, write_result  # noqa: E402
from brats.evaluation import evaluate_folder  # noqa: E402
from brats.reproduce import reproduce  # noqa: E402
from brats.synth.generator import generate_dataset  # noqa: E402

REGIONS = ("WT", "TC", "ET")
SHAPE, QUICK_SHAPE = (80, 80, 52), (48, 48, 40)
TRAIN_SEED, HELD_OUT_SEED = 2017, 2018


def make_data(work: Path, shape: tuple[int, int, int], train: int, held_out: int, jobs: int
              ) -> tuple[Path, Path]:
    """``(training folder, held-out folder)``: synthetic labelled cases, made once and reused."""
    folders = []
    for name, cases, seed in (("train", train, TRAIN_SEED), ("heldout", held_out, HELD_OUT_SEED)):
        folder = work / f"{name}-{cases}-{'x'.join(map(str, shape))}"
        done = folder.with_name(folder.name + ".done")
        if not done.is_file():
            generate_dataset(folder, cases=cases, seed=seed, shape=shape, with_seg=True, jobs=jobs,
                             progress=False)
            done.write_text("complete\n")
        folders.append(folder)
    return folders[0], folders[1]


def fold_logs(run: Path) -> list[pd.DataFrame]:
    """Each fold's ``log.csv`` of a reproduction (``runs/model/fold<k>``)."""
    return [pd.read_csv(path) for path in sorted((run / "runs" / "model").glob("fold*/log.csv"))]


def fold_dice(run: Path) -> dict[str, list[float]]:
    """Cross-validation Dice per region, one mean per fold (the fold's validation cases)."""
    metrics = pd.read_csv(run / "cv_metrics.csv")
    splits = json.loads(next((run / "cache").glob("splits_*.json")).read_text())["splits"]
    out: dict[str, list[float]] = {r: [] for r in REGIONS}
    for split in splits:
        part = metrics[metrics["case"].isin(split["val"])]
        for region in REGIONS:
            out[region].append(float(part.loc[part["region"] == region, "dice"].mean()))
    return out


def run_backend(backend: str, train: Path, held_out: Path, work: Path, jobs: int, quick: bool
                ) -> dict[str, Any]:
    """Reproduce the quick profile with ``backend`` and score the held-out cases."""
    run = work / f"isensee2017-{backend}"
    overrides: dict[str, Any] = {"data.augmentation_backend": backend}
    if quick:
        overrides.update({"train.epochs": 1, "train.iterations_per_epoch": 2, "train.val_batches": 1})
    start = time.perf_counter()
    reproduce("isensee2017", train, run, validation_dir=held_out, profile="quick", overrides=overrides,
              device="cpu", jobs=jobs, progress=False)
    wall = time.perf_counter() - start
    scores = evaluate_folder(run / "submission", held_out, jobs=jobs, progress=False)
    logs = fold_logs(run)
    dice = {r: scores.loc[scores["region"] == r, "dice"] for r in REGIONS}
    return {"backend": backend, "reproduce_s": wall,
            "training_s": float(sum(log["seconds"].sum() for log in logs)),
            "data_fraction": float(statistics.mean(log["data_fraction"].mean() for log in logs)),
            "patches_per_s": float(statistics.mean(log["patches_per_s"].mean() for log in logs)),
            "held_out_dice": {r: float(d.mean()) for r, d in dice.items()},
            "held_out_dice_std": {r: float(d.std(ddof=1)) if len(d) > 1 else 0.0 for r, d in dice.items()},
            "held_out_cases": {r: [float(v) for v in d] for r, d in dice.items()},
            "cv_fold_dice": fold_dice(run),
            "final_train_loss": [float(log["train_loss"].iloc[-1]) for log in logs]}


def verdict(rows: list[dict]) -> dict[str, dict[str, float | bool]]:
    """Per region: the held-out difference between the first two backends, the noise (the larger
    of the fold spreads and the held-out case standard deviations), and whether it exceeds it."""
    if len(rows) < 2:
        return {}
    a, b = rows[0], rows[1]
    out: dict[str, dict[str, float | bool]] = {}
    for r in REGIONS:
        spread = max(max(row["cv_fold_dice"][r]) - min(row["cv_fold_dice"][r]) for row in (a, b))
        case_std = max(row["held_out_dice_std"][r] for row in (a, b))
        difference = a["held_out_dice"][r] - b["held_out_dice"][r]
        noise = max(spread, case_std)
        out[r] = {"difference": difference, "fold_spread": spread, "case_std": case_std,
                  "beyond_noise": abs(difference) > noise}
    return out


def write_markdown(result: dict) -> list[str]:
    s = result["settings"]
    lines = header_lines("Augmentation backends: what the Isensee quick profile learns",
                         result["environment"], s["quick"])
    lines += [f"* `brats reproduce isensee2017 --profile quick data.augmentation_backend=<backend>` on "
              f"{s['train_cases']} synthetic training cases of {'×'.join(map(str, s['shape']))} (seed "
              f"{TRAIN_SEED}); {s['held_out_cases']} held-out labelled cases (seed {HELD_OUT_SEED}) "
              "predicted by both folds; CPU, same seeds",
              "", "| backend | Dice WT | Dice TC | Dice ET | training s | data_fraction | patches/s | "
              "CV Dice per fold (WT / TC / ET) |", "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        dice = " | ".join(f"{row['held_out_dice'][r]:.3f} ± {row['held_out_dice_std'][r]:.3f}"
                          for r in REGIONS)
        folds = "; ".join(" / ".join(f"{v:.3f}" for v in values)
                          for values in zip(*(row["cv_fold_dice"][r] for r in REGIONS)))
        lines.append(f"| {row['backend']} | {dice} | {row['training_s']:.0f} | "
                     f"{100 * row['data_fraction']:.1f} % | {row['patches_per_s']:.2f} | {folds} |")
    lines += ["", "Dice: mean ± standard deviation over the held-out cases. Training s: the sum of "
              "every epoch's training time over both folds (log.csv `seconds`); data_fraction: the "
              "share of it spent waiting for the loader (log.csv, mean over epochs and folds).", ""]
    if result["verdict"]:
        lines += ["| region | difference (first − second) | fold spread | case std | beyond the noise |",
                  "|---|---|---|---|---|"]
        for r, v in result["verdict"].items():
            lines.append(f"| {r} | {v['difference']:+.3f} | {v['fold_spread']:.3f} | {v['case_std']:.3f} | "
                         f"{'**yes**' if v['beyond_noise'] else 'no'} |")
        lines.append("")
    lines += ["Regenerate with `" + " ".join(["python benchmarks/training/compare_backends.py", *s["argv"]])
              + "`.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--backends", default="device,scipy", help="comma-separated, compared in this order")
    ap.add_argument("--quick", action="store_true", help="smoke test: 4 + 2 cases of 48×48×40, 1 epoch")
    ap.add_argument("--jobs", type=int, default=2, help="processes for data generation and scoring")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "brats-backends",
                    help="data and runs (reused: a finished reproduction is not trained again)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default benchmarks/results, quick: benchmarks/results/quick)")
    args = ap.parse_args(argv)
    shape = QUICK_SHAPE if args.quick else SHAPE
    train_cases, held_out_cases = (4, 2) if args.quick else (8, 3)
    work = args.work / ("quick" if args.quick else "full")
    out = args.out or REPO / "benchmarks" / "results" / ("quick" if args.quick else "")
    env = environment(1)
    train, held_out = make_data(work, shape, train_cases, held_out_cases, args.jobs)
    rows = [run_backend(b, train, held_out, work, args.jobs, args.quick) for b in args.backends.split(",")]
    result = {"benchmark": "augmentation_backends",
              "environment": {**env, "load_average_after": load_average()},
              "settings": {"quick": args.quick, "shape": list(shape), "train_cases": train_cases,
                           "held_out_cases": held_out_cases, "backends": args.backends.split(","),
                           "argv": raw_argv},
              "rows": rows, "verdict": verdict(rows), "targets": []}
    write_result(out, "augmentation_backends", result, write_markdown(result))
    print("\n".join(write_markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
