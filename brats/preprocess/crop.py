"""Brain bounding box, cropping, and the exact inverse that pastes a crop back into the full grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brats.errors import BratsInputError

#: A box as ((start, stop), …) per spatial axis, stop exclusive, in voxels.
Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def brain_mask(image: np.ndarray) -> np.ndarray:
    """(C, X, Y, Z) image → (X, Y, Z) bool mask of voxels non-zero in any modality."""
    return np.any(image != 0, axis=0)


def bounding_box(mask: np.ndarray, margin: int = 0) -> Box:
    """Smallest box holding every True voxel of a (X, Y, Z) mask, grown by ``margin`` voxels and
    clipped to the grid. Unlike the original Isensee code, the last brain voxel is inside the box.

    Raises:
        BratsInputError: the mask is empty.
    """
    coords = [np.flatnonzero(np.any(mask, axis=tuple(a for a in range(3) if a != axis)))
              for axis in range(3)]
    if any(c.size == 0 for c in coords):
        raise BratsInputError("empty mask: the image has no non-zero (brain) voxel")
    return tuple((max(int(c[0]) - margin, 0), min(int(c[-1]) + 1 + margin, n))
                 for c, n in zip(coords, mask.shape))  # type: ignore[return-value]


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """Crop the last three axes of ``array`` ((…, X, Y, Z)) to ``box``; returns a view."""
    return array[(..., *(slice(a, b) for a, b in box))]


def paste_back(cropped: np.ndarray, box: Box, shape: Sequence[int], fill: float = 0) -> np.ndarray:
    """Inverse of :func:`crop`: place a (…, x, y, z) crop into a (…, X, Y, Z) array of ``fill``.

    Args:
        cropped: array whose last three axes have the box's extent.
        box: the box it was cropped with.
        shape: full spatial shape (X, Y, Z).

    Returns:
        Array of the crop's dtype and leading axes, spatial shape ``shape``.
    """
    extent = tuple(b - a for a, b in box)
    if tuple(cropped.shape[-3:]) != extent:
        raise BratsInputError(f"crop of shape {cropped.shape[-3:]} does not fit box {box}")
    out = np.full((*cropped.shape[:-3], *shape), fill, dtype=cropped.dtype)
    out[(..., *(slice(a, b) for a, b in box))] = cropped
    return out
