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
from brats.losses import LOSS_TARGETS, build_loss, class_index_to_regions
from brats.nets import build_network
from brats.preprocess.cache import load_index, load_record
from brats.training.checkpoint import BEST, LAST, find_checkpoint, load_checkpoint, save_checkpoint
from brats.training.data import CLASS_NAMES, PatchDataset
from brats.training.distributed import DistContext, broadcast_object, cleanup, init_from_env, unwrap
from brats.training.optim import RMSpropNesterov
from brats.training.pipeline import PatchPipeline
from brats.training.splits import load_or_make_splits
from brats.training.views import size_in_array_order

log = logging.getLogger(__name__)
DONE = "training_done.json"
REGION_NAMES = ("WT", "TC", "ET")


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


def l2_penalty(model: torch.nn.Module) -> torch.Tensor:
    """Σ w² over conv weights and norm scales (every parameter named ``weight``), not biases."""
    return sum((p.float() ** 2).sum() for n, p in model.named_parameters()
               if n.endswith("weight") and p.requires_grad)


def l1_penalty(model: torch.nn.Module) -> torch.Tensor:
    """Σ |w| over the parameters :func:`l2_penalty` covers."""
    return sum(p.float().abs().sum() for n, p in model.named_parameters()
               if n.endswith("weight") and p.requires_grad)


def training_cases(cache_dir: Path) -> list[str]:
    """Labelled cases of a cache, HGG first then LGG, each by id (the Isensee 2017 order)."""
    records = [load_record(cache_dir, c) for c in load_index(cache_dir)["cases"]]
    labelled = [r for r in records if r.has_labels]
    if not labelled:
        raise BratsInputError(f"{cache_dir}: the cache holds no case with labels")
    return [r.id for r in sorted(labelled, key=lambda r: (r.grade == "LGG", r.id))]


