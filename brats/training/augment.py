"""Training augmentation (Isensee et al. 2017's batchgenerators pipeline, mirroring) and the Isensee
intensity preprocessing shared with inference.

Style (TorchIO / batchgenerators): pure functions do the maths (:func:`flip`,
:func:`elastic_displacement`, :func:`stretch_to_unit`, :func:`adjust_contrast`, ...); frozen
dataclasses hold explicit parameters and apply them deterministically (:class:`Flip`,
:class:`Spatial`, :class:`Contrast`, :class:`Gamma`, :class:`Brightness`, :class:`StretchToUnit`);
``Random*`` wrappers validate their ranges when built and draw those parameters from the
``np.random.Generator`` they are handed, and from nothing else, so one generator state gives one
patch bit for bit.

**Isensee 2017 pipeline** (Isensee et al. 2017, arXiv:1802.10508;
``train_network.create_data_gen_train`` in MIC-DKFZ/BraTS2017 with batchgenerators'
``augment_spatial``), per sample, as the ``scipy`` backend (the exact original; the default
``device`` backend of :mod:`brats.training.batch_augment` draws the same parameters in the loader
workers and applies them batched on the training device):

1. brain masks per channel (channel ≠ 0, hole-filled) on the block read for the patch;
2. the spatial transform, always: elastic deformation, rotation about the three axes and isotropic
   scaling composed into **one** resampling of the region to the patch (image: spline of
   ``interpolation_order``, default 3, 'nearest' border; labels and masks: nearest neighbour,
   0 outside the region);
3. mirroring of each listed axis with p = 0.5 (applied to the resampled patch; the original
   mirrored the 160×192×160 crop *before* the spatial transform. Every spatial parameter is drawn
   from a distribution symmetric under mirroring and the patch centre is uniform in a symmetric
   interval, so the two orders give the same distribution of patches);
4. clip to [−5, 5] and min-max stretch each channel to [0, 1] inside its brain mask, 0 outside;
5. contrast per channel; 6. gamma per sample; 7. stretch to [0, 1] inside the masks again;
8. additive brightness N(0, 0.1) per channel (to the whole channel, background included, as
   batchgenerators' ``augment_brightness_additive``).

Steps 1, 4 and 7 are the pipeline's ``intensity="isensee2017"`` handling; with
``intensity="none"`` they are skipped and the z-scored data keeps its scale.

**Libraries used for the maths.** The coordinate maths uses MONAI: ``create_grid`` (the
zero-centred patch mesh, as batchgenerators' ``create_zero_centered_coordinate_mesh``),
``create_rotate`` and ``create_scale``. The resampling uses ``scipy.ndimage.map_coordinates``
for the image, because MONAI's ``Resample`` only reaches spline orders above 1 by calling
``map_coordinates`` itself and has no notion of our region/block reads. Labels and brain masks use
an exact nearest-neighbour gather. The elastic field uses ``scipy.ndimage.gaussian_filter``.

**Axis convention.** Our arrays are (X, Y, Z) (nibabel order); the original's were (z, y, x)
(SimpleITK order). The reference's "rotation about axis 0" (``angle_x`` in batchgenerators,
U(0, 2π) in every phase) is therefore a rotation about our **last** axis Z, i.e. in the axial
(X, Y) plane. The reference's axes 1 and 2 (``angle_y``, ``angle_z``: y and x) are our Y and X.
Our rotation ranges are listed per our axes (X, Y, Z) =
(reference ``angle_z``, ``angle_y``, ``angle_x``). With that mapping, MONAI's
``create_rotate(3, (θX, θY, θZ))`` (intrinsic X-Y-Z) applied to (x, y, z) column vectors is exactly
batchgenerators' ``rotate_coords_3d(coords, angle_x=θZ, angle_y=θY, angle_z=θX)`` on (z, y, x)
coordinates. The axis reversal flips each rotation's sense, and the transpose of the row-vector
convention flips it back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from monai.transforms.utils import create_grid, create_rotate, create_scale
from scipy.ndimage import gaussian_filter, map_coordinates

from brats.errors import BratsInputError
from brats.preprocess.crop import brain_masks
from brats.training.sampling import PatchLocation, read_block

Range = tuple[float, float]
#: ``(rng, alpha, sigma, patch_size) → displacement``: how an elastic field is made from α and σ.
ElasticField = Callable[[np.random.Generator, float, float, Sequence[int]], np.ndarray] | None
#: Clip range of the z-scored data before Isensee's min-max stretch (MIC-DKFZ/BraTS2017,
#: ``train_network.py``).
ISENSEE_CLIP: Range = (-5.0, 5.0)
#: Extra voxels read around the transformed patch for spline orders ≥ 2, so the spline fit near
#: the evaluated points matches a fit of the whole region (the prefilter's influence decays as
#: 0.268ⁿ for cubic splines: < 3e-5 after 8 voxels).
SPLINE_MARGIN = 8


@dataclass(eq=False)
class PatchSample:
    """A training patch on its way through the augmentation.

    Attributes:
        image: (C, X, Y, Z) float32.
        labels: (X, Y, Z) uint8 canonical labels.
        masks: (C, X, Y, Z) bool brain masks per channel, or None when not tracked.
    """

    image: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None = None


# --------------------------------------------------------------------------- pure functions


def flip(array: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Mirror the listed spatial axes (0, 1, 2 = X, Y, Z) of a (..., X, Y, Z) array (a copy)."""
    if not axes:
        return array
    return np.ascontiguousarray(np.flip(array, axis=tuple(a - 3 for a in axes)))


