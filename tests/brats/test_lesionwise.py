"""Official-scorer definitions: DeepMind surfels (BraTS 2023), the mm³ lesion threshold, and the
``brats2024`` one-to-one instance matching. Hand-computed values always run; only the
comparisons with the DeepMind ``surface-distance`` package skip when it is missing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from brats.errors import BratsInputError
from brats.metrics import (
    BRATS2024_NO_MATCH_HD95,
    LESIONWISE_MISS_HD95,
    case_metrics,
    hd95,
    instancewise_metrics,
    lesionwise_metrics,
    surfel_area_table,
    surfel_distances,
    surfel_hd95,
)

SQ2_2, SQ3_8 = math.sqrt(2) / 2, math.sqrt(3) / 8


def cube(shape, lo, size) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[tuple(slice(a, a + s) for a, s in zip(lo, size))] = True
    return m


def code(*offsets: tuple[int, int, int]) -> int:
    """Neighbourhood code with the voxels at ``offsets`` ∈ {0, 1}³ set (bit 7 − (4a + 2b + c))."""
    return sum(1 << (7 - (4 * a + 2 * b + c)) for a, b, c in offsets)


def deepmind():
    """The DeepMind ``surface_distance`` package, or skip the calling test from here on."""
    return pytest.importorskip("surface_distance")


# ------------------------------------------------------------------------------------------
# surfels
# ------------------------------------------------------------------------------------------

def test_surfel_areas_by_hand() -> None:
    """One voxel in the 2×2×2 neighbourhood: the corner triangle through three edge midpoints,
    area vector (s1·s2, s0·s2, s0·s1)/8 → √3/8 at 1 mm and |(1, 2, 2)|/8 = 3/8 at (2, 1, 1).
    Two voxels along axis 2: a rectangle s2 × ½√(s0² + s1²). Four voxels forming the a = 0
    half: a square s1 × s2. Complements have the same surface; 0 and 255 none."""
    iso, aniso = surfel_area_table(), surfel_area_table((2.0, 1.0, 1.0))
    single, pair_z = code((0, 0, 0)), code((1, 1, 0), (1, 1, 1))
    half = code((0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1))
    assert iso[single] == pytest.approx(SQ3_8, abs=1e-12)
    assert aniso[single] == pytest.approx(3 / 8, abs=1e-12)
    assert iso[pair_z] == pytest.approx(SQ2_2, abs=1e-12)
    assert aniso[pair_z] == pytest.approx(0.5 * math.sqrt(5), abs=1e-12)
    assert surfel_area_table((1.0, 1.0, 2.5))[pair_z] == pytest.approx(2.5 * SQ2_2, abs=1e-12)
    assert iso[half] == pytest.approx(1.0, abs=1e-12)
    assert aniso[half] == pytest.approx(1.0, abs=1e-12)
    assert surfel_area_table((3.0, 2.0, 0.5))[half] == pytest.approx(1.0, abs=1e-12)
    assert iso[0] == iso[255] == 0.0
    np.testing.assert_allclose(aniso, aniso[::-1], atol=1e-12)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_surfel_area_table_equals_deepmind() -> None:
    lookup = deepmind().lookup_tables
    rng = np.random.default_rng(0)
    for sp in [(1.0, 1.0, 1.0), (0.9375, 0.9375, 1.5), *rng.uniform(0.2, 4.0, (8, 3))]:
        np.testing.assert_allclose(surfel_area_table(sp),
                                   lookup.create_table_neighbour_code_to_surface_area(sp),
                                   rtol=0, atol=1e-12)


def test_surfel_hd95_single_voxel_vs_bar() -> None:
    """A = voxel (1, 1, 1); B = A plus (1, 1, 2); spacing (1, 1, 2.5) mm.

    Surfels: A's 8 corners (z = 1, 2), each a single-voxel code of area |(2.5, 2.5, 1)|/8 =
    0.4593 mm². B's 12 corners: z = 1 and z = 3 single-voxel (0.4593 each), z = 2 two voxels
    along z, a 2.5 × √2/2 rectangle (1.7678 each). A → B: every A corner is a B corner → 0.
    B → A: 8 corners (8.908 of 10.745 mm², 82.9 %) at 0, the 4 at z = 3 at 2.5 mm → 95 %
    falls at 2.5 mm. Voxel-surface conventions give 2.25 (pooled) and 2.375 (max-directed).
    """
    shape, sp = (4, 4, 5), (1.0, 1.0, 2.5)
    a, b = cube(shape, (1, 1, 1), (1, 1, 1)), cube(shape, (1, 1, 1), (1, 1, 2))
    single = math.sqrt(2.5**2 + 2.5**2 + 1) / 8
    d_ab, area_a, d_ba, area_b = surfel_distances(a, b, sp)
    assert np.array_equal(d_ab, np.zeros(8))
    np.testing.assert_allclose(area_a, np.full(8, single), atol=1e-12)
    assert sorted(d_ba.tolist()) == [0.0] * 8 + [2.5] * 4
    assert area_b.sum() == pytest.approx(8 * single + 4 * 2.5 * SQ2_2, abs=1e-12)
    assert surfel_hd95(a, b, sp) == surfel_hd95(b, a, sp) == 2.5
    assert hd95(a, b, sp) == pytest.approx(2.25, abs=1e-12)
    assert hd95(a, b, sp, "max-directed") == pytest.approx(2.375, abs=1e-12)


def test_surfel_hd95_cubes_apart_anisotropic() -> None:
    """5³ cubes at x 5..9 and x 15..19: corners x 5..10 and 15..20. A → B: x = 10 face at 5,
    rings x = 9..6 at 6..9, x = 5 face at 10 voxels; the last face holds > 5 % of the area, so
    HD95 = 10 voxels: 10 mm at 1 mm, 20 mm with 2 mm along x, and unchanged by y/z spacing."""
    shape = (26, 12, 12)
    a, b = cube(shape, (5, 3, 3), (5, 5, 5)), cube(shape, (15, 3, 3), (5, 5, 5))
    assert surfel_hd95(a, b) == 10.0
    assert surfel_hd95(a, b, (2.0, 1.0, 1.0)) == 20.0
    assert surfel_hd95(a, b, (1.0, 0.6, 3.0)) == 10.0
    assert surfel_hd95(a, a, (1.0, 0.6, 3.0)) == 0.0


def test_surfel_hd95_edges_and_errors() -> None:
    z = np.zeros((3, 3, 3), bool)
    one = z.copy()
    one[1, 1, 1] = True
    assert surfel_hd95(z, z) == 0.0
    assert surfel_hd95(one, z) == math.inf and surfel_hd95(z, one) == math.inf
    with pytest.raises(BratsInputError, match="3-D"):
        surfel_hd95(np.ones((3, 3), bool), np.ones((3, 3), bool))
    with pytest.raises(BratsInputError, match="non-empty"):
        surfel_distances(one, z)
    with pytest.raises(BratsInputError, match="percent"):
        surfel_hd95(one, one, percent=120)


def _blobs(seed: int, shape=(30, 34, 26), frac: float = 0.1) -> np.ndarray:
    noise = ndi.gaussian_filter(np.random.default_rng(seed).random(shape), 2.0)
    return noise > np.quantile(noise, 1 - frac)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("seed", range(4))
def test_surfel_hd95_equals_deepmind(seed: int) -> None:
    """Random blobs (several components, touching the border), random anisotropic spacing."""
    sd = deepmind()
    ref = _blobs(seed)
    pred = _blobs(seed + 100) if seed % 2 else np.roll(ref, 2, axis=seed % 3)
    sp = tuple(np.random.default_rng(seed).uniform(0.5, 3.0, 3))
    expected = sd.compute_robust_hausdorff(sd.compute_surface_distances(ref, pred, sp), 95)
    assert surfel_hd95(pred, ref, sp) == pytest.approx(expected, abs=1e-3)
    assert surfel_hd95(pred, ref, sp) == pytest.approx(expected, abs=1e-9)


# ------------------------------------------------------------------------------------------
# BraTS 2023 lesion-wise: mm³ threshold
# ------------------------------------------------------------------------------------------

def test_lesion_threshold_is_in_mm3() -> None:
    """Reference: a 5³ cube (kept at any spacing here) and a far 3³ = 27-voxel cube that the
    prediction misses. At 1 mm it is 27 mm³ ≤ 50: ignored → Dice 1, HD95 0. With 2 mm along x
    it is 54 mm³ > 50: a missed lesion → Dice (1 + 0)/2, HD95 (0 + 374)/2. A 4×4×4 = 64-voxel
    lesion is kept at 1 mm but ignored at (0.5, 1, 1) mm (32 mm³)."""
    shape = (40, 12, 12)
    big = cube(shape, (3, 3, 3), (5, 5, 5))
    small = cube(shape, (30, 3, 3), (3, 3, 3))
    res = lesionwise_metrics(big, big | small)
    assert (res["dice"], res["hd95"], res["n_ignored"], res["n_fn"]) == (1.0, 0.0, 1, 0)
    res = lesionwise_metrics(big, big | small, (2.0, 1.0, 1.0))
    assert (res["dice"], res["hd95"], res["n_ignored"], res["n_fn"]) == (0.5, 187.0, 0, 1)
    mid = cube(shape, (30, 3, 3), (4, 4, 4))
    assert lesionwise_metrics(big, big | mid)["n_fn"] == 1
    res = lesionwise_metrics(big, big | mid, (0.5, 1.0, 1.0))
    assert (res["dice"], res["hd95"], res["n_ignored"]) == (1.0, 0.0, 1)
    rows = case_metrics(np.where(big, 4, 0), np.where(big | small, 4, 0), (2.0, 1.0, 1.0),
                        convention="brats2023-lesionwise")
    assert [(r["dice"], r["hd95"]) for r in rows] == [(0.5, 187.0)] * 3


def test_lesionwise_split_prediction_uses_surfels() -> None:
    """Reference: 5³ cube (x 5..9); prediction: the cube without its middle slab x = 7.

    Both pieces overlap the dilated lesion: one match, Dice 2·100/(100 + 125) = 8/9. HD95:
    lesion → pred all 0 (every lesion surfel is a prediction surfel). Pred → lesion: the inner
    corners of the two cut faces (x = 7 and 8) lie 1 or 2 mm inside; the 2 × 4 central ones
    (8 mm²) at 2 mm are 5.3 % of the 150.38 mm² surface → 2 mm."""
    shape = (16, 12, 12)
    ref = cube(shape, (5, 3, 3), (5, 5, 5))
    pred = ref.copy()
    pred[7] = False
    d_pr, area_p, _, _ = surfel_distances(pred, ref)
    assert area_p[d_pr == 2.0].sum() == pytest.approx(8.0, abs=1e-12)
    assert area_p.sum() == pytest.approx(150.3757898605692, abs=1e-9)
    res = lesionwise_metrics(pred, ref)
    assert res["dice"] == pytest.approx(8 / 9) and res["hd95"] == 2.0
    assert (res["n_tp"], res["n_fp"]) == (1, 0)


# ------------------------------------------------------------------------------------------
# brats2024: one-to-one matching
# ------------------------------------------------------------------------------------------

def test_brats2024_split_lesion_one_to_one() -> None:
    """Same split prediction. Instances: the reference cube (125) and two 2×5×5 pieces (50).
    Each pair has Dice 2·50/175 = 4/7; one-to-one matching keeps one, the other piece is a
    false positive. Pair HD95 (medpy pooled, voxel borders): the piece's 50 border voxels are
    41 × 0 and 9 × 1 (its cut face centre); the cube's 98 are 41 × 0, 16 × 1, 16 × 2, 25 × 3
    (its far face). Pooled index 0.95 · 147 = 139.65 lies among the 3s (123–147) → 3.
    matched: Dice 4/7, HD95 3. brats2023 aggregate: (4/7 + 0)/2 = 2/7, (3 + 374)/2 = 188.5."""
    shape = (16, 12, 12)
    ref = cube(shape, (5, 3, 3), (5, 5, 5))
    pred = ref.copy()
    pred[7] = False
    res = instancewise_metrics(pred, ref)
    assert res["dice"] == pytest.approx(4 / 7, abs=1e-12) and res["hd95"] == 3.0
    assert (res["n_tp"], res["n_fn"], res["n_fp"]) == (1, 0, 1)
    res = instancewise_metrics(pred, ref, aggregate="brats2023")
    assert res["dice"] == pytest.approx(2 / 7, abs=1e-12) and res["hd95"] == 188.5
    assert hd95(pred, ref, convention="brats2024") == 3.0


def test_brats2024_one_to_one_matching() -> None:
    """Reference: 4³ cubes R1 (x 2..5) and R2 (x 8..11), two instances.

    Prediction P1 = R1 and P2 = the x 8..9 half of R2 (32 voxels): P1–R1 Dice 1, P2–R2 Dice
    2·32/96 = 2/3; both matched → mean Dice (1 + 2/3)/2 = 5/6. A single predicted bar over
    x 2..11 (160 voxels) is one instance and is matched to one reference only (Dice
    2·64/224 = 4/7 with either): n_tp 1, n_fn 1, where the 2023 rule gives it to both.
    """
    shape = (14, 8, 8)
    r1, r2 = cube(shape, (2, 2, 2), (4, 4, 4)), cube(shape, (8, 2, 2), (4, 4, 4))
    p2 = cube(shape, (8, 2, 2), (2, 4, 4))
    res = instancewise_metrics(r1 | p2, r1 | r2)
    assert res["lesion_dice"] == pytest.approx([1.0, 2 / 3], abs=1e-12)
    assert res["dice"] == pytest.approx(5 / 6, abs=1e-12)
    assert (res["n_tp"], res["n_fn"], res["n_fp"]) == (2, 0, 0)
    bridge = cube(shape, (2, 2, 2), (10, 4, 4))
    res = instancewise_metrics(bridge, r1 | r2)
    assert res["lesion_dice"] == pytest.approx([4 / 7], abs=1e-12)
    assert (res["n_tp"], res["n_fn"], res["n_fp"]) == (1, 1, 0)
    # the 2023 definition instead gives the component to both lesions (no one-to-one rule)
    lw = lesionwise_metrics(bridge, r1 | r2, dilation_iterations=0, size_threshold=0)
    assert (lw["n_tp"], lw["n_fn"], lw["n_fp"]) == (2, 0, 0)


def test_brats2024_empty_cases() -> None:
    z = np.zeros((8, 8, 8), bool)
    a = cube(z.shape, (2, 2, 2), (3, 3, 3))
    far = cube(z.shape, (6, 6, 6), (2, 2, 2))
    assert (instancewise_metrics(z, z)["dice"], instancewise_metrics(z, z)["hd95"]) == (1.0, 0.0)
    for p, r in ((z, a), (a, z), (far, a)):                     # nothing matches
        res = instancewise_metrics(p, r)
        assert (res["dice"], res["hd95"]) == (0.0, BRATS2024_NO_MATCH_HD95)
        res = instancewise_metrics(p, r, aggregate="brats2023")
        assert (res["dice"], res["hd95"]) == (0.0, LESIONWISE_MISS_HD95)
    rows = case_metrics(np.where(a, 4, 0), np.zeros(z.shape, np.uint8), convention="brats2024")
    assert [(r["dice"], r["hd95"], r["n_fp"]) for r in rows] == [(0.0, math.inf, 1)] * 3
    with pytest.raises(BratsInputError, match="unknown aggregate"):
        instancewise_metrics(a, a, aggregate="mean")
    with pytest.raises(BratsInputError, match="do not apply"):
        hd95(a, a, convention="brats2024", size_threshold=5)
