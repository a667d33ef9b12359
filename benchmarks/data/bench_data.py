"""Benchmark the training data pipeline per data-loader worker: both augmentation backends, the
cache against .nii.gz, and nnU-Net v2's augmentation library as a peer.

Usage::

    python benchmarks/data/bench_data.py [--quick] [--cases N] [--patches N] [--naive-patches N]
        [--device-reads N] [--augment-reps N] [--epoch E] [--shape X Y Z] [--work DIR] [--out DIR]

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

The items above use the ``scipy`` backend (``data.augmentation_backend: scipy``, the exact
original). The ``device`` backend (the default, :mod:`brats.training.batch_augment`) splits the
work, and is measured in the same run:

* **loader side** — ``PatchDataset(…, backend="device")[i]`` for ``--device-reads`` indices after
  one untimed read per case (a persistent worker has its cases open): the block of the case the
  spatial transform can reach, the brain masks, and the drawn parameters with the elastic field on
  its coarse grid; then ``collate`` of two such samples (also in the worker);
* **device side on the CPU** — ``DeviceAugmenter`` on the collated 2×4×128³ batch
  (``PatchDataset.to_device``: resampling, mirroring, the intensity steps) with 2 threads, and with
  one thread (per patch: half of it), ``--augment-reps`` times each;
* **the peer** — batchgeneratorsv2's ``SpatialTransform`` (nnU-Net v2's augmentation library,
  ``pip install batchgeneratorsv2==0.3.6``, the ``bench`` extra) with rotation, scaling and elastic
  deformation always on, on a 4-channel 160×192×160 region in memory, one thread, labels by
  nearest neighbour (as ours) and by its default linear one-hot interpolation; measured round-robin
  with our spatial step alone (the batch without its intensity parameters) plus our block read,
  per patch. Skipped, with a note, when the package is not importable.

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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import map_coordinates
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    environment,
    header_lines,
    load_average,
    met_cell,
    target_row,
    write_result,
)
from brats.config import load_config  # noqa: E402
from brats.data.case import Case  # noqa: E402
from brats.data.layouts import discover  # noqa: E402
from brats.preprocess.cache import load_prepared, prepare_dataset  # noqa: E402
from brats.preprocess.crop import bounding_box, brain_mask, crop  # noqa: E402
from brats.preprocess.normalize import zscore  # noqa: E402
from brats.synth import generate_dataset  # noqa: E402
from brats.training.augment import rotation_scale_matrix  # noqa: E402
from brats.training.batch_augment import DeviceAugmenter, collate  # noqa: E402
from brats.training.data import PatchDataset  # noqa: E402
from brats.training.pipeline import PatchPipeline  # noqa: E402
from brats.training.sampling import read_block  # noqa: E402

PATCHES_PER_S_TARGET = 4.0
LOAD_SPEEDUP_TARGET = 10.0
READS_PER_S_TARGET = 20.0
BATCH_SECONDS_TARGET = 0.5
PEER_SPEEDUP_TARGET = 2.0
SEED = 12345
CPU = torch.device("cpu")
#: The drawn intensity parameters of a device-backend sample (left out to time the spatial step).
INTENSITY_KEYS = ("contrast_on", "contrast", "gamma_on", "gamma", "brightness_on", "brightness")
#: The peer's labels: like ours (nearest neighbour) and nnU-Net v2's default (linear one-hot).
PEER_LABEL_MODES = ("nearest", "bilinear")
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
#: The device side's functions (``brats.training.batch_augment``) whose cumulative time is reported.
PROFILED_DEVICE = {
    "_resample": "spatial step: grids, resampling, label and mask gathers",
    "upsample_field": "elastic field upsampling (trilinear)",
    "grid_sampler": "image resampling (grid_sample)",
    "unpack_bits": "brain masks unpacked",
    "flip_each": "mirroring (image, labels, masks)",
    "stretch": "clip + min-max stretch inside the masks (2×)",
    "contrast": "contrast",
    "gamma": "gamma",
    "_intensity": "intensity steps (contrast, gamma, stretch, brightness)",
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


def seconds_of(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], reps: int) -> float:
    """Median wall seconds of ``reps`` calls of ``fn``."""
    return statistics.median(seconds_of(fn) for _ in range(reps))


def digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


def time_dataset(dataset: PatchDataset, count: int, epoch: int, desc: str) -> tuple[list[float], list[str]]:
    """Seconds for each of the first ``count`` patches of ``epoch`` (scipy backend) and their digests."""
    times, digests = [], []
    for index in tqdm(range(count), desc=desc, unit="patch"):
        start = time.perf_counter()
        image, target = dataset[epoch * len(dataset) + index]
        times.append(time.perf_counter() - start)
        digests.append(digest(image.numpy()) + digest(target.numpy()))
    return times, digests


def time_naive(dataset: PatchDataset, cases: dict[str, Case], count: int, epoch: int
               ) -> tuple[list[float], list[float], list[str]]:
    """``dataset``'s first ``count`` patches of ``epoch`` drawn from freshly loaded ``.nii.gz`` files:
    seconds per patch, seconds of its load, digests. Same generator use as ``PatchDataset``."""
    totals, loads, digests = [], [], []
    for index in tqdm(range(count), desc="patches from .nii.gz", unit="patch"):
        rng = np.random.default_rng([dataset.seed, epoch, dataset.rank, index, 0])
        case_id = dataset.case_ids[int(rng.choice(len(dataset.case_ids), p=dataset.probabilities))]
        start = time.perf_counter()
        image, labels = naive_load(cases[case_id])
        loads.append(time.perf_counter() - start)
        patch, patch_labels = dataset.pipeline(image, labels, None, rng, epoch)
        target = dataset.lut[patch_labels]
        totals.append(time.perf_counter() - start)
        digests.append(digest(patch) + digest(target))
    return totals, loads, digests


def profile(fn: Callable[[int], object], count: int, names: dict[str, str]) -> dict[str, float]:
    """Seconds per call of ``fn(i)`` (i < ``count``) spent in the functions ``names`` labels
    (cumulative, by function name), and the total under the profiler."""
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for index in range(count):
        fn(index)
    profiler.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    out = {label: 0.0 for label in names.values()}
    for (_, _, name), (_, _, _, cumulative, _) in stats.items():
        key = name.removeprefix("<built-in method ").removesuffix(">").removeprefix("torch.")
        if key in names:
            out[names[key]] += cumulative / count
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


# ------------------------------------------------------------------------------------------
# the device backend and the peer
# ------------------------------------------------------------------------------------------

def time_device_reads(dataset: PatchDataset, count: int, epoch: int
                      ) -> tuple[list[float], list[float], dict[str, torch.Tensor]]:
    """A worker's side of the device backend, as it makes batches of two.

    Times ``dataset[i]`` for ``count`` indices of ``epoch`` and ``collate`` of each consecutive
    pair, after one untimed read per case (a persistent worker has its cases open: memory maps
    mapped, masks loaded). Only the first batch is kept: holding every block would make each new
    read fault in fresh memory, which a worker never does.

    Returns:
        Seconds per read, seconds per collate of two, the first collated batch.
    """
    first = epoch * len(dataset)
    warm = len(dataset.case_ids)
    for index in range(first, first + warm):
        dataset[index]
    reads, collates, pair, kept = [], [], [], None
    for index in tqdm(range(first + warm, first + warm + count), desc="device backend: block reads",
                      unit="read"):
        start = time.perf_counter()
        pair.append(dataset[index])
        reads.append(time.perf_counter() - start)
        if len(pair) == 2:
            start = time.perf_counter()
            batch = collate(pair)
            collates.append(time.perf_counter() - start)
            kept, pair = kept or batch, []
    return reads, collates, kept


def spatial_only(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A collated batch without its intensity parameters: ``DeviceAugmenter`` then resamples and
    mirrors only (with ``stretch_intensity=False``)."""
    return {k: v for k, v in batch.items() if k not in INTENSITY_KEYS}


