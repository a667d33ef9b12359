"""Compare methods on the same cases: per-case scores, box plots, pairwise scatter, slice overlays.

A *run* is the output folder of ``brats reproduce`` (or of the demo) for one entry: it holds
``cv_metrics.csv`` (one row per case × region, see :data:`brats.evaluation.COLUMNS`) and
``cv_predictions/<case id>.nii.gz``. Used by ``notebooks/compare_methods.ipynb``.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from brats.data.case import AFFINE_TOLERANCE_MM, Case
from brats.data.labels import region_masks
from brats.data.releases import get_release
from brats.errors import BratsInputError
from brats.evaluation import read_labels
from brats.leaderboard import RANKED_METRICS, REGION_ORDER, read_metrics
from brats.metrics import dice
from brats.submission import submission_name
from brats.viz import (
    LABEL_CMAP,
    LABEL_COLOURS,
    intensity_window,
    label_overlay,
    pick_axial_slice,
    to_display,
)

METRICS_FILE = "cv_metrics.csv"
PREDICTIONS_DIR = "cv_predictions"
#: Metric → higher is better, for the metrics where "best" and "worst" mean something.
ORDERED_METRICS = {**RANKED_METRICS, "sensitivity": True, "specificity": True}
METRIC_LABELS = {"dice": "Dice", "hd95": "HD95 [mm]", "sensitivity": "Sensitivity",
                 "specificity": "Specificity", "volume_pred": "predicted volume [mm³]",
                 "volume_ref": "reference volume [mm³]"}
_UNIT_INTERVAL = ("dice", "sensitivity", "specificity")


def find_runs(demo_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Run name → folder, for every sub-folder of ``demo_dir`` holding ``cv_metrics.csv``, by name.

    Raises:
        BratsInputError: ``demo_dir`` is missing or holds no run.
    """
    root = Path(demo_dir)
    if not root.is_dir():
        raise BratsInputError(f"{root}: folder not found (run `make demo` first, or set "
                              "BRATS_DEMO_DIR)")
    runs = {p.name: p for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / METRICS_FILE).is_file()}
    if not runs:
        raise BratsInputError(f"{root}: no run found (no sub-folder holds {METRICS_FILE})")
    return runs


