"""Augmentation transforms, the Isensee schedule and intensity handling (brats.training.augment)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from brats.errors import BratsInputError
from brats.training.augment import (
    ISENSEE2017_SCHEDULE,
    AugmentationPhase,
    Flip,
    FlipAugmentation,
    IsenseeAugmentation,
    NoAugmentation,
    PatchSample,
    RandomFlip,
    RandomSpatial,
    Spatial,
    adjust_contrast,
    adjust_gamma,
    brain_masks,
    build_augmentation,
    crop_sample,
    elastic_displacement,
    flip,
    isensee_intensity_preprocess,
    phase_for_epoch,
    rotation_scale_matrix,
    stretch_to_unit,
)
from brats.training.sampling import PatchLocation

SHAPE = (40, 48, 40)
LABEL_SET = {0, 1, 2, 4}


def make_case(seed: int = 0, smooth: bool = False):
    """(4, 40, 48, 40) float32 image (ellipsoid brain, 0 outside; smooth or noisy inside) and
    (40, 48, 40) uint8 labels with blobs of 1, 2, 4."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
    brain = (grid ** 2).sum(0) < 0.8
    image = np.zeros((4, *SHAPE), dtype=np.float32)
    for c in range(4):
        if smooth:
            values = np.sin(2 * grid[0] + c) * np.cos(1.5 * grid[1]) + grid[2] * (c - 1.5)
            image[c] = values.astype(np.float32)
        else:
            image[c][brain] = rng.normal(0, 1.5, brain.sum()).astype(np.float32)
    radius = np.sqrt(((grid - np.array([0.2, 0.1, 0.0])[:, None, None, None]) ** 2).sum(0))
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[(radius < 0.5) & brain] = 2
    labels[radius < 0.3] = 4
    labels[radius < 0.15] = 1
    return image, labels


def location(start=(8, 10, 6), size=(24, 24, 24), region=((0, 0, 0), SHAPE)) -> PatchLocation:
    return PatchLocation(tuple(start), tuple(size), tuple(region[0]), tuple(region[1]))


# ------------------------------------------------------------------------------------ flips

ALL_AXES = [axes for n in range(4) for axes in itertools.combinations((0, 1, 2), n)]


@pytest.mark.parametrize("axes", ALL_AXES)
def test_flip_equals_numpy(axes):
    image, labels = make_case()
    sample = PatchSample(image, labels, image != 0)
    out = Flip(axes)(sample)
    ref_image = np.flip(image, [a + 1 for a in axes]) if axes else image
    ref_labels = np.flip(labels, axes) if axes else labels
    np.testing.assert_array_equal(out.image, ref_image)
    np.testing.assert_array_equal(out.labels, ref_labels)
    np.testing.assert_array_equal(out.masks, ref_image != 0)
    np.testing.assert_array_equal(flip(labels, axes), ref_labels)


def test_random_flip_p1_and_p0():
    sample = PatchSample(*make_case())
    rng = np.random.default_rng(0)
    assert RandomFlip(p=1.0).draw(rng).axes == (0, 1, 2)
    assert RandomFlip(p=0.0).draw(rng).axes == ()
    assert RandomFlip(axes=(0,), p=1.0).draw(rng).axes == (0,)
    out = RandomFlip(axes=(2,), p=1.0)(sample, rng)
    np.testing.assert_array_equal(out.labels, sample.labels[:, :, ::-1])


def test_random_flip_frequency():
    """p = 0.5 per axis, independently (batchgenerators test_axis_mirroring style)."""
    rng = np.random.default_rng(1)
    transform = RandomFlip(p=0.5)
    draws = np.array([[a in transform.draw(rng).axes for a in (0, 1, 2)] for _ in range(4000)])
    np.testing.assert_allclose(draws.mean(0), 0.5, atol=0.03)
    # independence: all 8 combinations equally likely
    combos = np.bincount(draws @ np.array([1, 2, 4]), minlength=8) / len(draws)
    np.testing.assert_allclose(combos, 1 / 8, atol=0.025)


