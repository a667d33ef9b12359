"""Tuned post-processing of label maps: relabel a small enhancing tumour, keep the largest
connected component of a region; ``brats postprocess tune`` picks the rule on cross-validation.

The ET rule is the post-processing of Isensee et al.'s BraTS 2018 "No New-Net" paper (arXiv
1809.10483; the paper itself is UNCONFIRMED here) as nnU-Net v1 implements it
(``Task082_BraTS_2020.py``, MIC-DKFZ/nnUNet @3d8be214, thresholds searched over 0–750 voxels):
when a case's predicted ET volume is below a threshold tuned by cross-validation, its ET voxels
become NCR/NET (label 1). The legacy scorer (2017–2022) gives an ET-free reference Dice 1 /
HD95 0 only when the prediction has no ET either, and Dice 0 / HD95 373 otherwise, so a few
spurious ET voxels cost a whole case.
It is **not** part of any 2017 entry (MIC-DKFZ/BraTS2017 @dfc244c left its post-processing call
commented out), so it is off unless asked for.

Rule, applied in this order to a canonical (X, Y, Z) label map (0, 1 NCR/NET, 2 ED, 4 ET):

1. for each region in ``largest_component`` (order WT, TC, ET), the region's voxels outside its
   largest 6-connected component (faces; ``scipy.ndimage.label``'s default) leave the region:
   WT voxels become background 0, TC voxels ED 2, ET voxels NCR/NET 1 (so regions stay nested);
2. when the remaining ET holds at least one and fewer than ``et_threshold_voxels`` voxels, all
   ET voxels become NCR/NET 1 (WT and TC are unchanged). The threshold counts **voxels**, as
   nnU-Net's does (1 mm³ each on BraTS data); 0 switches it off.

Tuning score: the mean over cases of the mean legacy Dice (:func:`brats.metrics.dice`; both
empty = 1) over WT, TC and ET. Every combination of largest-component regions (8) and threshold
(default 0, 50, …, 1000 voxels) is scored; among equal scores the rule with fewer regions, then
the smaller threshold wins, so an unhelpful step is never chosen.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm.auto import tqdm

from brats.data.labels import ED, ET, NCR, REGIONS
from brats.data.releases import get_release
from brats.errors import BratsInputError
from brats.evaluation import Pair, evaluate_folder, match_predictions, read_labels
from brats.io import write_json, write_text
from brats.manifest import code_version, jsonable, prepare_outputs, read_manifest
from brats.metrics import dice
from brats.parallel import map_progress
from brats.submission import write_submission

#: Threshold grid of :func:`tune` (voxels): 0, 50, …, 1000 (nnU-Net's search spans 0–750).
ET_THRESHOLDS_VOXELS: tuple[int, ...] = tuple(range(0, 1001, 50))
#: Regions whose largest connected component may be kept, in the order the rule applies them.
COMPONENT_REGIONS: tuple[str, ...] = ("WT", "TC", "ET")
#: What a voxel of a region becomes when it lies outside the region's largest component.
_LEFT_OUT = {"WT": 0, "TC": ED, "ET": NCR}
#: The rule file ``brats postprocess tune`` writes (in a ``brats reproduce`` folder).
RULE_FILE = "postprocessing.json"
RULE_KIND = "postprocessing"
SCORE = "mean over cases of the mean legacy Dice over WT, TC and ET"


@dataclass(frozen=True)
class PostprocessRule:
    """A post-processing rule (see the module docstring).

    Attributes:
        largest_component: regions (of WT, TC, ET) reduced to their largest component.
        et_threshold_voxels: ET with fewer voxels than this becomes NCR/NET; 0 = off.
    """

    largest_component: tuple[str, ...] = ()
    et_threshold_voxels: int = 0

    def __post_init__(self) -> None:
        unknown = [r for r in self.largest_component if r not in COMPONENT_REGIONS]
        if unknown or len(set(self.largest_component)) != len(self.largest_component):
            raise BratsInputError(f"largest_component {list(self.largest_component)}: expected "
                                  f"distinct regions among {', '.join(COMPONENT_REGIONS)}")
        if isinstance(self.et_threshold_voxels, bool) or not isinstance(
                self.et_threshold_voxels, (int, np.integer)) or self.et_threshold_voxels < 0:
            raise BratsInputError(f"et_threshold_voxels {self.et_threshold_voxels!r}: expected "
                                  "an integer ≥ 0")

    def to_dict(self) -> dict[str, Any]:
        """``{"largest_component": [...], "et_threshold_voxels": int}`` (JSON-able)."""
        ordered = [r for r in COMPONENT_REGIONS if r in self.largest_component]
        return {"largest_component": ordered, "et_threshold_voxels": int(self.et_threshold_voxels)}

    def describe(self) -> str:
        """One line, e.g. ``largest component of WT; ET below 50 voxels → NCR/NET``."""
        parts = []
        if self.largest_component:
            parts.append("largest component of " + ", ".join(self.to_dict()["largest_component"]))
        if self.et_threshold_voxels:
            parts.append(f"ET below {self.et_threshold_voxels} voxels → NCR/NET")
        return "; ".join(parts) or "nothing changes"


def relabel_small_et(labels: np.ndarray, threshold_voxels: int) -> np.ndarray:
    """Canonical (X, Y, Z) labels with ET (4) made NCR/NET (1) when 0 < #ET < ``threshold_voxels``;
    a copy, the input is left alone."""
    out = np.array(labels, copy=True)
    et = out == ET
    if 0 < np.count_nonzero(et) < threshold_voxels:
        out[et] = NCR
    return out


def keep_largest_component(labels: np.ndarray, region: str) -> np.ndarray:
    """Canonical (X, Y, Z) labels with the voxels of ``region`` (WT, TC or ET) outside its largest
    6-connected component moved out of it (WT → 0, TC → ED 2, ET → NCR/NET 1); a copy. Of equal
    largest components the first in scan order is kept."""
    if region not in COMPONENT_REGIONS:
        raise BratsInputError(f"region {region!r}: expected one of {', '.join(COMPONENT_REGIONS)}")
    out = np.array(labels, copy=True)
    components, count = ndimage.label(np.isin(out, REGIONS[region]))
    if count > 1:
        sizes = np.bincount(components.ravel())[1:]
        out[(components > 0) & (components != int(np.argmax(sizes)) + 1)] = _LEFT_OUT[region]
    return out


def apply_rule(labels: np.ndarray, rule: PostprocessRule) -> np.ndarray:
    """The rule applied to canonical (X, Y, Z) labels: largest components, then the ET threshold."""
    out = np.asarray(labels)
    for region in COMPONENT_REGIONS:
        if region in rule.largest_component:
            out = keep_largest_component(out, region)
    return relabel_small_et(out, rule.et_threshold_voxels)


def _subsets() -> list[tuple[str, ...]]:
    """Every subset of :data:`COMPONENT_REGIONS`, smallest first."""
    return [s for k in range(len(COMPONENT_REGIONS) + 1)
            for s in itertools.combinations(COMPONENT_REGIONS, k)]


def case_table(pred: np.ndarray, ref: np.ndarray, case: str = "") -> pd.DataFrame:
    """What :func:`choose_rule` needs of one case, per subset of largest-component regions.

    Args:
        pred, ref: canonical (X, Y, Z) label maps.

    Returns:
        One row per subset: ``case, largest_component`` ("WT+TC", "" for none), ``dice_WT,
        dice_TC, dice_ET`` (legacy Dice after the components step), ``et_voxels`` (ET left) and
        ``dice_ET_empty`` (ET Dice if all ET became NCR/NET: 1 when the reference has none, else 0).
    """
    if pred.shape != ref.shape:
        raise BratsInputError(f"{case}: prediction shape {pred.shape} differs from the reference "
                              f"{ref.shape}")
    found = np.argwhere((pred > 0) | (ref > 0))
    if len(found):  # components and counts are the same on the box around both maps
        box = tuple(slice(a, b + 1) for a, b in zip(found.min(0), found.max(0)))
        pred, ref = pred[box], ref[box]
    ref_masks = {r: np.isin(ref, REGIONS[r]) for r in REGIONS}
    empty_et = 1.0 if not ref_masks["ET"].any() else 0.0
    rows = []
    for subset in _subsets():
        out = apply_rule(pred, PostprocessRule(subset, 0))
        row: dict[str, Any] = {"case": case, "largest_component": "+".join(subset)}
        for region, members in REGIONS.items():
            row[f"dice_{region}"] = dice(np.isin(out, members), ref_masks[region])
        row["et_voxels"] = int(np.count_nonzero(out == ET))
        row["dice_ET_empty"] = empty_et
        rows.append(row)
    return pd.DataFrame(rows)


def rule_scores(table: pd.DataFrame, thresholds: tuple[int, ...] = ET_THRESHOLDS_VOXELS
                ) -> pd.DataFrame:
    """The tuning score of every candidate rule from the cases' :func:`case_table` rows.

    Returns:
        One row per (subset, threshold), in preference order (fewer regions, then smaller
        threshold first): ``largest_component, et_threshold_voxels, dice_WT, dice_TC, dice_ET,
        score`` (means over cases; ``score`` is the mean of the three).
    """
    rows = []
    for subset in _subsets():
        part = table[table["largest_component"] == "+".join(subset)]
        for threshold in sorted(thresholds):
            small = (part["et_voxels"] > 0) & (part["et_voxels"] < threshold)
            et = np.where(small, part["dice_ET_empty"], part["dice_ET"])
            per_case = (part["dice_WT"].to_numpy() + part["dice_TC"].to_numpy() + et) / 3
            rows.append({"largest_component": "+".join(subset), "et_threshold_voxels": threshold,
                         "dice_WT": part["dice_WT"].mean(), "dice_TC": part["dice_TC"].mean(),
                         "dice_ET": float(np.mean(et)), "score": float(np.mean(per_case))})
    return pd.DataFrame(rows)


def choose_rule(scores: pd.DataFrame) -> PostprocessRule:
    """The first best-scoring row of :func:`rule_scores` (ties within 1e-12 go to the simpler)."""
    best = scores["score"].max()
    row = scores[scores["score"] >= best - 1e-12].iloc[0]
    subset = tuple(r for r in str(row["largest_component"]).split("+") if r)
    return PostprocessRule(subset, int(row["et_threshold_voxels"]))


def _case_rows(pair: Pair) -> pd.DataFrame | str:
    try:
        if pair.prediction is None:
            raise BratsInputError(f"{pair.case}: no prediction")
        pred, _ = read_labels(pair.prediction, pair.convention, pair.case)
        ref, _ = read_labels(pair.reference, pair.convention, pair.case)
        return case_table(pred, ref, pair.case)
    except BratsInputError as exc:
        return str(exc)


def _check_thresholds(thresholds: tuple[int, ...]) -> tuple[int, ...]:
    if not thresholds or any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0
                             for t in thresholds):
        raise BratsInputError(f"ET thresholds {list(thresholds)}: expected integers ≥ 0 (voxels)")
    return tuple(sorted({int(t) for t in thresholds}))


def tune(cv_dir: str | os.PathLike[str], data_dir: str | os.PathLike[str],
         release: str | None = None, thresholds: tuple[int, ...] = ET_THRESHOLDS_VOXELS,
         jobs: int = 1, progress: bool = True) -> dict[str, Any]:
    """Choose the rule that maximises the tuning score on a folder of cross-validation predictions.

    Args:
        cv_dir: ``<case>.nii.gz`` predictions (e.g. ``cv_predictions`` of ``brats reproduce``);
            every reference case of ``data_dir`` needs one.
        data_dir: the training dataset (with segmentations) they predict.
        thresholds: ET threshold grid in voxels.

    Returns:
        The record :func:`write_rule` stores: ``{"kind", "rule", "score": {"plain",
        "postprocessed", "definition"}, "settings", "code", "created"}``; ``"candidates"`` holds
        the :func:`rule_scores` table (not stored).
    """
    grid = _check_thresholds(tuple(thresholds))
    pairs = match_predictions(cv_dir, data_dir, release)
    results = map_progress(_case_rows, pairs, jobs, desc="tune post-processing",
                           progress=progress)
    errors = [r for r in results if isinstance(r, str)]
    if errors:
        raise BratsInputError(f"{len(errors)} case(s) could not be read: " + " | ".join(errors))
    table = pd.concat(results, ignore_index=True)
    scores = rule_scores(table, grid)
    rule = choose_rule(scores)
    chosen = scores[(scores["largest_component"] == "+".join(rule.to_dict()["largest_component"]))
                    & (scores["et_threshold_voxels"] == rule.et_threshold_voxels)]
    plain = table[table["largest_component"] == ""][["dice_WT", "dice_TC", "dice_ET"]]
    cv_manifest = read_manifest(cv_dir)
    settings = {"cv_predictions": str(Path(cv_dir).resolve()),
                "cv_predictions_created": None if cv_manifest is None else cv_manifest.get("created"),
                "data": str(Path(data_dir).resolve()), "label_convention": pairs[0].convention,
                "cases": len(pairs), "et_thresholds_voxels": list(grid),
                "largest_component_regions": list(COMPONENT_REGIONS), "connectivity": 6}
    return {"kind": RULE_KIND, "rule": rule.to_dict(),
            "score": {"definition": SCORE, "plain": float(plain.mean(axis=1).mean()),
                      "postprocessed": float(chosen["score"].iloc[0])},
            "settings": settings, "code": code_version(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "candidates": scores}


def rule_path(out: str | os.PathLike[str]) -> Path:
    """``out`` itself when it ends in ``.json``, else ``out/postprocessing.json``."""
    path = Path(out)
    return path if path.suffix == ".json" else path / RULE_FILE


def write_rule(record: dict[str, Any], out: str | os.PathLike[str],
               overwrite: bool = False) -> Path:
    """Store a :func:`tune` record (without its candidate table) at :func:`rule_path` ``(out)``.

    Raises:
        BratsInputError: the file exists and not ``overwrite``.
    """
    path = rule_path(out)
    if path.exists() and not overwrite:
        raise BratsInputError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(jsonable({k: v for k, v in record.items() if k != "candidates"}), path)
    return path


def read_rule(path: str | os.PathLike[str]) -> PostprocessRule:
    """The rule of a file written by :func:`write_rule`.

    Raises:
        BratsInputError: missing, unreadable or not a post-processing rule file.
    """
    p = Path(path)
    if not p.is_file():
        raise BratsInputError(f"{p}: post-processing rule file not found")
    try:
        record = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BratsInputError(f"{p}: cannot read the rule file ({exc})") from None
    rule = record.get("rule") if isinstance(record, dict) else None
    if not isinstance(record, dict) or record.get("kind") != RULE_KIND or not isinstance(rule, dict):
        raise BratsInputError(f"{p}: not a post-processing rule file (written by brats "
                              "postprocess tune)")
    unknown = sorted(set(rule) - {"largest_component", "et_threshold_voxels"})
    if unknown:
        raise BratsInputError(f"{p}: unknown rule key(s) {', '.join(unknown)}")
    regions = rule.get("largest_component", [])
    if not isinstance(regions, list):
        raise BratsInputError(f"{p}: largest_component must be a list of regions")
    return PostprocessRule(tuple(regions), rule.get("et_threshold_voxels", 0))


def find_rule(paths: list[str | os.PathLike[str]]) -> Path:
    """The ``postprocessing.json`` in the first path or the nearest folder above it (the
    ``brats reproduce`` folder of ``OUT/runs/<member>/fold<k>``).

    Raises:
        BratsInputError: none found.
    """
    if not paths:
        raise BratsInputError("--postprocess tuned needs --postprocess-rule FILE here (no run "
                              "folder to look for postprocessing.json in)")
    start = Path(paths[0]).resolve()
    for folder in [start, *start.parents]:
        if (folder / RULE_FILE).is_file():
            return folder / RULE_FILE
    raise BratsInputError(f"no {RULE_FILE} in {paths[0]} or any folder above it; run brats "
                          "postprocess tune (or brats reproduce) first, or pass "
                          "--postprocess-rule FILE")


def _release_of(folder: Path, release: str | None) -> str:
    if release is not None:
        return get_release(release).name
    manifest = read_manifest(folder)
    recorded = None if manifest is None else manifest["settings"].get("release")
    if not isinstance(recorded, str):
        raise BratsInputError(f"{folder}: no manifest says which release its labels follow; pass "
                              "--release")
    return get_release(recorded).name


def postprocess_folder(pred_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                       rule: PostprocessRule, rule_file: str | os.PathLike[str] | None = None,
                       release: str | None = None, resume: bool = False,
                       overwrite: bool = False, progress: bool = True) -> list[Path]:
    """Apply ``rule`` to every ``<case>.nii.gz`` of ``pred_dir``, written with the same header
    to ``out_dir`` (a new folder with a manifest, kind ``postprocess``: source, release, rule and
    rule file; ``resume``/``overwrite`` as for ``brats predict``). Every file is (re)written.

    Args:
        release: the predictions' release (label values); default: the source's manifest.

    Returns:
        The written files.
    """
    src, out = Path(pred_dir), Path(out_dir)
    if not src.is_dir():
        raise BratsInputError(f"{src}: prediction folder not found")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise BratsInputError(f"{out} is (inside) the input {src}; choose another output folder")
    rel = get_release(_release_of(src, release))
    files = sorted(p for p in src.glob("*.nii.gz") if not p.name.startswith("."))
    if not files:
        raise BratsInputError(f"{src}: no <case>.nii.gz prediction")
    settings = {"source": str(src.resolve()), "release": rel.name, "rule": rule.to_dict(),
                "rule_file": None if rule_file is None else str(Path(rule_file).resolve())}
    prepare_outputs({out: [f.name for f in files]}, "postprocess", settings, resume=resume,
                    overwrite=overwrite)
    written = []
    for file in tqdm(files, desc="post-process", unit="case", disable=not progress):
        case = file.name[: -len(".nii.gz")]
        labels, _ = read_labels(file, rel.convention, case)
        written.append(write_submission(apply_rule(labels, rule), nib.load(file), out / file.name,
                                        release=rel.name, overwrite=True))
    return written


def tune_reproduction(out: str | os.PathLike[str], data_dir: str | os.PathLike[str],
                      release: str | None = None, jobs: int = 1, progress: bool = True
                      ) -> tuple[PostprocessRule, Path, pd.DataFrame]:
    """The post-processing step of ``brats reproduce``: tune on ``out/cv_predictions`` (default
    grid), store ``out/postprocessing.json``, post-process into ``out/cv_predictions_pp`` and
    score that into ``out/cv_metrics_pp.csv``; all redone on every call.

    Returns:
        ``(rule, rule file, post-processed metrics table)``.
    """
    root = Path(out)
    record = tune(root / "cv_predictions", data_dir, release, jobs=jobs, progress=progress)
    rule = PostprocessRule(tuple(record["rule"]["largest_component"]),
                           record["rule"]["et_threshold_voxels"])
    path = write_rule(record, root, overwrite=True)
    postprocess_folder(root / "cv_predictions", root / "cv_predictions_pp", rule, path,
                       resume=True, overwrite=True, progress=progress)
    metrics = evaluate_folder(root / "cv_predictions_pp", data_dir, release=release, jobs=jobs,
                              progress=progress)
    write_text(metrics.to_csv(index=False), root / "cv_metrics_pp.csv")
    print(f"post-processing tuned on {record['settings']['cases']} case(s): {rule.describe()} "
          f"(mean Dice {record['score']['plain']:.4f} → {record['score']['postprocessed']:.4f})")
    return rule, path, metrics
