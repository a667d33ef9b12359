"""NIfTI reading with one-line errors, and atomic NIfTI writing (nibabel).

Reading validates what nibabel does not: a gzip stream is decompressed in full so its CRC-32 is
checked (a flipped bit inside the payload is otherwise read as wrong voxels), the voxel spacing
must be finite and positive, the affine's 3×3 part invertible (a usable orientation) and the data
real and numeric.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from brats.errors import BratsInputError
from brats.io import atomic_path

_READ_ERRORS = (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, EOFError,
                OSError, ValueError, zlib.error, gzip.BadGzipFile)
#: ``sizeof_hdr`` of NIfTI-1 and NIfTI-2 headers (first 4 bytes, either byte order).
_HEADER_SIZES = {348: nib.Nifti1Image, 540: nib.Nifti2Image}


def _image_from_bytes(raw: bytes, p: Path) -> nib.Nifti1Image:
    """A NIfTI-1/2 image from a whole single-file (``.nii``) byte string."""
    if len(raw) < 4:
        raise BratsInputError(f"{p}: cannot read NIfTI data, the file is corrupt or truncated "
                              f"(only {len(raw)} bytes)")
    sizes = {int.from_bytes(raw[:4], order) for order in ("little", "big")}
    kinds = [_HEADER_SIZES[s] for s in sizes if s in _HEADER_SIZES]
    if not kinds:
        raise BratsInputError(f"{p}: cannot read NIfTI data, the file is corrupt or truncated "
                              f"(not a NIfTI header: size field {sorted(sizes)})")
    kind = kinds[0]
    order = "<" if int.from_bytes(raw[:4], "little") in _HEADER_SIZES else ">"
    ndim_offset, pixdim_offset, number = (40, 76, "f4") if kind is nib.Nifti1Image else (16, 104, "f8")
    if len(raw) >= pixdim_offset + 8 * int(number[1]):
        ndim = int(np.frombuffer(raw, f"{order}i{2 if number == 'f4' else 8}", 1, ndim_offset)[0])
        pixdim = np.frombuffer(raw, order + number, 8, pixdim_offset)[1:1 + min(max(ndim, 0), 3)]
        if not (np.isfinite(pixdim).all() and (pixdim > 0).all()):
            raise BratsInputError(f"{p}: voxel size (pixdim) {tuple(float(v) for v in pixdim)} "
                                  "mm; each must be finite and positive")
    holder = nib.FileHolder(fileobj=io.BytesIO(raw))
    return kind.from_file_map({"header": holder, "image": holder})


def check_geometry(affine: np.ndarray, source: str) -> tuple[float, float, float]:
    """Voxel spacing (mm, per array axis) of a usable affine.

    Raises:
        BratsInputError: non-finite entries, zero or non-finite spacing, or a singular 3×3 part
            (no orientation can be derived).
    """
    a = np.asarray(affine, dtype=np.float64)
    if not np.isfinite(a).all():
        raise BratsInputError(f"{source}: the affine (sform/qform) holds NaN or infinite values")
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    if not (spacing > 0).all():
        raise BratsInputError(f"{source}: voxel spacing {tuple(float(s) for s in spacing)} mm; "
                              "every axis needs a positive size (a zero column in the sform?)")
    if abs(np.linalg.det(a[:3, :3] / spacing)) < 1e-3:
        raise BratsInputError(f"{source}: the affine's axes are (nearly) parallel; no usable "
                              "orientation")
    return tuple(float(s) for s in spacing)  # type: ignore[return-value]


def read_nifti(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header]:
    """Read and validate a whole NIfTI file (``.nii`` or ``.nii.gz``).

    Returns:
        ``(array, affine, header)``: the array as stored (scaled only if the header says so),
        the 4×4 voxel-to-world affine in mm, and a copy of the header.

    Raises:
        BratsInputError: the file is missing, unreadable, truncated, fails its gzip CRC, is not a
            NIfTI file, has non-positive pixdims or an unusable affine, or holds non-real data.
    """
    p = Path(path)
    if not p.is_file():
        raise BratsInputError(f"{p}: file not found")
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)  # the whole stream: the CRC-32 and length are verified
        img = _image_from_bytes(raw, p)
        data = np.asanyarray(img.dataobj)
    except BratsInputError:
        raise
    except _READ_ERRORS as exc:
        raise BratsInputError(
            f"{p}: cannot read NIfTI data, the file is corrupt or truncated ({exc})") from None
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)
            or data.dtype == np.bool_):
        raise BratsInputError(f"{p}: data type {data.dtype} is not real numeric")
    affine = np.asarray(img.affine, dtype=np.float64)
    check_geometry(affine, str(p))
    return data, affine, img.header.copy()


def write_nifti(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike[str],
                header: nib.Nifti1Header | None = None) -> None:
    """Write ``array`` with ``affine`` (and optionally a template header) atomically.

    The array's dtype is the stored dtype; any scaling in a template header is reset so values
    are written exactly.
    """
    hdr = header.copy() if header is not None else None
    img = nib.Nifti1Image(np.asarray(array), affine, header=hdr)
    img.set_data_dtype(np.asarray(array).dtype)
    img.header.set_slope_inter(None, None)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
