"""Region-wise metrics: hand-computed values, edge cases, agreement with medpy, lesion-wise.

Only the comparisons with medpy / the DeepMind ``surface-distance`` package skip when those
optional test packages are missing; every hand-computed value always runs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from brats.errors import BratsInputError
from brats.metrics import (
    CONVENTIONS,
    EMPTY_HD95,
    LEGACY_EMPTY_HD95,
    LESIONWISE_MISS_HD95,
    METRIC_KEYS,
    case_metrics,
    dice,
    hd95,
    image_diagonal,
    lesionwise_metrics,
    sensitivity,
    specificity,
    summarize,
    surface_distances,
)


def medpy_binary():
    """``medpy.metric.binary``, or skip the calling test from here on."""
    return pytest.importorskip("medpy.metric.binary")


def medpy_surface_distances(a, b, spacing=None) -> np.ndarray:
    return getattr(medpy_binary(), "__surface_distances")(a, b, spacing)


BRATS_SHAPE = (240, 240, 155)
BRATS_DIAGONAL = math.sqrt(240**2 + 240**2 + 155**2)  # = sqrt(139225) = 373.1286...


def cube(shape, lo, size) -> np.ndarray:
    """Boolean mask with an axis-aligned box of ``size`` voxels starting at ``lo``."""
    m = np.zeros(shape, bool)
    m[tuple(slice(a, a + s) for a, s in zip(lo, size))] = True
    return m


def ball(shape, centre, radius) -> np.ndarray:
    g = np.indices(shape, sparse=True)
    return sum((gi - ci) ** 2 for gi, ci in zip(g, centre)) <= radius**2


def blobs(seed: int, shape=(36, 40, 28), frac: float = 0.12, sigma: float = 2.5) -> np.ndarray:
    """Random smooth blobs covering ``frac`` of the volume (several components, holes)."""
    noise = ndi.gaussian_filter(np.random.default_rng(seed).random(shape), sigma)
    return noise > np.quantile(noise, 1 - frac)


# ------------------------------------------------------------------------------------------
# hand-computed HD95
# ------------------------------------------------------------------------------------------

def test_two_cubes_ten_voxels_apart() -> None:
    """Two 5³ cubes, the second shifted by 10 voxels along x (A: x 5..9, B: x 15..19).

    A 5³ cube's 6-connected surface is 125 − 3³ = 98 voxels: the two x-faces (25 each) and a
    16-voxel ring in each of the three middle layers. The nearest B-surface voxel of any A-surface
    voxel (x, y, z) is (15, y, z) on B's near face, so the directed distances are
    15 − x: 25 × 6 (x=9), 16 × 7, 16 × 8, 16 × 9, 25 × 10 (x=5); B → A is the mirror image.
    Pooled (196 values, sorted): indices 0–49 → 6, 50–81 → 7, 82–113 → 8, 114–145 → 9,
    146–195 → 10. The 95th percentile sits at index 0.95 · 195 = 185.25 → 10 mm.
    """
    shape = (30, 15, 15)
    a, b = cube(shape, (5, 5, 5), (5, 5, 5)), cube(shape, (15, 5, 5), (5, 5, 5))
    expected = np.repeat([6.0, 7.0, 8.0, 9.0, 10.0], [25, 16, 16, 16, 25])
    d_ab, d_ba = surface_distances(a, b)
    assert np.array_equal(np.sort(d_ab), expected)
    assert np.array_equal(np.sort(d_ba), expected)
    assert hd95(a, b) == 10.0
    assert hd95(a, b, convention="max-directed") == 10.0
    assert dice(a, b) == 0.0


def test_interpolated_percentile_and_anisotropic_spacing() -> None:
    """A = one voxel at z=1; B = two voxels at z=2, 3 on the same (x, y) line.

    Every voxel is a surface voxel. A → B: [1]; B → A: [1, 2]. Pooled [1, 1, 2]: index
    0.95 · 2 = 1.9 → 1 + 0.9 · (2 − 1) = 1.9. Max-directed: max(1, 1 + 0.95 · 1) = 1.95.
    With a z-spacing of 2.5 mm every distance scales by 2.5: 4.75 and 4.875 mm.
    """
    shape = (3, 3, 5)
    a = cube(shape, (1, 1, 1), (1, 1, 1))
    b = cube(shape, (1, 1, 2), (1, 1, 2))
    assert hd95(a, b) == pytest.approx(1.9, abs=1e-12)
    assert hd95(a, b, convention="max-directed") == pytest.approx(1.95, abs=1e-12)
    assert hd95(a, b, (1.0, 1.0, 2.5)) == pytest.approx(4.75, abs=1e-12)
    assert hd95(a, b, (1.0, 1.0, 2.5), "max-directed") == pytest.approx(4.875, abs=1e-12)
    # x/y spacing is irrelevant: every distance is along z
    assert hd95(a, b, (7.0, 0.3, 2.5)) == pytest.approx(4.75, abs=1e-12)


def test_single_voxels_anisotropic() -> None:
    """Voxels (0,0,0) and (3,4,0): 5 voxels apart; with spacing (2, 0.5, 1) √(6² + 2²) = √40 mm."""
    a, b = cube((5, 6, 2), (0, 0, 0), (1, 1, 1)), cube((5, 6, 2), (3, 4, 0), (1, 1, 1))
    assert hd95(a, b) == 5.0
    assert hd95(a, b, (2.0, 0.5, 1.0)) == pytest.approx(math.sqrt(40.0), abs=1e-12)
    assert hd95(a, b, 3.0) == pytest.approx(15.0, abs=1e-12)  # scalar spacing, all axes


def test_sphere_vs_shifted_sphere() -> None:
    """Ball of radius 8 against the same ball shifted by 3 voxels along y.

    The discrete ball is mirror-symmetric about its centre, so A → B and B → A have the same
    distance distribution: legacy (pooled) and max-directed HD95 coincide. Every surface voxel
    of A moved by the shift lands on B, so no distance exceeds 3; medpy gives the exact value.
    """
    shape = (26, 30, 26)
    a, b = ball(shape, (13, 13, 13), 8), ball(shape, (13, 16, 13), 8)
    d_ab, d_ba = surface_distances(a, b)
    assert np.array_equal(np.sort(d_ab), np.sort(d_ba))
    legacy = hd95(a, b)
    assert legacy == hd95(a, b, convention="max-directed")
    assert 0.0 < legacy <= 3.0
    # anisotropic spacing: still symmetric
    sp = (1.2, 0.8, 3.0)
    assert hd95(a, b, sp) == pytest.approx(hd95(a, b, sp, "max-directed"), abs=1e-12)


def test_sphere_vs_shifted_sphere_matches_medpy() -> None:
    mb = medpy_binary()
    shape, sp = (26, 30, 26), (1.2, 0.8, 3.0)
    a, b = ball(shape, (13, 13, 13), 8), ball(shape, (13, 16, 13), 8)
    assert hd95(a, b) == pytest.approx(mb.hd95(a, b), abs=1e-6)
    assert dice(a, b) == pytest.approx(mb.dc(a, b), abs=1e-12)
    assert hd95(a, b, sp) == pytest.approx(mb.hd95(a, b, voxelspacing=sp), abs=1e-6)


def test_max_directed_differs_with_far_false_positive() -> None:
    """Reference: 10³ cube (x 2..11). Prediction: the same cube plus a 4³ FP cube at x 40..43.

    Surfaces: the 10³ cube has 1000 − 8³ = 488 surface voxels, the 4³ cube 64 − 8 = 56. The FP
    surface's nearest reference surface voxel is on the face x = 11 (its y, z range lies inside
    the reference's), so its distances are x − 11: 16 × 29, 12 × 30, 12 × 31, 16 × 32. All
    other distances are 0.
    * pred → ref: 488 zeros + 56 FP values; index 0.95 · 543 = 515.85 falls between sorted
      index 515 (the last 30) and 516 (the first 31) → 30.85.
    * ref → pred: 488 zeros → 0. Max-directed HD95 = 30.85 mm.
    * pooled: 976 zeros + 56 FP values; index 0.95 · 1031 = 979.45 lies among the 29s (indices
      976–991) → legacy HD95 = 29 mm.
    """
    shape = (50, 20, 20)
    ref = cube(shape, (2, 5, 5), (10, 10, 10))
    pred = ref | cube(shape, (40, 8, 8), (4, 4, 4))
    assert hd95(pred, ref) == pytest.approx(29.0, abs=1e-12)
    assert hd95(pred, ref, convention="max-directed") == pytest.approx(30.85, abs=1e-9)
    assert hd95(ref, pred, convention="max-directed") == pytest.approx(30.85, abs=1e-9)


def test_far_false_positive_matches_medpy() -> None:
    mb = medpy_binary()
    shape = (50, 20, 20)
    ref = cube(shape, (2, 5, 5), (10, 10, 10))
    pred = ref | cube(shape, (40, 8, 8), (4, 4, 4))
    assert hd95(pred, ref) == pytest.approx(mb.hd95(pred, ref), abs=1e-9)


# ------------------------------------------------------------------------------------------
# Dice, sensitivity, specificity by hand; edge cases
# ------------------------------------------------------------------------------------------

def test_overlap_metrics_tiny_arrays() -> None:
    """8 voxels. P = {0,1,2}, R = {1,2,3,4}: TP 2, FP 1, FN 2, TN 3.

    Dice 2·2/(3+4) = 4/7; sensitivity 2/4; specificity TN/(TN+FP) = 3/4.
    """
    pred = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool).reshape(2, 2, 2)
    ref = np.array([0, 1, 1, 1, 1, 0, 0, 0], bool).reshape(2, 2, 2)
    assert dice(pred, ref) == pytest.approx(4 / 7, abs=1e-15)
    assert sensitivity(pred, ref) == 0.5
    assert specificity(pred, ref) == 0.75
    # integer / float inputs count non-zero as foreground
    assert dice(pred.astype(np.uint8) * 4, ref.astype(float) * 0.5) == pytest.approx(4 / 7)


@pytest.mark.parametrize("convention", ["brats-legacy", "max-directed"])
def test_edge_cases_masks(convention: str) -> None:
    z = np.zeros(BRATS_SHAPE, bool)
    one = z.copy()
    one[100, 120, 70] = True
    n = z.size
    # both empty
    assert dice(z, z) == 1.0 and hd95(z, z, convention=convention) == 0.0
    assert sensitivity(z, z) == 1.0 and specificity(z, z) == 1.0
    # prediction empty, reference not
    assert dice(z, one) == 0.0
    assert hd95(z, one, convention=convention) == pytest.approx(BRATS_DIAGONAL, abs=1e-9)
    assert sensitivity(z, one) == 0.0 and specificity(z, one) == 1.0
    # reference empty, prediction not
    assert dice(one, z) == 0.0
    assert hd95(one, z, convention=convention) == pytest.approx(BRATS_DIAGONAL, abs=1e-9)
    assert sensitivity(one, z) == 0.0
    assert specificity(one, z) == (n - 1) / n
    # one-voxel masks: identical, then 1 voxel apart
    assert dice(one, one) == 1.0 and hd95(one, one, convention=convention) == 0.0
    other = np.roll(one, 1, axis=2)
    assert dice(one, other) == 0.0 and hd95(one, other, convention=convention) == 1.0
    assert hd95(one, other, (1, 1, 2.5), convention) == 2.5


def test_empty_hd95_rules() -> None:
    """Exactly one mask empty on a 10×20×5 grid of (2, 0.5, 3) mm voxels.

    CaPTk's rule (default): diagonal in voxels √(10² + 20² + 5²) = √525; ``"diagonal-mm"``:
    √(20² + 10² + 15²) = √725; a number is used as is; lesion-wise 374, brats2024 inf.
    """
    assert image_diagonal(BRATS_SHAPE) == pytest.approx(LEGACY_EMPTY_HD95, abs=1e-5)
    assert image_diagonal((10, 20, 5), (2.0, 0.5, 3.0)) == pytest.approx(math.sqrt(400 + 100 + 225))
    sp = (2.0, 0.5, 3.0)
    z = np.zeros((10, 20, 5), bool)
    one = z.copy()
    one[0, 0, 0] = True
    assert EMPTY_HD95["brats-legacy"] == "diagonal-voxels"
    for conv in ("brats-legacy", "max-directed"):
        assert hd95(one, z, sp, conv) == pytest.approx(math.sqrt(525), abs=1e-12)
        assert hd95(z, one, sp, conv, empty_hd95="diagonal-mm") == pytest.approx(math.sqrt(725))
        assert hd95(z, one, sp, conv, empty_hd95=LEGACY_EMPTY_HD95) == LEGACY_EMPTY_HD95
        assert hd95(z, z, sp, conv) == 0.0
    assert hd95(one, z, sp, "brats2023-lesionwise", size_threshold=0) == LESIONWISE_MISS_HD95
    assert hd95(one, z, sp, "brats2024") == math.inf
    labels = np.zeros((10, 20, 5), np.uint8)
    labels[0, 0, 0] = 4
    rows = case_metrics(labels, np.zeros_like(labels), sp, empty_hd95="diagonal-mm")
    assert [r["hd95"] for r in rows] == pytest.approx([math.sqrt(725)] * 3)
    assert case_metrics(labels, np.zeros_like(labels), sp)[2]["hd95"] == pytest.approx(
        math.sqrt(525))
    with pytest.raises(BratsInputError, match="empty_hd95 only applies"):
        hd95(one, z, sp, "brats2024", empty_hd95=1.0)
    with pytest.raises(BratsInputError, match="unknown empty_hd95 rule"):
        hd95(one, z, sp, empty_hd95="diagonal")
    with pytest.raises(BratsInputError, match="empty_hd95 must be >= 0"):
        case_metrics(labels, labels, sp, empty_hd95=-1.0)


def test_reference_filling_image_has_specificity_one() -> None:
    full = np.ones((3, 3, 3), bool)
    assert specificity(full, full) == 1.0
    assert specificity(np.zeros_like(full), full) == 1.0


def test_case_metrics_edge_values() -> None:
    """Label maps at BraTS size: ET absent from both, TC/WT only in the reference."""
    ref = np.zeros(BRATS_SHAPE, np.uint8)
    pred = np.zeros(BRATS_SHAPE, np.uint8)
    ref[100:105, 100:105, 70:75] = 1          # NCR only → TC and WT
    pred[100:105, 100:105, 70:75] = 2          # ED only → WT
    rows = {r["region"]: r for r in case_metrics(pred, ref)}
    assert list(rows) == ["WT", "TC", "ET"]
    assert all(tuple(r) == METRIC_KEYS for r in rows.values())
    wt, tc, et = rows["WT"], rows["TC"], rows["ET"]
    assert wt["dice"] == 1.0 and wt["hd95"] == 0.0 and wt["sensitivity"] == 1.0
    assert tc["dice"] == 0.0 and tc["hd95"] == pytest.approx(BRATS_DIAGONAL)
    assert tc["sensitivity"] == 0.0 and tc["specificity"] == 1.0
    assert tc["volume_pred"] == 0.0 and tc["volume_ref"] == 125.0
    assert et == {"region": "ET", "dice": 1.0, "hd95": 0.0, "sensitivity": 1.0,
                  "specificity": 1.0, "volume_pred": 0.0, "volume_ref": 0.0}
    # everything empty (label 3 and 5 belong to no region)
    junk = np.zeros(BRATS_SHAPE, np.uint8)
    junk[5, 5, 5], junk[6, 6, 6] = 3, 5
    for r in case_metrics(junk, np.zeros(BRATS_SHAPE, np.uint8), include_labels=True):
        assert (r["dice"], r["hd95"], r["sensitivity"], r["specificity"]) == (1.0, 0.0, 1.0, 1.0)


def test_case_metrics_volumes_and_labels() -> None:
    ref = np.zeros((20, 20, 20), np.int16)
    pred = np.zeros((20, 20, 20), np.int16)
    ref[2:6, 2:6, 2:6] = 2
    ref[3:5, 3:5, 3:5] = 4
    pred[2:6, 2:6, 2:7] = 2
    pred[3:5, 3:5, 3:5] = 1
    rows = {r["region"]: r for r in case_metrics(pred, ref, (1.0, 2.0, 0.5), include_labels=True)}
    assert list(rows) == ["WT", "TC", "ET", "NCR", "ED"]
    assert rows["WT"]["volume_ref"] == 64 * 1.0 and rows["WT"]["volume_pred"] == 80 * 1.0
    assert rows["ET"]["volume_ref"] == 8.0 and rows["ET"]["volume_pred"] == 0.0
    assert rows["NCR"]["volume_pred"] == 8.0 and rows["NCR"]["dice"] == 0.0
    assert rows["ED"]["dice"] == pytest.approx(2 * 56 / (72 + 56))
    assert rows["TC"]["dice"] == 1.0 and rows["TC"]["hd95"] == 0.0


def test_bad_inputs() -> None:
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(BratsInputError,
                       match="brats-legacy, max-directed, brats2023-lesionwise, brats2024"):
        hd95(a, a, convention="monai")
    with pytest.raises(BratsInputError, match="shape"):
        dice(a, np.zeros((4, 4, 5), bool))
    with pytest.raises(BratsInputError, match="shape"):
        case_metrics(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(BratsInputError, match="unknown metric convention"):
        case_metrics(a, a, convention="nope")
    with pytest.raises(BratsInputError, match="spacing"):
        hd95(a, a, (1.0, 1.0))
    with pytest.raises(BratsInputError, match="spacing"):
        case_metrics(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(BratsInputError, match="non-empty"):
        surface_distances(a, a)
    assert CONVENTIONS[0] == "brats-legacy"


# ------------------------------------------------------------------------------------------
# agreement with medpy
# ------------------------------------------------------------------------------------------

SPACINGS = [(1.0, 1.0, 1.0), (0.9375, 0.9375, 1.5), (1.0, 2.0, 0.7)]


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_medpy_random_blobs(seed: int) -> None:
    mb = medpy_binary()
    ref = blobs(seed)
    pred = blobs(seed + 100) | ndi.binary_erosion(ref, iterations=1)  # correlated, not equal
    sp = SPACINGS[seed % len(SPACINGS)]
    assert hd95(pred, ref, sp) == pytest.approx(
        mb.hd95(pred, ref, voxelspacing=sp), abs=1e-6)
    assert dice(pred, ref) == pytest.approx(mb.dc(pred, ref), abs=1e-12)
    # max-directed = max of medpy's two directed 95th percentiles
    d1 = medpy_surface_distances(pred, ref, sp)
    d2 = medpy_surface_distances(ref, pred, sp)
    assert hd95(pred, ref, sp, "max-directed") == pytest.approx(
        max(np.percentile(d1, 95), np.percentile(d2, 95)), abs=1e-6)
    ours1, ours2 = surface_distances(pred, ref, sp)
    np.testing.assert_allclose(np.sort(ours1), np.sort(d1), atol=1e-9)
    np.testing.assert_allclose(np.sort(ours2), np.sort(d2), atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_medpy_touching_border(seed: int) -> None:
    """Masks cut by the volume edge: medpy's erosion treats outside as background, as we do."""
    mb = medpy_binary()
    shape = (24, 30, 20)
    ref = blobs(seed, shape, frac=0.3)
    ref[0] |= True                              # a full face on the border
    ref[:, -1, :5] = True
    pred = blobs(seed + 50, shape, frac=0.3)
    pred[:, :, -1] = True                       # another full face
    pred[-1, -1, -1] = True                     # a corner voxel
    sp = SPACINGS[seed % len(SPACINGS)]
    assert hd95(pred, ref, sp) == pytest.approx(
        mb.hd95(pred, ref, voxelspacing=sp), abs=1e-6)
    # far apart across the whole volume: the crop is the full image
    a, b = np.zeros(shape, bool), np.zeros(shape, bool)
    a[:3, :3, :3] = True
    b[-2:, -4:, -1:] = True
    assert hd95(a, b, sp) == pytest.approx(mb.hd95(a, b, voxelspacing=sp), abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_case_metrics_match_medpy_per_region(seed: int) -> None:
    mb = medpy_binary()
    shape = (40, 44, 30)
    rng = np.random.default_rng(seed)

    def labels(s: int) -> np.ndarray:
        out = np.zeros(shape, np.uint8)
        out[blobs(s, shape, 0.2)] = 2
        out[blobs(s + 1, shape, 0.08)] = 1
        out[blobs(s + 2, shape, 0.05)] = 4
        return out

    ref, pred = labels(seed), labels(seed + 10)
    pred[rng.random(shape) < 0.001] = 4  # scattered single-voxel ET false positives
    sp = SPACINGS[seed]
    rows = case_metrics(pred, ref, sp, include_labels=True)
    members = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,), "NCR": (1,), "ED": (2,)}
    for row in rows:
        p, r = np.isin(pred, members[row["region"]]), np.isin(ref, members[row["region"]])
        assert row["hd95"] == pytest.approx(mb.hd95(p, r, voxelspacing=sp), abs=1e-6)
        assert row["dice"] == pytest.approx(mb.dc(p, r), abs=1e-12)
        assert row["sensitivity"] == pytest.approx(mb.sensitivity(p, r), abs=1e-12)
        assert row["specificity"] == pytest.approx(mb.specificity(p, r), abs=1e-12)
        assert row["volume_ref"] == pytest.approx(r.sum() * np.prod(sp))
        assert row["hd95"] == hd95(p, r, sp)


