"""The device augmentation backend (brats.training.batch_augment) against the scipy backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brats.preprocess.crop import brain_masks, pack_masks, unpack_masks
from brats.training.augment import (
    ISENSEE_CLIP,
    AugmentationPhase,
    Brightness,
    Contrast,
    Flip,
    FlipAugmentation,
    Gamma,
    IsenseeAugmentation,
    NoAugmentation,
    Spatial,
    StretchToUnit,
    adjust_contrast,
    adjust_gamma,
    crop_sample,
    patch_grid_field,
    stretch_to_unit,
)
from brats.training.batch_augment import (
    DeviceAugmenter,
    coarse_field,
    coarse_shape,
    coarse_spacing,
    collate,
    contrast,
    draw_block,
    gamma,
    stretch,
    upsample_field,
)
from brats.training.sampling import sample_location
from tests.brats.test_augment import make_case

CPU = torch.device("cpu")
PATCH = (24, 28, 20)
REGION = (34, 40, 32)


def _isensee(**kwargs) -> IsenseeAugmentation:
    """Isensee's first phase with σ as in the paper and moderate ranges for small test cases."""
    phase = AugmentationPhase(0, elastic_alpha=(100.0, 300.0), elastic_sigma=(10.0, 13.0),
                              rotation=((-0.4, 0.4),) * 3, scale=(0.85, 1.15),
                              contrast=(0.75, 1.5), gamma=(0.8, 1.5))
    return IsenseeAugmentation(phases=(phase,), interpolation_order=1, **kwargs)


def _positive_case(seed: int):
    """A case non-zero everywhere (brain masks are then the whole case, per block and per case)."""
    image, labels = make_case(seed, smooth=True)
    return (image + np.float32(5)), labels


def _scipy_replay(aug: IsenseeAugmentation, image, labels, location, seed: int, drawn: dict,
                  stretch_intensity: bool):
    """The scipy backend with the very parameters the device backend drew (same generator)."""
    rng = np.random.default_rng(seed)
    sample_location(image.shape[1:], PATCH, rng, crop_size=REGION)
    spatial = aug._steps[0][0]
    spacing = coarse_spacing(aug.phases[0].elastic_sigma[0])
    displacement, angles, scale = spatial.draw_parts(
        rng, PATCH, lambda r, a, s, size: coarse_field(r, a, s, size, spacing))
    full = None
    if displacement is not None:
        full = upsample_field(torch.from_numpy(displacement), spacing, PATCH).double().numpy()
    sample = Spatial(angles, scale, full, order=1)(image, labels, location,
                                                   with_masks=stretch_intensity)
    sample = Flip(tuple(a for a in range(3) if drawn["flips"][a]))(sample)
    if stretch_intensity:
        sample = StretchToUnit(ISENSEE_CLIP)(sample)
    if drawn["contrast_on"]:
        sample = Contrast(tuple(drawn["contrast"]))(sample)
    if drawn["gamma_on"]:
        sample = Gamma(float(drawn["gamma"]))(sample)
    if stretch_intensity:
        sample = StretchToUnit()(sample)
    if drawn["brightness_on"]:
        sample = Brightness(tuple(drawn["brightness"]))(sample)
    return sample


@pytest.mark.parametrize("stretch_intensity", [False, True])
def test_device_backend_equals_scipy_order_1_for_the_same_parameters(stretch_intensity):
    image, labels = _positive_case(3)
    masks = pack_masks(brain_masks(image))
    aug = _isensee()
    augmenter = DeviceAugmenter(PATCH, stretch_intensity)
    interior = (slice(2, -2),) * 3
    for seed in range(6):
        rng = np.random.default_rng(seed)
        location = sample_location(image.shape[1:], PATCH, rng, crop_size=REGION)
        drawn = draw_block(aug, image, labels, masks if stretch_intensity else None, location,
                           rng, epoch=0)
        assert drawn["elastic"] and drawn["block"].shape[1:] != PATCH
        got_image, got_labels = augmenter(collate([drawn]), CPU)
        want = _scipy_replay(aug, image, labels, location, seed, drawn, stretch_intensity)
        assert got_image.shape == (1, 4, *PATCH) and got_labels.dtype == torch.uint8
        np.testing.assert_allclose(got_image[0].numpy()[(slice(None), *interior)],
                                   want.image[(slice(None), *interior)], atol=1e-3)
        agree = (got_labels[0].numpy() == want.labels)[interior].mean()
        assert agree >= 0.995, (seed, agree)


