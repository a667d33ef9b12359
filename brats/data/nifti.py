"""NIfTI reading with one-line errors, and atomic NIfTI writing (nibabel)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from brats.errors import BratsInputError
from brats.io import atomic_path

_READ_ERRORS = (nib.filebasedimages.ImageFileError, EOFError, OSError, ValueError, zlib.error,
                gzip.BadGzipFile)


def read_nifti(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header]:
    """Read a whole NIfTI file.

    Returns:
        ``(array, affine, header)``: the array as stored (scaled only if the header says so),
        the 4×4 voxel-to-world affine in mm, and a copy of the header.

    Raises:
        BratsInputError: the file is missing, unreadable, truncated or not a NIfTI file.
    """
    p = Path(path)
    if not p.is_file():
        raise BratsInputError(f"{p}: file not found")
    try:
        img = nib.load(p)
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise BratsInputError(f"{p}: not a NIfTI file ({type(img).__name__})")
        data = np.asanyarray(img.dataobj)
    except BratsInputError:
        raise
    except _READ_ERRORS as exc:
        raise BratsInputError(
            f"{p}: cannot read NIfTI data, the file is corrupt or truncated ({exc})") from None
    return data, np.asarray(img.affine, dtype=np.float64), img.header.copy()


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