def stretch_to_unit(image: np.ndarray, masks: np.ndarray, clip: Range | None = None) -> np.ndarray:
    """Min-max stretch each channel to [0, 1] over its mask; exactly 0 outside the mask.

    Isensee's ``brain_mask_aware_stretch_zero_one``: optionally clip first, then per channel
    (x − min) / (max − min) with min and max over the mask. A channel whose mask is empty, or
    constant inside it, becomes all 0 (the original divided by zero there).

    Args:
        image: (C, X, Y, Z).
        masks: (C, X, Y, Z) bool.
        clip: (low, high) to clip to first, or None.

    Returns:
        (C, X, Y, Z) float32 in [0, 1].
    """
    out = np.zeros(image.shape, dtype=np.float32)
    for c in range(image.shape[0]):
        values = np.asarray(image[c], dtype=np.float32)[masks[c]]
        if clip is not None:
            values = np.clip(values, np.float32(clip[0]), np.float32(clip[1]))
        if values.size == 0:
            continue
        low, high = values.min(), values.max()
        if high > low:
            out[c][masks[c]] = (values - low) / (high - low)
    return out


def isensee_intensity_preprocess(image: np.ndarray) -> np.ndarray:
    """The intensity handling Isensee's network sees at training and inference time.

    Clip the z-scored data to [−5, 5], then per channel min-max stretch to [0, 1] inside that
    channel's hole-filled brain mask (channel ≠ 0), 0 outside (MIC-DKFZ/BraTS2017,
    ``brain_mask_aware_stretch_zero_one``).

    Args:
        image: (C, X, Y, Z) z-scored image, 0 outside the brain.

    Returns:
        (C, X, Y, Z) float32 in [0, 1].
    """
    image = np.asarray(image, dtype=np.float32)
    return stretch_to_unit(image, brain_masks(image), clip=ISENSEE_CLIP)


def adjust_contrast(image: np.ndarray, factors: Sequence[float]) -> np.ndarray:
    """Per channel x ← (x − mean)·f + mean, clipped to the channel's original [min, max].

    batchgenerators' ``augment_contrast(preserve_range=True, per_channel=True)``: mean, min and
    max are over the whole channel.

    Args:
        image: (C, X, Y, Z) float32.
        factors: (C,) contrast factors.

    Returns:
        (C, X, Y, Z) float32.
    """
    out = np.empty_like(image, dtype=np.float32)
    for c, factor in enumerate(factors):
        x = image[c]
        mean = np.float32(x.mean(dtype=np.float64))
        out[c] = np.clip((x - mean) * np.float32(factor) + mean, x.min(), x.max())
    return out


def adjust_gamma(image: np.ndarray, gamma: float, epsilon: float = 1e-7) -> np.ndarray:
    """One gamma for the whole sample, on its min-max-normalised values, mapped back to its range.

    batchgenerators' ``augment_gamma(per_channel=False, invert_image=False)``:
    x ← ((x − min) / (max − min + ε))^γ · (max − min) + min, min and max over all channels.

    Args:
        image: (C, X, Y, Z) float32.
        gamma: the exponent.
        epsilon: added to the range to avoid a division by zero.

    Returns:
        (C, X, Y, Z) float32 within the input's [min, max].
    """
    low = float(image.min())
    span = float(image.max()) - low
    out = np.power((image - low) / (span + epsilon), gamma) * span + low
    return np.clip(out, low, low + span).astype(np.float32)


def add_brightness(image: np.ndarray, shifts: Sequence[float]) -> np.ndarray:
    """Add one shift per channel (to every voxel of the channel). Returns (C, X, Y, Z) float32."""
    return (image + np.asarray(shifts, dtype=np.float32)[:, None, None, None]).astype(np.float32)