# ------------------------------------------------------------------------------------ spatial


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("start", [(8, 10, 6), (-5, 30, 20)])
def test_identity_spatial_is_exact_crop(order, start):
    image, labels = make_case()
    loc = location(start=start, region=((-8, -8, -8), (48, 56, 48)))
    out = Spatial(order=order)(image, labels, loc, with_masks=True)
    ref = crop_sample(image, labels, loc, with_masks=False)
    np.testing.assert_array_equal(out.image, ref.image)
    np.testing.assert_array_equal(out.labels, ref.labels)
    assert out.masks.shape == (4, 24, 24, 24) and out.masks.dtype == bool


def test_identity_spatial_order3_on_smooth_data():
    image, labels = make_case(smooth=True)
    loc = location()
    out = Spatial(order=3)(image, labels, loc)
    ref = crop_sample(image, labels, loc, with_masks=False)
    np.testing.assert_allclose(out.image, ref.image, atol=1e-4)
    np.testing.assert_array_equal(out.labels, ref.labels)


def test_zero_elastic_field_changes_nothing():
    image, labels = make_case()
    loc = location()
    field = elastic_displacement(np.zeros((3, 24, 24, 24), np.float32), 500.0, 10.0)
    assert not field.any()
    out = Spatial(displacement=field, order=1)(image, labels, loc)
    np.testing.assert_array_equal(out.image, crop_sample(image, labels, loc, False).image)


def test_elastic_displacement_is_batchgenerators_field():
    noise = np.random.default_rng(2).uniform(-1, 1, (3, 16, 16, 16)).astype(np.float32)
    field = elastic_displacement(noise, 300.0, 4.0)
    for d in range(3):
        np.testing.assert_allclose(field[d], gaussian_filter(noise[d], 4.0, mode="constant") * 300.0,
                                   rtol=1e-5, atol=1e-6)


def test_rotation_about_last_axis_is_axial_plane():
    """θZ = π/2 rotates each (X, Y) slice by 90°, leaves Z alone (the reference's axis 0)."""
    image, labels = make_case()
    loc = location(start=(8, 12, 8), size=(24, 24, 24))
    out = Spatial(angles=(0.0, 0.0, np.pi / 2), order=0)(image, labels, loc)
    ref = crop_sample(image, labels, loc, with_masks=False)
    np.testing.assert_array_equal(out.labels, np.rot90(ref.labels, k=-1, axes=(0, 1)))
    np.testing.assert_array_equal(out.image, np.rot90(ref.image, k=-1, axes=(1, 2)))
    np.testing.assert_allclose(rotation_scale_matrix((0, 0, np.pi / 2), 1.0)[2], [0, 0, 1], atol=1e-12)


def test_scale_matrix():
    np.testing.assert_allclose(rotation_scale_matrix((0, 0, 0), 1.25), 1.25 * np.eye(3))


@pytest.mark.parametrize("order", [0, 1, 3])
def test_labels_keep_their_values_under_random_spatial(order):
    image, labels = make_case()
    transform = RandomSpatial(alpha=(0, 400), sigma=(4, 5), scale=(0.75, 1.25), order=order)
    rng = np.random.default_rng(3)
    for _ in range(3):
        out = transform(image, labels, location(), rng, with_masks=True)
        assert set(np.unique(out.labels)) <= LABEL_SET
        assert out.labels.dtype == np.uint8 and out.image.dtype == np.float32
        assert out.masks.dtype == bool


def test_outside_region_labels_zero_image_nearest():
    """A patch scaled ×3 reaches far outside a tight region: labels 0 there, image = border value."""
    image = np.ones((1, 20, 20, 20), np.float32)
    labels = np.full((20, 20, 20), 2, np.uint8)
    loc = location(start=(4, 4, 4), size=(12, 12, 12), region=((2, 2, 2), (18, 18, 18)))
    out = Spatial(scale=3.0, order=1)(image, labels, loc, with_masks=True)
    assert out.labels[0, 0, 0] == 0 and out.labels[6, 6, 6] == 2
    assert not out.masks[0, 0, 0, 0] and out.masks[0, 6, 6, 6]
    np.testing.assert_array_equal(out.image, 1.0)


def test_random_spatial_deterministic_per_seed():
    image, labels = make_case()
    transform = RandomSpatial(alpha=(0, 300), sigma=(4, 5), order=1)
    a = transform(image, labels, location(), np.random.default_rng(5))
    b = transform(image, labels, location(), np.random.default_rng(5))
    c = transform(image, labels, location(), np.random.default_rng(6))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)


