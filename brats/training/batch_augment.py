"""Augmentation split at the device boundary: loader workers read and draw, the training device
transforms whole batches.

**Worker side** (:func:`draw_block`, numpy, one sample): the patch location and every augmentation
parameter are drawn from the sample's own ``np.random.Generator`` (so ``--resume`` stays bit for
bit and patches do not depend on the worker count), and only the block of the cached case that
the spatial transform can reach is read (memory map), with its labels and the case's cached
brain masks. The elastic field is drawn on a **coarse grid** (spacing ``s`` = ⌊σ_min / 3⌋ voxels,
at least 1): U(−1, 1) noise on that grid, smoothed with σ / s and scaled by α · s^(−3/2). On the
full grid, batchgenerators' field is ``α · G_σ * n``; the coarse field has the same standard
deviation (the variance of Gaussian-smoothed white noise scales as σ^(−3) per unit of grid) and the
same correlation length in voxels, and trilinear upsampling to the patch happens on the device. Its
(3, ~n/s, …) values also bound the displacement exactly, which is how the worker knows the block.

**Device side** (:class:`DeviceAugmenter`, torch, one batch): one sampling grid per sample —
``centre + scale · R · (mesh + displacement)``, mirrored where drawn — resamples the image
trilinearly (``grid_sample``, coordinates clamped into the patch's region: batchgenerators'
'nearest' border) and labels and masks by nearest neighbour (0 outside the region, an exact gather
as in the scipy backend). Then the Isensee intensity steps, batched: clip to [−5, 5] and stretch to
[0, 1] inside the masks, contrast per channel, gamma per sample, stretch again, brightness per
channel. Augmentations without a spatial transform (``flips``, ``none``) read exactly the patch
and are mirrored on the device, bit for bit what the scipy backend gives.

The maths is that of :mod:`brats.training.augment` (the scipy backend, cubic splines as the
original); this backend differs by trilinear instead of cubic resampling of the image and by the
coarse-grid elastic field (statistically matched, tested).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from brats.training.augment import (
    ISENSEE_CLIP,
    FlipAugmentation,
    IsenseeAugmentation,
    NoAugmentation,
    PatchAugmentation,
    RandomFlip,
    rotation_scale_matrix,
)
from brats.training.sampling import PatchLocation, read_block

#: Keys of a drawn sample whose arrays differ in size between samples (padded by :func:`collate`).
BLOCK_KEYS = ("block", "labels", "masks")
#: Elastic coarse-grid spacing: σ_min / this, rounded down (≥ 1). Three coarse voxels per σ keep
#: the field's statistics within a few per cent of the full-grid field (tests/brats/test_batch_augment).
COARSE_SIGMAS = 3.0


def coarse_spacing(sigma_low: float) -> int:
    """Coarse-grid spacing in voxels for elastic fields whose σ is at least ``sigma_low``."""
    return max(1, int(sigma_low // COARSE_SIGMAS))


def coarse_shape(patch_size: Sequence[int], spacing: int) -> tuple[int, ...]:
    """Coarse-grid points covering a patch: point k sits at patch voxel k · spacing."""
    return tuple(-(-(int(n) - 1) // spacing) + 1 for n in patch_size)


def coarse_field(rng: np.random.Generator, alpha: float, sigma: float, patch_size: Sequence[int],
                 spacing: int) -> np.ndarray:
    """The elastic field on the coarse grid (module docstring).

    Returns:
        (3, *coarse_shape) float32 displacement in patch voxels.
    """
    noise = rng.random((3, *coarse_shape(patch_size, spacing)), dtype=np.float32)
    noise = noise * np.float32(2) - np.float32(1)
    gain = np.float32(alpha * spacing ** -1.5)
    return np.stack([gaussian_filter(n, sigma / spacing, mode="constant", cval=0.0) * gain
                     for n in noise]).astype(np.float32)


def upsample_field(field: torch.Tensor, spacing: int, patch_size: Sequence[int]) -> torch.Tensor:
    """Trilinear upsampling of a coarse field (3, *coarse) to the patch grid (3, *patch_size).

    Patch voxel i takes the field at coarse position i / spacing (exactly, for every i).
    """
    full = tuple((n - 1) * spacing + 1 for n in field.shape[1:])
    out = F.interpolate(field[None].float(), size=full, mode="trilinear", align_corners=True)[0]
    return out[(slice(None), *(slice(0, int(n)) for n in patch_size))]


def _source_box(location: PatchLocation, matrix: np.ndarray,
                displacement: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Block [lo, hi) holding every voxel the transformed patch can touch, inside its region."""
    half = (np.asarray(location.size, dtype=np.float64) - 1) / 2
    low, high = -half, half.copy()
    if displacement is not None:
        flat = displacement.reshape(3, -1)
        low, high = low + flat.min(1), high + flat.max(1)
    corners = np.array(np.meshgrid(*zip(low, high), indexing="ij")).reshape(3, -1)
    points = matrix @ corners + location.centre[:, None]
    region_lo = np.asarray(location.region_start)
    region_hi = np.asarray(location.region_stop)
    # one voxel more on each side than the trilinear/nearest reach: float32 rounding on the device
    lo = np.maximum(np.floor(points.min(1)).astype(int) - 1, region_lo)
    hi = np.minimum(np.floor(points.max(1)).astype(int) + 3, region_hi)
    return lo, np.maximum(hi, lo + 1)