def elastic_displacement(noise: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """batchgenerators' elastic field: per axis gaussian_filter(noise, σ, 'constant' 0) · α.

    Args:
        noise: (3, X, Y, Z) samples of U(−1, 1).
        alpha: magnitude.
        sigma: Gaussian smoothing in voxels.

    Returns:
        (3, X, Y, Z) float32 displacement in voxels, added to the patch coordinates before
        rotation and scaling (``elastic_deform_coordinates``).
    """
    return np.stack([gaussian_filter(n, sigma, mode="constant", cval=0.0) * np.float32(alpha)
                     for n in noise]).astype(np.float32)


def patch_grid_field(rng: np.random.Generator, alpha: float, sigma: float,
                     patch_size: Sequence[int]) -> np.ndarray:
    """batchgenerators' elastic field: U(−1, 1) noise on the patch grid, smoothed and scaled.

    Returns:
        (3, *patch_size) float32 displacement in voxels (:func:`elastic_displacement`).
    """
    noise = rng.random((3, *patch_size), dtype=np.float32) * np.float32(2) - np.float32(1)
    return elastic_displacement(noise, alpha, sigma)


def rotation_scale_matrix(angles: Sequence[float], scale: float) -> np.ndarray:
    """(3, 3) matrix ``scale · R_X(θX) · R_Y(θY) · R_Z(θZ)`` (MONAI ``create_rotate``/``create_scale``).

    It maps patch offsets (column vectors in (X, Y, Z)) to source offsets. A scale above 1 thus
    samples a larger source area: the content looks smaller, as in batchgenerators.
    """
    rotate = create_rotate(3, tuple(float(a) for a in angles))[:3, :3]
    return (create_scale(3, (float(scale),) * 3)[:3, :3] @ rotate).astype(np.float64)


def source_coordinates(location: PatchLocation, matrix: np.ndarray,
                       displacement: np.ndarray | None = None) -> np.ndarray:
    """Case coordinates sampled for each patch voxel: ``centre + matrix · (mesh + displacement)``.

    Args:
        location: the patch (its ``centre`` and ``size``).
        matrix: (3, 3) from :func:`rotation_scale_matrix`.
        displacement: (3, *size) elastic displacement in voxels, or None.

    Returns:
        (3, *size) float64; the identity matrix without displacement gives the integer voxel
        coordinates of the crop ``[start, stop)`` exactly.
    """
    mesh = create_grid(location.size, homogeneous=False, dtype=np.float64)
    if displacement is not None:
        mesh += displacement
    if not np.array_equal(matrix, np.eye(3)):
        mesh = np.tensordot(matrix, mesh, axes=1)
    return mesh + location.centre[:, None, None, None]


def _resample(image: np.ndarray, labels: np.ndarray | None, location: PatchLocation,
              coords: np.ndarray, order: int, with_masks: bool) -> PatchSample:
    """Resample the region of (image, labels) at ``coords`` (3, *size), reading one block."""
    region_lo = np.asarray(location.region_start)[:, None, None, None]
    region_hi = np.asarray(location.region_stop)[:, None, None, None]
    # image: 'nearest' border of the region = coordinates clamped into it
    clamped = np.clip(coords, region_lo, region_hi - 1)
    margin = SPLINE_MARGIN if order > 1 else 0
    lo = np.maximum(np.floor(clamped.reshape(3, -1).min(1)).astype(int) - margin,
                    location.region_start)
    hi = np.minimum(np.ceil(clamped.reshape(3, -1).max(1)).astype(int) + 1 + margin,
                    location.region_stop)
    block = read_block(image, lo, hi).astype(np.float32, copy=False)
    clamped -= lo[:, None, None, None]
    out = np.stack([map_coordinates(channel, clamped, order=order, mode="nearest",
                                    output=np.float32) for channel in block])
    del clamped
    # labels and masks: nearest voxel, 0 outside the region
    index = np.floor(coords + 0.5).astype(np.int64)
    inside = ((index >= region_lo) & (index < region_hi)).all(0)
    index -= lo[:, None, None, None]
    for d, n in enumerate(block.shape[1:]):
        np.clip(index[d], 0, n - 1, out=index[d])
    flat = np.ravel_multi_index(tuple(index), block.shape[1:])
    if labels is None:
        new_labels = np.zeros(location.size, dtype=np.uint8)
    else:
        new_labels = read_block(labels, lo, hi).ravel().take(flat).reshape(location.size)
        new_labels = np.where(inside, new_labels, 0).astype(np.uint8)
    masks = None
    if with_masks:
        masks = np.stack([m.ravel().take(flat).reshape(location.size) & inside
                          for m in brain_masks(block)])
    return PatchSample(out, new_labels, masks)


def crop_sample(image: np.ndarray, labels: np.ndarray | None, location: PatchLocation,
                with_masks: bool) -> PatchSample:
    """The untransformed patch ``[start, stop)`` (zero-padded outside the case), exactly.

    Brain masks, if asked for, are computed on the patch itself.
    """
    block = read_block(image, location.start, location.stop)
    out = block.astype(np.float32, copy=False)
    new_labels = (np.zeros(location.size, dtype=np.uint8) if labels is None
                  else read_block(labels, location.start, location.stop).astype(np.uint8, copy=False))
    return PatchSample(out, new_labels, brain_masks(out) if with_masks else None)


def _two_sided(rng: np.random.Generator, bounds: Range) -> float:
    """batchgenerators' draw: with p ½ from U(low, 1), else from U(1, high) (when low < 1 < high)."""
    low, high = bounds
    if low < 1.0 < high:
        return float(rng.uniform(low, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, high))
    return float(rng.uniform(low, high))


def _check_range(name: str, value: Sequence[float], low: float | None = None) -> Range:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise BratsInputError(f"{name} must be a (low, high) pair, got {value!r}") from None
    if a > b or (low is not None and a < low):
        bound = f" and low ≥ {low}" if low is not None else ""
        raise BratsInputError(f"{name} must satisfy low ≤ high{bound}, got {value!r}")
    return a, b


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise BratsInputError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _check_axes(name: str, axes: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(a) for a in axes)
    except (TypeError, ValueError):
        raise BratsInputError(f"{name} must list spatial axes from (0, 1, 2), got {axes!r}") from None
    if any(a not in (0, 1, 2) for a in out) or len(set(out)) != len(out):
        raise BratsInputError(f"{name} must list distinct spatial axes from (0, 1, 2), got {axes!r}")
    return out


# --------------------------------------------------------------------------- deterministic transforms


@dataclass(frozen=True)
class Flip:
    """Mirror the listed spatial axes (0, 1, 2 = X, Y, Z) of image, labels and masks."""

    axes: tuple[int, ...] = ()

    def __call__(self, sample: PatchSample) -> PatchSample:
        masks = None if sample.masks is None else flip(sample.masks, self.axes)
        return PatchSample(flip(sample.image, self.axes), flip(sample.labels, self.axes), masks)


@dataclass(frozen=True, eq=False)
class Spatial:
    """One resampling of a patch's region: elastic displacement, then rotation, then scaling.

    Source coordinate of patch voxel i: ``centre + scale · R(angles) · (mesh_i + displacement_i)``
    (batchgenerators' ``augment_spatial`` order). The image is interpolated with a spline of
    ``order`` (``map_coordinates``, 'nearest' border at the region's edge), labels and masks by
    nearest neighbour with 0 outside the region.

    Attributes:
        angles: rotation about X, Y, Z in radians.
        scale: isotropic scale (> 1 samples a larger area).
        displacement: (3, *patch) elastic displacement in voxels, or None.
        order: spline order for the image, 0–5.
    """

    angles: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    displacement: np.ndarray | None = None
    order: int = 3

    def __call__(self, image: np.ndarray, labels: np.ndarray | None, location: PatchLocation, *,
                 with_masks: bool = False) -> PatchSample:
        """Resample ``image`` (C, X, Y, Z) and ``labels`` (X, Y, Z) (full case arrays, read only
        in the block needed) to the patch of ``location``."""
        coords = source_coordinates(location, rotation_scale_matrix(self.angles, self.scale),
                                    self.displacement)
        return _resample(image, labels, location, coords, self.order, with_masks)


@dataclass(frozen=True)
class StretchToUnit:
    """:func:`stretch_to_unit` with the sample's masks (optionally clipping first)."""

    clip: Range | None = None

    def __call__(self, sample: PatchSample) -> PatchSample:
        if sample.masks is None:
            raise ValueError("StretchToUnit needs brain masks on the sample")
        return PatchSample(stretch_to_unit(sample.image, sample.masks, self.clip), sample.labels,
                           sample.masks)


@dataclass(frozen=True)
class Contrast:
    """:func:`adjust_contrast` with one factor per channel."""

    factors: tuple[float, ...]

    def __call__(self, sample: PatchSample) -> PatchSample:
        return dataclasses.replace(sample, image=adjust_contrast(sample.image, self.factors))


@dataclass(frozen=True)
class Gamma:
    """:func:`adjust_gamma` with one gamma for the sample."""

    gamma: float

    def __call__(self, sample: PatchSample) -> PatchSample:
        return dataclasses.replace(sample, image=adjust_gamma(sample.image, self.gamma))


@dataclass(frozen=True)
class Brightness:
    """:func:`add_brightness` with one shift per channel."""

    shifts: tuple[float, ...]

    def __call__(self, sample: PatchSample) -> PatchSample:
        return dataclasses.replace(sample, image=add_brightness(sample.image, self.shifts))


# --------------------------------------------------------------------------- random wrappers


@dataclass(frozen=True)
class RandomFlip:
    """Mirror each of ``axes`` independently with probability ``p`` (one draw per listed axis)."""

    axes: tuple[int, ...] = (0, 1, 2)
    p: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", _check_axes("flip axes", self.axes))
        object.__setattr__(self, "p", _check_probability("flip probability", self.p))

    def draw(self, rng: np.random.Generator) -> Flip:
        return Flip(tuple(a for a in self.axes if rng.random() < self.p))

    def __call__(self, sample: PatchSample, rng: np.random.Generator) -> PatchSample:
        return self.draw(rng)(sample)


@dataclass(frozen=True)
class RandomSpatial:
    """Draw a :class:`Spatial` as batchgenerators' ``augment_spatial`` does.

    Elastic (with ``p_elastic``): α ~ U(alpha), σ ~ U(sigma), noise U(−1, 1) per axis on the patch
    grid. Rotation (with ``p_rotation``): one angle per axis (X, Y, Z) from its range. Scale (with
    ``p_scale``): with p ½ from U(low, 1), else U(1, high).
    """

    alpha: Range = (0.0, 1300.0)
    sigma: Range = (10.0, 13.0)
    rotation: tuple[Range, Range, Range] = ((0.0, 2 * np.pi),) * 3
    scale: Range = (0.75, 1.25)
    order: int = 3
    p_elastic: float = 1.0
    p_rotation: float = 1.0
    p_scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", _check_range("elastic alpha", self.alpha, 0.0))
        object.__setattr__(self, "sigma", _check_range("elastic sigma", self.sigma, 0.0))
        if len(self.rotation) != 3:
            raise BratsInputError(f"rotation needs one range per axis (X, Y, Z), got {self.rotation!r}")
        object.__setattr__(self, "rotation", tuple(_check_range(f"rotation about axis {i}", r)
                                                   for i, r in enumerate(self.rotation)))
        object.__setattr__(self, "scale", _check_range("scale", self.scale, 1e-6))
        if int(self.order) != self.order or not 0 <= self.order <= 5:
            raise BratsInputError(f"interpolation order must be an integer 0–5, got {self.order!r}")
        for name in ("p_elastic", "p_rotation", "p_scale"):
            object.__setattr__(self, name, _check_probability(name, getattr(self, name)))

    def draw_parts(self, rng: np.random.Generator, patch_size: Sequence[int],
                   elastic: ElasticField = None) -> tuple[np.ndarray | None, tuple[float, ...], float]:
        """Draw ``(displacement or None, angles, scale)``, in this order from ``rng``.

        ``elastic(rng, alpha, sigma, patch_size)`` makes the displacement from α and σ; the
        default is batchgenerators' field on the patch grid (:func:`elastic_displacement` of
        U(−1, 1) noise); the device backend passes its coarse-grid field instead.
        """
        displacement = None
        if rng.random() < self.p_elastic:
            alpha = rng.uniform(*self.alpha)
            sigma = rng.uniform(*self.sigma)
            if alpha > 0:
                displacement = (elastic or patch_grid_field)(rng, alpha, sigma, patch_size)
        angles = (0.0, 0.0, 0.0)
        if rng.random() < self.p_rotation:
            angles = tuple(float(rng.uniform(*r)) for r in self.rotation)
        scale = _two_sided(rng, self.scale) if rng.random() < self.p_scale else 1.0
        return displacement, angles, scale

    def draw(self, rng: np.random.Generator, patch_size: Sequence[int]) -> Spatial:
        displacement, angles, scale = self.draw_parts(rng, patch_size)
        return Spatial(angles, scale, displacement, int(self.order))  # type: ignore[arg-type]

    def __call__(self, image: np.ndarray, labels: np.ndarray | None, location: PatchLocation,
                 rng: np.random.Generator, *, with_masks: bool = False) -> PatchSample:
        return self.draw(rng, location.size)(image, labels, location, with_masks=with_masks)


@dataclass(frozen=True)
class RandomContrast:
    """With probability ``p``, one two-sided contrast factor per channel from ``factor_range``."""

    factor_range: Range = (0.75, 1.5)
    p: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "factor_range", _check_range("contrast", self.factor_range, 0.0))
        object.__setattr__(self, "p", _check_probability("p_contrast", self.p))

    def draw(self, rng: np.random.Generator, channels: int) -> tuple[float, ...] | None:
        """One factor per channel, or None when the step is skipped."""
        if rng.random() >= self.p:
            return None
        return tuple(_two_sided(rng, self.factor_range) for _ in range(channels))

    def __call__(self, sample: PatchSample, rng: np.random.Generator) -> PatchSample:
        factors = self.draw(rng, sample.image.shape[0])
        return sample if factors is None else Contrast(factors)(sample)


