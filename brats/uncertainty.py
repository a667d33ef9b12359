"""Voxel-wise uncertainty maps in the QU-BraTS convention, and their QU-BraTS evaluation.

**Maps.** Every prediction of the ``mean`` rule averages several probability samples: mirror
flips × test-time-dropout repeats (:mod:`brats.inference.tta`) of every member (folds, views,
networks). :class:`RegionMoments` keeps the weighted running mean and running M2 (West 1979) of
the samples' region probabilities (WT, TC, ET), so nothing but two (3, X, Y, Z) float32 arrays is
held. One map per region, integers 0–100 (0 = certain), comes from

* ``entropy`` (default): the binary entropy in bits of the mean region probability p̄,
  ``H = −p̄ log2 p̄ − (1 − p̄) log2(1 − p̄)`` ∈ [0, 1], times 100;
* ``std``: the spread of the samples, the (population, weighted) standard deviation of the region
  probability ∈ [0, 0.5], times 200 (a Bernoulli probability cannot spread more than 0.5).

Both are rounded to the nearest integer. Outside the brain box every map is 0 (background
certain). File names ``<id>_unc_whole.nii.gz``, ``<id>_unc_core.nii.gz``,
``<id>_unc_enhance.nii.gz`` follow the public QU-BraTS scorer's arguments ``--whole``, ``--core``,
``--enhance`` (RagMeh11/QU-BraTS@3f7693a, ``BraTS_Seg_Uncertainty.py``); that the challenge asked
for exactly these file names is UNCONFIRMED.

**Evaluation** (definitions from the same file; not copied). For a region, a threshold τ keeps
the voxels with uncertainty ≤ τ. Dice is computed on the kept voxels only (prediction and
reference both masked; 1 when both are empty). The filtered true positive ratio is
``(TP_all − TP_kept) / TP_all`` and the filtered true negative ratio
``(TN_all − TN_kept) / TN_all``, both counted inside the brain mask (voxels non-zero in any
modality; the public scorer takes a mask file or the T1 image > 0). Each curve is integrated over
τ/100 ∈ [0, 1] with the trapezoid rule (the scorer's ``sklearn.metrics.auc`` / 100), and the
region score is ``(AUC_Dice + (1 − AUC_FTP) + (1 − AUC_FTN)) / 3`` (Mehta et al., QU-BraTS,
MELBA 2022). The thresholds are ``0, 100/n, …, 100``; the public scorer defaults to n = 40, this
module to n = 4 (0, 25, 50, 75, 100); which n the challenge ranked with is UNCONFIRMED.

The Wang cascade has no sample-wise posterior reachable from the core predictor (its per-stage
mean probabilities stay inside :func:`cascade.pipeline.predict_cascade`), so uncertainty maps are
refused for the ``cascade`` rule.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from brats.data.layouts import discover
from brats.data.nifti import read_nifti, write_nifti
from brats.errors import BratsInputError
from brats.evaluation import match_predictions, read_labels
from brats.inference.combine import REGION_ORDER, class_probabilities_to_regions
from brats.preprocess.crop import Box, brain_mask

#: Region → file name suffix of its uncertainty map (before ``.nii.gz``).
UNCERTAINTY_SUFFIXES: dict[str, str] = {"WT": "_unc_whole", "TC": "_unc_core", "ET": "_unc_enhance"}
#: How a map is computed from the samples (module docstring).
MEASURES: tuple[str, ...] = ("entropy", "std")
#: Default number of threshold steps of the evaluation: thresholds 0, 25, 50, 75, 100.
DEFAULT_POINTS = 4
#: Labels of each region in a canonical label map.
_REGION_LABELS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}


class RegionMoments:
    """Weighted running mean and M2 of (3, X, Y, Z) region probabilities (WT, TC, ET).

    Samples are added as (4, X, Y, Z) class probabilities and turned into regions with
    :func:`brats.inference.combine.class_probabilities_to_regions`. Memory: two float32 arrays.
    """

    def __init__(self) -> None:
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._weight = 0.0
        self.count = 0

    def add(self, class_probs: np.ndarray, weight: float = 1.0) -> None:
        """Add one (4, X, Y, Z) class-probability sample with a weight ≥ 0.

        Raises:
            BratsInputError: a negative or non-finite weight, or a shape other than the first's.
        """
        if not np.isfinite(weight) or weight < 0:
            raise BratsInputError(f"sample weight must be a finite number >= 0, got {weight}")
        regions = class_probabilities_to_regions(class_probs)
        if self._mean is None or self._m2 is None:
            self._mean = np.zeros_like(regions)
            self._m2 = np.zeros_like(regions)
        elif regions.shape != self._mean.shape:
            raise BratsInputError(f"sample of shape {regions.shape[1:]} differs from the first "
                                  f"{self._mean.shape[1:]}")
        self.count += 1
        if weight == 0:
            return
        self._weight += float(weight)
        share = np.float32(weight / self._weight)
        delta = np.empty_like(regions[0])
        scratch = np.empty_like(regions[0])
        for mean, m2, x in zip(self._mean, self._m2, regions):
            np.subtract(x, mean, out=delta)
            mean += np.multiply(delta, share, out=scratch)
            np.subtract(x, mean, out=x)          # x − new mean (x is our own copy)
            x *= delta
            if weight != 1:
                x *= np.float32(weight)
            m2 += x

    def _check(self) -> tuple[np.ndarray, np.ndarray]:
        if self._mean is None or self._m2 is None or self._weight <= 0:
            raise BratsInputError("no sample with a positive weight was added")
        return self._mean, self._m2

    def mean(self) -> np.ndarray:
        """(3, X, Y, Z) float32 weighted mean region probability."""
        return self._check()[0].copy()

    def std(self) -> np.ndarray:
        """(3, X, Y, Z) float32 weighted population standard deviation of the samples."""
        _, m2 = self._check()
        return np.sqrt(np.maximum(m2 / np.float32(self._weight), 0, dtype=np.float32))


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits (float32) of Bernoulli probabilities ``p`` (any shape): 1 at 0.5, and
    below 3e-6 at 0 or 1 (p is clipped to [1e-7, 1 − 1e-7] to keep the logarithms finite)."""
    p = np.clip(np.asarray(p, dtype=np.float32), np.float32(1e-7), np.float32(1 - 1e-7))
    q = np.subtract(np.float32(1), p)
    out = np.log2(p)
    out *= p
    np.log2(q, out=p)                     # p is a fresh array from np.clip
    p *= q
    out += p
    return np.negative(out, out=out)


