"""Intensity normalisation: z-score each modality inside the brain."""

from __future__ import annotations

import numpy as np


def zscore(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-score each channel over the voxels of ``mask``; voxels outside stay exactly 0.

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
        values = channel[mask].astype(np.float64)
        if values.size:
            means[c] = values.mean()
            std = values.std()
            stds[c] = std if std > 0 else 1.0
        out[c][mask] = ((values - means[c]) / stds[c]).astype(np.float32)
    return out, means, stds
