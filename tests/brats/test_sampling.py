"""Patch placement, block reads and the PatchPipeline (brats.training.sampling / pipeline)."""

from __future__ import annotations

import numpy as np
import pytest

from brats.errors import BratsInputError
from brats.training.pipeline import PatchPipeline
from brats.training.sampling import PatchLocation, read_block, sample_location

SHAPE = (40, 48, 40)


def make_case(seed: int = 0, shape: tuple[int, int, int] = SHAPE):
    """(4, X, Y, Z) float32 'z-scored' image (ellipsoid brain, exactly 0 outside), (X, Y, Z) uint8
    canonical labels with blobs of 1, 2, 4, and locations as in CaseRecord.locations."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    brain = (grid ** 2).sum(0) < 0.8
    image = np.zeros((4, *shape), dtype=np.float32)
    for c in range(4):
        image[c][brain] = rng.normal(0, 1.5, brain.sum()).astype(np.float32)
    radius = np.sqrt(((grid - np.array([0.2, 0.1, 0.0])[:, None, None, None]) ** 2).sum(0))
    labels = np.zeros(shape, dtype=np.uint8)
    labels[(radius < 0.5) & brain] = 2
    labels[radius < 0.3] = 4
    labels[radius < 0.15] = 1
    locations = {str(v): np.argwhere(labels == v)[:1000].tolist() for v in (1, 2, 4)}
    return image, labels, locations


def padded_crop(array: np.ndarray, start, stop) -> np.ndarray:
    """Reference for read_block: zero-pad generously with numpy, then slice."""
    pad = 64
    widths = [(0, 0)] * (array.ndim - 3) + [(pad, pad)] * 3
    big = np.pad(array, widths)
    index = tuple(slice(a + pad, b + pad) for a, b in zip(start, stop))
    return big[(Ellipsis, *index)]


@pytest.mark.parametrize("start, stop", [
    ((0, 0, 0), (40, 48, 40)),          # the whole case
    ((5, 7, 9), (29, 31, 33)),          # inside
    ((-6, 40, -3), (18, 64, 21)),       # partly outside on several sides
    ((-10, -10, -10), (50, 58, 50)),    # larger than the case
    ((45, 0, 0), (50, 5, 5)),           # entirely outside
])
def test_read_block_equals_zero_padded_slicing(start, stop):
    image, labels, _ = make_case()
    np.testing.assert_array_equal(read_block(image, start, stop), padded_crop(image, start, stop))
    np.testing.assert_array_equal(read_block(labels, start, stop), padded_crop(labels, start, stop))


def test_read_block_from_memmap(tmp_path):
    image, _, _ = make_case()
    np.save(tmp_path / "image.npy", image)
    mm = np.load(tmp_path / "image.npy", mmap_mode="r")
    block = read_block(mm, (-2, 3, 4), (20, 30, 44))
    assert not isinstance(block, np.memmap)
    np.testing.assert_array_equal(block, padded_crop(image, (-2, 3, 4), (20, 30, 44)))


def test_random_placement_inside_crop_region():
    rng = np.random.default_rng(0)
    shape, patch, crop = (50, 60, 45), (16, 16, 16), (30, 36, 30)
    starts = []
    for _ in range(300):
        loc = sample_location(shape, patch, rng, crop_size=crop)
        assert not loc.foreground
        for a, b, r0, r1, n, c in zip(loc.start, loc.stop, loc.region_start, loc.region_stop,
                                      shape, crop):
            assert r1 - r0 == c and 0 <= r0 and r1 <= n      # region inside the case
            assert r0 <= a and b <= r1                       # patch inside the region
        starts.append(loc.start)
    starts = np.array(starts)
    # the patch reaches both ends of the case along each axis
    assert (starts.min(0) <= 2).all() and (starts.max(0) >= np.array(shape) - 16 - 2).all()


def test_region_centred_and_zero_padded_when_case_smaller_than_crop():
    rng = np.random.default_rng(1)
    loc = sample_location((20, 60, 25), (16, 16, 16), rng, crop_size=(32, 40, 32))
    assert loc.region_start[0] == -6 and loc.region_stop[0] == 26      # (32 − 20) / 2 each side
    assert loc.region_start[2] == -3 and loc.region_stop[2] == 29
    assert 0 <= loc.region_start[1] <= 20


def test_centre_matches_crop():
    loc = PatchLocation((2, 3, 4), (4, 5, 6), (0, 0, 0), (10, 10, 10))
    np.testing.assert_array_equal(loc.centre, [3.5, 5.0, 6.5])
    assert loc.stop == (6, 8, 10)


def test_foreground_fraction_one_always_centres_on_foreground():
    image, labels, locations = make_case()
    pipeline = PatchPipeline((24, 24, 24), crop_size=(32, 40, 32), foreground_fraction=1.0,
                             augmentation="none", intensity="none")
    seen = set()
    for seed in range(60):
        loc = sample_location(SHAPE, (24, 24, 24), np.random.default_rng(seed), crop_size=(32, 40, 32),
                              foreground_fraction=1.0, locations=locations)
        assert loc.foreground
        assert loc.region_start[0] <= loc.start[0] and loc.stop[2] <= loc.region_stop[2]
        _, patch_labels = pipeline(image, labels, locations, np.random.default_rng(seed), 0)
        centre_label = int(patch_labels[12, 12, 12])
        assert centre_label in (1, 2, 4)
        seen.add(centre_label)
    assert seen == {1, 2, 4}     # each present label gets chosen


def test_foreground_only_present_labels_and_fallback():
    rng = np.random.default_rng(2)
    only_ed = {"1": [], "2": [[10, 11, 12]], "4": []}
    for _ in range(20):
        loc = sample_location(SHAPE, (8, 8, 8), rng, foreground_fraction=1.0, locations=only_ed)
        assert loc.start == (6, 7, 8)
    for empty in (None, {}, {"1": [], "2": []}):
        loc = sample_location(SHAPE, (8, 8, 8), rng, foreground_fraction=1.0, locations=empty)
        assert not loc.foreground


def test_foreground_fraction_frequency():
    _, _, locations = make_case()
    rng = np.random.default_rng(3)
    hits = sum(sample_location(SHAPE, (8, 8, 8), rng, foreground_fraction=0.3,
                               locations=locations).foreground for _ in range(2000))
    assert abs(hits / 2000 - 0.3) < 0.04


@pytest.mark.parametrize("crop", [None, (32, 40, 32)])
@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_no_augmentation_is_exact_crop(crop, fraction):
    image, labels, locations = make_case()
    pipeline = PatchPipeline((24, 24, 24), crop_size=crop, foreground_fraction=fraction,
                             augmentation="none", intensity="none")
    for seed in range(10):
        x, y = pipeline(image, labels, locations, np.random.default_rng(seed), 0)
        loc = sample_location(SHAPE, (24, 24, 24), np.random.default_rng(seed), crop_size=crop,
                              foreground_fraction=fraction, locations=locations)
        assert x.dtype == np.float32 and y.dtype == np.uint8
        np.testing.assert_array_equal(x, padded_crop(image, loc.start, loc.stop))
        np.testing.assert_array_equal(y, padded_crop(labels, loc.start, loc.stop))


def test_zero_padding_when_case_smaller_than_patch():
    image, labels, locations = make_case(shape=(20, 18, 22))
    pipeline = PatchPipeline((24, 24, 24), augmentation="none", intensity="none")
    x, y = pipeline(image, labels, locations, np.random.default_rng(0), 0)
    # the case is centred in the patch: offsets (24 − n) // 2
    expected = np.zeros((4, 24, 24, 24), np.float32)
    expected[:, 2:22, 3:21, 1:23] = image
    np.testing.assert_array_equal(x, expected)
    assert y.shape == (24, 24, 24) and y[2:22, 3:21, 1:23].sum() == labels.sum()
    # the same with the Isensee region and augmentation: shapes right, labels valid
    pipeline = PatchPipeline((24, 24, 24), crop_size=(32, 32, 32),
                             augmentation_kwargs={"interpolation_order": 1})
    x, y = pipeline(image, labels, locations, np.random.default_rng(0), 0)
    assert x.shape == (4, 24, 24, 24) and set(np.unique(y)) <= {0, 1, 2, 4}


@pytest.mark.parametrize("order", [1, 3])
def test_isensee_pipeline_deterministic_per_seed(order, tmp_path):
    image, labels, locations = make_case()
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "labels.npy", labels)
    mm_image = np.load(tmp_path / "image.npy", mmap_mode="r")
    mm_labels = np.load(tmp_path / "labels.npy", mmap_mode="r")
    pipeline = PatchPipeline((24, 24, 24), crop_size=(32, 40, 32), foreground_fraction=0.5,
                             augmentation_kwargs={"interpolation_order": order})
    for epoch in (0, 120, 200):
        a = pipeline(mm_image, mm_labels, locations, np.random.default_rng([7, epoch]), epoch)
        b = pipeline(image, labels, locations, np.random.default_rng([7, epoch]), epoch)
        c = pipeline(image, labels, locations, np.random.default_rng([8, epoch]), epoch)
        assert a[0].shape == (4, 24, 24, 24) and a[0].dtype == np.float32
        assert a[1].shape == (24, 24, 24) and a[1].dtype == np.uint8
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert not np.array_equal(a[0], c[0])
        assert set(np.unique(a[1])) <= {0, 1, 2, 4}


def test_intensity_none_keeps_zscores_and_flips_are_exact():
    image, labels, locations = make_case()
    pipeline = PatchPipeline((24, 24, 24), augmentation="flips", intensity="none")
    x, y = pipeline(image, labels, locations, np.random.default_rng(4), 0)
    loc = sample_location(SHAPE, (24, 24, 24), np.random.default_rng(4))
    crop, crop_labels = padded_crop(image, loc.start, loc.stop), padded_crop(labels, loc.start, loc.stop)
    matches = [axes for axes in [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
               if np.array_equal(x, np.flip(crop, [a + 1 for a in axes]) if axes else crop)]
    assert len(matches) == 1
    axes = matches[0]
    np.testing.assert_array_equal(y, np.flip(crop_labels, axes) if axes else crop_labels)


def test_intensity_isensee_without_augmentation():
    image, labels, locations = make_case()
    pipeline = PatchPipeline((24, 24, 24), augmentation="none")
    x, _ = pipeline(image, labels, locations, np.random.default_rng(5), 0)
    loc = sample_location(SHAPE, (24, 24, 24), np.random.default_rng(5))
    crop = padded_crop(image, loc.start, loc.stop)
    assert x.min() >= 0 and x.max() <= 1
    assert (x[crop == 0] == 0).sum() > 0 and np.all(x[:, crop.any(0) == 0] == 0)


def test_describe_and_repr():
    pipeline = PatchPipeline((24, 24, 24), crop_size=(32, 40, 32), foreground_fraction=0.25,
                             augmentation="isensee2017", augmentation_kwargs={"interpolation_order": 1})
    info = pipeline.describe()
    assert info["patch_size"] == [24, 24, 24] and info["crop_size"] == [32, 40, 32]
    assert info["augmentation"]["name"] == "isensee2017"
    assert info["augmentation"]["interpolation_order"] == 1
    assert [p["start_epoch"] for p in info["augmentation"]["phases"]] == [0, 100, 175]
    text = repr(pipeline)
    assert "isensee2017" in text and "interpolation_order=1" in text and "(32, 40, 32)" in text


@pytest.mark.parametrize("kwargs, match", [
    ({"patch_size": (24, 24)}, "patch_size"),
    ({"patch_size": (24, 24, 0)}, "patch_size"),
    ({"patch_size": (24, 24, 24), "crop_size": (16, 32, 32)}, "crop_size"),
    ({"patch_size": (24, 24, 24), "foreground_fraction": 1.5}, "foreground_fraction"),
    ({"patch_size": (24, 24, 24), "intensity": "zscore"}, "intensity"),
    ({"patch_size": (24, 24, 24), "augmentation": "heavy"}, "valid names"),
    ({"patch_size": (24, 24, 24), "augmentation_kwargs": {"order": 1}}, "valid keywords"),
])
def test_invalid_settings_raise(kwargs, match):
    with pytest.raises(BratsInputError, match=match):
        PatchPipeline(**kwargs)


def test_full_slice_placement_reaches_both_ends_and_pads() -> None:
    """Wang's 'full' slice axis: over many draws the patch centre (voxel p // 2) takes every
    value 0 … n along axis 2 (both ends, as random.randint), while axes 0 and 1 stay 'valid'."""
    rng = np.random.default_rng(0)
    patch = (16, 16, 19)
    centres, starts_in_plane = set(), []
    for _ in range(3000):
        loc = sample_location(SHAPE, patch, rng, full_axes=(2,))
        centres.add(loc.start[2] + patch[2] // 2)
        starts_in_plane.append(loc.start[:2])
        assert loc.region_start[2] == min(0, loc.start[2])
        assert loc.region_stop[2] == max(SHAPE[2], loc.stop[2])
    assert centres == set(range(SHAPE[2] + 1))
    starts = np.array(starts_in_plane)
    assert starts.min() == 0 and (starts + 16 <= np.array(SHAPE[:2])).all()


def test_valid_slice_placement_keeps_patches_inside() -> None:
    rng = np.random.default_rng(0)
    centres = {sample_location(SHAPE, (16, 16, 19), rng).start[2] + 9 for _ in range(2000)}
    assert min(centres) == 9 and max(centres) == SHAPE[2] - 10


def test_brain_background_centres_in_brain_outside_tumour_up_to_the_border() -> None:
    """DeepMedic background: the centre is a brain voxel with label 0, anywhere in the brain
    (also within a few voxels of the case border, where a 'box' patch never centres), and
    the patch is zero-padded beyond the case."""
    image, labels, _ = make_case()
    brain = (image != 0).any(0).astype(np.uint8)
    rng = np.random.default_rng(1)
    patch = (57, 57, 57)
    centres = []
    for _ in range(400):
        loc = sample_location(SHAPE, patch, rng, background="brain", brain=brain, labels=labels)
        centre = tuple(a + p // 2 for a, p in zip(loc.start, patch))
        assert brain[centre] and labels[centre] == 0 and not loc.foreground
        assert all(rs <= s and e <= re for rs, s, e, re in
                   zip(loc.region_start, loc.start, loc.stop, loc.region_stop))
        centres.append(centre)
    centres = np.array(centres)
    edge = np.minimum(centres, np.array(SHAPE) - 1 - centres).min(1)
    assert edge.min() <= 6                        # segments reach the brain's border
    box = sample_location(SHAPE, patch, np.random.default_rng(1))
    assert box.start == tuple(-((p - n) // 2) for n, p in zip(SHAPE, patch))  # 'box': centred


def test_brain_background_needs_a_mask_and_no_crop() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(BratsInputError, match="needs the case's brain mask"):
        sample_location(SHAPE, (9, 9, 9), rng, background="brain")
    with pytest.raises(BratsInputError, match="need crop_size null"):
        sample_location(SHAPE, (9, 9, 9), rng, background="brain", crop_size=(20, 20, 20),
                        brain=np.ones(SHAPE, np.uint8))
    with pytest.raises(BratsInputError, match="unknown data.background"):
        sample_location(SHAPE, (9, 9, 9), rng, background="mask")


def test_pipeline_brain_background_uses_the_masks() -> None:
    image, labels, locations = make_case()
    brain = (image != 0).any(0).astype(np.uint8)
    pipeline = PatchPipeline((25, 25, 25), foreground_fraction=0.0, augmentation="none",
                             intensity="none", background="brain")
    assert pipeline.needs_brain and not pipeline.needs_masks
    rng = np.random.default_rng(3)
    for _ in range(50):
        patch, patch_labels = pipeline(image, labels, locations, rng, 0, masks=brain)
        assert patch[:, 12, 12, 12].any() and patch_labels[12, 12, 12] == 0