def check_measure(measure: str) -> str:
    """``measure`` if it is one of :data:`MEASURES`.

    Raises:
        BratsInputError: any other name.
    """
    if measure not in MEASURES:
        raise BratsInputError(f"unknown uncertainty measure {measure!r}; expected one of "
                              f"{', '.join(MEASURES)}")
    return measure


def uncertainty_maps(moments: RegionMoments, measure: str = "entropy") -> np.ndarray:
    """(3, X, Y, Z) uint8 maps 0–100 (WT, TC, ET) from the samples' moments (module docstring).

    Raises:
        BratsInputError: unknown ``measure`` or no samples.
    """
    if check_measure(measure) == "entropy":
        scaled = binary_entropy(moments.mean())
        scaled *= np.float32(100)
    else:
        scaled = moments.std()
        scaled *= np.float32(200)
    return np.clip(np.rint(scaled, out=scaled), 0, 100, out=scaled).astype(np.uint8)


def uncertainty_names(case_id: str) -> list[str]:
    """The three file names of a case's maps, in region order WT, TC, ET."""
    return [f"{case_id}{UNCERTAINTY_SUFFIXES[r]}.nii.gz" for r in REGION_ORDER]


def write_uncertainty(maps: np.ndarray, box: Box, shape: tuple[int, ...],
                      reference_image: str | os.PathLike[str], folder: str | os.PathLike[str],
                      case_id: str) -> list[Path]:
    """Paste (3, x, y, z) maps of the brain box into the case's grid (0 outside) and write one
    uint8 NIfTI per region with the reference image's affine and header.

    Returns:
        The three files, WT, TC, ET.
    """
    ref = nib.load(reference_image)
    header = ref.header.copy()
    header.set_data_shape(tuple(shape))
    paths = []
    for region_map, name in zip(maps, uncertainty_names(case_id)):
        full = np.zeros(tuple(shape), dtype=np.uint8)
        full[tuple(slice(a, b) for a, b in box)] = region_map
        path = Path(folder) / name
        write_nifti(full, np.asarray(ref.affine), path, header=header)
        paths.append(path)
    return paths


def thresholds(points: int = DEFAULT_POINTS) -> np.ndarray:
    """``points + 1`` uncertainty thresholds 0, 100/points, …, 100 (float64).

    Raises:
        BratsInputError: ``points`` < 1.
    """
    if points < 1:
        raise BratsInputError(f"the number of uncertainty thresholds must be >= 1, got {points}")
    return np.linspace(0.0, 100.0, points + 1)


def _dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    total = int(reference.sum()) + int(prediction.sum())
    return 1.0 if total == 0 else 2.0 * int((reference & prediction).sum()) / total


def _filtered_ratio(kind: np.ndarray, kept: np.ndarray) -> float:
    before = int(kind.sum())
    return 0.0 if before == 0 else (before - int((kind & kept).sum())) / before


def region_curves(reference: np.ndarray, prediction: np.ndarray, uncertainty: np.ndarray,
                  mask: np.ndarray, taus: np.ndarray) -> pd.DataFrame:
    """Dice, FTP ratio and FTN ratio of one binary region at each threshold.

    Args:
        reference, prediction: (X, Y, Z) bool region masks.
        uncertainty: (X, Y, Z) values 0–100; voxels with uncertainty > τ are filtered out.
        mask: (X, Y, Z) bool brain mask (where TP and TN are counted).
        taus: thresholds in [0, 100], ascending.

    Returns:
        Table ``threshold, dice, ftp_ratio, ftn_ratio``, one row per threshold.
    """
    tp = reference & prediction & mask
    tn = ~reference & ~prediction & mask
    rows = []
    for tau in taus:
        kept = uncertainty <= tau
        rows.append({"threshold": float(tau), "dice": _dice(reference & kept, prediction & kept),
                     "ftp_ratio": _filtered_ratio(tp, kept),
                     "ftn_ratio": _filtered_ratio(tn, kept)})
    return pd.DataFrame(rows)


