"""``brats evaluate``: score a folder of predictions against reference segmentations.

Predictions are ``<case id>.nii.gz`` files; references are a dataset folder of any release or a
flat folder of ``<case id>_seg.nii.gz`` / ``<case id>.nii.gz`` files. Every reference case must
have a prediction (a partial folder is never scored as if complete) and no prediction may be
left without a reference.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brats.data.case import AFFINE_TOLERANCE_MM
from brats.data.geometry import voxel_spacing
from brats.data.labels import to_canonical
from brats.data.layouts import discover
from brats.data.nifti import read_nifti
from brats.data.releases import NIFTI_SUFFIX, RELEASES, get_release
from brats.errors import BratsInputError
from brats.metrics import CONVENTIONS, case_metrics
from brats.parallel import map_progress

COLUMNS = ["case", "region", "dice", "hd95", "sensitivity", "specificity", "volume_pred",
           "volume_ref"]
_SEG_SUFFIX = re.compile(r"[_-]seg$")


@dataclass(frozen=True)
class Pair:
    """A prediction file (None when missing) and its reference, with the label convention."""

    case: str
    prediction: Path | None
    reference: Path
    convention: str


def _flat_niftis(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the NIfTI files directly in ``folder`` (hidden files skipped)."""
    out = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and re.search(NIFTI_SUFFIX, path.name) and not path.name.startswith("."):
            out[re.sub(NIFTI_SUFFIX, "", path.name)] = path
    return out


def _release_of_ids(ids: list[str]) -> str:
    for name, rel in RELEASES.items():
        if ids and all(re.fullmatch(rel.case_pattern, i) for i in ids):
            return name
    return "2017"


def find_references(ref_dir: str | os.PathLike[str], release: str | None = None
                    ) -> tuple[dict[str, Path], str]:
    """Reference segmentations by case id, and their label convention.

    A folder with case sub-folders or modality files is read with :func:`brats.discover`; a flat
    folder of label files is read by name (``_seg``/``-seg`` suffixes dropped).
    """
    root = Path(ref_dir)
    if not root.is_dir():
        raise BratsInputError(f"{root}: reference folder not found")
    flat = _flat_niftis(root)
    has_dirs = any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())
    if flat and not has_dirs:
        refs = {_SEG_SUFFIX.sub("", stem): path for stem, path in flat.items()}
        rel = get_release(release) if release else get_release(_release_of_ids(list(refs)))
        return refs, rel.convention
    cases = discover(root, release)
    refs = {c.id: c.seg for c in cases if c.seg is not None}
    if not refs:
        raise BratsInputError(f"{root}: no reference segmentations (a validation folder?)")
    return refs, get_release(cases[0].release).convention


def match_predictions(pred_dir: str | os.PathLike[str], ref_dir: str | os.PathLike[str],
                      release: str | None = None, allow_missing: bool = False) -> list[Pair]:
    """Pair predictions with references by case id.

    Raises:
        BratsInputError: a prediction has no reference, or (unless ``allow_missing``) a reference
            has no prediction; the message lists the cases.
    """
    pred_root = Path(pred_dir)
    if not pred_root.is_dir():
        raise BratsInputError(f"{pred_root}: prediction folder not found")
    refs, convention = find_references(ref_dir, release)
    preds = _flat_niftis(pred_root)
    extra = sorted(set(preds) - set(refs))
    if extra:
        raise BratsInputError(f"{len(extra)} prediction(s) without a reference in {ref_dir}: "
                              + ", ".join(extra[:10]) + (" …" if len(extra) > 10 else ""))
    missing = sorted(set(refs) - set(preds))
    if missing and not allow_missing:
        raise BratsInputError(
            f"{len(missing)} case(s) have no prediction in {pred_root}: " + ", ".join(missing[:10])
            + (" …" if len(missing) > 10 else "") + "; pass --allow-missing to score them as empty")
    return [Pair(case, preds.get(case), refs[case], convention) for case in sorted(refs)]