@dataclass(frozen=True)
class RandomGamma:
    """With probability ``p``, one two-sided gamma for the sample from ``gamma_range``."""

    gamma_range: Range = (0.8, 1.5)
    p: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma_range", _check_range("gamma", self.gamma_range, 1e-6))
        object.__setattr__(self, "p", _check_probability("p_gamma", self.p))

    def draw(self, rng: np.random.Generator) -> float | None:
        """The sample's gamma, or None when the step is skipped."""
        return None if rng.random() >= self.p else _two_sided(rng, self.gamma_range)

    def __call__(self, sample: PatchSample, rng: np.random.Generator) -> PatchSample:
        gamma = self.draw(rng)
        return sample if gamma is None else Gamma(gamma)(sample)


@dataclass(frozen=True)
class RandomBrightness:
    """With probability ``p``, add N(``mu``, ``sigma``) per channel."""

    mu: float = 0.0
    sigma: float = 0.1
    p: float = 1.0

    def __post_init__(self) -> None:
        if float(self.sigma) < 0:
            raise BratsInputError(f"brightness_sigma must be ≥ 0, got {self.sigma!r}")
        object.__setattr__(self, "p", _check_probability("p_brightness", self.p))

    def draw(self, rng: np.random.Generator, channels: int) -> tuple[float, ...] | None:
        """One shift per channel, or None when the step is skipped."""
        if rng.random() >= self.p:
            return None
        return tuple(float(s) for s in rng.normal(self.mu, self.sigma, channels))

    def __call__(self, sample: PatchSample, rng: np.random.Generator) -> PatchSample:
        shifts = self.draw(rng, sample.image.shape[0])
        return sample if shifts is None else Brightness(shifts)(sample)


