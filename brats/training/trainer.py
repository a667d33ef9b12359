"""The one training loop used by every network of this repository.

``Trainer(config, cache_dir, out_dir, fold).fit()`` trains one member on one fold: patches from
the preprocessing cache, AMP and the other speed switches, atomic checkpoints every epoch,
``resume=True`` continuing bit for bit (same patches, RNG streams, optimiser, scheduler and
scaler state) on a single process, best/last checkpoints, ``log.csv`` plus TensorBoard, a tqdm
bar with loss and throughput, and DistributedDataParallel under torchrun (rank 0 writes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from brats.config import EntryConfig, OptimConfig, dump_config, import_package, to_dict
from brats.errors import BratsInputError
from brats.io import write_json, write_text
from brats.logs import RUN_LOG, run_log
from brats.losses import LOSS_TARGETS, build_loss, class_index_to_regions
from brats.manifest import clear_folder, diff_settings, read_manifest, write_manifest
from brats.nets import build_network
from brats.preprocess.cache import load_index, load_record
from brats.progress import plot_progress
from brats.training.checkpoint import BEST, LAST, find_checkpoint, load_checkpoint, save_checkpoint
from brats.training.data import CLASS_NAMES, EpochSampler, PatchDataset
from brats.training.distributed import DistContext, broadcast_object, cleanup, init_from_env, unwrap
from brats.training.optim import RMSpropNesterov
from brats.training.pipeline import PatchPipeline
from brats.training.sampling import SLICE_PLACEMENTS
from brats.training.splits import load_or_make_splits
from brats.training.views import VIEW_AXES, size_in_array_order

log = logging.getLogger(__name__)
DONE = "training_done.json"
RUN_KIND = "train"
REGION_NAMES = ("WT", "TC", "ET")
#: The progress bar shows the running loss every this many steps (each read syncs the device).
POSTFIX_EVERY = 10


def select_device(name: str | None) -> torch.device:
    """``"auto"``/None → CUDA when available else CPU; ``"cuda"`` without a GPU is an error."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BratsInputError("--device cuda requested but no CUDA device is available")
    return device