# ------------------------------------------------------------------------------------------
# BraTS 2023 lesion-wise
# ------------------------------------------------------------------------------------------

LW_SHAPE = (64, 20, 20)


def lw(pred, ref, spacing=(1.0, 1.0, 1.0), **kw):
    return lesionwise_metrics(pred, ref, spacing, **kw)


def test_lesionwise_one_lesion_missed() -> None:
    """Reference: 5³ cubes at x 5..9 and x 30..34 (far apart); prediction: the first only.

    Lesion 1: Dice 1, HD95 0. Lesion 2 missed: Dice 0, HD95 374. No false positives.
    Case: Dice (1 + 0)/2 = 0.5, HD95 (0 + 374)/2 = 187.
    """
    a = cube(LW_SHAPE, (5, 5, 5), (5, 5, 5))
    b = cube(LW_SHAPE, (30, 5, 5), (5, 5, 5))
    res = lw(a, a | b)
    assert (res["dice"], res["hd95"]) == (0.5, 187.0)
    assert (res["n_tp"], res["n_fn"], res["n_fp"], res["n_ignored"]) == (1, 1, 0, 0)
    assert res["lesion_dice"] == [1.0, 0.0] and res["lesion_hd95"] == [0.0, 374.0]


def test_lesionwise_false_positive_blob() -> None:
    """Reference: 5³ cube; prediction: the cube plus a 3³ blob 20 voxels away.

    Lesion: Dice 1, HD95 0; one false positive: Dice 0, HD95 374 → case 0.5 / 187.
    (Legacy Dice would be 2·125/(152 + 125) = 250/277.)
    """
    a = cube(LW_SHAPE, (5, 5, 5), (5, 5, 5))
    fp = cube(LW_SHAPE, (30, 6, 6), (3, 3, 3))
    res = lw(a | fp, a)
    assert (res["dice"], res["hd95"]) == (0.5, 187.0)
    assert (res["n_tp"], res["n_fn"], res["n_fp"]) == (1, 0, 1)
    assert dice(a | fp, a) == pytest.approx(250 / 277)


