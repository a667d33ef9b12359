"""Find the cases of a BraTS dataset folder of any release (2017–2024 and MSD Task01)."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from brats.data.case import Case
from brats.data.releases import MODALITIES, NIFTI_SUFFIX, RELEASES, Release, get_release
from brats.errors import BratsInputError

_NIFTI = re.compile(NIFTI_SUFFIX)
_GRADES = ("HGG", "LGG")


@dataclass(frozen=True)
class Problem:
    """One problem found in a dataset: which case, which file or folder, what is wrong."""

    case: str
    path: str
    message: str


def _nifti_files(root: Path) -> list[Path]:
    """All ``.nii``/``.nii.gz`` files under ``root``, skipping hidden files and folders."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        found.extend(Path(dirpath) / f for f in sorted(filenames)
                     if _NIFTI.search(f) and not f.startswith((".", "~")))
    return found


def _msd_image_dirs(root: Path) -> list[Path]:
    if root.name in ("imagesTr", "imagesTs"):
        return [root]
    for name in ("imagesTr", "imagesTs"):
        if (root / name).is_dir():
            return [root / name]
    return []


def detect_release(root: str | os.PathLike[str]) -> Release:
    """Guess the release from the folder's file names.

    MSD is recognised by its ``imagesTr``/``imagesTs`` folders; otherwise the release whose file
    pattern matches the most files wins (2023 over 2024 on a tie, their names are identical).

    Raises:
        BratsInputError: no file of any release was found.
    """
    root = Path(root)
    if _msd_image_dirs(root):
        return RELEASES["msd"]
    files = [f.name for f in _nifti_files(root)]
    scores = {name: sum(1 for f in files if rel.file_regex.match(f))
              for name, rel in RELEASES.items() if not rel.is_msd}
    best = max(scores, key=lambda n: scores[n])
    if scores[best] == 0:
        examples = ", ".join(RELEASES[n].file_name(RELEASES[n].training_id.format(i=1), "t1")
                             for n in ("2017", "2020", "2021", "2023"))
        raise BratsInputError(
            f"{root}: no BraTS files found ({len(files)} NIfTI files, none named like {examples}, "
            "and no MSD imagesTr/imagesTs folder); pass --release if the names are unusual")
    return RELEASES[best]


def scan(root: str | os.PathLike[str], release: str | None = None) -> tuple[list[Case], list[Problem]]:
    """List the complete cases under ``root`` and the problems that kept others out.

    Args:
        root: a dataset folder (training, validation or test split) of any release.
        release: force a release instead of detecting it.

    Returns:
        ``(cases, problems)``: cases sorted by id; problems such as a missing modality, a file
        present twice, or a segmentation missing while other cases have one.
    """
    root = Path(root)
    if not root.is_dir():
        raise BratsInputError(f"{root}: dataset folder not found")
    rel = get_release(release) if release else detect_release(root)
    if rel.is_msd:
        return _scan_msd(root, rel)
    return _scan_named(root, rel)


def discover(path: str | os.PathLike[str], release: str | None = None) -> list[Case]:
    """Find every case of a BraTS dataset folder.

    Args:
        path: dataset folder, e.g. ``Brats17TrainingData`` (with ``HGG``/``LGG``),
            ``MICCAI_BraTS2020_ValidationData`` or ``Task01_BrainTumour``; ``.nii`` or ``.nii.gz``.
        release: ``"2017"`` … ``"2024"`` or ``"msd"``; detected from the file names when None.

    Returns:
        Cases sorted by id, modalities in the order t1, t1ce, t2, flair.

    Raises:
        BratsInputError: nothing found, or any case is incomplete (the message lists the first
            problems; ``brats check`` prints them all).
    """
    cases, problems = scan(path, release)
    if problems:
        shown = "; ".join(f"{p.case}: {p.message}" for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise BratsInputError(
            f"{path}: {len(problems)} problem(s): {shown}{more}; run `brats check {path}` for all")
    if not cases:
        raise BratsInputError(f"{path}: no complete BraTS case found")
    return cases


def _scan_named(root: Path, rel: Release) -> tuple[list[Case], list[Problem]]:
    regex = rel.file_regex
    kinds = dict(zip(rel.suffixes, MODALITIES))
    kinds[rel.seg_suffix] = "seg"
    found: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    folders: dict[str, Path] = {}
    others: dict[Path, list[Path]] = defaultdict(list)
    for path in _nifti_files(root):
        match = regex.match(path.name)
        if match is None:
            others[path.parent].append(path)
            continue
        case_id = match["case"]
        found[case_id][kinds[match["kind"]]].append(path)
        folders.setdefault(case_id, path.parent)
    cases: list[Case] = []
    problems: list[Problem] = []
    for case_id in sorted(found):
        files = found[case_id]
        folder = folders[case_id]
        for kind, paths in files.items():
            if len(paths) > 1:
                problems.append(Problem(case_id, str(folder),
                                        f"{kind} present more than once: "
                                        + ", ".join(p.name for p in paths)))
        missing = [m for m in MODALITIES if m not in files]
        if missing:
            expected = ", ".join(rel.file_name(case_id, m) for m in missing)
            problems.append(Problem(case_id, str(folder),
                                    f"missing modality {', '.join(missing)} (expected {expected})"))
            continue
        seg = files["seg"][0] if "seg" in files else _misnamed_seg(others.get(folder, []))
        grade = folder.parent.name if folder.parent.name in _GRADES else None
        cases.append(Case(case_id, rel.name, tuple(files[m][0] for m in MODALITIES), seg, grade))
    problems.extend(_missing_seg_problems(cases))
    return cases, problems


def _misnamed_seg(candidates: list[Path]) -> Path | None:
    """A lone segmentation with a non-standard name in a case folder (BraTS 2020 case 355's
    ``W39_1998.09.19_Segm.nii`` in the Kaggle copy)."""
    segs = [p for p in candidates if "seg" in p.name.lower()]
    return segs[0] if len(segs) == 1 else None


def _missing_seg_problems(cases: list[Case]) -> list[Problem]:
    with_seg = sum(c.seg is not None for c in cases)
    if 0 < with_seg < len(cases):
        return [Problem(c.id, str(c.images[0].parent),
                        f"no segmentation, while {with_seg} other case(s) of this folder have one")
                for c in cases if c.seg is None]
    return []


def _scan_msd(root: Path, rel: Release) -> tuple[list[Case], list[Problem]]:
    dirs = _msd_image_dirs(root)
    if not dirs:
        raise BratsInputError(f"{root}: no imagesTr or imagesTs folder (MSD layout)")
    images_dir = dirs[0]
    labels_dir = images_dir.parent / "labelsTr"
    case_regex = re.compile(rf"^(?P<case>{rel.case_pattern}){NIFTI_SUFFIX}")
    cases, problems = [], []
    for path in _nifti_files(images_dir):
        match = case_regex.match(path.name)
        if match is None:
            continue
        seg = None
        if images_dir.name == "imagesTr":
            seg = next((p for p in (labels_dir / path.name,
                                    labels_dir / (match["case"] + ".nii")) if p.is_file()), None)
            if seg is None:
                problems.append(Problem(match["case"], str(labels_dir),
                                        f"missing label file {path.name} in {labels_dir}"))
                continue
        cases.append(Case(match["case"], rel.name, (path,) * 4, seg))
    return sorted(cases, key=lambda c: c.id), problems