# --------------------------------------------------------------------------- the schedule


@dataclass(frozen=True)
class AugmentationPhase:
    """Augmentation ranges from ``start_epoch`` on (one row of Isensee 2017's
    schedule, MIC-DKFZ/BraTS2017 ``train_network.py``).

    Attributes:
        start_epoch: first epoch of the phase.
        elastic_alpha: range of α (voxels, batchgenerators semantics).
        rotation: radian ranges about our axes (X, Y, Z) (see the module docstring: the
            reference's "axis 0" is our Z).
        scale: isotropic scale range.
        contrast: contrast factor range.
        gamma: gamma range.
        elastic_sigma: range of σ (voxels).
    """

    start_epoch: int
    elastic_alpha: Range
    rotation: tuple[Range, Range, Range]
    scale: Range
    contrast: Range
    gamma: Range
    elastic_sigma: Range = (10.0, 13.0)


_FULL_TURN: Range = (0.0, 2 * np.pi)
#: Isensee et al. 2017's three phases (train_network.py: epochs 0, 100 and 175). Rotation ranges
#: are per OUR axes (X, Y, Z). The original arrays were (z, y, x), so its ``angle_x`` about
#: array axis 0 (U(0, 2π) throughout: the axial plane) is our Z range, and its ``angle_y``/
#: ``angle_z`` (±π/8 from epoch 100, ±1e-5 ≈ 0 from epoch 175) are our Y/X ranges.
ISENSEE2017_SCHEDULE: tuple[AugmentationPhase, ...] = (
    AugmentationPhase(0, elastic_alpha=(0.0, 1300.0), rotation=(_FULL_TURN, _FULL_TURN, _FULL_TURN),
                      scale=(0.75, 1.25), contrast=(0.75, 1.5), gamma=(0.8, 1.5)),
    AugmentationPhase(100, elastic_alpha=(0.0, 1000.0),
                      rotation=((-np.pi / 8, np.pi / 8), (-np.pi / 8, np.pi / 8), _FULL_TURN),
                      scale=(0.85, 1.15), contrast=(0.85, 1.25), gamma=(0.8, 1.5)),
    AugmentationPhase(175, elastic_alpha=(0.0, 750.0),
                      rotation=((-1e-5, 1e-5), (-1e-5, 1e-5), _FULL_TURN),
                      scale=(0.85, 1.15), contrast=(0.9, 1.1), gamma=(0.85, 1.3)),
)