def load_metrics(paths: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """Method name → metrics table, from run folders (their ``cv_metrics.csv``) or CSV paths.

    Raises:
        BratsInputError: no paths, or a file that is missing or not a metrics CSV.
    """
    if not paths:
        raise BratsInputError("no runs given")
    return {name: read_metrics(Path(p) / METRICS_FILE if Path(p).is_dir() else p)
            for name, p in paths.items()}


def _check_metric(tables: dict[str, pd.DataFrame], metric: str) -> None:
    if not tables:
        raise BratsInputError("no metrics tables given")
    for name, table in tables.items():
        if metric not in table.columns:
            raise BratsInputError(f"{name}: no {metric!r} column (has {', '.join(table.columns)})")


def _check_methods(tables: dict[str, pd.DataFrame], *methods: str) -> None:
    for method in methods:
        if method not in tables:
            raise BratsInputError(f"unknown method {method!r}; known: {', '.join(tables)}")


def per_case_scores(tables: dict[str, pd.DataFrame], metric: str = "dice") -> pd.DataFrame:
    """Wide table of one metric: index case (sorted), columns (method, region) with regions in
    WT, TC, ET order; shape (cases, 3 × methods). A case or region a method did not score is NaN."""
    _check_metric(tables, metric)
    wide = {name: table.pivot_table(index="case", columns="region", values=metric, aggfunc="first")
                       .reindex(columns=list(REGION_ORDER))
            for name, table in tables.items()}
    out = pd.concat(wide, axis=1, names=["method", "region"]).sort_index()
    out.index.name = "case"
    return out


def plot_region_boxplots(tables: dict[str, pd.DataFrame], metric: str = "dice") -> plt.Figure:
    """1×3 panels (WT, TC, ET) of one metric: a box per method with every case drawn as a dot."""
    scores = per_case_scores(tables, metric)
    names = list(tables)
    fig, axes = plt.subplots(1, 3, figsize=(3 + 1.2 * 3 * len(names), 3.8), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, region in zip(axes[0], REGION_ORDER):
        data = [scores[(n, region)].dropna().to_numpy() for n in names]
        ax.boxplot(data, showmeans=True, showfliers=False)
        for position, values in enumerate(data, start=1):
            ax.plot(position + rng.uniform(-0.12, 0.12, len(values)), values, "o", ms=3,
                    alpha=0.6, color="tab:blue")
        ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right")
        ax.set_title(f"{region} {METRIC_LABELS.get(metric, metric)}")
        if metric in _UNIT_INTERVAL:
            ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_pairwise_scatter(tables: dict[str, pd.DataFrame], a: str, b: str, metric: str = "dice"
                          ) -> plt.Figure:
    """1×3 panels (WT, TC, ET): one dot per case at (score of ``a``, score of ``b``), with the
    diagonal; the title counts the cases each method wins.

    Raises:
        BratsInputError: ``a`` or ``b`` is not a method of ``tables``.
    """
    _check_methods(tables, a, b)
    scores = per_case_scores({a: tables[a], b: tables[b]}, metric)
    higher_is_better = ORDERED_METRICS.get(metric, True)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.9), squeeze=False)
    for ax, region in zip(axes[0], REGION_ORDER):
        pair = scores[[(a, region), (b, region)]].dropna()
        x, y = pair[(a, region)].to_numpy(float), pair[(b, region)].to_numpy(float)
        ax.scatter(x, y, s=18, alpha=0.7)
        if metric in _UNIT_INTERVAL:
            low, high = -0.02, 1.02
        else:
            low, high = 0.0, 1.05 * float(np.max(np.concatenate([x, y]), initial=1.0))
        ax.plot([low, high], [low, high], "k--", lw=1)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        wins_a = int(np.sum(x > y if higher_is_better else x < y))
        wins_b = int(np.sum(y > x if higher_is_better else y < x))
        ax.set_title(f"{region} {METRIC_LABELS.get(metric, metric)}\n"
                     f"{a} better: {wins_a}, {b} better: {wins_b}", fontsize=10)
        ax.set_xlabel(a)
        ax.set_ylabel(b)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def pick_cases(tables: dict[str, pd.DataFrame], method: str, region: str = "WT",
               metric: str = "dice") -> dict[str, str]:
    """Best, median and worst case of one method on one region and metric.

    Cases are sorted best first (ties by case id, NaN dropped); the median is the case at index
    ``(n - 1) // 2``, the better one of the two middle cases when n is even.

    Returns:
        ``{"best": case id, "median": case id, "worst": case id}``.

    Raises:
        BratsInputError: unknown method, region or metric, or no scored case.
    """
    _check_methods(tables, method)
    if metric not in ORDERED_METRICS:
        raise BratsInputError(f"metric {metric!r} has no best or worst; use one of "
                              f"{', '.join(ORDERED_METRICS)}")
    if region not in REGION_ORDER:
        raise BratsInputError(f"unknown region {region!r}; expected one of {', '.join(REGION_ORDER)}")
    _check_metric({method: tables[method]}, metric)
    table = tables[method]
    rows = table.loc[table["region"] == region, ["case", metric]].dropna()
    if rows.empty:
        raise BratsInputError(f"{method}: no case scored on {region} {metric}")
    ordered = rows.sort_values([metric, "case"], ascending=[not ORDERED_METRICS[metric], True],
                               kind="stable")["case"].tolist()
    return {"best": ordered[0], "median": ordered[(len(ordered) - 1) // 2], "worst": ordered[-1]}


def prediction_paths(runs: dict[str, Path], case_id: str) -> dict[str, Path]:
    """Run name → that run's cross-validation prediction of ``case_id`` (may not exist)."""
    return {name: Path(folder) / PREDICTIONS_DIR / submission_name(case_id)
            for name, folder in runs.items()}


def _read_prediction(path: Path, case: Case, affine: np.ndarray, shape: tuple[int, ...]
                     ) -> np.ndarray:
    """(X, Y, Z) canonical labels of a prediction file, checked against the case's grid."""
    if not path.is_file():
        raise BratsInputError(f"{case.id}: prediction {path} not found")
    labels, pred_affine = read_labels(path, get_release(case.release).convention, case.id)
    if labels.shape != shape or not np.allclose(pred_affine, affine, rtol=0,
                                                atol=AFFINE_TOLERANCE_MM):
        raise BratsInputError(f"{path}: not on the grid of {case.id} (shape {labels.shape}, "
                              f"expected {shape}, or a different affine)")
    return labels


def plot_overlays(case: Case, predictions: dict[str, Path], slice_index: int | None = None,
                  title: str | None = None) -> plt.Figure:
    """One axial slice: FLAIR, the ground truth, and each method's prediction as label overlays.

    Radiological display (:func:`brats.viz.to_display`); label colours as in ``brats show``.
    Prediction panels give the method's whole-volume WT Dice.

    Args:
        case: a case with a segmentation.
        predictions: method name → prediction file on the case's grid (release's label values).
        slice_index: axial index in display orientation; default the slice with most tumour.
        title: figure title (default: the case id and slice).

    Returns:
        A 1 × (2 + methods) figure.

    Raises:
        BratsInputError: the case has no segmentation, a prediction is missing or off its grid,
            or the slice is out of range.
    """
    data = case.load()
    if data.labels is None:
        raise BratsInputError(f"{case.id}: no ground-truth segmentation to compare with")
    image = to_display(data.image, data.affine)
    truth = to_display(data.labels, data.affine)
    truth_wt = region_masks(data.labels)["WT"]
    panels: dict[str, np.ndarray | None] = {"FLAIR": None, "ground truth": truth}
    for name, path in predictions.items():
        labels = _read_prediction(Path(path), case, data.affine, data.labels.shape)
        wt_dice = dice(region_masks(labels)["WT"], truth_wt)
        panels[f"{name} (WT Dice {wt_dice:.2f})"] = to_display(labels, data.affine)
    k = pick_axial_slice(truth, image) if slice_index is None else slice_index
    if not 0 <= k < image.shape[-1]:
        raise BratsInputError(f"slice {k} outside 0..{image.shape[-1] - 1}")
    flair = image[3, ..., k]
    low, high = intensity_window(flair)
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.6), squeeze=False)
    for ax, (name, shown) in zip(axes[0], panels.items()):
        ax.imshow(flair.T, cmap="gray", origin="lower", vmin=low, vmax=high)
        if shown is not None:
            ax.imshow(label_overlay(shown[..., k]).T, cmap=LABEL_CMAP, origin="lower", vmin=0, vmax=3,
                      alpha=0.55, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.legend(handles=[Patch(color=colour, label=text) for text, colour in LABEL_COLOURS.values()],
               loc="lower center", ncol=3, frameon=False)
    fig.suptitle(title or f"{case.id} — axial slice {k}")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
