"""The training-progress figure of a run folder (``progress.png``, as nnU-Net draws it).

Drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state), so it is safe
to call every epoch from a training loop, in any thread, without a display.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from brats.io import atomic_path

#: Validation pseudo-Dice columns of ``log.csv`` and their colours.
DICE_COLUMNS = {"dice_WT": "#4daf4a", "dice_TC": "#e41a1c", "dice_ET": "#ffb300"}


def _column(history: pd.DataFrame, name: str) -> np.ndarray:
    """A ``log.csv`` column as float (all NaN when the column is missing or empty)."""
    if name not in history:
        return np.full(len(history), np.nan)
    return pd.to_numeric(history[name], errors="coerce").to_numpy(dtype=float)


def plot_progress(history: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write the progress figure of one run: losses, validation Dice and learning rate per epoch.

    Top panel: ``train_loss`` and ``val_loss`` (left axis), validation pseudo-Dice of WT, TC and
    ET (right axis, 0–1); bottom panel: ``lr``. Columns that are missing or all NaN are left
    out; other columns (``seconds``, ``patches_per_s``, …) are ignored.

    Args:
        history: the rows of ``log.csv``, one per epoch (``epoch`` column, 0-based).
        path: image file (format from the suffix, e.g. ``progress.png``); written atomically.
    """
    epochs = _column(history, "epoch") if "epoch" in history else np.arange(len(history), dtype=float)
    fig = Figure(figsize=(9, 7), layout="constrained")
    losses_ax, lr_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    dice_ax = losses_ax.twinx()
    for name, label, colour in (("train_loss", "train loss", "#377eb8"),
                                ("val_loss", "validation loss", "#984ea3")):
        values = _column(history, name)
        if np.isfinite(values).any():
            losses_ax.plot(epochs, values, color=colour, label=label)
    for name, colour in DICE_COLUMNS.items():
        values = _column(history, name)
        if np.isfinite(values).any():
            dice_ax.plot(epochs, values, color=colour, linestyle="--", marker=".",
                         label=f"pseudo-Dice {name.removeprefix('dice_')}")
    lr = _column(history, "lr")
    if np.isfinite(lr).any():
        lr_ax.plot(epochs, lr, color="black", label="learning rate")
    losses_ax.set_ylabel("loss")
    dice_ax.set_ylabel("validation pseudo-Dice")
    dice_ax.set_ylim(0, 1)
    lr_ax.set_ylabel("learning rate")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    lr_ax.set_xlabel("epoch")
    handles, labels = [], []
    for ax in (losses_ax, dice_ax):
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    if handles:
        losses_ax.legend(handles, labels, loc="upper right", fontsize="small")
    losses_ax.grid(alpha=0.3)
    lr_ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=Path(path).suffix.lstrip(".") or "png")