def lr_factor(epoch: int, cfg: OptimConfig, epochs: int) -> float:
    """Learning-rate multiplier for ``epoch`` under the configured schedule."""
    if cfg.schedule == "exponential":
        return cfg.gamma ** epoch
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.schedule == "poly":
        return (1 - epoch / epochs) ** 0.9
    raise BratsInputError(f"unknown optim.schedule {cfg.schedule!r}; expected exponential, "
                          "constant, step or poly")


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam, SGD or RMSprop from the config."""
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "rmsprop":
        if cfg.nesterov:
            if cfg.weight_decay:
                raise BratsInputError("optim: rmsprop with nesterov has no weight_decay; use "
                                      "optim.l1 / optim.l2")
            return RMSpropNesterov(params, lr=cfg.lr, rho=cfg.rho, eps=cfg.eps,
                                   momentum=cfg.momentum)
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.rho, momentum=cfg.momentum,
                                   eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise BratsInputError(f"unknown optim.name {cfg.name!r}; expected adam, sgd or rmsprop")


#: ``optim.regularize`` → which parameters the L1/L2 penalties cover.
REGULARIZED = ("weights", "conv")


def regularized_parameters(model: torch.nn.Module, which: str = "weights") -> list[torch.Tensor]:
    """The trainable parameters the L1/L2 penalties cover.

    ``weights``: every parameter named ``weight`` (convolution kernels, norm scales, PReLU
    slopes), never biases — Lasagne's ``regularize_network_params`` as Isensee used it.
    ``conv``: convolution kernels only — DeepMedic's L1/L2 (deepmedic/deepmedic @e10ba7c,
    ``neuralnet/layers.py``: only ``ConvolutionalLayer.params_for_L1_L2_reg`` returns
    parameters, its kernel; batch norm, PReLU and bias layers return none).
    """
    if which == "weights":
        return [p for n, p in model.named_parameters() if n.endswith("weight") and p.requires_grad]
    if which == "conv":
        return [m.weight for m in model.modules()
                if isinstance(m, torch.nn.modules.conv._ConvNd) and m.weight.requires_grad]
    raise BratsInputError(f"unknown optim.regularize {which!r}; expected one of "
                          + ", ".join(REGULARIZED))


def l2_penalty(model: torch.nn.Module, which: str = "weights") -> torch.Tensor:
    """Σ w² over :func:`regularized_parameters`."""
    return sum((p.float() ** 2).sum() for p in regularized_parameters(model, which))


def l1_penalty(model: torch.nn.Module, which: str = "weights") -> torch.Tensor:
    """Σ |w| over :func:`regularized_parameters`."""
    return sum(p.float().abs().sum() for p in regularized_parameters(model, which))


def training_cases(cache_dir: Path) -> list[str]:
    """Labelled cases of a cache, HGG first then LGG, each by id (the Isensee 2017 order)."""
    records = [load_record(cache_dir, c) for c in load_index(cache_dir)["cases"]]
    labelled = [r for r in records if r.has_labels]
    if not labelled:
        raise BratsInputError(f"{cache_dir}: the cache holds no case with labels")
    return [r.id for r in sorted(labelled, key=lambda r: (r.grade == "LGG", r.id))]


#: Config keys a resumed run may change: they affect speed, logging, prediction or prose, not
#: what training computes. ``train.epochs`` may also grow on ``--resume`` (training continues to
#: the new end).
RESUMABLE_CHANGES = ("config.data.workers", "config.train.tensorboard", "config.inference",
                     "config.description", "config.reported")
#: What a run writes into its folder (all that ``--overwrite`` may remove).
RUN_OUTPUTS = ("config.yaml", LAST, BEST, "log.csv", DONE, "tensorboard", RUN_LOG, "progress.png")


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class EpochResult:
    """What one epoch produced (one row of ``log.csv``).

    ``data_fraction`` is the share of the epoch's training time spent waiting for the loader
    (near 0: the device never waits for the CPU).
    """

    epoch: int
    lr: float
    train_loss: float
    val_loss: float
    dice_WT: float
    dice_TC: float
    dice_ET: float
    seconds: float
    patches_per_s: float
    data_fraction: float

    @property
    def mean_dice(self) -> float:
        """Mean validation pseudo-Dice over the scored regions (NaN without validation)."""
        scores = [d for d in (self.dice_WT, self.dice_TC, self.dice_ET) if not math.isnan(d)]
        return float(np.mean(scores)) if scores else math.nan


class Trainer:
    """Train one member of an entry on one fold.

    Args:
        config: the member's config (``EntryConfig.member(name)``).
        cache_dir: ``brats prepare`` output.
        out_dir: run folder (checkpoints, ``log.csv``, ``config.yaml``, TensorBoard events).
        fold: 0 … folds−1, or None to train on every labelled case without validation.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …
        resume: continue the run in ``out_dir`` (a finished run returns at once; a larger
            ``train.epochs`` continues it to the new end).
        overwrite: start again in a folder holding a run (its own files are removed).
        progress: tqdm bars.
        member: member name stored in the checkpoint.
    """

    def __init__(self, config: EntryConfig, cache_dir: str | os.PathLike[str],
                 out_dir: str | os.PathLike[str], fold: int | None = 0, device: str | None = None,
                 resume: bool = False, progress: bool = True, member: str = "model",
                 overwrite: bool = False) -> None:
        self.config = config
        self.cache_dir = Path(cache_dir)
        self.out_dir = Path(out_dir)
        self.fold = fold
        self.resume = resume
        self.overwrite = overwrite
        self.progress = progress
        self.member = member
        self.device = select_device(device)
        import_package(config.package)
        self.target = LOSS_TARGETS.get(config.loss.name)
        if self.target is None:
            raise BratsInputError(f"unknown loss {config.loss.name!r}; expected one of "
                                  + ", ".join(LOSS_TARGETS))
        if config.data.target != "classes":
            self.num_outputs = 2
        else:
            self.num_outputs = 4 if self.target == "labels" else 3

    def settings(self) -> dict[str, Any]:
        """What makes this run what it is (recorded in its manifest and compared on re-runs)."""
        return {"config": to_dict(self.config), "fold": self.fold, "member": self.member}

    def _recorded_settings(self, state: dict[str, Any]) -> dict[str, Any]:
        """The settings of the run in ``out_dir``: its manifest, or (older runs) its last
        checkpoint ``state``."""
        manifest = read_manifest(self.out_dir)
        if manifest is not None:
            if manifest["kind"] != RUN_KIND:
                raise BratsInputError(f"{self.out_dir} was made by `brats {manifest['kind']}`, "
                                      "not by training; choose a new --out")
            return manifest["settings"]
        return {"config": state["config"], "fold": state["fold"], "member": state["member"]}

    def _prepare_out_dir(self) -> tuple[dict[str, Any] | None, str]:
        """Decide what to do with ``out_dir`` (main process); returns ``(the last checkpoint to
        resume from, or None to start, message)``.

        A folder holding a run with other settings is an error that lists them unless
        ``overwrite`` (the run's own files are removed, nothing else); the same settings
        continue with ``resume`` (and ``train.epochs`` may grow: training continues to the new
        end), start again with ``overwrite`` alone, and are an error otherwise.
        """
        out, settings = self.out_dir, self.settings()
        training_cases(self.cache_dir)  # a missing or empty cache fails before anything is written
        if out.exists() and not out.is_dir():
            raise BratsInputError(f"{out} is a file, not a run folder")
        if (out / LAST).is_file():
            state = load_checkpoint(out / LAST)
            recorded = self._recorded_settings(state)
            diffs = diff_settings(recorded, settings, ignore=(*RESUMABLE_CHANGES,
                                                              "config.train.epochs"))
            done = state["epoch"] + 1
            epochs = self.config.train.epochs
            # with both flags (brats reproduce --overwrite) a matching run continues
            if self.overwrite and (diffs or not self.resume or epochs < done):
                return self._start_again(f"{out}: removed the earlier run ({done} epoch(s))")
            if diffs:
                raise BratsInputError(
                    f"{out} holds a run trained with other settings ({'; '.join(diffs[:5])}); "
                    "pass --overwrite to start it again or choose a new --out")
            if not self.resume:
                raise BratsInputError(f"{out} already holds a run ({done} epoch(s)); pass "
                                      "--resume to continue it, --overwrite to start it again, "
                                      "or choose a new --out")
            if epochs < done:
                raise BratsInputError(f"{out} has already trained {done} epochs; "
                                      f"train.epochs={epochs} is fewer (--overwrite starts again)")
            self._record(settings)
            if epochs == done:
                return state, f"{out} is finished ({done} epochs); nothing to train"
            before = recorded["config"]["train"]["epochs"]
            if epochs != before:
                return state, (f"continuing {out} from epoch {done} to the new end, epoch "
                               f"{epochs} (train.epochs {before} → {epochs})")
            return state, f"resuming {out} at epoch {done + 1} of {epochs}"
        if out.is_dir() and any(out.iterdir()):
            manifest = read_manifest(out)
            if manifest is None or manifest["kind"] != RUN_KIND:
                raise BratsInputError(f"{out} exists and is not a run folder; choose a new --out")
            # a run that stopped before its first checkpoint: only its own files are there
            return self._start_again(f"{out}: restarting a run that never reached a checkpoint")
        out.mkdir(parents=True, exist_ok=True)
        self._record(settings)
        return None, f"training {self.member} into {out}"

    def _start_again(self, message: str) -> tuple[None, str]:
        clear_folder(self.out_dir)
        self._record(self.settings())
        return None, message

    def _record(self, settings: dict[str, Any]) -> None:
        write_manifest(self.out_dir, RUN_KIND, settings, outputs=list(RUN_OUTPUTS),
                       cache=str(self.cache_dir.resolve()))

    def _amp(self) -> tuple[contextlib.AbstractContextManager, torch.amp.GradScaler]:
        cfg = self.config.train
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.amp_dtype)
        if dtype is None:
            raise BratsInputError(f"train.amp_dtype {cfg.amp_dtype!r}: expected bfloat16 or "
                                  "float16")
        if self.device.type == "cpu":
            dtype = torch.bfloat16
        enabled = cfg.amp
        scaler = torch.amp.GradScaler(self.device.type,
                                      enabled=enabled and dtype == torch.float16
                                      and self.device.type == "cuda")
        autocast = (torch.autocast(self.device.type, dtype=dtype) if enabled
                    else contextlib.nullcontext())
        return autocast, scaler

    def fit(self) -> dict[str, Any]:
        """Run (or finish) training; returns the summary also written to ``training_done.json``."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        ctx = init_from_env(self.device.type == "cuda")
        try:
            return self._fit(ctx)
        finally:
            self._loaders = ()  # shuts persistent loader workers down
            cleanup(ctx)

    def _fit(self, ctx: DistContext) -> dict[str, Any]:
        if ctx.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", ctx.local_rank)
            torch.cuda.set_device(self.device)
        if ctx.is_main:
            state, message = self._prepare_out_dir()
            broadcast_object(ctx, state is not None)
            with run_log(self.out_dir):
                log.info("%s", message)
                return self._train(ctx, state)
        resuming = broadcast_object(ctx, None)
        return self._train(ctx, load_checkpoint(self.out_dir / LAST) if resuming else None)

    def _train(self, ctx: DistContext, state: dict[str, Any] | None) -> dict[str, Any]:
        """Train from scratch, or from the last checkpoint ``state`` (CPU tensors)."""
        cfg = self.config
        done = self.out_dir / DONE
        resuming = state is not None
        if resuming:
            if state["epoch"] + 1 >= cfg.train.epochs and done.is_file():
                self.model = None
                return {**json.loads(done.read_text()), "trained_now": 0}
        seed = cfg.train.seed
        torch.manual_seed(seed + ctx.rank)
        np.random.seed((seed + ctx.rank) % 2**32)
        random.seed(seed + ctx.rank)

        cases = training_cases(self.cache_dir)
        if self.fold is None:
            train_ids, val_ids = cases, []
        else:
            if not 0 <= self.fold < cfg.train.folds:
                raise BratsInputError(f"fold {self.fold} outside 0..{cfg.train.folds - 1}")
            split_path = self.cache_dir / f"splits_{cfg.train.folds}fold_seed{cfg.train.split_seed}.json"
            if ctx.is_main:
                load_or_make_splits(split_path, cases, cfg.train.folds, cfg.train.split_seed)
            ctx.barrier()
            split = load_or_make_splits(split_path, cases, cfg.train.folds,
                                        cfg.train.split_seed)[self.fold]
            train_ids, val_ids = split["train"], split["val"]

        data = cfg.data
        patch = size_in_array_order(data.patch_size, data.view)
        crop = None if data.crop_size is None else size_in_array_order(data.crop_size, data.view)
        if data.slice_placement not in SLICE_PLACEMENTS:
            raise BratsInputError(f"unknown data.slice_placement {data.slice_placement!r}; "
                                  f"expected one of {', '.join(SLICE_PLACEMENTS)}")
        full_axes = (() if data.slice_placement == "valid" or data.view is None
                     else (VIEW_AXES[data.view][0],))
        pipelines = [PatchPipeline(patch, crop_size=crop,
                                   foreground_fraction=data.foreground_fraction,
                                   augmentation=augmentation,
                                   augmentation_kwargs=kwargs, intensity=data.intensity,
                                   full_axes=full_axes, background=data.background)
                     for augmentation, kwargs in ((data.augmentation, data.augmentation_kwargs),
                                                  ("none", {}))]
        grades = {c: load_record(self.cache_dir, c).grade for c in train_ids}
        options = dict(target=data.target, view=data.view, output_crop=data.output_crop,
                       roi=data.roi, roi_margin=data.roi_margin,
                       require_foreground=data.require_foreground,
                       redraw=data.foreground_redraw, batch_size=data.batch_size,
                       backend=data.augmentation_backend)
        train_set = PatchDataset(self.cache_dir, train_ids, pipelines[0],
                                 cfg.train.iterations_per_epoch * data.batch_size, seed,
                                 rank=ctx.rank,
                                 case_weights=[data.lgg_weight if grades[c] == "LGG" else 1.0
                                               for c in train_ids], **options)
        val_set = (PatchDataset(self.cache_dir, val_ids, pipelines[1],
                                cfg.train.val_batches * data.batch_size, seed, validation=True,
                                **options)
                   if val_ids and cfg.train.val_batches > 0 and ctx.is_main else None)

        self._loaders = (self._loader(train_set, drop_last=True),
                         None if val_set is None else self._loader(val_set, drop_last=False))
        network = build_network(cfg.network.name, in_channels=4, num_classes=self.num_outputs,
                                **cfg.network.kwargs).to(self.device)
        if cfg.train.channels_last:
            network = network.to(memory_format=torch.channels_last_3d)
        model: torch.nn.Module = network
        if ctx.enabled:
            model = DistributedDataParallel(
                network, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.train.compile:
            model = torch.compile(model)
        loss_fn = build_loss(cfg.loss.name, **cfg.loss.kwargs)
        optimizer = build_optimizer(network.parameters(), cfg.optim)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: lr_factor(e, cfg.optim, cfg.train.epochs))
        autocast, scaler = self._amp()

        start_epoch, history, best = 0, [], -math.inf
        if resuming:
            network.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            start_epoch, history, best = state["epoch"] + 1, state["history"], state["best"]
            _set_rng_state(state["rng"])
        elif cfg.train.init_from:
            network.load_state_dict(load_checkpoint(find_checkpoint(cfg.train.init_from),
                                                    map_location=self.device)["model"])
            log.info("initialised from %s", cfg.train.init_from)
        if ctx.is_main:
            write_text(dump_config(cfg), self.out_dir / "config.yaml")
        ctx.barrier()
        writer = self._tensorboard(start_epoch) if ctx.is_main else None

        meta = {"entry": cfg.entry, "member": self.member, "fold": self.fold,
                "config": to_dict(cfg), "network": cfg.network.name,
                "network_kwargs": dict(cfg.network.kwargs), "in_channels": 4,
                "num_outputs": self.num_outputs, "target": self.target,
                "classes": list(CLASS_NAMES), "label_convention": "canonical (0, 1, 2, 4)",
                "intensity": cfg.data.intensity, "train_cases": train_ids, "val_cases": val_ids}
        for epoch in range(start_epoch, cfg.train.epochs):
            result = self._epoch(epoch, model, loss_fn, optimizer, autocast, scaler, train_set,
                                 val_set, ctx)
            scheduler.step()
            history.append(vars(result))
            if ctx.is_main:
                improved = val_set is not None and result.mean_dice > best
                best = result.mean_dice if improved else best
                state = {**meta, "epoch": epoch, "model": unwrap(model).state_dict(),
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "scaler": scaler.state_dict(), "history": history, "best": best,
                         "rng": _rng_state()}
                save_checkpoint(state, self.out_dir / LAST)
                if improved:
                    save_checkpoint(state, self.out_dir / BEST)
                table = pd.DataFrame(history)
                write_text(table.to_csv(index=False), self.out_dir / "log.csv")
                plot_progress(table, self.out_dir / "progress.png")
                log.info("epoch %d/%d: train loss %.4f, validation loss %.4f, pseudo-Dice "
                         "WT %.3f TC %.3f ET %.3f, %.1f s (waiting for data %.0f%%)",
                         epoch + 1, cfg.train.epochs, result.train_loss, result.val_loss,
                         result.dice_WT, result.dice_TC, result.dice_ET, result.seconds,
                         100 * result.data_fraction)
                if writer is not None:
                    for key, value in vars(result).items():
                        if key != "epoch" and not (isinstance(value, float) and math.isnan(value)):
                            writer.add_scalar(key, value, epoch)
            ctx.barrier()
        summary = {"entry": cfg.entry, "member": self.member, "fold": self.fold,
                   "epochs": cfg.train.epochs, "trained_now": cfg.train.epochs - start_epoch,
                   "best_mean_dice": best, "final": history[-1] if history else None}
        if ctx.is_main:
            if writer is not None:
                writer.close()
            write_json(summary, done)
        ctx.barrier()
        self.model = unwrap(model)
        return summary

    def _tensorboard(self, start_epoch: int):
        if not self.config.train.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed (pip install tensorboard for event logs); "
                     "log.csv is written either way")
            return None
        return SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=start_epoch)

    def _loader(self, dataset: PatchDataset, drop_last: bool) -> DataLoader:
        """One loader for the whole fit: persistent workers, told the epoch by the sampler,
        batches pinned for asynchronous copies to a GPU. Its own generator keeps the global RNG
        streams (dropout, saved for ``--resume``) independent of the worker count."""
        workers = self.config.data.workers
        batch_size = dataset.loader_batch_size(self.config.data.batch_size)
        return DataLoader(dataset, batch_size=batch_size,
                          generator=torch.Generator().manual_seed(self.config.train.seed),
                          sampler=EpochSampler(len(dataset)), num_workers=workers,
                          collate_fn=dataset.collate_fn, pin_memory=self.device.type == "cuda",
                          drop_last=drop_last and batch_size is not None,
                          persistent_workers=workers > 0)

    def _epoch(self, epoch: int, model, loss_fn, optimizer, autocast, scaler, train_set, val_set,
               ctx: DistContext) -> EpochResult:
        cfg = self.config
        loader = self._loaders[0]
        loader.sampler.set_epoch(epoch)
        model.train()
        started, losses, waiting = time.perf_counter(), [], 0.0
        bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="it",
                   leave=False, disable=not (self.progress and ctx.is_main))
        batches = iter(loader)
        while True:
            asked = time.perf_counter()
            batch = next(batches, None)
            waiting += time.perf_counter() - asked
            if batch is None:
                break
            image, target = train_set.to_device(batch, self.device)
            if cfg.train.channels_last:
                image = image.contiguous(memory_format=torch.channels_last_3d)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                logits = model(image)
            loss = loss_fn(logits.float(), target)
            if cfg.optim.l2:
                loss = loss + cfg.optim.l2 * l2_penalty(unwrap(model), cfg.optim.regularize)
            if cfg.optim.l1:
                loss = loss + cfg.optim.l1 * l1_penalty(unwrap(model), cfg.optim.regularize)
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.detach())
            bar.update()
            if len(losses) % POSTFIX_EVERY == 0:  # reading the loss waits for the device
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{float(torch.stack(losses).mean()):.4f}",
                                patches_s=f"{len(losses) * cfg.data.batch_size / elapsed:.2f}",
                                data=f"{waiting / elapsed:.0%}")
        bar.close()
        train_loss = float(torch.stack(losses).double().mean())
        seconds = time.perf_counter() - started
        val_loss, dice = self._validate(model, loss_fn, autocast, val_set)
        return EpochResult(epoch, optimizer.param_groups[0]["lr"], train_loss,
                           val_loss, *dice, seconds,
                           len(losses) * cfg.data.batch_size / max(seconds, 1e-9),
                           waiting / max(seconds, 1e-9))

    def _validate(self, model, loss_fn, autocast, val_set) -> tuple[float, tuple[float, ...]]:
        """Loss and pseudo-Dice per region over the validation patches (summed over patches)."""
        if val_set is None:
            return math.nan, (math.nan,) * 3
        model = unwrap(model)  # rank 0 alone: no DDP collectives
        model.eval()
        counts = np.zeros((3, 3))
        losses = []
        with torch.no_grad():
            for batch in self._loaders[1]:
                image, target = val_set.to_device(batch, self.device)
                with autocast:
                    logits = model(image)
                losses.append(float(loss_fn(logits.float(), target)))
                if self.num_outputs == 2:
                    # one binary region: score it in its own column, the others stay NaN
                    region = REGION_NAMES.index(self.config.data.target)
                    pred = torch.zeros((target.shape[0], 3, *target.shape[1:]), dtype=torch.bool,
                                       device=target.device)
                    ref = torch.zeros_like(pred)
                    pred[:, region] = logits.argmax(1) == 1
                    ref[:, region] = target == 1
                elif self.target == "regions":
                    pred = torch.sigmoid(logits.float()) > 0.5
                    ref = class_index_to_regions(target).bool()
                else:
                    pred = class_index_to_regions(logits.argmax(1)).bool()
                    ref = class_index_to_regions(target).bool()
                for r in range(3):
                    tp = (pred[:, r] & ref[:, r]).sum().item()
                    counts[r] += (tp, pred[:, r].sum().item() - tp, ref[:, r].sum().item() - tp)
        model.train()
        scored = (range(3) if self.num_outputs != 2
                  else [REGION_NAMES.index(self.config.data.target)])
        dice = tuple((float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 1.0)
                     if r in scored else math.nan for r, (tp, fp, fn) in enumerate(counts))
        return float(np.mean(losses)), dice
