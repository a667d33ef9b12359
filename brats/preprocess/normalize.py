"""Intensity normalisation: z-score each modality over its own non-zero brain voxels.

All three originals normalise each modality over that modality's own non-zero voxels and keep
its zeros at zero: Isensee et al. (MIC-DKFZ/BraTS2017 @dfc244c ``dataset.py``: mean and std of
the voxels ≠ 0 of each modality), Wang et al. (taigw/brats17 @d44297e ``util/data_process.py``
``itensity_normalize_one_volume``: voxels > 0) and DeepMedic (z-score inside the brain mask;
deepmedic/deepmedic issue #19). A voxel that is zero in one modality but not in another is
therefore 0 in that modality after normalisation, not −mean/std.
"""

from __future__ import annotations

import numpy as np


def zscore(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-score each channel over its own non-zero voxels inside ``mask``; every other voxel is
    exactly 0.

    Args:
        image: (C, X, Y, Z) intensities.
        mask: (X, Y, Z) bool brain mask.

    Returns:
        ``(normalised, mean, std)``: (C, X, Y, Z) float32 and the per-channel (C,) float64
        statistics used. A constant channel (std 0) is only centred.
    """
    out = np.zeros(image.shape, dtype=np.float32)
    means = np.zeros(image.shape[0])
    stds = np.ones(image.shape[0])
    for c, channel in enumerate(image):
        own = mask & (channel != 0)
        values = channel[own].astype(np.float64)
        if values.size:
            means[c] = values.mean()
            std = values.std()
            stds[c] = std if std > 0 else 1.0
        out[c][own] = ((values - means[c]) / stds[c]).astype(np.float32)
    return out, means, stds