def test_lesionwise_close_components_merge() -> None:
    """Reference: 5³ cubes at x 5..9 and x 16..20 (a 6-voxel gap x 10..15).

    Three 18-neighbourhood dilations grow each cube by 3 voxels along x: up to x = 12 and down
    to x = 13, which touch, so both cubes are one 250-voxel lesion. Prediction: the first cube.
    Lesion Dice 2·125/(125 + 250) = 2/3. HD95 (surfels on the corner grid: a 5³ cube has the
    6³ − 4³ = 152 corners x, y, z ∈ 5..10 on its boundary; a face has 16 inner corners of area
    1, 16 edge corners of area √2/2 and 4 vertex corners of area √3/8: 28.18 mm²; each inner
    ring of 20 corners 16 + 4·√2/2 = 18.83 mm²; per cube 131.67 mm²): pred → lesion is 0
    (A's surfels are the lesion's); lesion → pred: A's 131.67 mm² at 0 (cumulative 0.5), then
    the second cube's corners x = 16..21 at x − 10 = 6, 7, 8, 9, 10, 11 mm, reaching
    (131.67 + 28.18 + 4 · 18.83) / 263.35 = 0.893 at 10 mm and 1 at 11 mm → 11 mm.
    Case: Dice 2/3, HD95 11.
    """
    a = cube(LW_SHAPE, (5, 5, 5), (5, 5, 5))
    b = cube(LW_SHAPE, (16, 5, 5), (5, 5, 5))
    res = lw(a, a | b)
    assert res["dice"] == pytest.approx(2 / 3) and res["hd95"] == pytest.approx(11.0)
    assert (res["n_tp"], res["n_fn"], res["n_fp"]) == (1, 0, 0)
    # two dilations reach x = 11 and x = 14: not touching → two lesions, the second missed
    res2 = lw(a, a | b, dilation_iterations=2)
    assert (res2["dice"], res2["hd95"]) == (0.5, 187.0)
    # a 7-voxel gap does not merge with the default 3 iterations (x = 12 vs x = 14)
    c = cube(LW_SHAPE, (17, 5, 5), (5, 5, 5))
    res3 = lw(a, a | c)
    assert (res3["dice"], res3["hd95"], res3["n_fn"]) == (0.5, 187.0, 1)