def _read(image: np.ndarray, labels: np.ndarray | None, masks: np.ndarray | None,
          lo: Sequence[int], hi: Sequence[int]) -> dict[str, np.ndarray]:
    size = tuple(b - a for a, b in zip(lo, hi))
    out = {"block": read_block(image, lo, hi),
           "labels": (np.zeros(size, np.uint8) if labels is None
                      else read_block(labels, lo, hi).astype(np.uint8, copy=False))}
    if masks is not None:
        out["masks"] = read_block(masks, lo, hi)
    return out


def _flags(axes: Sequence[int]) -> np.ndarray:
    return np.array([a in axes for a in range(3)])


def draw_block(augmentation: PatchAugmentation, image: np.ndarray, labels: np.ndarray | None,
               masks: np.ndarray | None, location: PatchLocation, rng: np.random.Generator,
               epoch: int) -> dict[str, Any]:
    """The worker's half of one sample: its block of the case and its augmentation parameters.

    Args:
        augmentation: ``isensee2017``, ``flips`` or ``none``.
        image: (C, X, Y, Z) cached case (memmap; only the block is read).
        labels: (X, Y, Z) uint8 canonical labels or None.
        masks: (X, Y, Z) uint8 packed brain masks of the case (bit c = channel c), or None when
            the intensity handling needs none.
        location: where the patch goes (:func:`~brats.training.sampling.sample_location`).
        rng: the only source of randomness.
        epoch: selects the augmentation phase.

    Returns:
        numpy arrays: ``block`` (C, bx, by, bz) in the cache dtype, ``labels`` (bx, by, bz) uint8,
        ``masks`` (bx, by, bz) uint8 if asked, ``flips`` (3,) bool; for ``isensee2017`` also
        ``centre`` (3,), ``matrix`` (3, 3), ``region_lo``/``region_hi`` (3,) float64 in block
        voxels, ``elastic`` bool, ``field`` (3, *coarse) float32, ``spacing`` int and the intensity
        parameters ``contrast`` (C,), ``gamma`` (), ``brightness`` (C,) float64 with their
        ``*_on`` flags.
    """
    if isinstance(augmentation, (NoAugmentation, FlipAugmentation)):
        sample = _read(image, labels, masks, location.start, location.stop)
        axes = (RandomFlip(augmentation.axes, augmentation.p).draw(rng).axes
                if isinstance(augmentation, FlipAugmentation) else ())
        return {**sample, "flips": _flags(axes)}
    if not isinstance(augmentation, IsenseeAugmentation):
        raise TypeError(f"no device backend for augmentation {augmentation.name!r}")
    phase = augmentation.phase(epoch)
    spatial, mirror, contrast, gamma, brightness = augmentation._steps[phase.start_epoch]
    spacing = coarse_spacing(phase.elastic_sigma[0])
    displacement, angles, scale = spatial.draw_parts(
        rng, location.size, functools.partial(coarse_field, spacing=spacing))
    matrix = rotation_scale_matrix(angles, scale)
    lo, hi = _source_box(location, matrix, displacement)
    channels = image.shape[0]
    flips = mirror.draw(rng).axes
    factors = contrast.draw(rng, channels)
    value = gamma.draw(rng)
    shifts = brightness.draw(rng, channels)
    field = (np.zeros((3, *coarse_shape(location.size, spacing)), np.float32)
             if displacement is None else displacement)
    return {**_read(image, labels, masks, lo, hi), "flips": _flags(flips),
            "centre": location.centre - lo, "matrix": matrix,
            "region_lo": np.asarray(location.region_start, np.float64) - lo,
            "region_hi": np.asarray(location.region_stop, np.float64) - lo,
            "elastic": displacement is not None, "field": field, "spacing": spacing,
            "contrast_on": factors is not None,
            "contrast": np.asarray(factors or (1.0,) * channels, np.float64),
            "gamma_on": value is not None, "gamma": np.float64(1.0 if value is None else value),
            "brightness_on": shifts is not None,
            "brightness": np.asarray(shifts or (0.0,) * channels, np.float64)}