def read_labels(path: Path, convention: str, case: str) -> tuple[np.ndarray, np.ndarray]:
    """A label file as ``((X, Y, Z) canonical labels, affine)``; ``case`` names it in errors.

    Raises:
        BratsInputError: not 3-D, non-integer values, or labels the convention does not know.
    """
    data, affine, _ = read_nifti(path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BratsInputError(f"{case}: {path.name} is not 3-D (shape {data.shape})")
    if not np.array_equal(data, np.round(data)):
        raise BratsInputError(f"{case}: {path.name} holds non-integer labels")
    return to_canonical(data.astype(np.int64), convention, source=f"{case}: {path.name}"), affine


def evaluate_pair(pair: Pair, convention: str = "brats-legacy") -> list[dict]:
    """Metric rows (one per region) of one case; see :func:`brats.metrics.case_metrics`."""
    ref, ref_affine = read_labels(pair.reference, pair.convention, pair.case)
    if pair.prediction is None:
        pred = np.zeros_like(ref)
    else:
        pred, pred_affine = read_labels(pair.prediction, pair.convention, pair.case)
        if pred.shape != ref.shape:
            raise BratsInputError(f"{pair.case}: prediction shape {pred.shape} differs from the "
                                  f"reference {ref.shape}")
        if not np.allclose(pred_affine, ref_affine, rtol=0, atol=AFFINE_TOLERANCE_MM):
            raise BratsInputError(f"{pair.case}: prediction affine differs from the reference "
                                  "(origin, spacing or direction)")
    rows = case_metrics(pred, ref, spacing=voxel_spacing(ref_affine), convention=convention)
    return [{"case": pair.case, **row} for row in rows]


def _evaluate_safe(args: tuple[Pair, str]) -> list[dict] | str:
    try:
        return evaluate_pair(*args)
    except BratsInputError as exc:
        return str(exc)


#: Label convention of the references → the metric convention of that challenge's scorer
#: (2017–2022: the legacy CaPTk/medpy scorer; 2023: the lesion-wise script of
#: rachitsaluja/BraTS-2023-Metrics; 2024 on: ``BraTS_evaluation`` on panoptica, see
#: :func:`brats.metrics.instancewise_metrics`).
SCORER_OF_LABELS: dict[str, str] = {"brats2023": "brats2023-lesionwise",
                                    "brats2024": "brats2024"}


def default_convention(label_convention: str) -> str:
    """The metric convention that scores references of ``label_convention`` by default."""
    return SCORER_OF_LABELS.get(label_convention, "brats-legacy")


def evaluate_folder(pred_dir: str | os.PathLike[str], ref_dir: str | os.PathLike[str],
                    convention: str | None = None, release: str | None = None,
                    allow_missing: bool = False, jobs: int = 1, progress: bool = True
                    ) -> pd.DataFrame:
    """Score every prediction of a folder.

    Args:
        convention: metric convention (:data:`brats.metrics.CONVENTIONS`); None: the scorer of
            the references' release (:func:`default_convention`).

    Returns:
        Long table with columns ``case, region, dice, hd95, sensitivity, specificity,
        volume_pred, volume_ref`` (HD95 in mm, volumes in mm³), sorted by case then region
        order WT, TC, ET; ``attrs["convention"]`` names the convention used.

    Raises:
        BratsInputError: unmatched cases, or any case that cannot be scored (all listed).
    """
    if convention is not None and convention not in CONVENTIONS:
        raise BratsInputError(
            f"unknown convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
    pairs = match_predictions(pred_dir, ref_dir, release, allow_missing)
    if convention is None:
        convention = default_convention(pairs[0].convention)
    work = [(p, convention) for p in pairs]
    results = map_progress(_evaluate_safe, work, jobs, desc="evaluate", progress=progress)
    errors = [r for r in results if isinstance(r, str)]
    if errors:
        raise BratsInputError(f"{len(errors)} case(s) could not be scored: " + " | ".join(errors))
    rows = [row for r in results for row in r]  # type: ignore[union-attr]
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs["convention"] = convention
    return table