@pytest.mark.parametrize("augmentation", [NoAugmentation(), FlipAugmentation((0, 2), 0.5)])
@pytest.mark.parametrize("stretch_intensity", [False, True])
def test_crop_augmentations_are_bit_for_bit_the_scipy_backend(augmentation, stretch_intensity):
    image, labels = make_case(1)
    masks = pack_masks(brain_masks(image))
    augmenter = DeviceAugmenter(PATCH, stretch_intensity)
    flipped = 0
    for seed in range(8):
        location = sample_location(image.shape[1:], PATCH, np.random.default_rng(seed))
        drawn = draw_block(augmentation, image, labels, masks, location,
                           np.random.default_rng(100 + seed), epoch=0)
        flipped += drawn["flips"].any()
        got_image, got_labels = augmenter(collate([drawn]), CPU)
        want = augmentation(image, labels, location, np.random.default_rng(100 + seed), 0,
                            stretch=stretch_intensity)
        assert np.array_equal(got_image[0].numpy(), want.image)
        assert np.array_equal(got_labels[0].numpy(), want.labels)
    assert flipped > 0 or isinstance(augmentation, NoAugmentation)


def test_batched_intensity_steps_match_the_numpy_functions():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, (3, 4, 10, 12, 8)).astype(np.float32)
    masks = rng.random((3, 4, 10, 12, 8)) > 0.3
    masks[1, 2] = False                          # an empty mask: channel becomes 0
    factors = rng.uniform(0.7, 1.5, (3, 4))
    gammas = rng.uniform(0.8, 1.5, 3)
    tx, tm = torch.from_numpy(x), torch.from_numpy(masks)
    got = stretch(tx, ~tm, ISENSEE_CLIP).numpy()
    for b in range(3):
        np.testing.assert_array_equal(got[b], stretch_to_unit(x[b], masks[b], ISENSEE_CLIP))
    got = contrast(tx, torch.from_numpy(factors)).numpy()
    for b in range(3):
        np.testing.assert_allclose(got[b], adjust_contrast(x[b], factors[b].astype(np.float32)),
                                   rtol=0, atol=1e-5)
    unit = stretch(tx, torch.zeros_like(tm)).numpy()
    got = gamma(torch.from_numpy(unit), torch.from_numpy(gammas)).numpy()
    for b in range(3):
        np.testing.assert_allclose(got[b], adjust_gamma(unit[b], float(gammas[b])), atol=1e-6)


def test_padded_batch_equals_each_sample_alone_and_flips_stay_per_sample():
    """Blocks of different sizes share a batch; a broken padding or flip wiring changes the result."""
    image, labels = _positive_case(2)
    masks = pack_masks(brain_masks(image))
    aug = _isensee(p_flip=0.5)
    drawn = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        location = sample_location(image.shape[1:], PATCH, rng, crop_size=REGION)
        drawn.append(draw_block(aug, image, labels, masks, location, rng, epoch=0))
    pair = next((a, b) for a in drawn for b in drawn
                if a["block"].shape != b["block"].shape and a["flips"].any()
                and not np.array_equal(a["flips"], b["flips"]))
    augmenter = DeviceAugmenter(PATCH, True)
    batch_image, batch_labels = augmenter(collate(pair), CPU)
    for i, sample in enumerate(pair):
        alone_image, alone_labels = augmenter(collate([sample]), CPU)
        # the padded extent changes grid_sample's normalised coordinates by float rounding only
        torch.testing.assert_close(batch_image[i], alone_image[0], rtol=0, atol=1e-5)
        assert torch.equal(batch_labels[i], alone_labels[0])


