"""Benchmark ``brats.metrics.case_metrics`` against medpy's full-volume ``hd95`` on BraTS-size cases.

Usage::

    python benchmarks/metrics/bench_metrics.py [--cases N] [--out benchmarks/results] [--reps R]
                                               [--labels synth|blobs]

For each case a reference label map of 240×240×155 voxels (1 mm) comes from
``brats.synth.generator.synth_case(seed, shape=(240, 240, 155)).labels`` when that generator is
importable, otherwise (or with ``--labels blobs``) from a simple built-in blob generator with
larger tumours (the JSON says which). The
prediction is a realistic perturbation of the reference: shifted by 1–2 voxels, WT dilated,
TC eroded, plus a small edema and a small ET false-positive ball away from the tumour.

Timed, on one thread:

* ours — ``case_metrics(pred, ref, spacing)`` (WT/TC/ET; Dice, HD95, sensitivity,
  specificity, volumes), median of ``--reps`` runs after one warm-up;
* medpy — ``medpy.metric.binary.hd95(p, r, voxelspacing=spacing)`` on the full-volume region
  masks of the same case (as the CaPTk scorer runs it), once per region, summed over the
  three regions (HD95 only; region-mask construction is not timed).

The HD95 and Dice values are compared (max absolute difference). Results are written to
``<out>/metrics.json`` and ``<out>/metrics.md``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import cpu_model, git_commit  # noqa: E402
from brats.data.labels import REGIONS, labels_from_regions  # noqa: E402
from brats.metrics import case_metrics, image_diagonal  # noqa: E402

SHAPE = (240, 240, 155)
SPACING = (1.0, 1.0, 1.0)


# ------------------------------------------------------------------------------------------
# cases
# ------------------------------------------------------------------------------------------

def _fallback_reference(seed: int) -> np.ndarray:
    """Noise-perturbed ellipsoid WT, a TC core inside it, an ET rim around part of the TC."""
    rng = np.random.default_rng(seed)
    centre = np.array([120, 120, 77]) + rng.integers(-25, 26, 3)
    radii = rng.uniform(18, 32, 3)
    box = tuple(slice(int(c - 45), int(c + 45)) for c in centre)
    grid = np.indices((90, 90, 90), dtype=np.float32) - 45.0
    noise = ndi.gaussian_filter(rng.standard_normal((90, 90, 90)).astype(np.float32), 4) * 8
    r = np.sqrt(sum((g / rad) ** 2 for g, rad in zip(grid, radii)))
    wt = r + noise * 0.1 < 1.0
    tc = r + noise * 0.1 < 0.55
    et = tc & ~ndi.binary_erosion(tc, iterations=3) & (noise > -0.5)
    labels = np.zeros(SHAPE, np.uint8)
    labels[box] = labels_from_regions(wt, tc, et)
    return labels


def reference_labels(seed: int, source: str = "synth") -> tuple[np.ndarray, str]:
    if source == "blobs":
        return _fallback_reference(seed), "benchmarks/metrics blob generator"
    try:
        from brats.synth.generator import synth_case  # type: ignore[import-not-found]
    except ImportError:
        return _fallback_reference(seed), "benchmarks/metrics fallback blobs (synth_case absent)"
    labels = np.asarray(synth_case(seed, shape=SHAPE).labels)
    return labels.astype(np.uint8, copy=False), "brats.synth.generator.synth_case"


def _far_point(wt: np.ndarray, rng: np.random.Generator, distance: float) -> tuple[int, ...]:
    """A voxel about ``distance`` voxels from the WT centroid, inside the image, outside WT."""
    centre = np.array(ndi.center_of_mass(wt)) if wt.any() else np.array(SHAPE) / 2
    for _ in range(1000):
        v = rng.standard_normal(3)
        p = np.round(centre + distance * v / np.linalg.norm(v)).astype(int)
        if np.all(p >= 6) and np.all(p < np.array(SHAPE) - 6) and not wt[tuple(p)]:
            return tuple(int(x) for x in p)
    return (10, 10, 10)


def perturbed_prediction(ref: np.ndarray, seed: int) -> np.ndarray:
    """Shift 1–2 voxels, dilate WT by 1, erode TC by 1, keep ET inside TC, add two FP balls."""
    rng = np.random.default_rng(1000 + seed)
    shift = tuple(int(s) for s in rng.choice([-2, -1, 1, 2], 3))
    moved = np.roll(ref, shift, axis=(0, 1, 2))
    wt = ndi.binary_dilation(np.isin(moved, REGIONS["WT"]))
    tc = ndi.binary_erosion(np.isin(moved, REGIONS["TC"]))
    et = (moved == 4) & tc
    pred = labels_from_regions(wt, tc, et)
    g = np.indices((13, 13, 13)) - 6
    for label, radius, dist in ((2, 4, 55.0), (4, 2, 50.0)):
        c = _far_point(wt, rng, dist)
        box = tuple(slice(x - 6, x + 7) for x in c)
        pred[box][(g**2).sum(0) <= radius**2] = label
    return pred


# ------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------

def _median_time(fn, reps: int) -> tuple[float, float, object]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), out


def bench_case(seed: int, reps: int, source: str = "synth") -> dict:
    from medpy.metric.binary import dc as medpy_dc
    from medpy.metric.binary import hd95 as medpy_hd95

    ref, source = reference_labels(seed, source)
    pred = perturbed_prediction(ref, seed)
    med, best, rows = _median_time(lambda: case_metrics(pred, ref, SPACING), reps)
    lw_med, _, _ = _median_time(
        lambda: case_metrics(pred, ref, SPACING, convention="brats2023-lesionwise"), max(1, reps // 2))
    ours = {r["region"]: r for r in rows}  # type: ignore[union-attr]

    regions = {}
    medpy_total = 0.0
    for name, members in REGIONS.items():
        p, r = np.isin(pred, members), np.isin(ref, members)
        if p.any() and r.any():
            t0 = time.perf_counter()
            m_hd = float(medpy_hd95(p, r, voxelspacing=SPACING))
            medpy_total += time.perf_counter() - t0
        else:  # medpy raises on an empty mask; CaPTk substitutes the BraTS constants
            m_hd = 0.0 if not (p.any() or r.any()) else image_diagonal(SHAPE, SPACING)
        m_dc = float(medpy_dc(p, r)) if (p.any() or r.any()) else 1.0
        regions[name] = {
            "voxels_pred": int(p.sum()), "voxels_ref": int(r.sum()),
            "hd95_ours": ours[name]["hd95"], "hd95_medpy": m_hd,
            "dice_ours": ours[name]["dice"], "dice_medpy": m_dc,
            "sensitivity": ours[name]["sensitivity"], "specificity": ours[name]["specificity"],
        }
    return {
        "seed": seed, "label_source": source,
        "seconds_ours": med, "seconds_ours_min": best, "seconds_ours_lesionwise": lw_med,
        "seconds_medpy_hd95": medpy_total,
        "speedup": medpy_total / med if med > 0 else None,
        "max_abs_diff_hd95": max(abs(v["hd95_ours"] - v["hd95_medpy"]) for v in regions.values()),
        "max_abs_diff_dice": max(abs(v["dice_ours"] - v["dice_medpy"]) for v in regions.values()),
        "regions": regions,
    }


# ------------------------------------------------------------------------------------------
# environment and report
# ------------------------------------------------------------------------------------------

def environment() -> dict:
    import medpy
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} logical CPUs",
        "platform": platform.platform(),
        "threads": 1,
        "python": platform.python_version(),
        "numpy": np.__version__, "scipy": scipy.__version__,
        "medpy": getattr(medpy, "__version__", "unknown"),
        "git_commit": git_commit(),
    }


def write_markdown(result: dict, path: Path) -> None:
    env, s = result["environment"], result["summary"]
    lines = [
        "# Metrics benchmark: `brats.metrics.case_metrics` vs medpy `hd95`",
        "",
        f"* Date (UTC): {env['date_utc']}; git commit: {env['git_commit'] or 'n/a'}",
        f"* Machine: {env['machine']}; {env['platform']}; 1 thread",
        f"* Python {env['python']}, numpy {env['numpy']}, scipy {env['scipy']}, "
        f"medpy {env['medpy']}",
        f"* Cases: {s['cases']} × 240×240×155 at 1 mm; labels from {s['label_source']}; "
        "prediction = shifted reference with WT dilated, TC eroded and two small "
        "false-positive balls",
        "* ours = `case_metrics` (WT/TC/ET; Dice, HD95, sensitivity, specificity, volumes), "
        f"median of {result['reps']} runs; medpy = `hd95` on the full-volume masks, 3 regions, HD95 only",
        "",
        "| case (seed) | ours s/case | lesion-wise s/case | medpy hd95 s/case | speed-up | "
        "HD95 WT / TC / ET (mm) | max \\|ΔHD95\\| | max \\|ΔDice\\| |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        hd = " / ".join(f"{c['regions'][r]['hd95_ours']:.3f}" for r in REGIONS)
        lines.append(
            f"| {c['seed']} | {c['seconds_ours']:.3f} | {c['seconds_ours_lesionwise']:.3f} | "
            f"{c['seconds_medpy_hd95']:.2f} | {c['speedup']:.0f}× | {hd} | "
            f"{c['max_abs_diff_hd95']:.1e} | {c['max_abs_diff_dice']:.1e} |")
    lines += [
        f"| **mean** | **{s['seconds_ours_mean']:.3f}** | {s['seconds_ours_lesionwise_mean']:.3f} | "
        f"**{s['seconds_medpy_mean']:.2f}** | **{s['speedup_mean_times']:.0f}×** | | "
        f"**{s['max_abs_diff_hd95']:.1e}** | **{s['max_abs_diff_dice']:.1e}** |",
        "",
        "Speed-up = mean medpy time / mean ours time. Regenerate with "
        "`python benchmarks/metrics/bench_metrics.py --cases 3`.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--cases", type=int, default=3, help="number of synthetic cases (seeds 0..N-1)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results",
                    help="folder for metrics.json and metrics.md")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions of case_metrics")
    ap.add_argument("--labels", choices=("synth", "blobs"), default="synth",
                    help="reference label maps: synth_case (falls back to blobs if absent) or "
                         "the built-in blob generator (larger tumours)")
    args = ap.parse_args(argv)

    cases = []
    for seed in range(args.cases):
        c = bench_case(seed, args.reps, args.labels)
        print(f"case {seed}: ours {c['seconds_ours']:.3f} s, medpy hd95 {c['seconds_medpy_hd95']:.2f} s "
              f"({c['speedup']:.0f}x), max |dHD95| {c['max_abs_diff_hd95']:.2e}, "
              f"max |dDice| {c['max_abs_diff_dice']:.2e}  [{c['label_source']}]", flush=True)
        cases.append(c)
    ours = float(np.mean([c["seconds_ours"] for c in cases]))
    medpy_s = float(np.mean([c["seconds_medpy_hd95"] for c in cases]))
    summary = {
        "cases": len(cases),
        "label_source": ", ".join(sorted({c["label_source"] for c in cases})),
        "seconds_ours_mean": ours,
        "seconds_ours_lesionwise_mean": float(np.mean([c["seconds_ours_lesionwise"] for c in cases])),
        "seconds_medpy_mean": medpy_s,
        "speedup_mean_times": medpy_s / ours,
        "max_abs_diff_hd95": max(c["max_abs_diff_hd95"] for c in cases),
        "max_abs_diff_dice": max(c["max_abs_diff_dice"] for c in cases),
    }
    result = {"benchmark": "metrics", "environment": environment(), "reps": args.reps,
              "shape": SHAPE, "spacing": SPACING, "summary": summary, "cases": cases}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_markdown(result, args.out / "metrics.md")
    print(f"mean: ours {ours:.3f} s/case, medpy {medpy_s:.2f} s/case, "
          f"speed-up {summary['speedup_mean_times']:.0f}x, max |dHD95| "
          f"{summary['max_abs_diff_hd95']:.2e}; wrote {args.out}/metrics.{{json,md}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
