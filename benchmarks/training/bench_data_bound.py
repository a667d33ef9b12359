"""Is training data-bound? Training steps fed by the real loader against the same steps on
pre-generated tensors.

Usage::

    python benchmarks/training/bench_data_bound.py [--quick] [--device cpu|cuda] [--patch N]
        [--batch B] [--steps N] [--warmup W] [--workers W] [--threads T] [--amp] [--work DIR]
        [--out DIR]

The network, loss, optimiser and data pipeline are the Isensee entry's
(``submissions/isensee2017.yaml``: ``isensee_unet``, soft Dice, Adam with its L2 term, 128³ patches
from a 160×192×160 region, the ``isensee2017`` augmentation on the ``device`` backend), at a patch
of ``--patch``³ so that a CPU step takes seconds. The data are the synthetic full-size cases of
``benchmarks/data/bench_data.py`` (``brats.synth`` 240×240×155, prepared into a cache, shared
through ``--work``). Two ways to feed the same steps, as the trainer does:

* **real loader** — a ``DataLoader`` over ``PatchDataset(…, backend="device")`` with the trainer's
  settings (``EpochSampler``, ``--workers`` persistent worker processes, ``collate_fn``, pinned
  memory and a prefetch of 4 on CUDA), each batch finished by ``PatchDataset.to_device`` on the
  training device (resampling, mirroring, intensity), then forward, loss, backward, Adam;
* **pre-generated** — the same number of batches made beforehand and kept on the device; the
  same steps on them. It runs before and after the loader run, and the two are averaged, so a
  drift in the machine's load affects both sides alike.

Per step it records the time spent waiting for the loader (the trainer's ``data_fraction``) and in
``to_device``. On the CPU the loader workers share the cores with training: with 2 cores, train on
one thread (``--threads 1``) and use one worker. Results: ``<out>/data_bound_<device>.json`` and
``.md``; ``--quick`` writes to ``<out>/quick``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

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
from benchmarks.data.bench_data import datasets  # noqa: E402
from brats.config import EntryConfig, load_config  # noqa: E402
from brats.losses import build_loss  # noqa: E402
from brats.nets import build_network  # noqa: E402
from brats.training.data import EpochSampler, PatchDataset  # noqa: E402
from brats.training.pipeline import PatchPipeline  # noqa: E402
from brats.training.trainer import (  # noqa: E402
    Trainer,
    build_optimizer,
    l1_penalty,
    l2_penalty,
    select_device,
    training_cases,
)
from brats.training.views import size_in_array_order  # noqa: E402

#: The data time (waiting + ``to_device``) must stay under this share of a step on the CPU.
CPU_DATA_SHARE_TARGET = 0.10
#: On a GPU the real loader may be at most this much slower than pre-generated tensors.
GPU_SLOWDOWN_TARGET = 0.05
SEED = 65432


def isensee_config(patch: int, base_filters: int | None = None, crop: bool = True,
                   batch: int | None = None) -> EntryConfig:
    """The Isensee entry's config at a ``patch``³ patch (its region kept unless ``crop`` is False,
    its network width and batch size unless given)."""
    overrides: dict[str, Any] = {"data.patch_size": [patch] * 3}
    if not crop:
        overrides["data.crop_size"] = None
    if batch is not None:
        overrides["data.batch_size"] = batch
    if base_filters is not None:
        overrides["network.kwargs"] = {"base_filters": base_filters, "dropout": 0.3}
    config = load_config(REPO / "submissions" / "isensee2017.yaml", None, overrides)
    return config.member(config.member_names[0])


def training_dataset(config: EntryConfig, cache_dir: Path, case_ids: list[str], length: int
                     ) -> PatchDataset:
    """The trainer's training ``PatchDataset`` for ``config`` (``Trainer._train``: patch and region
    in array order for a view, target, output crop, region of interest, backend)."""
    data = config.data
    crop = None if data.crop_size is None else size_in_array_order(data.crop_size, data.view)
    pipeline = PatchPipeline(size_in_array_order(data.patch_size, data.view), crop_size=crop,
                             foreground_fraction=data.foreground_fraction,
                             augmentation=data.augmentation,
                             augmentation_kwargs=data.augmentation_kwargs, intensity=data.intensity)
    return PatchDataset(cache_dir, case_ids, pipeline, length, SEED, target=data.target,
                        view=data.view, output_crop=data.output_crop, roi=data.roi,
                        roi_margin=data.roi_margin, require_foreground=data.require_foreground,
                        backend=data.augmentation_backend)


def loader(dataset: PatchDataset, batch: int, workers: int, device: torch.device) -> DataLoader:
    """A loader with the trainer's settings (``Trainer._loader``)."""
    return DataLoader(dataset, batch_size=batch, sampler=EpochSampler(len(dataset)),
                      num_workers=workers, collate_fn=dataset.collate_fn,
                      pin_memory=device.type == "cuda", drop_last=True,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)