def test_scale_draw_is_two_sided():
    transform = RandomSpatial(alpha=(0, 0), scale=(0.75, 1.25))
    rng = np.random.default_rng(7)
    scales = np.array([transform.draw(rng, (4, 4, 4)).scale for _ in range(2000)])
    assert scales.min() >= 0.75 and scales.max() <= 1.25
    assert abs((scales < 1).mean() - 0.5) < 0.04     # half below 1 although 1 is not the middle


# ------------------------------------------------------------------------------------ intensity


def test_brain_mask_min_max():
    image, _ = make_case()
    image[0, 20, 24, 20] = 0.0                     # a hole inside the brain of channel 0
    image[1] *= 4                                  # values beyond ±5 are clipped
    out = isensee_intensity_preprocess(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    brain = image.any(0)
    assert out.min() >= 0 and out.max() <= 1
    assert np.all(out[:, ~brain] == 0)
    for c in range(4):
        inside = out[c][brain]
        assert inside.min() == 0 and inside.max() == 1
    assert out[0, 20, 24, 20] > 0                  # the hole is filled, so it is stretched too
    clipped = np.clip(image[1][brain], -5, 5)
    np.testing.assert_allclose(out[1][brain], (clipped + 5) / 10, atol=1e-6)


def test_stretch_to_unit_empty_and_constant_masks():
    image = np.ones((2, 4, 4, 4), np.float32)
    masks = np.zeros((2, 4, 4, 4), bool)
    masks[1, 1:3, 1:3, 1:3] = True
    out = stretch_to_unit(image, masks)
    assert not out.any()


def test_brain_masks_fill_holes():
    image = np.zeros((1, 9, 9, 9), np.float32)
    image[0, 2:7, 2:7, 2:7] = 1.0
    image[0, 4, 4, 4] = 0.0
    masks = brain_masks(image)
    assert masks[0, 4, 4, 4] and masks[0].sum() == 125


@pytest.mark.parametrize("factor", [0.5, 0.75, 1.0, 1.5, 3.0])
def test_contrast_keeps_range(factor):
    image = np.random.default_rng(8).uniform(0, 1, (4, 10, 10, 10)).astype(np.float32)
    out = adjust_contrast(image, [factor] * 4)
    for c in range(4):
        assert out[c].min() >= image[c].min() and out[c].max() <= image[c].max()
    if factor == 1.0:
        np.testing.assert_allclose(out, image, atol=1e-6)
    if factor == 0.5:     # no clipping needed: mean kept, spread halved
        np.testing.assert_allclose(out.mean((1, 2, 3)), image.mean((1, 2, 3)), atol=1e-5)
        np.testing.assert_allclose(out.std((1, 2, 3)), image.std((1, 2, 3)) / 2, rtol=1e-4)


@pytest.mark.parametrize("gamma", [0.6, 0.8, 1.0, 1.5, 2.0])
def test_gamma_keeps_range(gamma):
    image = np.random.default_rng(9).uniform(-0.3, 1.2, (4, 10, 10, 10)).astype(np.float32)
    out = adjust_gamma(image, gamma)
    assert out.min() >= image.min() and out.max() <= image.max()
    assert out.min() == image.min()
    np.testing.assert_allclose(out.max(), image.max(), atol=1e-5)
    if gamma == 1.0:
        np.testing.assert_allclose(out, image, atol=1e-5)
    else:   # one gamma for all channels: the order of values across channels is kept
        order = np.argsort(image.ravel())
        assert np.all(np.diff(out.ravel()[order]) >= -1e-6)


def test_isensee_augmentation_output_in_unit_range_without_brightness():
    image, labels = make_case()
    aug = build_augmentation("isensee2017", interpolation_order=1, p_brightness=0.0)
    loc = location(region=((-4, -4, -4), (44, 52, 44)))
    for epoch in (0, 150, 250):
        out = aug(image, labels, loc, np.random.default_rng(epoch), epoch, stretch=True)
        assert out.image.min() >= 0 and out.image.max() <= 1
        assert np.all(out.image[~out.masks] == 0)
        assert set(np.unique(out.labels)) <= LABEL_SET


def test_isensee_brightness_shifts_every_voxel_of_a_channel():
    image, labels = make_case()
    loc = location()
    base = build_augmentation("isensee2017", interpolation_order=1, p_brightness=0.0)
    full = build_augmentation("isensee2017", interpolation_order=1)
    a = base(image, labels, loc, np.random.default_rng(0), 0, stretch=True)
    b = full(image, labels, loc, np.random.default_rng(0), 0, stretch=True)
    shift = (b.image - a.image).reshape(4, -1)
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1], shift.shape), atol=1e-6)
    assert np.abs(shift[:, 0]).max() > 0