def _as_phase(value: AugmentationPhase | Mapping[str, Any], index: int) -> AugmentationPhase:
    if isinstance(value, AugmentationPhase):
        phase = value
    elif isinstance(value, Mapping):
        valid = [f.name for f in dataclasses.fields(AugmentationPhase)]
        unknown = sorted(set(value) - set(valid))
        if unknown:
            raise BratsInputError(f"augmentation phase {index}: unknown key(s) {unknown}; "
                                  f"valid keys: {valid}")
        try:
            phase = AugmentationPhase(**value)
        except TypeError as err:
            raise BratsInputError(f"augmentation phase {index}: {err}; valid keys: {valid}") from None
    else:
        raise BratsInputError(f"augmentation phase {index} must be a mapping, got {value!r}")
    if not isinstance(phase.rotation, (list, tuple)) or len(phase.rotation) != 3:
        raise BratsInputError(f"augmentation phase {index}: rotation needs three (low, high) "
                              f"ranges (about X, Y, Z), got {phase.rotation!r}")
    return AugmentationPhase(
        start_epoch=int(phase.start_epoch),
        elastic_alpha=_check_range(f"phase {index} elastic_alpha", phase.elastic_alpha, 0.0),
        rotation=tuple(_check_range(f"phase {index} rotation[{i}]", r)  # type: ignore[arg-type]
                       for i, r in enumerate(phase.rotation)),
        scale=_check_range(f"phase {index} scale", phase.scale, 1e-6),
        contrast=_check_range(f"phase {index} contrast", phase.contrast, 0.0),
        gamma=_check_range(f"phase {index} gamma", phase.gamma, 1e-6),
        elastic_sigma=_check_range(f"phase {index} elastic_sigma", phase.elastic_sigma, 0.0))