def test_block_holds_every_voxel_the_transform_reaches():
    """A strong transform: the block read is never smaller than what the device samples."""
    image, labels = _positive_case(4)
    aug = IsenseeAugmentation(phases=(AugmentationPhase(
        0, elastic_alpha=(1300.0, 1300.0), elastic_sigma=(10.0, 10.0),
        rotation=((0.0, 6.28),) * 3, scale=(0.75, 1.25), contrast=(1.0, 1.0),
        gamma=(1.0, 1.0)),), interpolation_order=1)
    augmenter = DeviceAugmenter(PATCH, False)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        location = sample_location(image.shape[1:], PATCH, rng, crop_size=REGION)
        drawn = draw_block(aug, image, labels, None, location, rng, epoch=0)
        # the whole region as the block gives the same patch
        whole = dict(drawn)
        lo = np.asarray(location.region_start)
        offset = drawn["centre"] - (location.centre - lo)
        whole.update(block=crop_sample(image, labels, _region(location), False).image,
                     labels=crop_sample(image, labels, _region(location), False).labels,
                     centre=drawn["centre"] - offset, region_lo=drawn["region_lo"] - offset,
                     region_hi=drawn["region_hi"] - offset)
        got, _ = augmenter(collate([drawn]), CPU)
        ref, _ = augmenter(collate([whole]), CPU)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-4)


def _region(location):
    from brats.training.sampling import PatchLocation

    size = tuple(b - a for a, b in zip(location.region_start, location.region_stop))
    return PatchLocation(location.region_start, size, location.region_start,
                         location.region_stop)


def test_coarse_elastic_field_matches_the_reference_statistics():
    """Displacement standard deviation and correlation at a 12-voxel lag, pooled along the long
    axis of an elongated patch over seeded draws: the coarse field within 10 % of the reference."""
    size, alpha, sigma, lag = (160, 48, 48), 1000.0, 10.0, 12
    spacing = coarse_spacing(sigma)
    stats = {}
    for name in ("reference", "coarse"):
        rng = np.random.default_rng(0)
        values, shifted = [], []
        for _ in range(30):
            if name == "reference":
                field = patch_grid_field(rng, alpha, sigma, size)
            else:
                coarse = torch.from_numpy(coarse_field(rng, alpha, sigma, size, spacing))
                field = upsample_field(coarse, spacing, size).numpy()
            line = field[:, 40:120, 24, 24]             # interior: 40 voxels from every border
            values.append(line[:, :-lag].ravel())
            shifted.append(line[:, lag:].ravel())
        values, shifted = np.concatenate(values), np.concatenate(shifted)
        stats[name] = (float(values.std()), float(np.corrcoef(values, shifted)[0, 1]))
    (ref_std, ref_corr), (std, corr) = stats["reference"], stats["coarse"]
    # Gaussian-smoothed U(-1, 1) noise: std α·√(1/3)/(2√π σ)^1.5 ≈ 2.7, correlation e^(-lag²/4σ²) ≈ 0.70
    assert 2.3 < ref_std < 2.9 and 0.6 < ref_corr < 0.8
    assert abs(std / ref_std - 1) < 0.10, stats
    assert abs(corr / ref_corr - 1) < 0.10, stats


def test_coarse_grid_geometry():
    assert coarse_spacing(10.0) == 3 and coarse_spacing(2.0) == 1
    assert coarse_shape((128, 128, 128), 3) == (44, 44, 44)
    field = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4).expand(3, -1, -1, -1)
    up = upsample_field(field, 2, (3, 5, 6))
    assert up.shape == (3, 3, 5, 6)
    assert torch.equal(up[:, ::2, ::2, ::2], field[:, :2, :3, :3])   # coarse points kept exactly
    assert float(up[0, 1, 0, 0]) == pytest.approx(float(field[0, 0, 0, 0] + field[0, 1, 0, 0]) / 2)


def test_packed_masks_round_trip():
    masks = np.random.default_rng(0).random((4, 5, 6, 7)) > 0.5
    assert np.array_equal(unpack_masks(pack_masks(masks), 4), masks)