def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack drawn samples into a batch; blocks of different sizes are zero-padded at their end.

    Padding never reaches the output: every sampling coordinate is clamped into (image) or
    checked against (labels, masks) the sample's own region, which lies inside its block.
    """
    batch: dict[str, torch.Tensor] = {}
    for key in samples[0]:
        arrays = [np.asarray(s[key]) for s in samples]
        if key in BLOCK_KEYS:
            shape = np.max([a.shape for a in arrays], axis=0)
            stacked = np.zeros((len(arrays), *shape), dtype=arrays[0].dtype)
            for out, a in zip(stacked, arrays):
                out[tuple(slice(0, n) for n in a.shape)] = a
        else:
            stacked = np.stack(arrays)
        batch[key] = torch.from_numpy(stacked)
    return batch


def flip_each(tensor: torch.Tensor, flips: Sequence[Sequence[bool]]) -> torch.Tensor:
    """Mirror sample b of a (B, ..., X, Y, Z) tensor along the spatial axes where ``flips[b]``."""
    if not any(any(f) for f in flips):
        return tensor
    spatial = tensor.ndim - 3
    return torch.stack([t.flip([spatial - 1 + a for a in range(3) if f[a]]) if any(f) else t
                        for t, f in zip(tensor, flips)])


def unpack_bits(packed: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, X, Y, Z) uint8 packed masks → (B, channels, X, Y, Z) bool."""
    shifts = torch.arange(channels, device=packed.device, dtype=torch.uint8).view(1, -1, 1, 1, 1)
    return ((packed[:, None] >> shifts) & 1).bool()