# ------------------------------------------------------------------------------------ schedule


@pytest.mark.parametrize("epoch, start", [(0, 0), (99, 0), (100, 100), (174, 100), (175, 175),
                                          (299, 175)])
def test_schedule_phase(epoch, start):
    assert phase_for_epoch(ISENSEE2017_SCHEDULE, epoch).start_epoch == start
    assert IsenseeAugmentation().phase(epoch).start_epoch == start


def test_schedule_values():
    p0, p1, p2 = ISENSEE2017_SCHEDULE
    assert [p.elastic_alpha for p in (p0, p1, p2)] == [(0, 1300), (0, 1000), (0, 750)]
    assert all(p.elastic_sigma == (10, 13) for p in (p0, p1, p2))
    # the axial-plane rotation (about our Z, the reference's axis 0) is a full turn throughout
    assert all(p.rotation[2] == (0, 2 * np.pi) for p in (p0, p1, p2))
    assert p1.rotation[:2] == ((-np.pi / 8, np.pi / 8),) * 2
    assert max(abs(v) for r in p2.rotation[:2] for v in r) <= 1e-5
    assert [p.scale for p in (p0, p1, p2)] == [(0.75, 1.25), (0.85, 1.15), (0.85, 1.15)]
    assert [p.contrast for p in (p0, p1, p2)] == [(0.75, 1.5), (0.85, 1.25), (0.9, 1.1)]
    assert [p.gamma for p in (p0, p1, p2)] == [(0.8, 1.5), (0.8, 1.5), (0.85, 1.3)]


def test_phases_override_from_config_mappings():
    aug = build_augmentation("isensee2017", phases=[
        {"start_epoch": 0, "elastic_alpha": [0, 10], "rotation": [[0, 0], [0, 0], [0, 1]],
         "scale": [0.9, 1.1], "contrast": [0.9, 1.1], "gamma": [0.9, 1.1]},
        {"start_epoch": 5, "elastic_alpha": [0, 0], "rotation": [[0, 0], [0, 0], [0, 0]],
         "scale": [1, 1], "contrast": [1, 1], "gamma": [1, 1]}])
    assert isinstance(aug.phases[1], AugmentationPhase) and aug.phase(7).start_epoch == 5


# ------------------------------------------------------------------------------------ registry


def test_build_augmentation_names():
    assert isinstance(build_augmentation("none"), NoAugmentation)
    flips = build_augmentation("flips", axes=[0], p=0.5)
    assert isinstance(flips, FlipAugmentation) and flips.axes == (0,)
    aug = build_augmentation("isensee2017", interpolation_order=1, flip_axes=[0, 1])
    assert isinstance(aug, IsenseeAugmentation) and aug.describe()["flip_axes"] == (0, 1)


@pytest.mark.parametrize("name, kwargs, match", [
    ("elastic", {}, r"valid names: \['flips', 'isensee2017', 'none'\]"),
    ("isensee2017", {"order": 1}, "valid keywords"),
    ("none", {"axes": (0,)}, "valid keywords"),
    ("flips", {"prob": 0.5}, "valid keywords: \\['axes', 'p'\\]"),
    ("flips", {"axes": (3,)}, "axes"),
    ("flips", {"p": 1.5}, "probability"),
    ("isensee2017", {"interpolation_order": 7}, "order"),
    ("isensee2017", {"p_gamma": -0.1}, "p_gamma"),
    ("isensee2017", {"phases": []}, "phases"),
    ("isensee2017", {"phases": [{"start_epoch": 0, "alpha": (0, 1)}]}, "unknown key"),
    ("isensee2017", {"phases": [{**vars(ISENSEE2017_SCHEDULE[0]), "start_epoch": 3}]}, "begin at 0"),
    ("isensee2017", {"phases": [{**vars(ISENSEE2017_SCHEDULE[0]), "scale": (1.2, 0.8)}]}, "scale"),
])
def test_build_augmentation_errors(name, kwargs, match):
    with pytest.raises(BratsInputError, match=match):
        build_augmentation(name, **kwargs)
