"""BraTS space: the 240×240×155, 1 mm grid every BraTS release is stored in, and scaled copies."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BRATS_SHAPE: tuple[int, int, int] = (240, 240, 155)
#: Field of view of BraTS space in mm along each array axis.
BRATS_EXTENT_MM: tuple[float, float, float] = (240.0, 240.0, 155.0)


def brats_affine(shape: Sequence[int] = BRATS_SHAPE) -> np.ndarray:
    """Voxel-to-world affine of BraTS space, or of a grid covering the same field of view.

    For the BraTS shape this is exactly diag(−1, −1, 1) with translation (0, 239, 0) (axis codes
    L, P, S; ITK origin (0, −239, 0)). For another shape the voxel size becomes
    ``BRATS_EXTENT_MM / shape`` so the same head fits in fewer voxels. Values are rounded to
    float32, the precision of a NIfTI header, so the affine read back from a file equals this one.

    Returns:
        (4, 4) float64 affine, mm.
    """
    spacing = np.asarray(BRATS_EXTENT_MM, dtype=np.float64) / np.asarray(shape, dtype=np.float64)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[1, 3] = spacing[1] * (shape[1] - 1)
    return affine.astype(np.float32).astype(np.float64)


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis: the column norms of the affine's 3×3 part."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
