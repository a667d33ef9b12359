"""Write a case in the on-disk layout of any release (used by the synthetic generator and tests)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from brats.data.labels import from_canonical
from brats.data.nifti import write_nifti
from brats.data.releases import MODALITIES, Release, get_release
from brats.io import write_json


def case_folder(root: Path, release: Release, case_id: str, grade: str | None,
                has_seg: bool) -> Path:
    """Folder the files of a case go to: ``root/[HGG|LGG/]<case>`` (training splits of 2017–2019)."""
    if release.grade_folders and has_seg and grade:
        return root / grade / case_id
    return root / case_id


def write_case(root: str | os.PathLike[str], release: str | Release, case_id: str,
               image: np.ndarray, affine: np.ndarray, labels: np.ndarray | None = None,
               grade: str | None = None) -> list[Path]:
    """Write one case's modalities (and segmentation) as the release names and lays them out.

    Args:
        root: dataset root (created if needed).
        release: release name or object.
        case_id: id in the release's pattern, e.g. ``Brats17_SYN_001_1``.
        image: (4, X, Y, Z) in canonical modality order (t1, t1ce, t2, flair); dtype kept (int16
            like BraTS).
        affine: 4×4 voxel-to-world affine, mm.
        labels: (X, Y, Z) canonical label map, written as uint8 in the release's convention, or
            None for a validation case.
        grade: ``"HGG"`` or ``"LGG"``; used for the 2017–2019 training folders.

    Returns:
        The paths written.
    """
    rel = release if isinstance(release, Release) else get_release(release)
    root = Path(root)
    written: list[Path] = []
    seg = None if labels is None else from_canonical(labels, rel.convention)
    if rel.is_msd:
        split = "Tr" if labels is not None else "Ts"
        order = np.argsort(rel.msd_channels)
        stacked = np.moveaxis(image[order], 0, -1)
        path = root / f"images{split}" / f"{case_id}.nii.gz"
        write_nifti(stacked, affine, path)
        written.append(path)
        if seg is not None:
            path = root / "labelsTr" / f"{case_id}.nii.gz"
            write_nifti(seg, affine, path)
            written.append(path)
        return written
    folder = case_folder(root, rel, case_id, grade, labels is not None)
    for channel, modality in enumerate(MODALITIES):
        path = folder / rel.file_name(case_id, modality)
        write_nifti(image[channel], affine, path)
        written.append(path)
    if seg is not None:
        path = folder / rel.file_name(case_id, "seg")
        write_nifti(seg, affine, path)
        written.append(path)
    return written


def write_msd_dataset_json(root: str | os.PathLike[str]) -> Path:
    """Write the MSD ``dataset.json`` listing the cases under ``imagesTr``/``imagesTs``."""
    root = Path(root)
    training = sorted(p.name for p in (root / "imagesTr").glob("BRATS_*.nii.gz"))
    test = sorted(p.name for p in (root / "imagesTs").glob("BRATS_*.nii.gz"))
    meta = {
        "name": "BRATS",
        "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor",
                   "3": "enhancing tumour"},
        "numTraining": len(training),
        "numTest": len(test),
        "training": [{"image": f"./imagesTr/{n}", "label": f"./labelsTr/{n}"} for n in training],
        "test": [f"./imagesTs/{n}" for n in test],
    }
    path = root / "dataset.json"
    write_json(meta, path)
    return path