def test_lesionwise_small_lesion_ignored() -> None:
    """Reference: 5³ cube + a 3³ = 27-voxel cube far away (≤ 50 mm³ at 1 mm: ignored)."""
    a = cube(LW_SHAPE, (5, 5, 5), (5, 5, 5))
    s = cube(LW_SHAPE, (40, 5, 5), (3, 3, 3))
    res = lw(a, a | s)                     # small lesion missed: not a false negative
    assert (res["dice"], res["hd95"], res["n_fn"], res["n_ignored"]) == (1.0, 0.0, 0, 1)
    res = lw(a | s, a | s)                 # small lesion found: its match is no false positive
    assert (res["dice"], res["hd95"], res["n_fp"], res["n_ignored"]) == (1.0, 0.0, 0, 1)
    res = lw(a, a | s, size_threshold=10)  # now it counts, and it is missed
    assert (res["dice"], res["hd95"], res["n_fn"]) == (0.5, 187.0, 1)
    # threshold is inclusive: 5×5×2 = 50 voxels ignored, 51 voxels kept
    fifty = cube(LW_SHAPE, (40, 5, 5), (5, 5, 2))
    assert lw(a, a | fifty)["n_ignored"] == 1
    fifty_one = fifty.copy()
    fifty_one[40, 5, 7] = True
    assert lw(a, a | fifty_one)["n_fn"] == 1


