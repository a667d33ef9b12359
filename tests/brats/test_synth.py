"""Synthetic BraTS generator: determinism, tumour structure, contrasts, on-disk layouts."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from brats.data.geometry import brats_affine, voxel_spacing
from brats.data.labels import ED, ET, NCR, region_masks, to_canonical
from brats.errors import BratsInputError
from brats.synth import CONTRAST, SynthCase, generate_dataset, synth_case

SHAPE = (96, 96, 62)          # 2.5 mm voxels
TINY = (32, 32, 24)           # for the on-disk layout tests
T1, T1CE, T2, FLAIR = range(4)


@pytest.fixture(scope="module")
def hgg() -> SynthCase:
    return synth_case(7, SHAPE, lgg=False)


@pytest.fixture(scope="module")
def lggs() -> list[SynthCase]:
    return [synth_case(s, SHAPE, lgg=True) for s in (1, 3)]


def _diameter_mm(mask: np.ndarray, affine: np.ndarray) -> float:
    """Equivalent-sphere diameter of a mask, mm."""
    volume = mask.sum() * np.prod(voxel_spacing(affine))
    return float((6 * volume / np.pi) ** (1 / 3))


def _border(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


# --- determinism --------------------------------------------------------------------------------

def test_same_seed_same_bytes(hgg: SynthCase) -> None:
    again = synth_case(7, SHAPE, lgg=False)
    assert again.image.tobytes() == hgg.image.tobytes()
    assert again.labels.tobytes() == hgg.labels.tobytes()
    ss = np.random.SeedSequence([5, 0, 1])
    a, b = synth_case(ss, TINY), synth_case(ss, TINY)  # a SeedSequence object is not consumed
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)


def test_other_seed_differs(hgg: SynthCase) -> None:
    other = synth_case(8, SHAPE, lgg=False)
    assert not np.array_equal(other.image, hgg.image)
    assert not np.array_equal(other.labels, hgg.labels)


def test_drawn_grade_matches_forced_grade() -> None:
    drawn = synth_case(4, TINY)
    forced = synth_case(4, TINY, lgg=drawn.grade == "LGG")
    assert drawn.grade in ("HGG", "LGG")
    assert np.array_equal(drawn.image, forced.image)


def test_physical_size_independent_of_grid(hgg: SynthCase) -> None:
    coarse = synth_case(7, (64, 64, 42), lgg=False)
    for region in ("WT", "TC"):
        fine_d = _diameter_mm(region_masks(hgg.labels)[region], hgg.affine)
        coarse_d = _diameter_mm(region_masks(coarse.labels)[region], coarse.affine)
        assert abs(fine_d - coarse_d) < 0.1 * fine_d, (region, fine_d, coarse_d)


# --- geometry, dtypes, nesting ------------------------------------------------------------------

@pytest.mark.parametrize("which", ["hgg", "lgg"])
def test_arrays_and_nesting(which: str, hgg: SynthCase, lggs: list[SynthCase]) -> None:
    case = hgg if which == "hgg" else lggs[0]
    assert case.grade == which.upper()
    assert case.image.shape == (4, *SHAPE) and case.image.dtype == np.int16
    assert case.labels.shape == SHAPE and case.labels.dtype == np.uint8
    np.testing.assert_array_equal(case.affine, brats_affine(SHAPE))
    assert set(np.unique(case.labels).tolist()) <= {0, NCR, ED, ET}
    regions = region_masks(case.labels)
    assert not (regions["ET"] & ~regions["TC"]).any()
    assert not (regions["TC"] & ~regions["WT"]).any()
    brain = case.brain
    assert 0.8e6 < brain.sum() * np.prod(voxel_spacing(case.affine)) < 2.0e6  # mm³, adult brain
    assert not (regions["WT"] & ~brain).any(), "labels outside the brain"
    assert (case.image[:, ~brain] == 0).all(), "signal outside the brain"
    assert (case.image[:, brain] > 0).all()
    # Skull-stripped brain inside the field of view, not touching the in-plane borders.
    assert not brain[[0, -1]].any() and not brain[:, [0, -1]].any()


def test_hgg_has_necrotic_core_inside_enhancing_rim(hgg: SynthCase) -> None:
    labels = hgg.labels
    assert set(np.unique(labels).tolist()) == {0, NCR, ED, ET}
    regions = region_masks(labels)
    assert 15.0 <= _diameter_mm(regions["WT"], hgg.affine) <= 85.0
    et_fraction = regions["ET"].sum() / regions["TC"].sum()
    assert 0.15 < et_fraction < 0.95
    # The rim encloses the necrosis: almost no NCR voxel lies on the core's border, and the
    # border is mostly enhancing.
    border = _border(regions["TC"])
    assert (border & (labels == NCR)).sum() < 0.1 * (labels == NCR).sum()
    assert (labels[border] == ET).mean() > 0.8
    # Rim thickness ≈ ET volume / TC surface area, within 2–6 mm (plus voxel tolerance).
    spacing = voxel_spacing(hgg.affine)
    area = border.sum() * np.prod(spacing) / np.mean(spacing)
    thickness = regions["ET"].sum() * np.prod(spacing) / area
    assert 1.5 < thickness < 8.0


def test_lgg_has_no_necrosis_rim(lggs: list[SynthCase]) -> None:
    for case in lggs:
        labels = case.labels
        regions = region_masks(labels)
        assert {NCR, ED} <= set(np.unique(labels).tolist())
        assert 15.0 <= _diameter_mm(regions["WT"], case.affine) <= 85.0
        assert regions["ET"].sum() <= 0.1 * regions["TC"].sum()
        assert (labels[_border(regions["TC"])] == NCR).mean() > 0.8


def test_tumour_sizes_over_seeds() -> None:
    for seed in range(4):
        case = synth_case(100 + seed, (64, 64, 42))
        regions = region_masks(case.labels)
        assert 15.0 <= _diameter_mm(regions["WT"], case.affine) <= 85.0
        assert _diameter_mm(regions["TC"], case.affine) >= 8.0


# --- contrasts ----------------------------------------------------------------------------------

def _class_means(case: SynthCase, modality: int) -> dict[str, float]:
    img, labels, tissue = case.image[modality].astype(np.float64), case.labels, case.tissue
    # Normal tissue: away from the tumour by a few voxels.
    normal = ~ndimage.binary_dilation(labels > 0, iterations=2)
    masks = {"csf": (tissue == 1) & normal, "gm": (tissue == 2) & normal,
             "wm": (tissue == 3) & normal, "ed": labels == ED, "ncr": labels == NCR,
             "et": labels == ET}
    return {k: float(img[m].mean()) if m.any() else float("nan") for k, m in masks.items()}


def test_contrasts_follow_the_table(hgg: SynthCase, lggs: list[SynthCase]) -> None:
    t1, t1ce, t2, flair = (_class_means(hgg, m) for m in (T1, T1CE, T2, FLAIR))
    assert t1["wm"] > t1["gm"] > t1["csf"]
    assert t1["ncr"] < t1["wm"] and t1["ed"] < t1["wm"]
    assert t1ce["et"] > 1.15 * t1ce["wm"] and t1ce["et"] > 1.5 * t1ce["ncr"]
    assert t1ce["et"] / t1ce["wm"] > t1["et"] / t1["wm"] + 0.5      # enhancement
    assert t2["csf"] > 1.5 * t2["wm"] and t2["ed"] > 1.3 * t2["wm"]
    assert flair["csf"] < 0.7 * flair["wm"] and flair["ed"] > 1.3 * flair["wm"]
    for case in lggs:
        lg = _class_means(case, FLAIR)
        assert lg["ncr"] > 1.2 * lg["wm"]
        lt1 = _class_means(case, T1)
        assert lt1["ncr"] < lt1["wm"]


def test_contrast_table_is_documented() -> None:
    assert set(CONTRAST) == {"t1", "t1ce", "t2", "flair"}
    for classes in CONTRAST.values():
        assert {"csf", "gm", "wm", "edema", "ncr", "net", "et"} <= set(classes)
        assert classes["wm"] == 1.0


def test_intensity_overlap_and_noise(hgg: SynthCase) -> None:
    """Classes overlap (texture, bias, noise): the brightest GM beats the darkest WM on T1."""
    img, tissue = hgg.image[T1], hgg.tissue
    normal = hgg.labels == 0
    gm, wm = img[(tissue == 2) & normal], img[(tissue == 3) & normal]
    assert np.percentile(gm, 99) > np.percentile(wm, 1)
    assert len(np.unique(wm)) > 50


def test_bad_shape() -> None:
    with pytest.raises(BratsInputError, match="shape"):
        synth_case(0, (8, 96, 62))
    with pytest.raises(BratsInputError, match="shape"):
        synth_case(0, (96, 96))


# --- on-disk data sets --------------------------------------------------------------------------

def _load(path) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    img = nib.load(path)
    return np.asanyarray(img.dataobj), img.affine, img.get_data_dtype()


def test_2017_training_layout(tmp_path) -> None:
    root = tmp_path / "train"
    ids = generate_dataset(root, cases=3, seed=0, release="2017", shape=TINY, progress=False)
    assert ids == ["Brats17_SYN_001_1", "Brats17_SYN_002_1", "Brats17_SYN_003_1"]
    grades = {}
    for cid in ids:
        folders = [g for g in ("HGG", "LGG") if (root / g / cid).is_dir()]
        assert len(folders) == 1, cid
        grades[cid] = folders[0]
        for mod in ("t1", "t1ce", "t2", "flair"):
            data, affine, dtype = _load(root / folders[0] / cid / f"{cid}_{mod}.nii.gz")
            assert data.shape == TINY and dtype == np.int16 and data.max() > 0
            np.testing.assert_allclose(affine, brats_affine(TINY))
        seg, _, dtype = _load(root / folders[0] / cid / f"{cid}_seg.nii.gz")
        assert seg.shape == TINY and dtype == np.uint8
        assert set(np.unique(seg).tolist()) <= {0, 1, 2, 4} and (seg > 0).any()
    assert set(grades.values()) == {"HGG", "LGG"}
    # Case i is synth_case(SeedSequence([seed, i, with_seg])): independent of jobs and layout.
    expected = synth_case(np.random.SeedSequence([0, 1, 1]), TINY)
    assert grades[ids[1]] == expected.grade
    t2, _, _ = _load(root / expected.grade / ids[1] / f"{ids[1]}_t2.nii.gz")
    np.testing.assert_array_equal(t2, expected.image[2])


def test_2017_validation_layout_has_no_seg(tmp_path) -> None:
    root = tmp_path / "val"
    ids = generate_dataset(root, cases=1, seed=0, release="2017", shape=TINY, with_seg=False,
                           progress=False)
    assert ids == ["Brats17_SYNVAL_001_1"]
    names = sorted(p.name for p in (root / ids[0]).iterdir())
    assert names == sorted(f"{ids[0]}_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2"))
    assert not (root / "HGG").exists() and not (root / "LGG").exists()


def test_first_continues_a_split_with_new_cases(tmp_path) -> None:
    """``first=2`` writes exactly the third case of the same seed (id and data), so labelled
    held-out cases can follow the training cases without repeating one."""
    whole = generate_dataset(tmp_path / "whole", cases=3, seed=3, release="2023", shape=TINY,
                             progress=False)
    later = generate_dataset(tmp_path / "later", cases=1, seed=3, release="2023", shape=TINY,
                             progress=False, first=2)
    assert later == whole[2:] == ["BraTS-GLI-00003-000"]
    a, _, _ = _load(tmp_path / "whole" / later[0] / f"{later[0]}-seg.nii.gz")
    b, _, _ = _load(tmp_path / "later" / later[0] / f"{later[0]}-seg.nii.gz")
    np.testing.assert_array_equal(a, b)
    with pytest.raises(BratsInputError, match="first=-1"):
        generate_dataset(tmp_path / "bad", cases=1, first=-1, shape=TINY, progress=False)


def test_2023_layout_and_jobs_independence(tmp_path) -> None:
    one = generate_dataset(tmp_path / "one", cases=2, seed=3, release="2023", shape=TINY,
                           progress=False)
    two = generate_dataset(tmp_path / "two", cases=2, seed=3, release="2023", shape=TINY, jobs=2,
                           progress=False)
    assert one == two == ["BraTS-GLI-00001-000", "BraTS-GLI-00002-000"]
    for cid in one:
        for suffix in ("t1n", "t1c", "t2w", "t2f", "seg"):
            a, _, dtype = _load(tmp_path / "one" / cid / f"{cid}-{suffix}.nii.gz")
            b, _, _ = _load(tmp_path / "two" / cid / f"{cid}-{suffix}.nii.gz")
            np.testing.assert_array_equal(a, b)
            assert dtype == (np.uint8 if suffix == "seg" else np.int16)
        seg, _, _ = _load(tmp_path / "one" / cid / f"{cid}-seg.nii.gz")
        assert set(np.unique(seg).tolist()) <= {0, 1, 2, 3}
    expected = synth_case(np.random.SeedSequence([3, 0, 1]), TINY)
    seg, _, _ = _load(tmp_path / "one" / one[0] / f"{one[0]}-seg.nii.gz")
    np.testing.assert_array_equal(to_canonical(seg, "brats2023"), expected.labels)


def test_msd_layout(tmp_path) -> None:
    root = tmp_path / "msd"
    ids = generate_dataset(root, cases=2, seed=1, release="msd", shape=TINY, progress=False)
    assert ids == ["BRATS_001", "BRATS_002"]
    data, _, dtype = _load(root / "imagesTr" / "BRATS_001.nii.gz")
    assert data.shape == (*TINY, 4) and dtype == np.int16
    expected = synth_case(np.random.SeedSequence([1, 0, 1]), TINY)
    np.testing.assert_array_equal(data[..., 0], expected.image[FLAIR])  # MSD channel 0 is FLAIR
    seg, _, _ = _load(root / "labelsTr" / "BRATS_001.nii.gz")
    np.testing.assert_array_equal(to_canonical(seg, "msd"), expected.labels)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["numTest"] == 0
    test_ids = generate_dataset(tmp_path / "msd_ts", cases=1, release="msd", shape=TINY,
                                with_seg=False, progress=False)
    assert test_ids == ["BRATS_501"]
    assert (tmp_path / "msd_ts" / "imagesTs" / "BRATS_501.nii.gz").is_file()
    assert not (tmp_path / "msd_ts" / "labelsTr").exists()


def test_2021_validation_ids_are_offset(tmp_path) -> None:
    ids = generate_dataset(tmp_path / "v21", cases=1, release="2021", shape=TINY, with_seg=False,
                           progress=False)
    assert ids == ["BraTS2021_10001"]
    assert (tmp_path / "v21" / ids[0] / f"{ids[0]}_flair.nii.gz").is_file()


def test_refuses_bad_arguments(tmp_path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("user data")
    with pytest.raises(BratsInputError, match="not empty"):
        generate_dataset(busy, cases=1, shape=TINY, progress=False)
    assert [p.name for p in busy.iterdir()] == ["mine.txt"]
    with pytest.raises(BratsInputError, match="cases"):
        generate_dataset(tmp_path / "a", cases=0, shape=TINY, progress=False)
    with pytest.raises(BratsInputError, match="shape"):
        generate_dataset(tmp_path / "b", cases=1, shape=(15, 32, 32), progress=False)
    with pytest.raises(BratsInputError, match="release"):
        generate_dataset(tmp_path / "c", cases=1, release="2016", shape=TINY, progress=False)
    assert not any((tmp_path / n).exists() for n in "abc")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert generate_dataset(empty, cases=1, shape=TINY, progress=False) == ["Brats17_SYN_001_1"]