def phase_for_epoch(phases: Sequence[AugmentationPhase], epoch: int) -> AugmentationPhase:
    """The phase in force at ``epoch``: the last one whose ``start_epoch`` ≤ ``epoch``."""
    current = phases[0]
    for phase in phases:
        if phase.start_epoch <= epoch:
            current = phase
    return current


# --------------------------------------------------------------------------- augmentations


class PatchAugmentation:
    """Base of the registered augmentations: ``(image, labels, location, rng, epoch) → sample``.

    ``image`` (C, X, Y, Z) and ``labels`` (X, Y, Z) are the full case arrays (memmaps are fine:
    only the needed block is read). With ``stretch`` the Isensee intensity handling is applied
    (brain masks, clip to [−5, 5], min-max to [0, 1] inside the masks).
    """

    name = ""

    def __call__(self, image: np.ndarray, labels: np.ndarray | None, location: PatchLocation,
                 rng: np.random.Generator, epoch: int, *, stretch: bool = False) -> PatchSample:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The augmentation's name and settings, JSON-friendly."""
        out: dict[str, Any] = {"name": self.name}
        if dataclasses.is_dataclass(self):
            for f in dataclasses.fields(self):
                value = getattr(self, f.name)
                if f.name == "phases":
                    value = [dataclasses.asdict(p) for p in value]
                out[f.name] = value
        return out


@dataclass(frozen=True)
class NoAugmentation(PatchAugmentation):
    """The exact crop (bit for bit the zero-padded case sliced at the patch)."""

    name = "none"

    def __call__(self, image: np.ndarray, labels: np.ndarray | None, location: PatchLocation,
                 rng: np.random.Generator, epoch: int, *, stretch: bool = False) -> PatchSample:
        sample = crop_sample(image, labels, location, with_masks=stretch)
        return StretchToUnit(ISENSEE_CLIP)(sample) if stretch else sample


@dataclass(frozen=True)
class FlipAugmentation(PatchAugmentation):
    """The crop, mirrored along each of ``axes`` with probability ``p`` (e.g. DeepMedic:
    ``axes=(0,)``)."""

    axes: tuple[int, ...] = (0, 1, 2)
    p: float = 0.5
    name = "flips"

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", _check_axes("axes", self.axes))
        object.__setattr__(self, "p", _check_probability("p", self.p))

    def __call__(self, image: np.ndarray, labels: np.ndarray | None, location: PatchLocation,
                 rng: np.random.Generator, epoch: int, *, stretch: bool = False) -> PatchSample:
        sample = RandomFlip(self.axes, self.p)(crop_sample(image, labels, location, stretch), rng)
        return StretchToUnit(ISENSEE_CLIP)(sample) if stretch else sample


