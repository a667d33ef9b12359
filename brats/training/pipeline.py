"""The training-patch pipeline: one cached case + a generator → one augmented training patch
(scipy backend, :meth:`PatchPipeline.__call__`), or its block and drawn parameters for the
batched device backend (:meth:`PatchPipeline.draw_block`).

:class:`PatchPipeline` places a patch (:func:`brats.training.sampling.sample_location`), reads only
the block of the (memory-mapped) case it needs, and augments it
(:func:`brats.training.augment.build_augmentation`). Every random choice comes from the
``np.random.Generator`` passed to each call, so one generator state gives one patch bit for bit.
That is what lets the trainer's per-sample seeding make ``--resume`` exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from brats.errors import BratsInputError
from brats.training.augment import build_augmentation
from brats.training.batch_augment import draw_block
from brats.training.sampling import BACKGROUNDS, PatchLocation, as_shape3, sample_location

INTENSITIES = ("isensee2017", "none")


class PatchPipeline:
    """Turn a cached case into one training patch.

    Args:
        patch_size: patch size (X, Y, Z) in voxels, e.g. (128, 128, 128).
        crop_size: the region a patch is drawn from and whose data the spatial augmentation may
            use (Isensee: (160, 192, 160)); None: the whole case.
        foreground_fraction: probability of centring a patch on a stored foreground voxel.
        augmentation: ``"isensee2017"``, ``"flips"`` or ``"none"`` (see
            :func:`~brats.training.augment.build_augmentation`).
        augmentation_kwargs: settings for the augmentation, e.g. ``{"interpolation_order": 1}``.
        intensity: ``"isensee2017"``: clip to [−5, 5] and min-max to [0, 1] inside per-channel
            hole-filled brain masks (as :func:`~brats.training.augment.isensee_intensity_preprocess`
            does at inference); ``"none"``: the z-scored data keeps its scale.
        full_axes: array axes along which an untargeted patch centre is uniform over the whole
            case (Wang's slice axis; :func:`~brats.training.sampling.sample_location`).
        background: ``"box"`` or ``"brain"`` (untargeted patches centred on a brain voxel
            outside the tumour, as DeepMedic; needs the case's brain masks).

    Raises:
        BratsInputError: invalid sizes, fraction, intensity or augmentation settings.

    Example:
        >>> pipeline = PatchPipeline((128, 128, 128), crop_size=(160, 192, 160))
        >>> image, labels = pipeline(case.image, case.labels, case.record.locations,
        ...                          np.random.default_rng(0), epoch=0)
        >>> image.shape, image.dtype, labels.shape, labels.dtype
        ((4, 128, 128, 128), dtype('float32'), (128, 128, 128), dtype('uint8'))
    """

    def __init__(self, patch_size: Sequence[int], crop_size: Sequence[int] | None = None,
                 foreground_fraction: float = 0.0, augmentation: str = "isensee2017",
                 augmentation_kwargs: Mapping[str, Any] | None = None,
                 intensity: str = "isensee2017", full_axes: Sequence[int] = (),
                 background: str = "box") -> None:
        self.patch_size = as_shape3(patch_size, "patch_size")
        self.crop_size = None if crop_size is None else as_shape3(crop_size, "crop_size")
        if self.crop_size is not None and any(c < p for c, p in zip(self.crop_size, self.patch_size)):
            raise BratsInputError(f"crop_size {self.crop_size} must be at least patch_size "
                                  f"{self.patch_size} on every axis")
        try:
            self.foreground_fraction = float(foreground_fraction)
        except (TypeError, ValueError):
            raise BratsInputError(
                f"foreground_fraction must be a number in [0, 1], got {foreground_fraction!r}") from None
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise BratsInputError(
                f"foreground_fraction must be in [0, 1], got {foreground_fraction!r}")
        if intensity not in INTENSITIES:
            raise BratsInputError(f"unknown intensity {intensity!r}; valid: {list(INTENSITIES)}")
        self.intensity = intensity
        self.augmentation = build_augmentation(augmentation, **dict(augmentation_kwargs or {}))
        if background not in BACKGROUNDS:
            raise BratsInputError(f"unknown data.background {background!r}; expected one of "
                                  + ", ".join(BACKGROUNDS))
        self.full_axes = tuple(sorted({int(a) for a in full_axes}))
        if any(a not in (0, 1, 2) for a in self.full_axes):
            raise BratsInputError(f"full placement axes must be in 0..2, got {list(full_axes)}")
        if self.crop_size is not None and (background != "box" or self.full_axes):
            raise BratsInputError("data.background 'brain' and data.slice_placement 'full' need "
                                  "data.crop_size null")
        self.background = background

    @staticmethod
    def _check(image: np.ndarray, labels: np.ndarray | None) -> None:
        if image.ndim != 4:
            raise BratsInputError(f"image must be (C, X, Y, Z), got shape {image.shape}")
        if labels is not None and labels.shape != image.shape[1:]:
            raise BratsInputError(f"labels shape {labels.shape} does not match image "
                                  f"{image.shape[1:]}")

    def __call__(self, image: np.ndarray, labels: np.ndarray | None,
                 locations: Mapping[str, Sequence[Sequence[int]]] | None,
                 rng: np.random.Generator, epoch: int, masks: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Draw one patch.

        Args:
            image: (C, X, Y, Z) z-scored case image (a memmap is fine; only a block is read).
            labels: (X, Y, Z) canonical labels (0, 1, 2, 4), or None (the patch labels are then 0).
            locations: ``CaseRecord.locations`` (str(label) → [[x, y, z], ...]) for foreground
                sampling; may be None or empty.
            rng: the only source of randomness.
            epoch: the training epoch (selects the augmentation phase).
            masks: (X, Y, Z) packed brain masks (non-zero in the brain), needed with
                ``background="brain"``.

        Returns:
            ``(image, labels)``: (C, *patch_size) float32 and (*patch_size) uint8.
        """
        self._check(image, labels)
        location = self.place(image, labels, masks, locations, rng)
        sample = self.augmentation(image, labels, location, rng, epoch,
                                   stretch=self.intensity == "isensee2017")
        return (np.ascontiguousarray(sample.image, dtype=np.float32),
                np.ascontiguousarray(sample.labels, dtype=np.uint8))

    def place(self, image: np.ndarray, labels: np.ndarray | None, masks: np.ndarray | None,
              locations: Mapping[str, Sequence[Sequence[int]]] | None,
              rng: np.random.Generator) -> PatchLocation:
        """Where the next patch goes (:func:`~brats.training.sampling.sample_location` with
        this pipeline's settings)."""
        return sample_location(image.shape[1:], self.patch_size, rng, crop_size=self.crop_size,
                               foreground_fraction=self.foreground_fraction, locations=locations,
                               full_axes=self.full_axes, background=self.background,
                               brain=masks, labels=labels)

    def draw_block(self, image: np.ndarray, labels: np.ndarray | None, masks: np.ndarray | None,
                   locations: Mapping[str, Sequence[Sequence[int]]] | None,
                   rng: np.random.Generator, epoch: int) -> tuple[dict[str, Any], PatchLocation]:
        """The device backend's worker half: place the patch, read its block, draw its
        augmentation (:func:`~brats.training.batch_augment.draw_block`); ``masks`` are the case's
        packed brain masks (needed with the Isensee intensity handling).

        Returns:
            The sample's arrays for :func:`~brats.training.batch_augment.collate`, and where the
            patch went.
        """
        self._check(image, labels)
        location = self.place(image, labels, masks, locations, rng)
        return (draw_block(self.augmentation, image, labels, masks if self.needs_masks else None,
                           location, rng, epoch), location)

    @property
    def needs_masks(self) -> bool:
        """True when the intensity handling works inside brain masks."""
        return self.intensity == "isensee2017"

    @property
    def needs_brain(self) -> bool:
        """True when patch placement reads the case's brain masks."""
        return self.background == "brain"

    def describe(self) -> dict[str, Any]:
        """The pipeline's settings, JSON-friendly."""
        return {"patch_size": list(self.patch_size),
                "crop_size": None if self.crop_size is None else list(self.crop_size),
                "foreground_fraction": self.foreground_fraction,
                "augmentation": self.augmentation.describe(),
                "intensity": self.intensity, "full_axes": list(self.full_axes),
                "background": self.background}

    def __repr__(self) -> str:
        aug = self.augmentation.describe()
        name = aug.pop("name")
        settings = ", ".join(f"{k}={v!r}" for k, v in aug.items() if k != "phases")
        if "phases" in aug:
            settings += (", " if settings else "") + \
                f"phases@{[p['start_epoch'] for p in aug['phases']]}"
        return (f"PatchPipeline(patch_size={self.patch_size}, crop_size={self.crop_size}, "
                f"foreground_fraction={self.foreground_fraction}, augmentation={name!r}"
                f"({settings}), intensity={self.intensity!r})")
