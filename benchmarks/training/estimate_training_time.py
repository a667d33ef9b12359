"""Training time of the Isensee entry at paper size, from what was measured and what was published.

Usage::

    python benchmarks/training/estimate_training_time.py [--results DIR] [--out DIR]

Reads, from ``--results`` (default ``benchmarks/results``):

* ``data.json`` — augmented patches/s per loader worker (``bench_data.py``): the ``scipy`` backend
  (each worker augments) and the ``device`` backend (workers read blocks; the device augments);
* ``data_bound_cpu.json`` — Isensee training steps on this CPU at 2×4×64³ fed by the real loader
  (``bench_data_bound.py``);
* ``training_cpu.json`` — Isensee steps on this CPU at 1×4×64³, fp32 and bf16 (``bench_training.py``);
* ``gpu/gpu_check.json`` when a GPU run exists (``benchmarks/gpu_check.py``): then the GPU rows are
  measured, not estimated.

The schedule comes from ``submissions/isensee2017.yaml`` (epochs × iterations × batch, folds,
``data.workers``). **CPU rows** scale a measured step to the paper's 2×128³ by the voxel count (a
convolutional network's cost is proportional to it). **GPU rows without a GPU run are estimates**:
the published step rate of :data:`PUBLISHED` (a 3D U-Net of the same input, batch and patch), and
the measured data rate per worker, which bounds training at ``workers × patches/s per worker``.
Results: ``<out>/training_time.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import environment, header_lines, write_result  # noqa: E402
from brats.config import load_config  # noqa: E402

#: Published training rates of NVIDIA's nnU-Net 3D U-Net on 4×128³ patches, batch 2, one A100
#: 80 GB (patches/s): NVIDIA/DeepLearningExamples, PyTorch/Segmentation/nnUNet/README.md,
#: "Training performance: NVIDIA DGX A100 (8x A100 80GB)", row "3 | 1 | 2".
PUBLISHED = {"A100, AMP": 6.74, "A100, TF32": 5.21}
PUBLISHED_SOURCE = ("NVIDIA/DeepLearningExamples PyTorch/Segmentation/nnUNet/README.md, training "
                    "performance on one A100 80 GB, 3D, batch 2 (4×128³)")
PAPER_VOXELS = 2 * 128**3
HOUR, DAY = 3600.0, 86400.0


def read(results: Path, name: str) -> dict | None:
    """A result JSON of ``results``, or None when it is not there."""
    path = results / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def schedule() -> dict:
    """The Isensee entry's paper schedule."""
    config = load_config(REPO / "submissions" / "isensee2017.yaml")
    steps = config.train.epochs * config.train.iterations_per_epoch
    return {"steps": steps, "batch": config.data.batch_size, "folds": config.train.folds,
            "workers": config.data.workers, "patches": steps * config.data.batch_size}


def cpu_rows(results: Path, plan: dict) -> list[dict]:
    """Paper-size time on this CPU, scaled from the measured 64³ steps."""
    rows = []
    bound = read(results, "data_bound_cpu.json")
    if bound and not bound["settings"]["quick"]:
        s = bound["settings"]
        scale = PAPER_VOXELS / (s["batch"] * s["patch"] ** 3)
        step = bound["measured"]["loader_s"] * scale
        rows.append({"hardware": f"this CPU, {s['threads']} thread(s), fp32, real loader",
                     "seconds_per_step": step, "estimate": False,
                     "basis": f"data_bound_cpu.json: {bound['measured']['loader_s']:.2f} s per "
                              f"{s['batch']}×4×{s['patch']}³ step with the real loader, × {scale:g} voxels"})
    training = read(results, "training_cpu.json")
    for r in (training or {}).get("results", []):
        if r.get("network") == "isensee_unet" and not r.get("compiled") and "error" not in r:
            voxels = r["batch"] * math.prod(r["patch"])
            step = r["seconds_per_step_median"] * PAPER_VOXELS / voxels
            threads = training["environment"]["torch_threads"]
            rows.append({"hardware": f"this CPU, {threads} thread(s), {r['precision']}",
                         "seconds_per_step": step, "estimate": False,
                         "basis": f"training_cpu.json: {r['seconds_per_step_median']:.2f} s per "
                                  f"{r['batch']}×4×{'×'.join(map(str, r['patch']))} step, × "
                                  f"{PAPER_VOXELS / voxels:g} voxels"})
    return rows


def data_rates(results: Path) -> dict[str, float]:
    """Measured patches/s per loader worker, per backend (from ``data.json``)."""
    data = read(results, "data.json")
    if not data or data["settings"]["quick"]:
        return {}
    m = data["measured"]
    return {"device": m["device_loader_patches_per_s"], "scipy": m["patches_per_s_cache"]}


