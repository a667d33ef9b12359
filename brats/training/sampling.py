"""Where a training patch comes from: patch placement and zero-padded reads of a case's sub-block.

A patch is placed in one of two ways, drawing only from the ``np.random.Generator`` passed in:

* **random** (Isensee et al. 2017, ``BatchGenerator3D_random_sampling`` + batchgenerators'
  ``random_crop``): a random ``crop_size`` region of the case (along an axis where the case is
  smaller than the region, the case is centred in it and zero-padded), then the patch uniformly
  inside that region, i.e. its centre uniform in [p/2, size − p/2] of the region (on the voxel
  grid). Without ``crop_size`` the patch is uniform in the case itself (centred and zero-padded
  where the case is smaller than the patch).
* **foreground** (nnU-Net-style oversampling): with probability ``foreground_fraction`` the patch
  is centred on a random stored voxel (``CaseRecord.locations``) of a random *present* foreground
  label (each label with at least one stored voxel is equally likely). Its voxel ``p // 2`` per
  axis is that voxel; its region is the ``crop_size`` box centred on the patch. A case without
  stored foreground falls back to random placement.

Two options change the untargeted ("random") placement for entries whose originals differ:

* ``full_axes`` (Wang et al. 2017, ``batch_sample_model = ('full', 'valid', 'valid')`` in
  taigw/brats17 @d44297e ``util/data_loader.py`` / ``util/data_process.py``
  ``get_random_roi_sampling_center``): along these axes the patch centre (voxel ``p // 2``) is
  uniform in [0, n] (both ends included, as the original's ``random.randint``), so the outer
  slices are targets too and the context beyond the volume is zero padding.
* ``background="brain"`` (DeepMedic, deepmedic/deepmedic @e10ba7c ``deepmedic/dataManagement/
  sampling.py``: background centres anywhere in the ROI mask outside the tumour, the image
  padded by half the receptive field): the patch centre (voxel ``p // 2``) is a uniform voxel of
  the brain mask with label 0, found by rejection sampling in the case box, and the patch is
  zero-padded where it leaves the case.

Every placement yields a :class:`PatchLocation`: the patch box (integer voxel start, case
coordinates, possibly outside the case) and its **region**, the box the spatial augmentation may
read from. The untransformed patch always lies inside its region. A transformed patch coordinate
that leaves the region sees the region's border value for the image (batchgenerators' 'nearest'
border mode on the 160×192×160 crop) and label 0 for labels and brain masks. Without
``crop_size`` the region is the case itself, grown to hold the patch where the case is smaller.

:func:`read_block` reads only the requested box from a (memory-mapped) array, zero outside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from brats.errors import BratsInputError

Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class PatchLocation:
    """A patch box and the region around it, in voxel coordinates of the (cached) case.

    Attributes:
        start: first voxel of the patch per axis (may be negative: zero padding).
        size: patch size (X, Y, Z).
        region_start, region_stop: the region box, stop exclusive; contains the patch.
        foreground: True when the patch was centred on a foreground voxel.
    """

    start: Shape3
    size: Shape3
    region_start: Shape3
    region_stop: Shape3
    foreground: bool = False

    @property
    def stop(self) -> Shape3:
        """One past the patch's last voxel per axis."""
        return tuple(a + n for a, n in zip(self.start, self.size))  # type: ignore[return-value]

    @property
    def centre(self) -> np.ndarray:
        """The patch grid's centre, ``start + (size − 1) / 2`` per axis, as a (3,) float64 array.

        Voxel ``i`` of the patch sits at ``centre + i − (size − 1) / 2``, so the identity
        transform about this centre reproduces the crop ``[start, stop)`` exactly.
        """
        return np.asarray(self.start, dtype=np.float64) + (np.asarray(self.size) - 1) / 2.0


def as_shape3(value: Sequence[int] | int, name: str) -> Shape3:
    """Validate a 3-D size (an int means a cube); raises :class:`BratsInputError` when invalid."""
    if isinstance(value, (int, np.integer)):
        value = (int(value),) * 3
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise BratsInputError(f"{name} must be three positive integers, got {value!r}") from None
    if len(shape) != 3 or min(shape) < 1 or any(float(v) != s for v, s in zip(value, shape)):
        raise BratsInputError(f"{name} must be three positive integers, got {value!r}")
    return shape  # type: ignore[return-value]


def _present_foreground(locations: Mapping[str, Sequence[Sequence[int]]] | None) -> list[np.ndarray]:
    """The stored voxel lists of the labels that have any, ordered by label value."""
    if not locations:
        return []
    out = []
    for key in sorted(locations, key=lambda k: int(k)):
        if int(key) == 0:
            continue
        coords = np.asarray(locations[key], dtype=np.int64).reshape(-1, 3)
        if len(coords):
            out.append(coords)
    return out