def _channel_range(x: torch.Tensor, start_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max over the dimensions from ``start_dim`` on, kept as size-1 dimensions."""
    low, high = torch.aminmax(x.flatten(start_dim), dim=-1)
    shape = (*x.shape[:start_dim], *(1,) * (x.ndim - start_dim))
    return low.view(shape), high.view(shape)


def stretch(x: torch.Tensor, outside: torch.Tensor, clip: tuple[float, float] | None = None
            ) -> torch.Tensor:
    """Batched :func:`~brats.training.augment.stretch_to_unit`: per sample and channel, optionally
    clip, then min-max to [0, 1] over the brain mask; 0 outside it and where the mask is empty
    or flat.

    Args:
        x: (B, C, X, Y, Z) float32.
        outside: (B, C, X, Y, Z) bool, True outside the brain masks.

    Returns:
        (B, C, X, Y, Z) float32 (a new tensor).
    """
    if clip is not None:
        x = x.clamp(clip[0], clip[1])
    masked = x.masked_fill(outside, torch.inf)
    low = masked.flatten(2).amin(-1)[..., None, None, None]
    high = masked.masked_fill_(outside, -torch.inf).flatten(2).amax(-1)[..., None, None, None]
    span = high - low
    # an empty or flat mask divides by ∞: 0 inside, and outside is 0 anyway
    out = (x - low).div_(torch.where(span > 0, span, torch.inf))
    return out.masked_fill_(outside, 0.0)


def contrast(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Batched :func:`~brats.training.augment.adjust_contrast`; ``factors`` (B, C)."""
    mean = x.mean(dim=(2, 3, 4), keepdim=True)
    low, high = _channel_range(x, 2)
    out = (x - mean).mul_(factors.float()[:, :, None, None, None]).add_(mean)
    return torch.maximum(torch.minimum(out, high, out=out), low, out=out)


def gamma(x: torch.Tensor, gammas: torch.Tensor, epsilon: float = 1e-7) -> torch.Tensor:
    """Batched :func:`~brats.training.augment.adjust_gamma`; one gamma per sample, ``gammas`` (B,)."""
    low, high = _channel_range(x, 1)
    span = high.double() - low.double()
    g = gammas.float().view(-1, 1, 1, 1, 1)
    out = (x - low).div_((span + epsilon).float()).pow_(g).mul_(span.float()).add_(low)
    return torch.maximum(torch.minimum(out, (low.double() + span).float(), out=out), low, out=out)


class DeviceAugmenter:
    """The device's half: a collated batch of drawn samples → augmented patches, one batched step.

    Args:
        patch_size: (X, Y, Z) of the output patches.
        stretch_intensity: apply the Isensee intensity handling (clip, min-max inside the
            brain masks; the batch must then carry ``masks``).
        channels: image channels (4 modalities).
    """

    def __init__(self, patch_size: Sequence[int], stretch_intensity: bool, channels: int = 4
                 ) -> None:
        self.patch_size = tuple(int(n) for n in patch_size)
        self.stretch_intensity = stretch_intensity
        self.channels = channels
        self._mesh: dict[torch.device, torch.Tensor] = {}

    def mesh(self, device: torch.device) -> torch.Tensor:
        """(3, N) float32 patch offsets from its centre (MONAI ``create_grid``), X-major."""
        if device not in self._mesh:
            axes = [torch.arange(n, dtype=torch.float32, device=device) - (n - 1) / 2
                    for n in self.patch_size]
            self._mesh[device] = torch.stack(torch.meshgrid(*axes, indexing="ij")).reshape(3, -1)
        return self._mesh[device]

    def __call__(self, batch: Mapping[str, torch.Tensor], device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch from :func:`collate` on ``device``.

        Returns:
            ``(image, labels)``: (B, C, *patch_size) float32 and (B, *patch_size) uint8 canonical
            labels, on ``device``.
        """
        cuda = device.type == "cuda"

        def move(key: str) -> torch.Tensor:
            return batch[key].to(device, non_blocking=cuda)

        block = move("block").float()
        labels = move("labels")
        masks = move("masks") if "masks" in batch else None
        if self.stretch_intensity and masks is None:
            raise ValueError("the Isensee intensity handling needs the cached brain masks")
        if "matrix" in batch:
            block, labels, masks = self._resample(batch, block, labels, masks, device)
        flips = batch["flips"].tolist()
        image, labels = flip_each(block, flips), flip_each(labels, flips)
        outside = None if masks is None else ~flip_each(unpack_bits(masks, self.channels), flips)
        if self.stretch_intensity:
            image = stretch(image, outside, ISENSEE_CLIP)
        if "contrast" in batch:
            image = self._intensity(batch, image, outside, move)
        return image, labels

    def _intensity(self, batch, image, outside, move) -> torch.Tensor:
        """Contrast, gamma, (stretch), brightness, each on the samples whose ``*_on`` flag is
        set (the flags are read on the host: no device synchronisation)."""
        def step(flag: str, new) -> torch.Tensor:
            on = batch[flag]
            if bool(on.all()):
                return new(image)
            if not bool(on.any()):
                return image
            return torch.where(move(flag).view(-1, 1, 1, 1, 1), new(image), image)

        image = step("contrast_on", lambda x: contrast(x, move("contrast")))
        image = step("gamma_on", lambda x: gamma(x, move("gamma")))
        if self.stretch_intensity:
            image = stretch(image, outside)
        shifts = move("brightness").float()[:, :, None, None, None]
        return step("brightness_on", lambda x: x + shifts)

    def _resample(self, batch, block, labels, masks, device):
        """One sampling grid per sample: image trilinear, labels and masks nearest."""
        size = self.patch_size
        count = block.shape[0]
        cuda = device.type == "cuda"
        points = self.mesh(device).expand(count, 3, -1).clone()
        for b in torch.nonzero(batch["elastic"]).flatten().tolist():
            field = batch["field"][b].to(device, non_blocking=cuda)
            points[b] += upsample_field(field, int(batch["spacing"][b]), size).reshape(3, -1)

        def small(key: str) -> torch.Tensor:
            return batch[key].to(device, non_blocking=cuda).float()

        coords = torch.baddbmm(small("centre")[:, :, None], small("matrix"), points)
        low, high = small("region_lo")[:, :, None], small("region_hi")[:, :, None]
        extent = torch.tensor(block.shape[2:], device=device, dtype=torch.float32)
        clamped = torch.maximum(torch.minimum(coords, high - 1), low)
        normalised = clamped * (2 / (extent - 1).clamp(min=1))[None, :, None] - 1
        grid = normalised.flip(1).transpose(1, 2).reshape(count, *size, 3)
        # channels-last: each sampled voxel reads its C values from one place (2x on CPUs)
        image = F.grid_sample(block.contiguous(memory_format=torch.channels_last_3d), grid,
                              mode="bilinear", padding_mode="border", align_corners=True)
        index = torch.floor(coords + 0.5)
        inside = ((index >= low) & (index < high)).all(1)
        index = index.long()
        dims = block.shape[2:]
        for axis in range(3):
            index[:, axis].clamp_(0, dims[axis] - 1)
        flat = (index[:, 0] * dims[1] + index[:, 1]) * dims[2] + index[:, 2]
        keep = inside.to(torch.uint8)

        def gather(volume: torch.Tensor) -> torch.Tensor:
            return (volume.reshape(count, -1).gather(1, flat) * keep).reshape(count, *size)

        return image, gather(labels), None if masks is None else gather(masks)
