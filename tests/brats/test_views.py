"""View transposes and their inverses."""

from __future__ import annotations

import numpy as np
import pytest

from brats.errors import BratsInputError
from brats.training.views import VIEW_AXES, from_view, size_in_array_order, to_view


@pytest.mark.parametrize("view", sorted(VIEW_AXES))
def test_round_trip_is_exact(view: str) -> None:
    array = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert np.array_equal(from_view(to_view(array, view), view), array)


def test_slice_axis_comes_first() -> None:
    array = np.zeros((6, 7, 8))
    assert to_view(array, "axial").shape == (8, 6, 7)
    assert to_view(array, "sagittal").shape == (6, 7, 8)
    assert to_view(array, "coronal").shape == (7, 6, 8)
    array[1, 2, 3] = 1
    assert to_view(array, "axial")[3, 1, 2] == 1
    assert to_view(array, "coronal")[2, 1, 3] == 1


def test_patch_size_in_array_order() -> None:
    assert size_in_array_order((19, 144, 140), "axial") == (144, 140, 19)
    assert size_in_array_order((19, 144, 140), "coronal") == (144, 19, 140)
    assert size_in_array_order((19, 144, 140), None) == (19, 144, 140)
    with pytest.raises(BratsInputError, match="unknown view 'top'"):
        to_view(np.zeros((2, 2, 2)), "top")