def time_batches(dataset: PatchDataset, batch: dict[str, torch.Tensor], threads: int, reps: int
                 ) -> list[float]:
    """Seconds of ``dataset.to_device(batch, cpu)`` on ``threads`` threads, after one untimed call."""
    with threadpool_limits(threads):
        torch.set_num_threads(threads)
        dataset.to_device(batch, CPU)
        return [seconds_of(lambda: dataset.to_device(batch, CPU)) for _ in range(reps)]


def peer_transforms(patch: tuple[int, int, int], sigma: tuple[float, float], magnitude: float
                    ) -> dict[str, object] | str:
    """batchgeneratorsv2 ``SpatialTransform`` per label mode, or why it is not available.

    Rotation (a full turn per axis), scaling (0.75–1.25, one factor) and elastic deformation
    (σ as a fraction of the patch edge, displacement up to ``magnitude`` voxels) always on; the
    patch at the centre of the region; the image border replicated, as ours.
    """
    try:
        from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    except ImportError as exc:
        return f"batchgeneratorsv2 not importable ({exc}); pip install batchgeneratorsv2==0.3.6"
    scale = (sigma[0] / max(patch), sigma[1] / max(patch))
    return {mode: SpatialTransform(patch, patch_center_dist_from_border=0, random_crop=False,
                                   p_elastic_deform=1.0, elastic_deform_scale=scale,
                                   elastic_deform_magnitude=(0.0, magnitude), p_rotation=1.0,
                                   rotation=(0.0, 2 * np.pi), p_scaling=1.0, scaling=(0.75, 1.25),
                                   p_synchronize_scaling_across_axes=1.0, mode_seg=mode,
                                   padding_mode_image="border", border_mode_seg="zeros")
            for mode in PEER_LABEL_MODES}