def curve_scores(curves: pd.DataFrame) -> dict[str, float]:
    """``auc_dice, auc_ftp, auc_ftn`` (trapezoid over τ/100) and the QU-BraTS ``score``."""
    x = curves["threshold"].to_numpy() / 100.0
    aucs = {f"auc_{name}": float(np.trapezoid(curves[column].to_numpy(), x))
            for name, column in (("dice", "dice"), ("ftp", "ftp_ratio"), ("ftn", "ftn_ratio"))}
    aucs["score"] = (aucs["auc_dice"] + (1 - aucs["auc_ftp"]) + (1 - aucs["auc_ftn"])) / 3
    return aucs


def case_uncertainty(labels: np.ndarray, reference: np.ndarray, maps: np.ndarray,
                     mask: np.ndarray, points: int = DEFAULT_POINTS
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """QU-BraTS evaluation of one case.

    Args:
        labels, reference: (X, Y, Z) canonical label maps (prediction and ground truth).
        maps: (3, X, Y, Z) uncertainty 0–100 of WT, TC, ET.
        mask: (X, Y, Z) bool brain mask.

    Returns:
        ``(scores, curves)``: one row per region (``region, auc_dice, auc_ftp, auc_ftn, score``)
        and one per region and threshold (``region, threshold, dice, ftp_ratio, ftn_ratio``).
    """
    taus = thresholds(points)
    scores, curves = [], []
    for region, region_map in zip(REGION_ORDER, maps):
        values = list(_REGION_LABELS[region])
        table = region_curves(np.isin(reference, values), np.isin(labels, values), region_map,
                              mask, taus)
        scores.append({"region": region, **curve_scores(table)})
        curves.append(table.assign(region=region))
    curve_table = pd.concat(curves, ignore_index=True)
    return pd.DataFrame(scores), curve_table[["region", "threshold", "dice", "ftp_ratio",
                                              "ftn_ratio"]]


def _read_maps(folder: Path, case_id: str, shape: tuple[int, ...]) -> np.ndarray:
    maps = []
    for name in uncertainty_names(case_id):
        path = folder / name
        if not path.is_file():
            raise BratsInputError(f"{case_id}: no uncertainty map {path}")
        data, _, _ = read_nifti(path)
        if data.shape != shape:
            raise BratsInputError(f"{path}: shape {data.shape} differs from the reference {shape}")
        if data.min() < 0 or data.max() > 100:
            raise BratsInputError(f"{path}: values must lie in 0–100, found "
                                  f"{data.min()}–{data.max()}")
        maps.append(data)
    return np.stack(maps)


def evaluate_uncertainty(pred_dir: str | os.PathLike[str], ref_dir: str | os.PathLike[str],
                         unc_dir: str | os.PathLike[str], release: str | None = None,
                         points: int = DEFAULT_POINTS, progress: bool = True
                         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """QU-BraTS evaluation of every case of a prediction folder (:func:`case_uncertainty`).

    ``ref_dir`` must be a dataset folder (its images give the brain mask).

    Returns:
        ``(scores, curves)`` with a leading ``case`` column.

    Raises:
        BratsInputError: unmatched cases, missing or malformed maps, or no images in ``ref_dir``.
    """
    pairs = match_predictions(pred_dir, ref_dir, release)
    try:
        images = {c.id: c for c in discover(ref_dir, release)}
    except BratsInputError as exc:
        raise BratsInputError(f"--uncertainty needs a dataset folder with images as the reference "
                              f"(they give the brain mask): {exc}") from None
    folder = Path(unc_dir)
    if not folder.is_dir():
        raise BratsInputError(f"{folder}: uncertainty folder not found")
    scores, curves = [], []
    for pair in tqdm(pairs, desc="uncertainty", unit="case", disable=not progress):
        if pair.prediction is None or pair.case not in images:
            raise BratsInputError(f"{pair.case}: no prediction or no images to score with")
        reference, _ = read_labels(pair.reference, pair.convention, pair.case)
        labels, _ = read_labels(pair.prediction, pair.convention, pair.case)
        maps = _read_maps(folder, pair.case, reference.shape)
        mask = brain_mask(images[pair.case].load(with_labels=False).image)
        case_scores, case_curves = case_uncertainty(labels, reference, maps, mask, points)
        scores.append(case_scores.assign(case=pair.case))
        curves.append(case_curves.assign(case=pair.case))
    first = ["case"]
    score_table = pd.concat(scores, ignore_index=True)
    curve_table = pd.concat(curves, ignore_index=True)
    return (score_table[first + [c for c in score_table.columns if c != "case"]],
            curve_table[first + [c for c in curve_table.columns if c != "case"]])