def _uniform_start(n: int, p: int, rng: np.random.Generator) -> int:
    """A uniform start of a length-``p`` window in ``[0, n)``, or centred if ``n < p``."""
    if n >= p:
        return int(rng.integers(0, n - p + 1))
    return -((p - n) // 2)


#: Placements of patches that are not centred on foreground.
BACKGROUNDS = ("box", "brain")
#: Placements along a view's slice axis: inside the case, or centred anywhere in it.
SLICE_PLACEMENTS = ("valid", "full")
#: Rejection-sampling draws for a brain background centre before falling back to the case box.
MAX_BACKGROUND_DRAWS = 1000


def _brain_background_centre(shape: Shape3, rng: np.random.Generator, brain: np.ndarray,
                             labels: np.ndarray | None) -> np.ndarray | None:
    """A uniform voxel of ``brain`` (any non-zero value) where ``labels`` is 0, by rejection
    sampling of uniform voxels of the case; None when none is found in
    :data:`MAX_BACKGROUND_DRAWS` draws (a case that is all tumour or has no brain)."""
    for _ in range(MAX_BACKGROUND_DRAWS):
        voxel = rng.integers(0, shape)
        index = tuple(int(v) for v in voxel)
        if brain[index] and (labels is None or labels[index] == 0):
            return voxel
    return None


def sample_location(shape: Sequence[int], patch_size: Sequence[int], rng: np.random.Generator, *,
                    crop_size: Sequence[int] | None = None, foreground_fraction: float = 0.0,
                    locations: Mapping[str, Sequence[Sequence[int]]] | None = None,
                    full_axes: Sequence[int] = (), background: str = "box",
                    brain: np.ndarray | None = None, labels: np.ndarray | None = None
                    ) -> PatchLocation:
    """Place one patch in a case of spatial ``shape`` (see the module docstring).

    Args:
        shape: the case's spatial shape (X, Y, Z).
        patch_size: patch size (X, Y, Z) in voxels.
        rng: the only source of randomness.
        crop_size: Isensee's region size (160, 192, 160), at least ``patch_size``; None: the case.
        foreground_fraction: probability of centring on a foreground voxel, in [0, 1].
        locations: ``CaseRecord.locations``: str(label) → list of [x, y, z] voxels.
        full_axes: axes (0–2) along which an untargeted patch centre is uniform in [0, n]
            (Wang's slice axis); only without ``crop_size``.
        background: ``"box"`` (uniform in the case / region) or ``"brain"`` (centred on a
            brain voxel outside the tumour; needs ``brain``; only without ``crop_size``).
        brain: (X, Y, Z) array, non-zero inside the brain (e.g. the packed brain masks).
        labels: (X, Y, Z) canonical labels, for ``background="brain"`` (None: no tumour).

    Returns:
        The :class:`PatchLocation`.

    Raises:
        BratsInputError: invalid sizes or fraction.
    """
    shape3 = as_shape3(shape, "case shape")
    patch = as_shape3(patch_size, "patch_size")
    crop = None if crop_size is None else as_shape3(crop_size, "crop_size")
    if crop is not None and any(c < p for c, p in zip(crop, patch)):
        raise BratsInputError(f"crop_size {crop} must be at least patch_size {patch} on every axis")
    if not 0.0 <= foreground_fraction <= 1.0:
        raise BratsInputError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
    if background not in BACKGROUNDS:
        raise BratsInputError(f"unknown data.background {background!r}; expected one of "
                              + ", ".join(BACKGROUNDS))
    if crop is not None and (background != "box" or full_axes):
        raise BratsInputError("data.background 'brain' and full slice placement need crop_size null")
    if background == "brain" and brain is None:
        raise BratsInputError("data.background 'brain' needs the case's brain mask")

    foreground = False
    if foreground_fraction > 0.0 and rng.random() < foreground_fraction:
        present = _present_foreground(locations)
        if present:
            coords = present[int(rng.integers(len(present)))]
            voxel = coords[int(rng.integers(len(coords)))]
            start = tuple(int(v) - p // 2 for v, p in zip(voxel, patch))
            foreground = True
            if crop is not None:
                region_start = tuple(a - (c - p) // 2 for a, c, p in zip(start, crop, patch))
                region_stop = tuple(r + c for r, c in zip(region_start, crop))
    if not foreground:
        if crop is not None:
            region_start = tuple(_uniform_start(n, c, rng) for n, c in zip(shape3, crop))
            region_stop = tuple(r + c for r, c in zip(region_start, crop))
            start = tuple(r + int(rng.integers(0, c - p + 1))
                          for r, c, p in zip(region_start, crop, patch))
        else:
            centre = (None if background == "box"
                      else _brain_background_centre(shape3, rng, brain, labels))  # type: ignore[arg-type]
            if centre is not None:
                start = tuple(int(v) - p // 2 for v, p in zip(centre, patch))
            else:
                start = tuple(int(rng.integers(0, n + 1)) - p // 2 if axis in full_axes
                              else _uniform_start(n, p, rng)
                              for axis, (n, p) in enumerate(zip(shape3, patch)))
    if crop is None:
        region_start = tuple(min(0, a) for a in start)
        region_stop = tuple(max(n, a + p) for n, a, p in zip(shape3, start, patch))
    return PatchLocation(start, patch, region_start, region_stop, foreground)  # type: ignore[arg-type]


def read_block(array: np.ndarray, start: Sequence[int], stop: Sequence[int]) -> np.ndarray:
    """Read the box ``[start, stop)`` of the last three axes of ``array``; zero outside the array.

    Only the overlapping part is read, so a memmap stays mostly on disk.

    Args:
        array: (..., X, Y, Z) array, e.g. a (C, X, Y, Z) image or (X, Y, Z) labels memmap.
        start, stop: box corners per spatial axis (stop exclusive; may lie outside the array).

    Returns:
        (..., *(stop − start)) array of ``array``'s dtype (a new array, never a view).
    """
    spatial = array.shape[-3:]
    out = np.zeros((*array.shape[:-3], *(b - a for a, b in zip(start, stop))), dtype=array.dtype)
    src, dst = [], []
    for a, b, n in zip(start, stop, spatial):
        lo, hi = max(a, 0), min(b, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - a, hi - a))
    out[(Ellipsis, *dst)] = array[(Ellipsis, *src)]
    return out