def test_lesionwise_edge_cases() -> None:
    z = np.zeros(LW_SHAPE, bool)
    a = cube(LW_SHAPE, (5, 5, 5), (5, 5, 5))
    small = cube(LW_SHAPE, (5, 5, 5), (3, 3, 3))
    assert (lw(z, z)["dice"], lw(z, z)["hd95"]) == (1.0, 0.0)                  # neither
    assert (lw(z, small)["dice"], lw(z, small)["hd95"]) == (1.0, 0.0)          # only ignored
    assert (lw(a, z)["dice"], lw(a, z)["hd95"]) == (0.0, LESIONWISE_MISS_HD95)  # only FP
    assert (lw(z, a)["dice"], lw(z, a)["hd95"]) == (0.0, LESIONWISE_MISS_HD95)  # only missed
    assert hd95(z, a, convention="brats2023-lesionwise") == 374.0
    assert hd95(a, a, convention="brats2023-lesionwise", size_threshold=0) == 0.0


def _lesionwise_naive(pred, ref, dil=3, thresh=50, sp=(1.0, 1.0, 1.0)):
    """Direct full-volume transcription of the 2023 script (cc3d → scipy 26-connectivity;
    HD95 from the DeepMind ``surface-distance`` package, as the script calls it)."""
    sd = pytest.importorskip("surface_distance")
    s26, s18 = np.ones((3, 3, 3), bool), ndi.generate_binary_structure(3, 2)
    gt_cc, _ = ndi.label(ref, s26)
    pred_cc, _ = ndi.label(pred, s26)
    dil_cc, n = ndi.label(ndi.binary_dilation(ref, s18, iterations=dil), s26)
    combined = np.zeros_like(dil_cc)
    for comp in range(1, n + 1):
        combined[(dil_cc == comp) & (gt_cc > 0)] = comp
    tp, scores = [], []
    for comp in range(1, combined.max() + 1):
        g = combined == comp
        gd = ndi.binary_dilation(g, s18, iterations=dil)
        hits = [c for c in np.unique(pred_cc[gd]) if c != 0]
        tp += hits
        q = np.isin(pred_cc, hits)
        d = 2 * (g & q).sum() / (g.sum() + q.sum())
        if q.any():
            h = sd.compute_robust_hausdorff(sd.compute_surface_distances(g, q, sp), 95)
        else:
            h = 374.0
        if g.sum() * sp[0] * sp[1] * sp[2] > thresh:
            scores.append((d, h))
    fp = len(set(np.unique(pred_cc)) - set(tp) - {0})
    if not scores and not fp:
        return 1.0, 0.0
    return ((sum(s[0] for s in scores)) / (len(scores) + fp),
            (sum(s[1] for s in scores) + 374 * fp) / (len(scores) + fp))