def peer_inputs(cache_dir: Path, case_id: str, region: tuple[int, int, int]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The peer's input: ``(image (C, *region) float32, labels (1, *region) int16)``, the region
    centred in the cached case (zero outside it)."""
    prepared = load_prepared(cache_dir, case_id)
    shape = np.asarray(prepared.image.shape[1:])
    lo = (shape - np.asarray(region)) // 2
    hi = lo + np.asarray(region)
    image = read_block(prepared.image, lo, hi).astype(np.float32)
    labels = read_block(prepared.labels, lo, hi).astype(np.int16)
    return torch.from_numpy(image), torch.from_numpy(labels)[None]


def time_against_peer(dataset: PatchDataset, batch: dict[str, torch.Tensor], peers: dict[str, object],
                      inputs: tuple[torch.Tensor, torch.Tensor], reps: int, seed: int
                      ) -> dict[str, list[float]]:
    """Round-robin on one thread: our spatial step on the batch (seconds per patch) and each
    peer transform on one patch; other jobs on the machine then slow both alike."""
    image, labels = inputs
    spatial = spatial_only(batch)
    count = len(batch["flips"])
    augmenter = DeviceAugmenter(dataset.pipeline.patch_size, stretch_intensity=False)
    np.random.seed(seed)  # the peer draws from numpy's global generator
    times: dict[str, list[float]] = {"ours_spatial": [], **{m: [] for m in peers}}
    with threadpool_limits(1):
        torch.set_num_threads(1)
        augmenter(spatial, CPU)
        for _ in tqdm(range(reps), desc="spatial step: ours vs batchgeneratorsv2", unit="round"):
            times["ours_spatial"].append(seconds_of(lambda: augmenter(spatial, CPU)) / count)
            for mode, transform in peers.items():
                times[mode].append(seconds_of(
                    lambda: transform(image=image.clone(), segmentation=labels.clone())))
    return times


def measure_device(dataset: PatchDataset, reads: int, epoch: int, reps: int,
                   peer: dict[str, object] | str, inputs: tuple[torch.Tensor, torch.Tensor] | None) -> dict:
    """Every device-backend row (loader side, device side on the CPU, the peer)."""
    with threadpool_limits(1):
        torch.set_num_threads(1)
        read_times, collate_times, batch = time_device_reads(dataset, reads, epoch)
    out = {"read_s": read_times, "collate_2_s": collate_times,
           "batch_2_threads_s": time_batches(dataset, batch, 2, reps),
           "batch_1_thread_s": time_batches(dataset, batch, 1, reps),
           "batch_block_shape": list(batch["block"].shape),
           "profile_batch_1_thread": profile(lambda _: dataset.to_device(batch, CPU), 1, PROFILED_DEVICE)}
    if isinstance(peer, dict) and inputs is not None:
        out["peer_s"] = time_against_peer(dataset, batch, peer, inputs, reps, SEED)
    return out


def device_summary(timed: dict) -> dict:
    """The device-backend figures derived from :func:`measure_device`'s seconds."""
    read = statistics.mean(timed["read_s"])
    collate_2 = statistics.median(timed["collate_2_s"])
    batch_1 = statistics.median(timed["batch_1_thread_s"])
    out = {
        "device_read_s": read, "device_read_median_s": statistics.median(timed["read_s"]),
        "device_reads_per_s": 1 / read, "device_collate_2_s": collate_2,
        "device_loader_patches_per_s": 1 / (read + collate_2 / 2),
        "device_batch_2_threads_s": statistics.median(timed["batch_2_threads_s"]),
        "device_batch_2_threads_min_s": min(timed["batch_2_threads_s"]),
        "device_batch_1_thread_s": batch_1,
        "device_patch_1_thread_s": batch_1 / 2,
        "device_patch_1_thread_total_s": read + collate_2 / 2 + batch_1 / 2,
    }
    peer = timed.get("peer_s")
    if peer:
        ours = statistics.median(peer["ours_spatial"]) + out["device_read_median_s"]
        out["ours_spatial_patch_s"] = statistics.median(peer["ours_spatial"])
        out["ours_spatial_plus_read_s"] = ours
        for mode in PEER_LABEL_MODES:
            out[f"peer_{mode}_s"] = statistics.median(peer[mode])
            out[f"peer_{mode}_speedup"] = out[f"peer_{mode}_s"] / ours
        out["peer_nearest_vs_full_pipeline"] = (out["peer_nearest_s"]
                                                / out["device_patch_1_thread_total_s"])
    return out


def targets(result: dict) -> list[dict]:
    m = result["measured"]
    rate, load = m["patches_per_s_cache"], m["load_speedup"]
    reads, batch = m["device_reads_per_s"], m["device_batch_2_threads_s"]
    size = "×".join(map(str, result["settings"]["patch_size"]))
    peer = m.get("peer_nearest_speedup")
    return [
        target_row("data", "augmented patches/s, one worker, from the cache (scipy backend: Isensee "
                   "augmentation, cubic spline)", rate, "patches/s", f"≥ {PATCHES_PER_S_TARGET:g}",
                   rate >= PATCHES_PER_S_TARGET),
        target_row("data", "case load: cache vs .nii.gz (+ crop + z-score), speed-up", load, "×",
                   f"≥ {LOAD_SPEEDUP_TARGET:g}", load >= LOAD_SPEEDUP_TARGET),
        target_row("data", "full patch: cache vs .nii.gz, speed-up", m["patch_speedup"], "×", "—", None),
        target_row("data", "augmented patches/s, one worker, interpolation_order 1",
                   m["patches_per_s_cache_order1"], "patches/s", "—", None),
        target_row("data", "device backend, loader only: region reads/s per worker (one thread)", reads,
                   "reads/s", f"≥ {READS_PER_S_TARGET:g}", reads >= READS_PER_S_TARGET),
        target_row("data", "device backend, loader: patches/s per worker with collate",
                   m["device_loader_patches_per_s"], "patches/s", "—", None),
        target_row("data", f"device backend: augment a 2×4×{size} batch on the CPU, 2 threads", batch, "s",
                   f"≤ {BATCH_SECONDS_TARGET:g}", batch <= BATCH_SECONDS_TARGET),
        target_row("data", "device backend: one patch on one thread (read + collate + augmentation)",
                   m["device_patch_1_thread_total_s"], "s", "—", None),
        target_row("data", "spatial step per patch, one thread: batchgeneratorsv2 SpatialTransform vs ours "
                   "(+ block read), speed-up", peer, "×", f"≥ {PEER_SPEEDUP_TARGET:g}",
                   None if peer is None else peer >= PEER_SPEEDUP_TARGET),
    ]


def _device_lines(result: dict) -> list[str]:
    """The Markdown section of the device backend and the peer."""
    s, m, timed = result["settings"], result["measured"], result["device"]
    size = "×".join(map(str, s["patch_size"]))
    block = "×".join(map(str, timed["batch_block_shape"]))
    lines = [
        "## Device backend (`data.augmentation_backend: device`, the default)", "",
        f"Same cases, same pipeline; {s['device_reads']} timed reads after one per case; "
        f"{s['augment_reps']} repetitions of each batch timing (median).", "",
        "| measurement | value | target |", "|---|---|---|",
        f"| loader: one block read + parameters (`PatchDataset[i]`), mean s | {m['device_read_s']:.3f} | |",
        f"| loader: region reads/s per worker | **{m['device_reads_per_s']:.1f}** | "
        f"≥ {READS_PER_S_TARGET:g} |",
        f"| loader: `collate` of 2 samples, s | {m['device_collate_2_s']:.3f} | |",
        f"| loader: patches/s per worker, collate included | {m['device_loader_patches_per_s']:.1f} | |",
        f"| device side on the CPU: 2×4×{size} batch, 2 threads, s | **{m['device_batch_2_threads_s']:.2f}** "
        f"(min {m['device_batch_2_threads_min_s']:.2f}) | ≤ {BATCH_SECONDS_TARGET:g} |",
        f"| device side on the CPU: 2×4×{size} batch, 1 thread, s | {m['device_batch_1_thread_s']:.2f} | |",
        f"| one patch on one thread: read + collate + augmentation, s | "
        f"{m['device_patch_1_thread_total_s']:.2f} | |",
        f"| the same against the scipy backend's patch ({m['patch_cache_s']:.2f} s), speed-up | "
        f"{m['patch_cache_s'] / m['device_patch_1_thread_total_s']:.1f}× | |",
        "", f"The timed batch's blocks, padded to one shape (the part of each region its spatial "
        f"transform can reach): {block}.", "",
        "Where the device side's time goes on the CPU (one 2-patch batch, one thread, cProfile, "
        "cumulative s per batch; nested: the resampling is inside the spatial step, the stretch, "
        "contrast and gamma inside the intensity steps):", "",
        "| step | s/batch | share |", "|---|---|---|",
    ]
    profiled = timed["profile_batch_1_thread"]
    total = profiled["total (under the profiler)"]
    for label, seconds in sorted(profiled.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {label} | {seconds:.3f} | {100 * seconds / total:.0f} % |")
    lines.append("")
    if "peer_nearest_s" not in m:
        return lines + [f"Peer: {result['peer_note']}", ""]
    lines += [
        "### Peer: batchgeneratorsv2 (nnU-Net v2's augmentation library)", "",
        f"`SpatialTransform` {result['peer_version']}, rotation + scaling + elastic deformation on every "
        f"patch, 4 channels × {size} from a {'×'.join(map(str, s['peer_region']))} region in memory, one "
        f"thread, round-robin with ours ({s['augment_reps']} rounds, medians). Ours: the spatial step "
        "of `DeviceAugmenter` (resampling, labels, masks, mirroring; per patch of the 2-patch batch) "
        "plus the worker's block read; the peer reads nothing.", "",
        "| per patch, one thread | s | peer / ours |", "|---|---|---|",
        f"| ours: spatial step | {m['ours_spatial_patch_s']:.3f} | |",
        f"| ours: spatial step + block read | {m['ours_spatial_plus_read_s']:.3f} | |",
        f"| batchgeneratorsv2, labels nearest (as ours) | {m['peer_nearest_s']:.3f} | "
        f"**{m['peer_nearest_speedup']:.2f}×** (target ≥ {PEER_SPEEDUP_TARGET:g}) |",
        f"| batchgeneratorsv2, labels linear one-hot (its default) | {m['peer_bilinear_s']:.3f} | "
        f"{m['peer_bilinear_speedup']:.2f}× |",
        f"| ours, whole pipeline (read + collate + spatial + intensity) | "
        f"{m['device_patch_1_thread_total_s']:.3f} | {m['peer_nearest_vs_full_pipeline']:.2f}× "
        "(against the peer's spatial step alone) |", "",
    ]
    return lines


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
        f"epoch {s['epoch']}; one process, one thread unless said otherwise",
        "",
        "| target | measured | goal | met |", "|---|---|---|---|",
    ]
    for row in result["targets"]:
        value = ("—" if row["measured"] is None else
                 f"{row['measured']:.3g}{'' if row['unit'] == '×' else ' '}{row['unit']}")
        met = met_cell(row["met"])
        lines.append(f"| {row['target']} | {value} | {row['goal']} | {met} |")
    lines += [
        "",
        "## scipy backend (`data.augmentation_backend: scipy`, the exact original)", "",
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
    lines += ["", f"grid_sample and map_coordinates order 1 differ by at most {difference:.1e}.", ""]
    lines += _device_lines(result)
    lines += ["Regenerate with `" + " ".join(["python benchmarks/data/bench_data.py", *s["argv"]]) + "`.", ""]
    return lines


def peer_version() -> str | None:
    """The installed batchgeneratorsv2 version, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("batchgeneratorsv2")
    except PackageNotFoundError:
        return None


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
    ap.add_argument("--device-reads", type=int, default=None,
                    help="timed device-backend reads, at least 2 (default 24, quick 4)")
    ap.add_argument("--augment-reps", type=int, default=None,
                    help="repetitions of each device-side and peer timing (default 5, quick 1)")
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
    reads = max(args.device_reads or (4 if args.quick else 24), 2)
    reps = args.augment_reps or (1 if args.quick else 5)
    out = args.out or REPO / "benchmarks" / "results" / ("quick" if args.quick else "")

    data = load_config(args.submissions / "isensee2017.yaml").data
    patch = (32, 32, 32) if args.quick else data.patch_size
    region = None if args.quick else data.crop_size
    peer_region = tuple(region or (n + 8 for n in patch))
    nifti_dir, cache_dir = datasets(args.work, shape, cases, args.seed, args.jobs)  # type: ignore[arg-type]
    env = environment(1)

    def dataset(backend: str = "scipy", length: int = patches, **kwargs) -> PatchDataset:
        pipeline = PatchPipeline(patch, crop_size=region, foreground_fraction=data.foreground_fraction,
                                 augmentation=data.augmentation,
                                 augmentation_kwargs={**data.augmentation_kwargs, **kwargs},
                                 intensity=data.intensity)
        return PatchDataset(cache_dir, ids, pipeline, length, SEED, backend=backend)

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

        cache_times, cache_digests = time_dataset(dataset(), patches, args.epoch, "patches from the cache")
        naive_times, naive_loads, naive_digests = time_naive(dataset(), by_id, naive_patches, args.epoch)
        order1_times, _ = time_dataset(dataset(interpolation_order=1), max(patches // 2, 1), args.epoch,
                                       "patches from the cache, order 1")
        scipy_set = dataset()
        breakdown = profile(lambda i: scipy_set[args.epoch * patches + i], profiled, PROFILED)
        kernels = resampling_kernels(np.asarray(cached.image), patch, 3)

    phase = dataset().pipeline.augmentation.phase(args.epoch)
    peers = peer_transforms(patch, phase.elastic_sigma, 10.0)
    device_set = dataset("device", reads + len(ids))
    timed = measure_device(device_set, reads, args.epoch, reps, peers,
                           peer_inputs(cache_dir, ids[0], peer_region) if isinstance(peers, dict) else None)

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
        **device_summary(timed),
    }
    result = {
        "benchmark": "data",
        "environment": {**env, "torch": torch.__version__, "load_average_after": load_average()},
        "settings": {"quick": args.quick, "shape": list(shape), "cases": cases,
                     "crop_shapes": [list(load_prepared(cache_dir, i).image.shape[1:]) for i in ids],
                     "patch_size": list(patch), "crop_size": None if region is None else list(region),
                     "augmentation": data.augmentation, "augmentation_kwargs": data.augmentation_kwargs,
                     "intensity": data.intensity, "epoch": args.epoch, "patches": patches,
                     "naive_patches": naive_patches, "profile_patches": profiled,
                     "device_reads": reads, "augment_reps": reps, "peer_region": list(peer_region),
                     "argv": raw_argv},
        "measured": measured,
        "seconds": {"cache": cache_times, "nifti": naive_times, "nifti_load": naive_loads,
                    "cache_order1": order1_times},
        "profile": breakdown,
        "kernels": kernels,
        "device": timed,
        "peer_version": peer_version(),
        "peer_note": peers if isinstance(peers, str) else None,
    }
    result["targets"] = targets(result)
    write_result(out, "data", result, write_markdown(result))
    print(f"{measured['patches_per_s_cache']:.2f} patches/s from the cache (scipy backend), "
          f"{measured['device_reads_per_s']:.1f} device-backend reads/s, 2×4×patch batch "
          f"{measured['device_batch_2_threads_s']:.2f} s on 2 threads; wrote {out}/data.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
