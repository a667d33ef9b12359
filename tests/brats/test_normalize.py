"""Z-score normalisation: each modality over its own non-zero voxels, zeros kept at zero."""

from __future__ import annotations

import numpy as np
import pytest

from brats.preprocess.crop import brain_mask
from brats.preprocess.normalize import zscore


def test_each_modality_uses_its_own_nonzero_voxels() -> None:
    """Channel 0 is non-zero on 4 voxels, channel 1 on 2 of them only (the other two are 0 in
    it): channel 1's statistics come from its 2 voxels, and its zeros stay exactly 0 (with the
    union mask they would become −mean/std = −3)."""
    image = np.zeros((2, 2, 2, 1), np.float32)
    image[0, :, :, 0] = [[1, 2], [3, 4]]
    image[1, :, :, 0] = [[0, 0], [2, 4]]
    out, mean, std = zscore(image, brain_mask(image))
    np.testing.assert_allclose(mean, [2.5, 3.0])
    np.testing.assert_allclose(std, [np.sqrt(1.25), 1.0])
    np.testing.assert_array_equal(out[1, :, :, 0], [[0, 0], [-1, 1]])
    np.testing.assert_allclose(out[0, :, :, 0], (np.array([[1, 2], [3, 4]]) - 2.5) / np.sqrt(1.25),
                               rtol=1e-6)
    assert out[0, 0, 0, 0] != 0 and out[0, 0, 1, 0] != 0


def test_voxels_outside_the_mask_stay_zero_and_constant_channels_are_centred() -> None:
    image = np.zeros((2, 3, 1, 1), np.float32)
    image[0, :, 0, 0] = [5, 7, 9]
    image[1, :, 0, 0] = [3, 3, 3]
    mask = np.array([True, True, False])[:, None, None]
    out, mean, std = zscore(image, mask)
    assert mean[0] == 6.0 and std[0] == 1.0 and mean[1] == 3.0 and std[1] == 1.0
    np.testing.assert_array_equal(out[0, :, 0, 0], [-1, 1, 0])
    np.testing.assert_array_equal(out[1, :, 0, 0], [0, 0, 0])
    assert out.dtype == np.float32


def test_empty_channel_stays_zero() -> None:
    image = np.zeros((2, 2, 2, 2), np.float32)
    image[0] = np.arange(1, 9).reshape(2, 2, 2)
    out, mean, std = zscore(image, brain_mask(image))
    assert not out[1].any() and mean[1] == 0 and std[1] == 1
    assert out[0].mean() == pytest.approx(0, abs=1e-6)