def random_balls(rng, shape, n: int, rmin: float, rmax: float) -> np.ndarray:
    m = np.zeros(shape, bool)
    for _ in range(n):
        m |= ball(shape, [rng.integers(0, s) for s in shape], rng.uniform(rmin, rmax))
    return m


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # surface-distance's scipy imports
@pytest.mark.parametrize("seed", range(6))
def test_lesionwise_matches_naive_transcription(seed: int) -> None:
    """Random balls (some merging, some ≤ 50 voxels), a noisy dilated prediction with a few
    false-positive balls and one reference component left out (a missed lesion)."""
    shape = (48, 40, 32)
    rng = np.random.default_rng(seed)
    ref = random_balls(rng, shape, 6, 1.5, 5.0)
    pred = (ndi.binary_dilation(ref) & (rng.random(shape) < 0.8)) | random_balls(rng, shape, 3, 1, 3)
    comps, _ = ndi.label(ref, np.ones((3, 3, 3)))
    pred &= ~ndi.binary_dilation(comps == 1, iterations=4)
    res = lw(pred, ref)
    exp_dice, exp_hd = _lesionwise_naive(pred, ref)
    assert res["dice"] == pytest.approx(exp_dice, abs=1e-12)
    assert res["hd95"] == pytest.approx(exp_hd, abs=1e-6)
    res1 = lw(pred, ref, dilation_iterations=1, size_threshold=2)      # BraTS-MET parameters
    exp1 = _lesionwise_naive(pred, ref, dil=1, thresh=2)
    assert (res1["dice"], res1["hd95"]) == pytest.approx(exp1, abs=1e-6)
    sp = (0.9375, 0.9375, 1.5) if seed % 2 else (1.0, 0.5, 2.5)       # anisotropic: mm³, mm
    res2 = lw(pred, ref, sp)
    assert (res2["dice"], res2["hd95"]) == pytest.approx(_lesionwise_naive(pred, ref, sp=sp),
                                                         abs=1e-6)