#: Settings a resumed run may change: they affect speed and logging, not what is computed.
RESUMABLE_CHANGES = (("data", "workers"), ("train", "tensorboard"))


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict without the settings in :data:`RESUMABLE_CHANGES`."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    for section, key in RESUMABLE_CHANGES:
        out[section].pop(key, None)
    return out


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
    """What one epoch produced (one row of ``log.csv``)."""

    epoch: int
    lr: float
    train_loss: float
    val_loss: float
    dice_WT: float
    dice_TC: float
    dice_ET: float
    seconds: float
    patches_per_s: float

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
        resume: continue from ``checkpoint_last.pt`` (a finished run returns at once).
        progress: tqdm bars.
        member: member name stored in the checkpoint.
    """

    def __init__(self, config: EntryConfig, cache_dir: str | os.PathLike[str],
                 out_dir: str | os.PathLike[str], fold: int | None = 0, device: str | None = None,
                 resume: bool = False, progress: bool = True, member: str = "model") -> None:
        self.config = config
        self.cache_dir = Path(cache_dir)
        self.out_dir = Path(out_dir)
        self.fold = fold
        self.resume = resume
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

    def _check_out_dir(self) -> bool:
        """True if there is a checkpoint to resume from; refuses to reuse a run folder otherwise."""
        last = self.out_dir / LAST
        if last.is_file():
            if not self.resume:
                raise BratsInputError(f"{self.out_dir} already holds a run; pass --resume to "
                                      "continue it or choose a new --out")
            return True
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise BratsInputError(f"{self.out_dir} is a file, not a run folder")
        if self.out_dir.exists() and any(self.out_dir.iterdir()):
            raise BratsInputError(f"{self.out_dir} exists and is not an unfinished run; choose "
                                  "a new --out")
        return False

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
            cleanup(ctx)

    def _fit(self, ctx: DistContext) -> dict[str, Any]:
        cfg = self.config
        if ctx.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", ctx.local_rank)
            torch.cuda.set_device(self.device)
        resuming = broadcast_object(ctx, self._check_out_dir() if ctx.is_main else None)
        done = self.out_dir / DONE
        if resuming and done.is_file():
            return json.loads(done.read_text())
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
        pipelines = [PatchPipeline(patch, crop_size=crop,
                                   foreground_fraction=data.foreground_fraction,
                                   augmentation=augmentation,
                                   augmentation_kwargs=kwargs, intensity=data.intensity)
                     for augmentation, kwargs in ((data.augmentation, data.augmentation_kwargs),
                                                  ("none", {}))]
        grades = {c: load_record(self.cache_dir, c).grade for c in train_ids}
        options = dict(target=data.target, view=data.view, output_crop=data.output_crop,
                       roi=data.roi, roi_margin=data.roi_margin,
                       require_foreground=data.require_foreground)
        train_set = PatchDataset(self.cache_dir, train_ids, pipelines[0],
                                 cfg.train.iterations_per_epoch * data.batch_size, seed,
                                 rank=ctx.rank,
                                 case_weights=[data.lgg_weight if grades[c] == "LGG" else 1.0
                                               for c in train_ids], **options)
        val_set = (PatchDataset(self.cache_dir, val_ids, pipelines[1],
                                cfg.train.val_batches * data.batch_size, seed, validation=True,
                                **options)
                   if val_ids and cfg.train.val_batches > 0 and ctx.is_main else None)

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
            state = load_checkpoint(self.out_dir / LAST, map_location=self.device)
            if _comparable(state["config"]) != _comparable(to_dict(cfg)) or state["fold"] != self.fold:
                raise BratsInputError(f"{self.out_dir}: this run was started with another config "
                                      "or fold; resume it with the same settings or use a new --out")
            network.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            start_epoch, history, best = state["epoch"] + 1, state["history"], state["best"]
            _set_rng_state(state["rng"])
            log.info("resuming %s at epoch %d", self.out_dir, start_epoch)
        elif cfg.train.init_from:
            network.load_state_dict(load_checkpoint(find_checkpoint(cfg.train.init_from),
                                                    map_location=self.device)["model"])
            log.info("initialised from %s", cfg.train.init_from)
        if not resuming and ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
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
                write_text(pd.DataFrame(history).to_csv(index=False), self.out_dir / "log.csv")
                if writer is not None:
                    for key, value in vars(result).items():
                        if key != "epoch" and not (isinstance(value, float) and math.isnan(value)):
                            writer.add_scalar(key, value, epoch)
            ctx.barrier()
        summary = {"entry": cfg.entry, "member": self.member, "fold": self.fold,
                   "epochs": cfg.train.epochs, "best_mean_dice": best,
                   "final": history[-1] if history else None}
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

    def _epoch(self, epoch: int, model, loss_fn, optimizer, autocast, scaler, train_set, val_set,
               ctx: DistContext) -> EpochResult:
        cfg = self.config
        cuda = self.device.type == "cuda"
        train_set.set_epoch(epoch)
        loader = DataLoader(train_set, batch_size=cfg.data.batch_size, shuffle=False,
                            num_workers=cfg.data.workers, pin_memory=cuda, drop_last=True)
        model.train()
        started, losses = time.perf_counter(), []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="it", leave=False,
                   disable=not (self.progress and ctx.is_main))
        for image, target in bar:
            image = image.to(self.device, non_blocking=cuda)
            target = target.to(self.device, non_blocking=cuda)
            if cfg.train.channels_last:
                image = image.contiguous(memory_format=torch.channels_last_3d)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                logits = model(image)
            loss = loss_fn(logits.float(), target)
            if cfg.optim.l2:
                loss = loss + cfg.optim.l2 * l2_penalty(unwrap(model))
            if cfg.optim.l1:
                loss = loss + cfg.optim.l1 * l1_penalty(unwrap(model))
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
            elapsed = time.perf_counter() - started
            bar.set_postfix(loss=f"{np.mean(losses):.4f}",
                            patches_s=f"{len(losses) * cfg.data.batch_size / elapsed:.2f}")
        bar.close()
        seconds = time.perf_counter() - started
        val_loss, dice = self._validate(model, loss_fn, autocast, val_set)
        return EpochResult(epoch, optimizer.param_groups[0]["lr"], float(np.mean(losses)),
                           val_loss, *dice, seconds,
                           len(losses) * cfg.data.batch_size / max(seconds, 1e-9))

    def _validate(self, model, loss_fn, autocast, val_set) -> tuple[float, tuple[float, ...]]:
        """Loss and pseudo-Dice per region over the validation patches (summed over patches)."""
        if val_set is None:
            return math.nan, (math.nan,) * 3
        loader = DataLoader(val_set, batch_size=self.config.data.batch_size, shuffle=False,
                            num_workers=self.config.data.workers, drop_last=False)
        model = unwrap(model)  # rank 0 alone: no DDP collectives
        model.eval()
        counts = np.zeros((3, 3))
        losses = []
        with torch.no_grad():
            for image, target in loader:
                image, target = image.to(self.device), target.to(self.device)
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
