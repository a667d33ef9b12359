"""A BraTS case on disk (:class:`Case`) and in memory (:class:`CaseData`), with input validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from brats.data.geometry import voxel_spacing
from brats.data.labels import to_canonical
from brats.data.nifti import read_nifti
from brats.data.releases import get_release
from brats.errors import BratsInputError

#: Largest difference (mm) tolerated between affines of the files of one case.
AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class CaseData:
    """One loaded case.

    Attributes:
        id: case id, e.g. ``Brats17_TCIA_105_1``.
        image: (4, X, Y, Z) float32 in the order t1, t1ce, t2, flair, intensities as stored.
        labels: (X, Y, Z) uint8 canonical labels (0, 1 NCR/NET, 2 ED, 4 ET[, 5 RC]) or None.
        affine: (4, 4) float64 voxel-to-world affine, mm.
        header: NIfTI header of the first modality (t1).
    """

    id: str
    image: np.ndarray
    labels: np.ndarray | None
    affine: np.ndarray
    header: nib.Nifti1Header = field(repr=False)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis."""
        return voxel_spacing(self.affine)


@dataclass(frozen=True)
class Case:
    """Where one case's files are.

    Attributes:
        id: case id.
        release: release name (``"2017"`` … ``"2024"``, ``"msd"``).
        images: paths of t1, t1ce, t2, flair (for MSD the same 4-D file four times).
        seg: segmentation path, or None for validation/test cases.
        grade: ``"HGG"``/``"LGG"`` where the layout tells (2017–2019 training folders), else None.
    """

    id: str
    release: str
    images: tuple[Path, Path, Path, Path]
    seg: Path | None = None
    grade: str | None = None

    def load(self, with_labels: bool = True) -> CaseData:
        """Read and validate all files of the case.

        Returns:
            :class:`CaseData` with the image in canonical modality order and canonical labels.

        Raises:
            BratsInputError: a file is missing, unreadable or truncated; data is not 3-D; shapes
                or affines disagree between files; NaN/Inf voxels; an all-zero modality; labels
                outside the release's set or outside the brain (all modalities 0).
        """
        release = get_release(self.release)
        if release.is_msd:
            data, affine, header = read_nifti(self.images[0])
            if data.ndim != 4 or data.shape[3] != 4:
                raise BratsInputError(
                    f"{self.images[0]}: expected a 4-D image with 4 channels (MSD layout), "
                    f"found shape {data.shape}")
            channels = [data[..., c] for c in release.msd_channels]
            sources = [f"{self.images[0]} (channel {c})" for c in release.msd_channels]
            affines = [affine] * 4
        else:
            channels, affines, sources, header = [], [], [], None
            for path in self.images:
                data, affine, hdr = read_nifti(path)
                channels.append(data)
                affines.append(affine)
                sources.append(str(path))
                header = hdr if header is None else header
        channels = [_as_3d(array, source) for source, array in zip(sources, channels)]
        for source, array in zip(sources, channels):
            _check_finite(array, source)
        reference = sources[0]
        for source, array, affine in zip(sources[1:], channels[1:], affines[1:]):
            _check_same_grid(array.shape, affine, channels[0].shape, affines[0], source, reference)
        for source, array in zip(sources, channels):
            if not np.any(array):
                raise BratsInputError(f"{source}: every voxel is 0 (an empty modality)")
        image = np.stack([np.asarray(c, dtype=np.float32) for c in channels])
        labels = None
        if with_labels and self.seg is not None:
            seg, seg_affine, _ = read_nifti(self.seg)
            seg = _as_3d(seg, str(self.seg))
            _check_finite(seg, str(self.seg))
            _check_same_grid(seg.shape, seg_affine, channels[0].shape, affines[0], str(self.seg),
                             reference)
            if not np.array_equal(seg, np.round(seg)):
                raise BratsInputError(f"{self.seg}: label map holds non-integer values")
            labels = to_canonical(seg.astype(np.int64), release.convention, source=str(self.seg))
            outside = int(np.count_nonzero(labels[~np.any(image != 0, axis=0)]))
            if outside:
                raise BratsInputError(f"{self.seg}: {outside} labelled voxels lie outside the "
                                      "brain (where all modalities are 0)")
        return CaseData(self.id, image, labels, affines[0], header)


def _as_3d(array: np.ndarray, source: str) -> np.ndarray:
    """The array as (X, Y, Z): a trailing singleton 4th axis is dropped, anything else is an error."""
    if array.ndim == 4 and array.shape[3] == 1:
        return array[..., 0]
    if array.ndim != 3:
        raise BratsInputError(f"{source}: expected a 3-D volume, found shape {array.shape}")
    return array


def _check_finite(array: np.ndarray, source: str) -> None:
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise BratsInputError(f"{source}: {bad} voxels are NaN or infinite")


def _check_same_grid(shape: tuple[int, ...], affine: np.ndarray, ref_shape: tuple[int, ...],
                     ref_affine: np.ndarray, source: str, reference: str) -> None:
    if tuple(shape[:3]) != tuple(ref_shape[:3]):
        raise BratsInputError(
            f"{source}: shape {tuple(shape[:3])} differs from {tuple(ref_shape[:3])} of {reference}")
    if not np.allclose(affine, ref_affine, rtol=0, atol=AFFINE_TOLERANCE_MM):
        diff = float(np.abs(affine - ref_affine).max())
        raise BratsInputError(
            f"{source}: affine differs from that of {reference} by up to {diff:.4g} mm "
            "(the files are not in the same space)")
