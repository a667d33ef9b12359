"""The per-run training-progress figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from brats.progress import DICE_COLUMNS, plot_progress

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def history(epochs: int = 12) -> pd.DataFrame:
    """Rows as ``log.csv`` has them, one region's Dice never computed, plus an unknown column."""
    e = np.arange(epochs)
    return pd.DataFrame({"epoch": e, "lr": 5e-4 * 0.985 ** e, "train_loss": -0.8 * (1 - 0.8 ** e),
                         "val_loss": -0.7 * (1 - 0.8 ** e), "dice_WT": 0.9 * (1 - 0.7 ** e),
                         "dice_TC": np.nan, "dice_ET": 0.6 * (1 - 0.9 ** e), "seconds": 3.5,
                         "patches_per_s": 1.2, "grad_norm": 0.4})


def test_plot_progress_writes_a_png_atomically(tmp_path: Path) -> None:
    path = tmp_path / "run" / "progress.png"
    plot_progress(history(), path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert matplotlib.image.imread(path).shape[:2] == (700, 900)  # 9×7 in at 100 dpi
    assert [p.name for p in path.parent.iterdir()] == ["progress.png"]
    plot_progress(history(13), path)  # every epoch replaces the figure
    assert [p.name for p in path.parent.iterdir()] == ["progress.png"]


def _pixels_of(path: Path, colour: str) -> int:
    """Number of pixels of ``colour`` (``#rrggbb``) in an image file."""
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    return int(np.all(np.abs(matplotlib.image.imread(path)[..., :3] - rgb) < 0.02, axis=-1).sum())


def test_plot_progress_draws_the_dice_columns_it_has(tmp_path: Path) -> None:
    full, no_dice = tmp_path / "full.png", tmp_path / "no_dice.png"
    plot_progress(history(), full)
    plot_progress(history().assign(dice_WT=np.nan, dice_ET=np.nan), no_dice)
    for column in ("dice_WT", "dice_ET"):
        assert _pixels_of(full, DICE_COLUMNS[column]) > 200
        assert _pixels_of(no_dice, DICE_COLUMNS[column]) == 0
    assert _pixels_of(full, DICE_COLUMNS["dice_TC"]) == 0  # all NaN: not drawn


@pytest.mark.parametrize("frame", [
    pd.DataFrame(columns=["epoch", "lr", "train_loss", "val_loss", "dice_WT", "dice_TC",
                          "dice_ET"]),
    history(1),
    history().drop(columns=["val_loss", "dice_WT", "dice_TC", "dice_ET"]),
    history().assign(val_loss=np.nan, dice_WT=np.nan, dice_ET=np.nan, lr=np.nan),
])
def test_plot_progress_tolerates_empty_and_missing_columns(frame: pd.DataFrame,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "progress.png"
    plot_progress(frame, path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
