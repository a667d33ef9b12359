"""Dataset overview: one row per case (grade, grid, label and region volumes), volume plots and
intensity histograms. Used by ``notebooks/explore_data.ipynb``."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from brats.data.case import Case
from brats.data.labels import ED, ET, NCR, REGIONS, region_masks
from brats.data.layouts import discover
from brats.errors import BratsInputError
from brats.parallel import map_progress
from brats.viz import LABEL_COLOURS, MODALITY_TITLES

#: Labels whose volume is listed, in the order NCR/NET, ED, ET.
VOLUME_LABELS = (NCR, ED, ET)
LABEL_COLUMNS = tuple(f"label{label}_ml" for label in VOLUME_LABELS)
REGION_COLUMNS = tuple(f"{region}_ml" for region in REGIONS)


def _case_row(case: Case) -> dict:
    """One :func:`dataset_table` row (a worker task)."""
    data = case.load()
    voxel_ml = float(np.prod(data.spacing)) / 1000.0
    row = {"case": case.id, "grade": case.grade, "shape": tuple(int(s) for s in data.image.shape[1:]),
           "spacing_mm": tuple(round(s, 3) for s in data.spacing),
           "brain_ml": int(np.count_nonzero(np.any(data.image != 0, axis=0))) * voxel_ml}
    labels = data.labels
    for label, column in zip(VOLUME_LABELS, LABEL_COLUMNS):
        row[column] = np.nan if labels is None else int(np.count_nonzero(labels == label)) * voxel_ml
    masks = {} if labels is None else region_masks(labels)
    for region, column in zip(REGIONS, REGION_COLUMNS):
        row[column] = int(np.count_nonzero(masks[region])) * voxel_ml if masks else np.nan
    return row


def dataset_table(folder: str | os.PathLike[str], release: str | None = None, jobs: int = 1,
                  progress: bool = True) -> pd.DataFrame:
    """One row per case of a dataset folder.

    Columns: ``case``, ``grade`` (HGG/LGG where the layout tells, else None), ``shape`` (X, Y, Z),
    ``spacing_mm`` (3 floats), ``brain_ml`` (voxels non-zero in any modality), the volume of each
    label ``label1_ml`` (NCR/NET), ``label2_ml`` (ED), ``label4_ml`` (ET) and of each region
    ``WT_ml``, ``TC_ml``, ``ET_ml`` (NaN without a segmentation). Volumes in ml.

    Raises:
        BratsInputError: see :func:`brats.discover` and :meth:`brats.data.case.Case.load`.
    """
    cases = discover(folder, release)
    rows = map_progress(_case_row, cases, jobs, desc="cases", progress=progress)
    return pd.DataFrame(rows, columns=["case", "grade", "shape", "spacing_mm", "brain_ml",
                                       *LABEL_COLUMNS, *REGION_COLUMNS])


def plot_label_volumes(table: pd.DataFrame) -> plt.Figure:
    """Two panels: stacked label volumes per case (sorted by WT volume; colours as in
    ``brats show``) and a box per region with every case as a dot.

    Args:
        table: :func:`dataset_table` output; cases without a segmentation are left out.

    Raises:
        BratsInputError: no case has a segmentation.
    """
    labelled = table.dropna(subset=list(REGION_COLUMNS)).sort_values("WT_ml", kind="stable")
    if labelled.empty:
        raise BratsInputError("no case with a segmentation in the table")
    fig, (bars, boxes) = plt.subplots(1, 2, figsize=(12, 4), width_ratios=(2, 1))
    positions = np.arange(len(labelled))
    bottom = np.zeros(len(labelled))
    for label, column in zip(VOLUME_LABELS, LABEL_COLUMNS):
        text, colour = LABEL_COLOURS[label]
        values = labelled[column].to_numpy(float)
        bars.bar(positions, values, bottom=bottom, color=colour, label=text)
        bottom += values
    if len(labelled) <= 30:
        bars.set_xticks(positions, labelled["case"], rotation=60, ha="right", fontsize=7)
    else:
        bars.set_xticks([])
    bars.set_ylabel("volume [ml]")
    bars.set_title(f"label volumes of {len(labelled)} case(s), by WT volume")
    bars.legend(frameon=False)
    data = [labelled[column].to_numpy(float) for column in REGION_COLUMNS]
    boxes.boxplot(data, showfliers=False)
    rng = np.random.default_rng(0)
    for position, values in enumerate(data, start=1):
        boxes.plot(position + rng.uniform(-0.12, 0.12, len(values)), values, "o", ms=3, alpha=0.6,
                   color="tab:blue")
    boxes.set_xticks(range(1, len(REGIONS) + 1), list(REGIONS))
    boxes.set_ylabel("volume [ml]")
    boxes.set_title("region volumes")
    fig.tight_layout()
    return fig


def plot_intensity_histograms(folder: str | os.PathLike[str], cases: Sequence[str] | None = None,
                              bins: int = 100, release: str | None = None, progress: bool = True
                              ) -> plt.Figure:
    """1×4 panels (T1, T1ce, T2, FLAIR): each case's intensity histogram (density) over its brain
    voxels (non-zero in any modality), one curve per case, on the case's own range.

    Args:
        folder: dataset folder.
        cases: case ids to plot (default: all).
        bins: histogram bins per case and modality.
        release: force a release instead of detecting it.
        progress: show a progress bar.

    Raises:
        BratsInputError: an unknown case id, or the folder's problems (see :func:`brats.discover`).
    """
    found = {case.id: case for case in discover(folder, release)}
    wanted = list(found) if cases is None else list(cases)
    unknown = [c for c in wanted if c not in found]
    if unknown:
        raise BratsInputError(f"{folder}: no case {', '.join(unknown)}")
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), squeeze=False)
    for case_id in tqdm(wanted, desc="histograms", unit="case", disable=not progress):
        image = found[case_id].load(with_labels=False).image
        brain = np.any(image != 0, axis=0)
        for ax, channel in zip(axes[0], image):
            counts, edges = np.histogram(channel[brain], bins=bins, density=True)
            ax.plot((edges[:-1] + edges[1:]) / 2, counts, lw=1, label=case_id)
    for ax, name in zip(axes[0], MODALITY_TITLES):
        ax.set_title(name)
        ax.set_xlabel("intensity (as stored)")
        ax.set_yticks([])
    if len(wanted) <= 10:
        axes[0, -1].legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig
