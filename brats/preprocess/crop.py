"""Brain bounding box, cropping, and the exact inverse that pastes a crop back into the full grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import binary_fill_holes

from brats.errors import BratsInputError

#: A box as ((start, stop), …) per spatial axis, stop exclusive, in voxels.
Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def brain_mask(image: np.ndarray) -> np.ndarray:
    """(C, X, Y, Z) image → (X, Y, Z) bool mask of voxels non-zero in any modality."""
    return np.any(image != 0, axis=0)


def brain_masks(image: np.ndarray) -> np.ndarray:
    """Per-channel brain masks: channel ≠ 0, holes filled (``binary_fill_holes``, 3-D).

    Args:
        image: (C, X, Y, Z).

    Returns:
        (C, X, Y, Z) bool.
    """
    return np.stack([binary_fill_holes(np.asarray(channel) != 0) for channel in image])


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """(C, X, Y, Z) bool masks (C ≤ 8) → (X, Y, Z) uint8 with bit c set where mask c is."""
    if masks.shape[0] > 8:
        raise BratsInputError(f"cannot pack {masks.shape[0]} masks into 8 bits")
    packed = np.zeros(masks.shape[1:], dtype=np.uint8)
    for c, mask in enumerate(masks):
        packed |= np.asarray(mask, dtype=np.uint8) << np.uint8(c)
    return packed


def unpack_masks(packed: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of :func:`pack_masks`: (X, Y, Z) uint8 → (channels, X, Y, Z) bool."""
    return np.stack([(packed >> np.uint8(c)) & np.uint8(1) for c in range(channels)]).astype(bool)


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