class Stepper:
    """One training step of a member's network as the trainer takes it: forward (bf16 autocast if
    ``amp``), loss, the L1/L2 terms, backward, optimiser step, then a device sync.

    Args:
        config: the member's config (network, loss, optimiser; ``Trainer.num_outputs`` from it).
        cache_dir: the cache the trainer would read (only passed on to ``Trainer``).
        device: where the network lives.
        amp: bf16 autocast around the forward pass.
        compiled: wrap the network in ``torch.compile``.

    Calling it with ``(image (B, 4, *patch) float32, target (B, *out) int64)`` on ``device`` takes
    one step.
    """

    def __init__(self, config: EntryConfig, cache_dir: Path, device: torch.device, amp: bool,
                 compiled: bool = False) -> None:
        torch.manual_seed(SEED)
        outputs = Trainer(config, cache_dir, tempfile.gettempdir(), fold=None,
                          device=str(device), progress=False).num_outputs
        self.network = build_network(config.network.name, in_channels=4, num_classes=outputs,
                                     **config.network.kwargs).to(device).train()
        self.model = torch.compile(self.network) if compiled else self.network
        self.loss_fn = build_loss(config.loss.name, **config.loss.kwargs)
        self.optimizer = build_optimizer(self.network.parameters(), config.optim)
        self.l1, self.l2 = config.optim.l1, config.optim.l2
        self.device = device
        self.autocast: Callable[[], contextlib.AbstractContextManager] = (
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext)

    def __call__(self, image: torch.Tensor, target: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.model(image)
        loss = self.loss_fn(logits.float(), target)
        if self.l2:
            loss = loss + self.l2 * l2_penalty(self.network)
        if self.l1:
            loss = loss + self.l1 * l1_penalty(self.network)
        loss.backward()
        self.optimizer.step()
        sync(self.device)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_loader(step: Stepper, dataset: PatchDataset, batches: Iterator, count: int
               ) -> dict[str, list[float]]:
    """``count`` steps fed by ``batches``: per step the seconds waiting, in ``to_device`` and in all."""
    times: dict[str, list[float]] = {"wait": [], "to_device": [], "step": []}
    for _ in range(count):
        start = time.perf_counter()
        batch = next(batches)
        asked = time.perf_counter()
        image, target = dataset.to_device(batch, step.device)
        sync(step.device)
        finished = time.perf_counter()
        step(image, target)
        times["wait"].append(asked - start)
        times["to_device"].append(finished - asked)
        times["step"].append(time.perf_counter() - start)
    return times


def run_pregenerated(step: Stepper, tensors: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """Seconds of one step on each pre-generated ``(image, target)`` already on the device."""
    times = []
    for image, target in tensors:
        start = time.perf_counter()
        step(image, target)
        times.append(time.perf_counter() - start)
    return times


def data_bound_check(config: EntryConfig, cache_dir: Path, case_ids: list[str], device: torch.device,
                     steps: int, warmup: int, workers: int, amp: bool) -> dict[str, Any]:
    """Steps fed by the real loader against steps on pre-generated tensors (module docstring).

    Returns:
        Seconds per step of both (``*_s``, means over the timed steps), the data share of the
        loader steps (waiting + ``to_device``), the slowdown of the loader run, and every step's
        seconds.
    """
    batch = config.data.batch_size
    step = Stepper(config, cache_dir, device, amp)
    source = training_dataset(config, cache_dir, case_ids, (warmup + steps) * batch)
    made = iter(DataLoader(source, batch_size=batch, collate_fn=source.collate_fn))
    tensors = [source.to_device(b, device) for b in made]
    run_pregenerated(step, tensors[:warmup])
    before = run_pregenerated(step, tensors[warmup:])
    live = loader(training_dataset(config, cache_dir, case_ids, (warmup + steps) * batch), batch,
                  workers, device)
    batches = iter(live)
    run_loader(step, live.dataset, batches, warmup)
    real = run_loader(step, live.dataset, batches, steps)
    after = run_pregenerated(step, tensors[warmup:])
    del batches, live
    pregenerated = statistics.mean(before + after)
    loaded = statistics.mean(real["step"])
    data_time = statistics.mean(w + d for w, d in zip(real["wait"], real["to_device"]))
    return {"pregenerated_s": pregenerated, "loader_s": loaded,
            "loader_wait_s": statistics.mean(real["wait"]),
            "to_device_s": statistics.mean(real["to_device"]),
            "data_share": data_time / loaded, "wait_share": statistics.mean(real["wait"]) / loaded,
            "slowdown": loaded / pregenerated - 1,
            "patches_per_s_loader": batch / loaded, "patches_per_s_pregenerated": batch / pregenerated,
            "seconds": {"pregenerated_before": before, "pregenerated_after": after, **real}}


def targets(result: dict) -> list[dict]:
    m, s = result["measured"], result["settings"]
    name = f"{s['batch']}×4×{s['patch']}³, {s['precision']}, {s['device']}"
    if s["device"] == "cuda":
        return [target_row("data_bound", f"real loader vs pre-generated tensors ({name}): slowdown",
                           m["slowdown"], "fraction", f"≤ {100 * GPU_SLOWDOWN_TARGET:g} %",
                           m["slowdown"] <= GPU_SLOWDOWN_TARGET),
                target_row("data_bound", f"data share of a step ({name})", m["data_share"], "fraction",
                           "—", None)]
    return [target_row("data_bound", f"data share of a step, real loader ({name}, {s['workers']} worker, "
                       f"{s['threads']} training thread)", m["data_share"], "fraction",
                       f"< {100 * CPU_DATA_SHARE_TARGET:g} %", m["data_share"] < CPU_DATA_SHARE_TARGET),
            target_row("data_bound", f"real loader vs pre-generated tensors ({name}): slowdown",
                       m["slowdown"], "fraction", "—", None)]


def write_markdown(result: dict) -> list[str]:
    s, m = result["settings"], result["measured"]
    lines = header_lines(f"Data-bound check: real loader vs pre-generated tensors ({s['device']})",
                         result["environment"], s["quick"])
    lines += [
        f"* Isensee entry: `{s['network']}` {s['network_kwargs']}, loss `{s['loss']}`, Adam; batch "
        f"{s['batch']} × 4 × {s['patch']}³ from region {s['crop_size']}, augmentation `{s['augmentation']}` "
        f"on the `{s['backend']}` backend, {s['precision']}",
        f"* {s['cases']} synthetic cases of {'×'.join(map(str, s['shape']))}; {s['workers']} loader "
        f"worker(s); {s['threads']} training thread(s); {s['steps']} timed steps after {s['warmup']} "
        "warm-up steps; pre-generated steps run before and after the loader run (mean of both)",
        "",
        "| measurement | value |", "|---|---|",
        f"| step on pre-generated tensors, s | {m['pregenerated_s']:.3f} |",
        f"| step with the real loader, s | {m['loader_s']:.3f} |",
        f"| of which waiting for the loader, s | {m['loader_wait_s']:.3f} |",
        f"| of which `to_device` (augmentation on the training device), s | {m['to_device_s']:.3f} |",
        f"| data share of a loader step (waiting + `to_device`) | **{100 * m['data_share']:.1f} %** |",
        f"| waiting share (the trainer's `data_fraction`) | {100 * m['wait_share']:.1f} % |",
        f"| loader run slower than pre-generated by | {100 * m['slowdown']:.1f} % |",
        "",
        "| target | measured | goal | met |", "|---|---|---|---|",
    ]
    for row in result["targets"]:
        met = met_cell(row["met"])
        lines.append(f"| {row['target']} | {100 * row['measured']:.1f} % | {row['goal']} | {met} |")
    command = " ".join(["python benchmarks/training/bench_data_bound.py", *s["argv"]])
    lines += ["", f"Regenerate with `{command}`.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 48³ cases, 32³ patches, a narrow network, 2 steps")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--patch", type=int, default=None, help="patch edge (default 64, quick 32)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the entry's, 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 6, quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2, quick 1)")
    ap.add_argument("--workers", type=int, default=1, help="loader worker processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (default fp32, as the paper)")
    ap.add_argument("--cases", type=int, default=None, help="synthetic cases (default 4, quick 2)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "brats-benchmarks",
                    help="folder for the synthetic data and cache (shared with bench_data, reused)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default benchmarks/results, quick: benchmarks/results/quick)")
    args = ap.parse_args(argv)
    device = select_device(args.device)
    shape = (48, 48, 48) if args.quick else (240, 240, 155)
    cases = args.cases or (2 if args.quick else 4)
    patch = args.patch or (32 if args.quick else 64)
    steps = args.steps or (2 if args.quick else 6)
    warmup = args.warmup or (1 if args.quick else 2)
    out = args.out or REPO / "benchmarks" / "results" / ("quick" if args.quick else "")
    torch.set_num_threads(args.threads)

    config = isensee_config(patch, base_filters=4 if args.quick else None, crop=not args.quick,
                            batch=args.batch)
    _, cache_dir = datasets(args.work, shape, cases, 0, 2)
    case_ids = training_cases(cache_dir)
    env = environment(args.threads)
    measured = data_bound_check(config, cache_dir, case_ids, device, steps, warmup, args.workers, args.amp)
    seconds = measured.pop("seconds")
    data = config.data
    result = {
        "benchmark": "data_bound",
        "environment": {**env, "torch": torch.__version__, "load_average_after": load_average()},
        "settings": {"quick": args.quick, "device": device.type, "shape": list(shape), "cases": cases,
                     "patch": patch, "batch": data.batch_size,
                     "crop_size": None if data.crop_size is None else list(data.crop_size),
                     "augmentation": data.augmentation, "backend": data.augmentation_backend,
                     "network": config.network.name, "network_kwargs": dict(config.network.kwargs),
                     "loss": config.loss.name, "precision": "bf16 autocast" if args.amp else "fp32",
                     "steps": steps, "warmup": warmup, "workers": args.workers, "threads": args.threads,
                     "argv": raw_argv},
        "measured": measured,
        "seconds": seconds,
    }
    result["targets"] = targets(result)
    write_result(out, f"data_bound_{device.type}", result, write_markdown(result))
    print(f"data share {100 * measured['data_share']:.1f} %, loader {100 * measured['slowdown']:+.1f} % vs "
          f"pre-generated; wrote {out}/data_bound_{device.type}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
