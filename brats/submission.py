"""Challenge submissions: write one label map per case, check a folder as the portals do, zip it.

Rules: one single-channel, 3-D, integer (uint8) NIfTI per case named ``<case id>.nii.gz``
(the CBICA portal's task pages; both original 2017 entries' writers, MIC-DKFZ/BraTS2017
``save_pred_seg_as_nifti.py`` and taigw/brats17 ``test.py``), with the geometry (shape, affine)
of the case's own input images (CaPTk ``Utilities.cxx`` refuses misaligned images) and the label
values of the release (ET is 4 up to 2022 and 3 from 2023: writing 3 for a 2017 submission
silently zeroes ET on the official scorer). Archives are flat.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from brats.data.case import AFFINE_TOLERANCE_MM
from brats.data.geometry import BRATS_SHAPE, brats_affine
from brats.data.labels import from_canonical, get_convention
from brats.data.layouts import discover
from brats.data.nifti import read_nifti, write_nifti
from brats.data.releases import Release, get_release
from brats.errors import BratsInputError
from brats.io import atomic_path
from brats.manifest import MANIFEST_NAME

LEGACY_RELEASES = ("2017", "2018", "2019", "2020", "2021")


def submission_name(case_id: str) -> str:
    """File name of a case's prediction: ``<case id>.nii.gz`` (every release)."""
    return f"{case_id}.nii.gz"


def _name_regex(release: Release) -> re.Pattern[str]:
    return re.compile(rf"^{release.case_pattern}\.nii\.gz$")


def write_submission(labels: np.ndarray, reference_image: str | os.PathLike[str] | nib.Nifti1Image,
                     path: str | os.PathLike[str], release: str = "2017",
                     overwrite: bool = False) -> Path:
    """Write one case's prediction as the challenge expects it.

    Args:
        labels: (X, Y, Z) canonical label map (0, 1 NCR/NET, 2 ED, 4 ET) in the original grid.
        reference_image: one of the case's input images (path or loaded image); its affine and
            header are copied.
        path: output file, named ``<case id>.nii.gz``.
        release: release whose label values and file name pattern to use.
        overwrite: replace an existing file (refused otherwise).

    Returns:
        The path written (atomically).

    Raises:
        BratsInputError: wrong name for the release, shape differing from the reference, labels
            the release cannot express, or an existing file.
    """
    rel = get_release(release)
    out = Path(path)
    if not _name_regex(rel).match(out.name):
        raise BratsInputError(
            f"{out.name}: a BraTS {rel.name} submission file must be named <case id>.nii.gz, e.g. "
            f"{submission_name(rel.validation_id.format(i=1))}")
    if out.exists() and not overwrite:
        raise BratsInputError(f"{out} exists; refusing to overwrite it")
    if isinstance(reference_image, nib.Nifti1Image):
        shape, affine, header = reference_image.shape[:3], reference_image.affine, \
            reference_image.header
    else:
        ref = nib.load(reference_image)
        shape, affine, header = ref.shape[:3], ref.affine, ref.header
    if tuple(labels.shape) != tuple(shape):
        raise BratsInputError(
            f"{out.name}: label map of shape {labels.shape} does not match the reference image "
            f"{tuple(shape)}")
    values = from_canonical(np.asarray(labels, dtype=np.uint8), rel.convention).astype(np.uint8)
    header = header.copy()
    header.set_data_shape(values.shape)
    write_nifti(values, np.asarray(affine), out, header=header)
    return out