@dataclass(frozen=True)
class IsenseeAugmentation(PatchAugmentation):
    """Isensee et al. 2017's augmentation with its three-phase schedule (module docstring).

    Attributes:
        phases: the schedule (:data:`ISENSEE2017_SCHEDULE`); mappings are accepted (configs).
        interpolation_order: spline order for the image (3 as the original; 1 is much faster).
        flip_axes, p_flip: mirrored axes and their probability.
        p_elastic, p_rotation, p_scale: probabilities of the spatial components (all 1).
        p_contrast, p_gamma, p_brightness: probabilities of the intensity steps (all 1).
        brightness_sigma: standard deviation of the additive brightness shift.
    """

    phases: tuple[AugmentationPhase, ...] = ISENSEE2017_SCHEDULE
    interpolation_order: int = 3
    flip_axes: tuple[int, ...] = (0, 1, 2)
    p_flip: float = 0.5
    p_elastic: float = 1.0
    p_rotation: float = 1.0
    p_scale: float = 1.0
    p_contrast: float = 1.0
    p_gamma: float = 1.0
    p_brightness: float = 1.0
    brightness_sigma: float = 0.1
    _steps: dict[int, tuple[Any, ...]] = field(default_factory=dict, init=False, repr=False,
                                               compare=False)
    name = "isensee2017"

    def __post_init__(self) -> None:
        if not isinstance(self.phases, (list, tuple)) or not self.phases:
            raise BratsInputError(f"phases must be a non-empty list of augmentation phases, "
                                  f"got {self.phases!r}")
        phases = tuple(_as_phase(p, i) for i, p in enumerate(self.phases))
        starts = [p.start_epoch for p in phases]
        if starts[0] != 0 or starts != sorted(set(starts)):
            raise BratsInputError(f"phase start epochs must begin at 0 and increase, got {starts}")
        object.__setattr__(self, "phases", phases)
        # build (and so validate) every phase's transforms now
        for phase in phases:
            self._steps[phase.start_epoch] = (
                RandomSpatial(phase.elastic_alpha, phase.elastic_sigma, phase.rotation, phase.scale,
                              self.interpolation_order, self.p_elastic, self.p_rotation, self.p_scale),
                RandomFlip(self.flip_axes, self.p_flip),
                RandomContrast(phase.contrast, self.p_contrast),
                RandomGamma(phase.gamma, self.p_gamma),
                RandomBrightness(0.0, self.brightness_sigma, self.p_brightness))
        object.__setattr__(self, "flip_axes", _check_axes("flip_axes", self.flip_axes))
        object.__setattr__(self, "interpolation_order", int(self.interpolation_order))

    def phase(self, epoch: int) -> AugmentationPhase:
        """The phase in force at ``epoch``."""
        return phase_for_epoch(self.phases, epoch)

    def __call__(self, image: np.ndarray, labels: np.ndarray | None, location: PatchLocation,
                 rng: np.random.Generator, epoch: int, *, stretch: bool = False) -> PatchSample:
        spatial, mirror, contrast, gamma, brightness = self._steps[self.phase(epoch).start_epoch]
        sample = spatial(image, labels, location, rng, with_masks=stretch)
        sample = mirror(sample, rng)
        if stretch:
            sample = StretchToUnit(ISENSEE_CLIP)(sample)
        sample = gamma(contrast(sample, rng), rng)
        if stretch:
            sample = StretchToUnit()(sample)
        return brightness(sample, rng)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.pop("_steps", None)
        return out


#: Registered augmentations: name → class (keyword arguments are the dataclass fields).
AUGMENTATIONS: dict[str, type[PatchAugmentation]] = {
    "isensee2017": IsenseeAugmentation,
    "flips": FlipAugmentation,
    "none": NoAugmentation,
}


def _plain(value: Any) -> Any:
    """Lists (from YAML) → tuples, recursively; mappings kept."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def build_augmentation(name: str, **kwargs: Any) -> PatchAugmentation:
    """Build a registered augmentation by name.

    Args:
        name: ``"isensee2017"`` (Isensee's pipeline and schedule; kwargs e.g.
            ``interpolation_order``, ``phases``, ``p_flip``, ``flip_axes``, ``p_elastic``, ...),
            ``"flips"`` (mirroring only; ``axes``, ``p``) or ``"none"`` (the exact crop).
        **kwargs: the augmentation's settings.

    Returns:
        A :class:`PatchAugmentation`.

    Raises:
        BratsInputError: unknown name or keyword, or an invalid value; the message lists the
            valid names or keywords.
    """
    if name not in AUGMENTATIONS:
        raise BratsInputError(f"unknown augmentation {name!r}; valid names: {sorted(AUGMENTATIONS)}")
    cls = AUGMENTATIONS[name]
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise BratsInputError(f"augmentation {name!r}: unknown keyword(s) {unknown}; "
                              f"valid keywords: {valid or 'none'}")
    return cls(**{k: _plain(v) for k, v in kwargs.items()})
