"""Benchmark augmented training patches per second per data-loader worker: cache vs .nii.gz.

Usage::

    python benchmarks/data/bench_data.py [--quick] [--cases N] [--patches N] [--naive-patches N]
        [--epoch E] [--shape X Y Z] [--work DIR] [--out DIR]

``--cases`` synthetic training cases (``brats.synth.generate_dataset``, default 240×240×155) are
written as ``.nii.gz`` and prepared with ``brats.preprocess.cache.prepare_dataset`` (the cache of
``brats prepare``); both are reused by later runs. The patch pipeline is the Isensee entry's
(``submissions/isensee2017.yaml``: 128³ patches from a 160×192×160 region, the ``isensee2017``
augmentation with cubic-spline resampling and its intensity handling), at ``--epoch`` (0: the
first phase, full rotations). Everything runs in this process on one thread, as one worker does:

* **load** — one case's preprocessed arrays: ``load_prepared(mmap=False)`` from the cache, against
  ``Case.load`` (4 modalities + segmentation with nibabel, with its checks) + brain box + crop +
  z-score, which gives the same arrays (checked);
* **patch from the cache** — ``PatchDataset(cache, …, PatchPipeline(…))[i]`` for ``--patches``
  indices: memory-mapped block read, augmentation, target lookup (a worker's whole job);
* **patch from .nii.gz** — the same patch indices drawn the naive way: the case loaded and
  preprocessed from its ``.nii.gz`` files as above, then the same pipeline with the same generator,
  which gives bit-identical patches (checked by digest);
* the cache path again with ``interpolation_order: 1`` (an existing option of the augmentation);
* where the time goes: ``cProfile`` over ``--profile-patches`` patches, by library function;
* the resampling kernel alone on one patch's coordinates: scipy ``map_coordinates`` order 3 and 1
  (per channel, as the library does) against ``torch.nn.functional.grid_sample`` (trilinear, all
  channels in one call), the kernel a faster library version could use.

Results: ``<out>/data.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import map_coordinates
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import environment, header_lines, load_average, target_row, write_result  # noqa: E402
from brats.config import load_config  # noqa: E402
from brats.data.case import Case  # noqa: E402
from brats.data.layouts import discover  # noqa: E402
from brats.preprocess.cache import load_prepared, prepare_dataset  # noqa: E402
from brats.preprocess.crop import bounding_box, brain_mask, crop  # noqa: E402
from brats.preprocess.normalize import zscore  # noqa: E402
from brats.synth import generate_dataset  # noqa: E402
from brats.training.augment import rotation_scale_matrix  # noqa: E402
from brats.training.data import PatchDataset  # noqa: E402
from brats.training.pipeline import PatchPipeline  # noqa: E402

PATCHES_PER_S_TARGET = 4.0
LOAD_SPEEDUP_TARGET = 10.0
SEED = 12345
#: Library functions whose cumulative time the profile reports (function name → label).
PROFILED = {
    "elastic_displacement": "elastic field (gaussian_filter, 3 axes)",
    "map_coordinates": "image resampling (map_coordinates, spline prefilter included)",
    "brain_masks": "brain masks (binary_fill_holes per channel)",
    "stretch_to_unit": "min-max stretch inside the masks (2×)",
    "adjust_contrast": "contrast",
    "adjust_gamma": "gamma",
    "add_brightness": "brightness",
    "flip": "mirroring",
    "read_block": "block reads (memory map, labels)",
}


def datasets(work: Path, shape: tuple[int, int, int], cases: int, seed: int, jobs: int) -> tuple[Path, Path]:
    """``(nii.gz folder, cache folder)`` of ``cases`` synthetic training cases (made once, reused)."""
    root = work / f"data-{cases}cases-{'x'.join(map(str, shape))}-seed{seed}"
    if not (root / ".complete").is_file():
        shutil.rmtree(root, ignore_errors=True)
        generate_dataset(root / "nifti", cases=cases, seed=seed, shape=shape, jobs=jobs)
        prepare_dataset(root / "nifti", root / "cache", jobs=jobs)
        (root / ".complete").touch()
    return root / "nifti", root / "cache"


def naive_load(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """The preprocessed (image, labels) of a case straight from its ``.nii.gz`` files."""
    data = case.load()
    mask = brain_mask(data.image)
    box = bounding_box(mask)
    image, _, _ = zscore(crop(data.image, box), crop(mask, box))
    return image, np.ascontiguousarray(crop(data.labels, box))


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


def time_dataset(dataset: PatchDataset, count: int, desc: str) -> tuple[list[float], list[str]]:
    """Seconds for each of ``dataset[0..count)`` and the digests of the items."""
    times, digests = [], []
    for index in tqdm(range(count), desc=desc, unit="patch"):
        start = time.perf_counter()
        image, target = dataset[index]
        times.append(time.perf_counter() - start)
        digests.append(digest(image.numpy()) + digest(target.numpy()))
    return times, digests


def time_naive(dataset: PatchDataset, cases: dict[str, Case], count: int
               ) -> tuple[list[float], list[float], list[str]]:
    """``dataset``'s first ``count`` patches drawn from freshly loaded ``.nii.gz`` files: seconds
    per patch, seconds of its load, digests. Same generator use as ``PatchDataset.__getitem__``."""
    totals, loads, digests = [], [], []
    for index in tqdm(range(count), desc="patches from .nii.gz", unit="patch"):
        rng = np.random.default_rng([dataset.seed, dataset.epoch, dataset.rank, index, 0])
        case_id = dataset.case_ids[int(rng.choice(len(dataset.case_ids), p=dataset.probabilities))]
        start = time.perf_counter()
        image, labels = naive_load(cases[case_id])
        loads.append(time.perf_counter() - start)
        patch, patch_labels = dataset.pipeline(image, labels, None, rng, dataset.epoch)
        target = dataset.lut[patch_labels]
        totals.append(time.perf_counter() - start)
        digests.append(digest(patch) + digest(target))
    return totals, loads, digests


def profile(dataset: PatchDataset, count: int) -> dict[str, float]:
    """Seconds per patch spent in :data:`PROFILED` functions (cumulative), over ``count`` patches."""
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for index in range(count):
        dataset[index]
    profiler.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    out = {label: 0.0 for label in PROFILED.values()}
    for (_, _, name), (_, _, _, cumulative, _) in stats.items():
        if name in PROFILED:
            out[PROFILED[name]] += cumulative / count
    out["total (under the profiler)"] = total / count
    return out


def resampling_kernels(image: np.ndarray, patch: tuple[int, int, int], reps: int) -> dict[str, float]:
    """Seconds to resample one rotated, scaled ``patch`` of a (C, X, Y, Z) image three ways."""
    size = np.asarray(patch)
    mesh = np.stack(np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in size], indexing="ij"))
    matrix = rotation_scale_matrix((0.0, 0.0, np.pi / 6), 1.1)
    centre = (np.asarray(image.shape[1:]) - 1) / 2
    coords = (np.tensordot(matrix, mesh, axes=1) + centre[:, None, None, None]).astype(np.float32)
    volume = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    # grid_sample wants (z, y, x) order normalised to [-1, 1] (align_corners=True: -1 = voxel 0)
    extent = torch.tensor([n - 1 for n in image.shape[1:]], dtype=torch.float32)
    grid = (torch.from_numpy(coords).permute(1, 2, 3, 0) / extent * 2 - 1).flip(-1)[None]

    def scipy_order(order: int) -> np.ndarray:
        return np.stack([map_coordinates(c, coords, order=order, mode="nearest", output=np.float32)
                         for c in image])

    def torch_trilinear() -> np.ndarray:
        with torch.inference_mode():
            return torch.nn.functional.grid_sample(volume, grid, mode="bilinear", padding_mode="border",
                                                   align_corners=True)[0].numpy()

    linear = scipy_order(1)
    return {"map_coordinates order 3 (library default)": median_time(lambda: scipy_order(3), reps),
            "map_coordinates order 1": median_time(lambda: scipy_order(1), reps),
            "torch grid_sample trilinear, 1 thread": median_time(torch_trilinear, reps),
            "max_abs_diff_grid_sample_vs_order1": float(np.abs(torch_trilinear() - linear).max())}


def targets(result: dict) -> list[dict]:
    m = result["measured"]
    rate, load = m["patches_per_s_cache"], m["load_speedup"]
    return [
        target_row("data", "augmented patches/s, one worker, from the cache (Isensee augmentation, "
                   "cubic spline)", rate, "patches/s", f"≥ {PATCHES_PER_S_TARGET:g}",
                   rate >= PATCHES_PER_S_TARGET),
        target_row("data", "case load: cache vs .nii.gz (+ crop + z-score), speed-up", load, "×",
                   f"≥ {LOAD_SPEEDUP_TARGET:g}", load >= LOAD_SPEEDUP_TARGET),
        target_row("data", "full patch: cache vs .nii.gz, speed-up", m["patch_speedup"], "×", "—", None),
        target_row("data", "augmented patches/s, one worker, interpolation_order 1",
                   m["patches_per_s_cache_order1"], "patches/s", "—", None),
    ]


def write_markdown(result: dict) -> list[str]:
    s, m = result["settings"], result["measured"]
    lines = header_lines("Data pipeline benchmark: training patches per worker", result["environment"],
                         s["quick"])
    lines += [
        f"* {s['cases']} synthetic training cases of {'×'.join(map(str, s['shape']))} "
        f"(cache crop shapes {', '.join('×'.join(map(str, c)) for c in s['crop_shapes'])})",
        f"* Pipeline: `PatchPipeline` from `submissions/isensee2017.yaml`: patch "
        f"{'×'.join(map(str, s['patch_size']))}, region {s['crop_size']}, augmentation "
        f"`{s['augmentation']}` {s['augmentation_kwargs']}, intensity `{s['intensity']}`, "
        f"epoch {s['epoch']}; one process, one thread",
        "",
        "| measurement | cache | .nii.gz | speed-up |",
        "|---|---|---|---|",
        f"| load one case, preprocessed (median s) | {m['load_cache_s']:.3f} | {m['load_nifti_s']:.3f} | "
        f"**{m['load_speedup']:.1f}×** |",
        f"| one augmented patch (mean s; {s['patches']} / {s['naive_patches']} patches) | "
        f"{m['patch_cache_s']:.2f} | {m['patch_nifti_s']:.2f} | {m['patch_speedup']:.2f}× |",
        f"| patches/s per worker | **{m['patches_per_s_cache']:.2f}** | {m['patches_per_s_nifti']:.2f} | |",
        f"| patches/s per worker, `interpolation_order: 1` | {m['patches_per_s_cache_order1']:.2f} | | |",
        "",
        f"* Identical arrays from both loads: {m['same_load']}; identical patches from both paths: "
        f"{m['same_patches']}",
        f"* Median s/patch from the cache: {m['patch_cache_median_s']:.2f} (min "
        f"{m['patch_cache_min_s']:.2f}); the .nii.gz path spends {m['naive_load_s']:.2f} s of each patch "
        "loading",
        "",
        "Where a cache patch's time goes (cProfile, cumulative, s/patch; nested: masks and block reads "
        "happen inside the resampling step's caller):",
        "",
        "| step | s/patch | share |",
        "|---|---|---|",
    ]
    total = result["profile"]["total (under the profiler)"]
    for label, seconds in sorted(result["profile"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {label} | {seconds:.3f} | {100 * seconds / total:.0f} % |")
    lines += ["", "Resampling kernel alone, one patch of 4 channels (median s):", "",
              "| kernel | s |", "|---|---|"]
    kernels = dict(result["kernels"])
    difference = kernels.pop("max_abs_diff_grid_sample_vs_order1")
    for label, value in kernels.items():
        lines.append(f"| {label} | {value:.3g} |")
    lines += ["", f"grid_sample and map_coordinates order 1 differ by at most {difference:.1e}.", "",
              "Regenerate with `python benchmarks/data/bench_data.py " + " ".join(s["argv"]) + "`.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 48³ cases, 32³ patches, few patches (results go to <out>/quick)")
    ap.add_argument("--cases", type=int, default=None, help="synthetic cases (default 4, quick 2)")
    ap.add_argument("--shape", type=int, nargs=3, default=None, help="case grid (default 240 240 155)")
    ap.add_argument("--patches", type=int, default=None, help="timed cache patches (default 12, quick 3)")
    ap.add_argument("--naive-patches", type=int, default=None,
                    help="timed .nii.gz patches (default 4, quick 2)")
    ap.add_argument("--profile-patches", type=int, default=None, help="profiled patches (default 2, quick 1)")
    ap.add_argument("--epoch", type=int, default=0, help="augmentation phase: 0, 100 or 175 (Isensee)")
    ap.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    ap.add_argument("--jobs", type=int, default=2, help="processes for generating and preparing the data")
    ap.add_argument("--submissions", type=Path, default=REPO / "submissions", help="entry YAML folder")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "brats-benchmarks",
                    help="folder for the synthetic data and cache (reused)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default benchmarks/results, quick: benchmarks/results/quick)")
    args = ap.parse_args(argv)
    shape = tuple(args.shape or ((48, 48, 48) if args.quick else (240, 240, 155)))
    cases = args.cases or (2 if args.quick else 4)
    patches = args.patches or (3 if args.quick else 12)
    naive_patches = min(args.naive_patches or (2 if args.quick else 4), patches)
    profiled = args.profile_patches or (1 if args.quick else 2)
    out = args.out or REPO / "benchmarks" / "results" / ("quick" if args.quick else "")

    data = load_config(args.submissions / "isensee2017.yaml").data
    patch = (32, 32, 32) if args.quick else data.patch_size
    region = None if args.quick else data.crop_size
    nifti_dir, cache_dir = datasets(args.work, shape, cases, args.seed, args.jobs)  # type: ignore[arg-type]
    env = environment(1)
    with threadpool_limits(1):
        torch.set_num_threads(1)
        case_list = discover(nifti_dir)
        by_id = {c.id: c for c in case_list}
        ids = sorted(by_id)
        load_cache = statistics.median(median_time(lambda: load_prepared(cache_dir, i, mmap=False), 3)
                                       for i in ids)
        load_nifti = statistics.median(median_time(lambda: naive_load(by_id[i]), 3) for i in ids)
        cached = load_prepared(cache_dir, ids[0], mmap=False)
        fresh = naive_load(by_id[ids[0]])
        same_load = bool(np.array_equal(cached.image, fresh[0]) and np.array_equal(cached.labels, fresh[1]))

        def dataset(**kwargs) -> PatchDataset:
            pipeline = PatchPipeline(patch, crop_size=region, foreground_fraction=data.foreground_fraction,
                                     augmentation=data.augmentation,
                                     augmentation_kwargs={**data.augmentation_kwargs, **kwargs},
                                     intensity=data.intensity)
            patches_set = PatchDataset(cache_dir, ids, pipeline, patches, SEED)
            patches_set.set_epoch(args.epoch)
            return patches_set

        cache_times, cache_digests = time_dataset(dataset(), patches, "patches from the cache")
        naive_times, naive_loads, naive_digests = time_naive(dataset(), by_id, naive_patches)
        order1_times, _ = time_dataset(dataset(interpolation_order=1), max(patches // 2, 1),
                                       "patches from the cache, order 1")
        breakdown = profile(dataset(), profiled)
        kernels = resampling_kernels(np.asarray(cached.image), patch, 3)

    patch_cache = statistics.mean(cache_times)
    patch_nifti = statistics.mean(naive_times)
    measured = {
        "load_cache_s": load_cache, "load_nifti_s": load_nifti, "load_speedup": load_nifti / load_cache,
        "same_load": same_load,
        "patch_cache_s": patch_cache, "patch_cache_median_s": statistics.median(cache_times),
        "patch_cache_min_s": min(cache_times), "patch_nifti_s": patch_nifti,
        "naive_load_s": statistics.mean(naive_loads),
        "patch_speedup": patch_nifti / patch_cache,
        "patches_per_s_cache": 1 / patch_cache, "patches_per_s_nifti": 1 / patch_nifti,
        "patches_per_s_cache_order1": 1 / statistics.mean(order1_times),
        "same_patches": naive_digests == cache_digests[:naive_patches],
    }
    result = {
        "benchmark": "data",
        "environment": {**env, "torch": torch.__version__, "load_average_after": load_average()},
        "settings": {"quick": args.quick, "shape": list(shape), "cases": cases,
                     "crop_shapes": [list(load_prepared(cache_dir, i).image.shape[1:]) for i in ids],
                     "patch_size": list(patch), "crop_size": None if region is None else list(region),
                     "augmentation": data.augmentation, "augmentation_kwargs": data.augmentation_kwargs,
                     "intensity": data.intensity, "epoch": args.epoch, "patches": patches,
                     "naive_patches": naive_patches, "profile_patches": profiled, "argv": raw_argv},
        "measured": measured,
        "seconds": {"cache": cache_times, "nifti": naive_times, "nifti_load": naive_loads,
                    "cache_order1": order1_times},
        "profile": breakdown,
        "kernels": kernels,
    }
    result["targets"] = targets(result)
    write_result(out, "data", result, write_markdown(result))
    print(f"{measured['patches_per_s_cache']:.2f} patches/s from the cache, load speed-up "
          f"{measured['load_speedup']:.1f}x; wrote {out}/data.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