def check_submission(submission_dir: str | os.PathLike[str], images_dir: str | os.PathLike[str],
                     release: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Check a submission folder against the case list of an image folder, as the portals do.

    Checks that every case has exactly one prediction named ``<case id>.nii.gz``, nothing extra
    (hidden files and the ``manifest.json`` of ``brats predict``, which :func:`zip_submission`
    leaves out, are ignored; sub-folders are not allowed), each file reads as a 3-D integer
    volume with the shape and affine of the case's images and the release's labels; uint8 and
    BraTS space (2017–2021) are recommended and reported as warnings.

    Returns:
        DataFrame with columns ``case, file, severity, problem`` (severity ``error`` or
        ``warning``); no ``error`` row means the folder can be uploaded.
    """
    sub = Path(submission_dir)
    if not sub.is_dir():
        raise BratsInputError(f"{sub}: submission folder not found")
    cases = discover(images_dir, release)
    rel = get_release(cases[0].release)
    convention = get_convention(rel.convention)
    rows: list[tuple[str, str, str, str]] = []
    entries = {p.name: p for p in sub.iterdir()
               if not p.name.startswith((".", "__", "~")) and p.name != MANIFEST_NAME}
    expected = {submission_name(c.id): c for c in cases}
    for name, entry in sorted(entries.items()):
        if entry.is_dir():
            rows.append(("", name, "error", "sub-folder: the archive must be flat"))
        elif name not in expected:
            stem = re.sub(r"\.nii(\.gz)?$", "", name)
            hint = (" (must be gzip-compressed .nii.gz)" if stem + ".nii.gz" in expected
                    else " (no such case in the image folder)")
            rows.append(("", name, "error", f"unexpected file{hint}"))
    for name, case in tqdm(sorted(expected.items()), desc="validate", unit="case",
                           disable=not progress):
        if name not in entries:
            rows.append((case.id, name, "error", "missing prediction"))
            continue
        rows.extend((case.id, name, sev, msg)
                    for sev, msg in _check_file(entries[name], case.images[0], rel, convention))
    return pd.DataFrame(rows, columns=["case", "file", "severity", "problem"])


def require_valid_submission(submission_dir: str | os.PathLike[str],
                             images_dir: str | os.PathLike[str], release: str | None = None,
                             progress: bool = True) -> None:
    """:func:`check_submission`, raising when it finds an error.

    Raises:
        BratsInputError: naming the folder and its first three errors.
    """
    problems = check_submission(submission_dir, images_dir, release, progress=progress)
    errors = problems[problems["severity"] == "error"]
    if not errors.empty:
        raise BratsInputError(f"{submission_dir}: submission failed validation: "
                              + "; ".join(errors["problem"].tolist()[:3]))


def _check_file(path: Path, image_path: Path, rel: Release, convention) -> list[tuple[str, str]]:
    try:
        data, affine, _ = read_nifti(path)
    except BratsInputError as exc:
        return [("error", str(exc).replace(f"{path}: ", ""))]
    ref = nib.load(image_path)
    problems = []
    if data.ndim != 3:
        return [("error", f"not a 3-D image: shape {data.shape}")]
    if data.shape != ref.shape[:3]:
        problems.append(("error", f"shape {data.shape} differs from the images' {ref.shape[:3]}"))
    if not np.allclose(affine, ref.affine, rtol=0, atol=AFFINE_TOLERANCE_MM):
        problems.append(("error", "affine differs from the case's images (origin, spacing or "
                                  "direction): the scorer would refuse it"))
    if not np.issubdtype(data.dtype, np.integer):
        problems.append(("error", f"dtype {data.dtype} is not an integer type (use uint8)"))
    elif data.dtype != np.uint8:
        problems.append(("warning", f"dtype {data.dtype}; uint8 is recommended"))
    unknown = sorted(set(np.unique(data).tolist()) - set(convention.labels))
    if unknown:
        problems.append(("error", f"labels {unknown} are not in the {convention.description} "
                                  "convention"))
    if rel.name in LEGACY_RELEASES and data.shape == BRATS_SHAPE and not np.allclose(
            affine, brats_affine(), rtol=0, atol=AFFINE_TOLERANCE_MM):
        problems.append(("warning", "affine is not BraTS space (diag(-1,-1,1), origin (0,239,0))"))
    return problems


def zip_submission(submission_dir: str | os.PathLike[str], zip_path: str | os.PathLike[str],
                   overwrite: bool = False) -> Path:
    """Write the flat zip the portals expect (``<case id>.nii.gz`` members only), atomically."""
    sub, out = Path(submission_dir), Path(zip_path)
    if out.exists() and not overwrite:
        raise BratsInputError(f"{out} exists; refusing to overwrite it")
    members = sorted(p for p in sub.glob("*.nii.gz") if not p.name.startswith("."))
    if not members:
        raise BratsInputError(f"{sub}: no .nii.gz prediction to zip")
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for member in members:
                archive.write(member, arcname=member.name)
    return out
