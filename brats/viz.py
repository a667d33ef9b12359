"""Matplotlib figures: one case's modalities with the label overlay (``brats show``)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from brats.data.case import CaseData
from brats.data.labels import ED, ET, NCR
from brats.errors import BratsInputError
from brats.io import atomic_path

MODALITY_TITLES = ("T1", "T1ce", "T2", "FLAIR")
#: Overlay colour per canonical label.
LABEL_COLOURS = {NCR: ("NCR/NET (1)", "#e41a1c"), ED: ("ED (2)", "#4daf4a"),
                 ET: ("ET (4)", "#ffd92f")}


def to_display(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Reorient (…, X, Y, Z) so that axes run patient-left, anterior, superior (LAS).

    An axial slice ``out[..., k]`` shown as ``slice.T`` with ``origin="lower"`` is then in the
    radiological convention (patient right on the left of the screen, anterior at the top),
    whatever the file's storage order.
    """
    ornt = nib.orientations.ornt_transform(nib.io_orientation(affine),
                                           nib.orientations.axcodes2ornt(("L", "A", "S")))
    lead = tuple(range(volume.ndim - 3))
    spatial_first = np.moveaxis(volume, lead, tuple(a + 3 for a in lead))
    out = nib.orientations.apply_orientation(spatial_first, ornt)
    return np.moveaxis(out, tuple(a + 3 for a in lead), lead)


def pick_axial_slice(labels: np.ndarray | None, image: np.ndarray) -> int:
    """Axial index (last axis) with the most tumour, or through the brain's centre without labels."""
    if labels is not None and labels.any():
        return int(np.argmax((labels > 0).sum(axis=(0, 1))))
    brain = np.any(image != 0, axis=0)
    return int(np.round(np.argwhere(brain)[:, 2].mean())) if brain.any() else image.shape[-1] // 2


def intensity_window(slice_2d: np.ndarray) -> tuple[float, float]:
    brain = slice_2d[slice_2d != 0]
    if brain.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(brain, [0.5, 99.5])
    return float(low), float(high if high > low else low + 1)


#: Colour map for :func:`label_overlay` values 1, 2, 3 (NCR/NET, ED, ET); 0 is masked.
LABEL_CMAP = ListedColormap(["none"] + [LABEL_COLOURS[label][1] for label in (NCR, ED, ET)])


def label_overlay(labels_2d: np.ndarray) -> np.ma.MaskedArray:
    """(X, Y) canonical labels → values 1, 2, 3 (NCR/NET, ED, ET) for :data:`LABEL_CMAP`, 0
    masked; draw with ``imshow(…, cmap=LABEL_CMAP, vmin=0, vmax=3)``."""
    out = np.zeros(labels_2d.shape, dtype=float)
    for index, label in enumerate((NCR, ED, ET), start=1):
        out[labels_2d == label] = index
    return np.ma.masked_equal(out, 0)


def plot_case(data: CaseData, slice_index: int | None = None, title: str | None = None
              ) -> plt.Figure:
    """Figure with the four modalities of one axial slice, with and without the label overlay.

    Args:
        data: a loaded case.
        slice_index: axial index in the display (LAS) orientation; chosen automatically if None.
        title: figure title (default: the case id and slice).

    Returns:
        A 2×4 figure (one row without labels when the case has none).
    """
    image = to_display(data.image, data.affine)
    labels = None if data.labels is None else to_display(data.labels, data.affine)
    k = pick_axial_slice(labels, image) if slice_index is None else slice_index
    if not 0 <= k < image.shape[-1]:
        raise BratsInputError(f"{data.id}: axial slice {k} is outside 0..{image.shape[-1] - 1}")
    rows = 1 if labels is None else 2
    fig, axes = plt.subplots(rows, 4, figsize=(12, 3.2 * rows + 0.4), squeeze=False)
    overlay = None if labels is None else label_overlay(labels[..., k])
    for c, name in enumerate(MODALITY_TITLES):
        low, high = intensity_window(image[c, ..., k])
        for r in range(rows):
            ax = axes[r, c]
            ax.imshow(image[c, ..., k].T, cmap="gray", origin="lower", vmin=low, vmax=high)
            if r == 1 and overlay is not None:
                ax.imshow(overlay.T, cmap=LABEL_CMAP, origin="lower", vmin=0, vmax=3, alpha=0.55,
                          interpolation="nearest")
            ax.set_axis_off()
            if r == 0:
                ax.set_title(name)
    if labels is not None:
        fig.legend(handles=[Patch(color=colour, label=text)
                            for text, colour in LABEL_COLOURS.values()],
                   loc="lower center", ncol=3, frameon=False)
    fig.suptitle(title or f"{data.id} — axial slice {k}")
    fig.tight_layout(rect=(0, 0.05 if labels is not None else 0, 1, 1))
    return fig


def figure_format(path: str | os.PathLike[str]) -> str:
    """The image format a figure file's suffix names (``.png`` → ``png``).

    Raises:
        BratsInputError: the suffix is missing or not a format matplotlib writes.
    """
    suffix = Path(path).suffix.lstrip(".").lower()
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if suffix not in formats:
        raise BratsInputError(f"{path}: unknown figure format {suffix!r}; use one of "
                              f"{', '.join('.' + f for f in formats)}")
    return suffix


def save_figure(fig: plt.Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Save a figure atomically (format from the suffix) and close it.

    Raises:
        BratsInputError: the suffix names no format matplotlib writes.
    """
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=figure_format(path))
    finally:
        plt.close(fig)
    return Path(path)