def test_case_metrics_lesionwise_keys() -> None:
    ref = np.zeros((40, 20, 20), np.uint8)
    ref[5:10, 5:10, 5:10] = 4
    pred = ref.copy()
    pred[30:33, 5:8, 5:8] = 2                                   # a WT-only false positive
    rows = {r["region"]: r for r in case_metrics(pred, ref, convention="brats2023-lesionwise")}
    assert (rows["WT"]["dice"], rows["WT"]["hd95"], rows["WT"]["n_fp"]) == (0.5, 187.0, 1)
    assert (rows["ET"]["dice"], rows["ET"]["hd95"], rows["ET"]["n_tp"]) == (1.0, 0.0, 1)
    assert rows["WT"]["sensitivity"] == 1.0                     # full-volume, as in 2023


# ------------------------------------------------------------------------------------------
# summary
# ------------------------------------------------------------------------------------------

def test_summarize_hand_values() -> None:
    """WT Dice 0.2, 0.4, 0.6, 0.8: mean 0.5; population SD √0.05; sample SD √(0.2/3);
    median 0.5; 25 % quantile at index 0.75 → 0.35; 75 % at index 2.25 → 0.65."""
    dices = [0.2, 0.4, 0.6, 0.8]
    df = pd.DataFrame(
        [{"case": f"c{i}", "region": "WT", "dice": d, "hd95": 10.0 * i, "sensitivity": 1.0,
          "specificity": 1.0, "volume_ref": 5.0} for i, d in enumerate(dices)]
        + [{"case": f"c{i}", "region": "ET", "dice": np.nan if i == 0 else 1.0, "hd95": 1.0,
            "sensitivity": 1.0, "specificity": 1.0, "volume_ref": 1.0} for i in range(4)])
    s = summarize(df)
    assert list(s.index) == ["Mean", "StdDev", "Median", "25quantile", "75quantile"]
    assert list(s.columns) == ["Dice_WT", "Dice_ET", "Hausdorff95_WT", "Hausdorff95_ET",
                               "Sensitivity_WT", "Sensitivity_ET", "Specificity_WT",
                               "Specificity_ET"]
    np.testing.assert_allclose(s["Dice_WT"], [0.5, math.sqrt(0.05), 0.5, 0.35, 0.65])
    np.testing.assert_allclose(s["Hausdorff95_WT"], [15.0, math.sqrt(125.0), 15.0, 7.5, 22.5])
    assert summarize(df, ddof=1).loc["StdDev", "Dice_WT"] == pytest.approx(math.sqrt(0.2 / 3))
    np.testing.assert_allclose(s["Dice_ET"], [1, 0, 1, 1, 1])       # NaN skipped
    with pytest.raises(BratsInputError, match="more than once"):
        summarize(pd.concat([df, df.iloc[:1]]))
    with pytest.raises(BratsInputError, match="case"):
        summarize(df.drop(columns="case"))


def test_summarize_from_case_metrics() -> None:
    ref = np.zeros((20, 20, 20), np.uint8)
    ref[5:10, 5:10, 5:10] = 2
    ref[6:9, 6:9, 6:9] = 4
    table = pd.DataFrame([{"case": c, **m} for c, pred in (("a", ref), ("b", np.roll(ref, 1, 0)))
                          for m in case_metrics(pred, ref)])
    s = summarize(table)
    assert list(s.columns[:3]) == ["Dice_WT", "Dice_TC", "Dice_ET"]
    assert s.loc["Mean", "Dice_WT"] == pytest.approx((1.0 + dice(np.roll(ref, 1, 0) > 0, ref > 0)) / 2)
