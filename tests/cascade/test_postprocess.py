"""The cascade's morphology on hand-built masks with known answers."""

from __future__ import annotations

import numpy as np

from cascade.postprocess import (
    box_with_margin,
    closing,
    fuse,
    keep_largest_components,
    remove_small_components,
)


def cube(shape, lo, hi) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return mask


def test_closing_fills_a_one_voxel_hole_and_keeps_the_border() -> None:
    mask = cube((9, 9, 9), (0, 0, 0), (5, 5, 5))
    mask[2, 2, 2] = False
    closed = closing(mask)
    assert closed[2, 2, 2] and closed.sum() == 125


def test_small_components_go_only_when_there_are_several() -> None:
    big = cube((30, 30, 30), (0, 0, 0), (13, 13, 13))  # 2197 voxels
    small = cube((30, 30, 30), (20, 20, 20), (25, 25, 25))  # 125 voxels
    assert np.array_equal(remove_small_components(big | small), big)
    assert np.array_equal(remove_small_components(small), small)  # a lone component stays
    # 125 voxels of 8 mm³ = 1000 mm³ < 2000 mm³: still removed with 2 mm voxels
    assert np.array_equal(remove_small_components(big | small, spacing=(2, 2, 2)), big)


def test_largest_components_with_the_one_tenth_rule() -> None:
    a = cube((40, 40, 40), (0, 0, 0), (10, 10, 10))  # 1000
    b = cube((40, 40, 40), (20, 20, 20), (25, 25, 25))  # 125 > 100: kept
    c = cube((40, 40, 40), (30, 30, 30), (34, 34, 34))  # 64: dropped
    assert np.array_equal(keep_largest_components(a | b | c), a | b)
    assert np.array_equal(keep_largest_components(a | c), a)
    assert not keep_largest_components(np.zeros((3, 3, 3), bool)).any()


def test_box_with_margin_and_fallback() -> None:
    mask = cube((20, 20, 20), (5, 6, 7), (8, 9, 10))
    assert box_with_margin(mask, 5) == ((0, 13), (1, 14), (2, 15))
    empty = np.zeros((20, 20, 20), bool)
    assert box_with_margin(empty, 5) == ((0, 20), (0, 20), (0, 20))
    assert box_with_margin(empty, 5, fallback=((1, 2), (3, 4), (5, 6))) == ((1, 2), (3, 4), (5, 6))


def test_fuse_labels_and_the_small_et_rule() -> None:
    shape = (40, 40, 40)
    wt = cube(shape, (5, 5, 5), (30, 30, 30))
    tc = cube(shape, (10, 10, 10), (20, 20, 20))
    et = cube(shape, (12, 12, 12), (16, 16, 16))  # 64 voxels ≥ 30: kept
    labels = fuse(wt, tc, et)
    assert labels[6, 6, 6] == 2 and labels[11, 11, 11] == 1 and labels[13, 13, 13] == 4
    assert (labels == 4).sum() == 64 and (labels > 0).sum() == 25 ** 3
    tiny_et = cube(shape, (12, 12, 12), (15, 15, 15))  # 27 voxels < 30: deleted, stays core
    labels = fuse(wt, tc, tiny_et)
    assert not (labels == 4).any() and labels[13, 13, 13] == 1
    stray = tc | cube(shape, (33, 33, 33), (36, 36, 36))  # core outside WT: dropped
    labels = fuse(wt, stray, et)
    assert labels[34, 34, 34] == 0
