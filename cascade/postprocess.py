"""The Wang et al. 2017 cascade's morphology: closing, component filters, boxes and the final
fusion of the WT, TC and ET masks (``test.py`` and ``util/train_test_func.py`` of taigw/brats17
@d44297e).

Sizes are given in mm³ and converted with the voxel volume, so the 2000-voxel and 30-voxel
rules of the original (1 mm BraTS grids) keep their meaning on other grids.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from brats.data.labels import ED, ET, NCR
from brats.preprocess.crop import Box, bounding_box

#: 18-neighbourhood structuring element of the original's closings.
STRUCTURE = ndimage.generate_binary_structure(3, 2)


def _voxels(volume_mm3: float, spacing: Sequence[float]) -> float:
    return volume_mm3 / float(np.prod(spacing))


def closing(mask: np.ndarray) -> np.ndarray:
    """3-D binary closing with the 3×3×3 connectivity-2 element; (X, Y, Z) bool in and out.

    The mask is padded by one voxel first so the closing does not erode at the volume border.
    """
    padded = np.pad(np.asarray(mask, bool), 1)
    return ndimage.binary_closing(padded, structure=STRUCTURE)[1:-1, 1:-1, 1:-1]


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labelled, count = ndimage.label(mask, structure=STRUCTURE)
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)[1:]
    return labelled, sizes


def remove_small_components(mask: np.ndarray, min_volume_mm3: float = 2000.0,
                            spacing: Sequence[float] = (1, 1, 1)) -> np.ndarray:
    """With more than one component, keep those larger than ``min_volume_mm3``; a single
    component is always kept (the original's WT rule)."""
    labelled, sizes = _components(mask)
    if len(sizes) <= 1:
        return np.asarray(mask, bool).copy()
    keep = np.flatnonzero(sizes > _voxels(min_volume_mm3, spacing)) + 1
    return np.isin(labelled, keep)


def keep_largest_components(mask: np.ndarray, second_ratio: float = 0.1) -> np.ndarray:
    """Keep the largest component, and the second largest if it exceeds ``second_ratio`` of the
    largest (the original's TC rule)."""
    labelled, sizes = _components(mask)
    if len(sizes) == 0:
        return np.zeros(np.shape(mask), bool)
    order = np.argsort(sizes)[::-1]
    keep = [order[0] + 1]
    if len(order) > 1 and sizes[order[1]] > second_ratio * sizes[order[0]]:
        keep.append(order[1] + 1)
    return np.isin(labelled, keep)


def box_with_margin(mask: np.ndarray, margin: int = 5, fallback: Box | None = None) -> Box:
    """Bounding box of ``mask`` grown by ``margin`` voxels (clipped to the grid); ``fallback``
    (default: the whole grid) when the mask is empty."""
    if not np.any(mask):
        return fallback if fallback is not None else tuple((0, n) for n in np.shape(mask))
    return bounding_box(mask, margin)


def fuse(wt: np.ndarray, tc: np.ndarray, et: np.ndarray, spacing: Sequence[float] = (1, 1, 1),
         min_wt_mm3: float = 2000.0, min_et_mm3: float = 30.0, core_overlap: float = 0.5
         ) -> np.ndarray:
    """Final fusion of the three stage predictions into a canonical label map.

    Steps: WT mask = closing(WT ∪ TC ∪ ET) with small components removed, WT ∧= mask; core =
    closing((TC ∪ ET) ∧ mask), components overlapping WT by less than ``core_overlap`` of their
    size dropped, then the largest (and a second > 1/10) kept, WT ∪= core; ET ∧= core; fewer than
    ``min_et_mm3`` of ET is deleted (those voxels stay core). Labels: ED, then NCR/NET for the
    core, then ET.

    Args:
        wt, tc, et: (X, Y, Z) bool predictions in the same grid.
        spacing: voxel size in mm.

    Returns:
        (X, Y, Z) uint8 canonical labels (0, 1, 2, 4).
    """
    wt, tc, et = (np.asarray(m, bool) for m in (wt, tc, et))
    mask = remove_small_components(closing(wt | tc | et), min_wt_mm3, spacing)
    wt = wt & mask
    core = closing((tc | et) & mask)
    labelled, sizes = _components(core)
    overlap = ndimage.sum_labels(wt, labelled, index=np.arange(1, len(sizes) + 1))
    core = np.isin(labelled, np.flatnonzero(overlap >= core_overlap * sizes) + 1)
    if core.any():
        core = keep_largest_components(core)
    wt = wt | core
    et = et & core
    if 0 < et.sum() < _voxels(min_et_mm3, spacing):
        et[:] = False
    labels = np.zeros(wt.shape, dtype=np.uint8)
    labels[wt] = ED
    labels[core] = NCR
    labels[et] = ET
    return labels