def gpu_rows(results: Path, plan: dict, rates: dict[str, float]) -> list[dict]:
    """GPU time per backend: measured with a GPU run, else the published rate bounded by the data."""
    check = read(results, "gpu/gpu_check.json")
    measured = [r for r in (check or {}).get("training", [])
                if r.get("entry") == "isensee2017" and "error" not in r and not check["settings"]["quick"]]
    if measured:
        gpu = check["environment"].get("gpu", "GPU")
        step_rates = {f"{gpu}, {r['mode']}": r["it_per_s"] * plan["batch"] for r in measured}
        basis, estimate = "gpu/gpu_check.json (measured step)", False
    else:
        step_rates, basis, estimate = PUBLISHED, "published step rate (below)", True
    rows = []
    for hardware, step_rate in step_rates.items():
        for backend, per_worker in rates.items():
            loader = per_worker * plan["workers"]
            rate = min(step_rate, loader)
            rows.append({"hardware": hardware, "backend": backend, "step_patches_per_s": step_rate,
                         "loader_patches_per_s": loader, "patches_per_s": rate,
                         "data_bound": loader < step_rate,
                         "workers_needed": math.ceil(step_rate / per_worker),
                         "seconds_per_step": plan["batch"] / rate, "estimate": estimate, "basis": basis})
    return rows


def with_totals(rows: list[dict], plan: dict) -> list[dict]:
    """Add the hours per fold and in all (``folds`` folds) to each row."""
    for row in rows:
        row["hours_per_fold"] = row["seconds_per_step"] * plan["steps"] / HOUR
        row["hours_all_folds"] = row["hours_per_fold"] * plan["folds"]
    return rows


def _duration(hours: float) -> str:
    return f"{hours:.1f} h" if hours < 48 else f"{hours * HOUR / DAY:.0f} days"


def write_markdown(result: dict) -> list[str]:
    p = result["schedule"]
    lines = header_lines("Isensee 2017 training time at paper size", result["environment"], False)
    lines += [f"* Schedule (`submissions/isensee2017.yaml`): {p['steps']:,} steps × batch {p['batch']} of "
              f"4×128³ per fold, {p['folds']} folds, `data.workers: {p['workers']}`",
              f"* Data rate per loader worker (`data.json`): device backend "
              f"{result['data_rates'].get('device', float('nan')):.2f} patches/s, scipy backend "
              f"{result['data_rates'].get('scipy', float('nan')):.3f} patches/s", "",
              "| hardware | backend | s/step | per fold | 5 folds | limited by | workers needed | basis |",
              "|---|---|---|---|---|---|---|---|"]
    for r in result["cpu"]:
        lines.append(f"| {r['hardware']} | device (on this CPU) | {r['seconds_per_step']:.0f} | "
                     f"{_duration(r['hours_per_fold'])} | {_duration(r['hours_all_folds'])} | the step | — | "
                     f"{r['basis']} |")
    for r in result["gpu"]:
        label = f"**estimate**: {r['hardware']}" if r["estimate"] else r["hardware"]
        limit = f"data ({r['loader_patches_per_s']:.2f} patches/s)" if r["data_bound"] else "the step"
        lines.append(f"| {label} | {r['backend']} | {r['seconds_per_step']:.2f} | "
                     f"{_duration(r['hours_per_fold'])} | {_duration(r['hours_all_folds'])} | {limit} | "
                     f"{r['workers_needed']} | {r['basis']} |")
    lines += ["", "CPU rows: a measured step scaled to 2×4×128³ by the voxel count. GPU rows: "
              "the step rate (published unless a GPU run exists), capped by `data.workers` × the measured "
              "patches/s per worker; *workers needed* keeps the loader at the step rate. The device "
              "backend also adds its augmentation to each GPU step, not yet measured on a GPU (target "
              "≤ 20 ms per 2×4×128³ batch): `python benchmarks/gpu_check.py --out benchmarks/results/gpu`.",
              "",
              "Published step rates (patches/s): " + ", ".join(f"{k} {v:g}" for k, v in PUBLISHED.items())
              + f"; {PUBLISHED_SOURCE}.", "",
              "Regenerate with `" + " ".join(["python benchmarks/training/estimate_training_time.py",
                                              *result["argv"]]) + "`.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results",
                    help="folder of the measured results")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default: --results)")
    args = ap.parse_args(argv)
    plan = schedule()
    rates = data_rates(args.results)
    result = {"benchmark": "training_time", "environment": environment(1), "argv": raw_argv,
              "settings": {"quick": False}, "schedule": plan, "data_rates": rates,
              "published": {"rates_patches_per_s": PUBLISHED, "source": PUBLISHED_SOURCE},
              "cpu": with_totals(cpu_rows(args.results, plan), plan),
              "gpu": with_totals(gpu_rows(args.results, plan, rates), plan), "targets": []}
    write_result(args.out or args.results, "training_time", result, write_markdown(result))
    print("\n".join(write_markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
