"""``brats ensemble``: fuse members from their saved class-probability maps.

A *source* is a folder of ``<case>_probabilities.npz`` maps (``brats predict
--save-probabilities``, ``brats reproduce``'s ``probabilities/``) or trained runs (a run folder,
or a folder of runs such as ``brats reproduce``'s ``runs/``; the runs of one source combine by
their own rule first). Runs are predicted into ``work_dir/<source>/`` (their labels and
probability maps, kept for comparing the members with the ensemble; ``--continue`` reuses the
maps there when their recorded settings match). Per case the sources' maps are averaged with
the given weights, one file at a time (the running sum and one map in memory), then argmax,
paste-back into the case's grid and a submission NIfTI. This is EMMA's rule (Kamnitsas et al.
2017: equal-weight mean of the members' softmax, argmax), and it fuses any trained runs of this
repository.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from brats.data.layouts import discover
from brats.errors import BratsInputError
from brats.inference.combine import MeanAccumulator, load_probabilities, probabilities_to_labels
from brats.inference.predictor import (
    PROBABILITIES_SUFFIX,
    find_runs,
    member_settings,
    predict_folder,
)
from brats.manifest import check_folder, prepare_outputs, read_manifest
from brats.preprocess.crop import paste_back
from brats.submission import submission_name, write_submission
from brats.training.checkpoint import LAST
from brats.uncertainty import (
    RegionMoments,
    check_measure,
    uncertainty_maps,
    uncertainty_names,
    write_uncertainty,
)


def probability_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Case id → ``<case>_probabilities.npz`` in ``folder`` (empty if there are none)."""
    return {p.name[: -len(PROBABILITIES_SUFFIX)]: p
            for p in sorted(Path(folder).glob(f"*{PROBABILITIES_SUFFIX}"))}


def is_run_source(path: Path) -> bool:
    """True when ``path`` is a checkpoint, a run folder or a folder holding runs."""
    return path.is_file() or (path / LAST).is_file() or any(path.rglob(LAST))


def source_names(sources: list[Path]) -> list[str]:
    """Distinct folder names for the sources' work folders (``name``, ``name_2`` …)."""
    names: list[str] = []
    for path in sources:
        base = path.resolve().name or "source"
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def _maps_settings(folder: Path, files: dict[str, Path]) -> dict[str, Any]:
    """What a folder of maps stands for: the settings of the ``brats predict`` that wrote it, or
    each map's size and modification time when no manifest says."""
    manifest = read_manifest(folder)
    if manifest is not None and manifest["kind"] == "predict":
        return {"maps": manifest["settings"]}
    return {"maps": {case: {"size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
                     for case, p in files.items()}}


def source_tables(sources: list[Path]) -> list[dict[str, Path] | None]:
    """Per source its ``case id → probability file`` table, or None for a run source.

    Raises:
        BratsInputError: a source that does not exist or holds neither maps nor runs.
    """
    tables: list[dict[str, Path] | None] = []
    for path in sources:
        if not path.exists():
            raise BratsInputError(f"{path}: ensemble source not found")
        files = probability_files(path) if path.is_dir() else {}
        if not files and not is_run_source(path):
            raise BratsInputError(f"{path}: neither probability maps (*{PROBABILITIES_SUFFIX}) nor "
                                  f"trained runs ({LAST}) inside")
        tables.append(files or None)
    return tables


def fuse_case(files: list[Path], weights: list[float], moments: RegionMoments | None = None
              ) -> tuple[np.ndarray, dict]:
    """Weighted mean of one case's maps (one file loaded at a time) and the first map's meta;
    each map is also added, with its weight, to ``moments`` (uncertainty maps) when given.

    Raises:
        BratsInputError: maps of different shapes, boxes, cases or class orders.
    """
    accumulator = MeanAccumulator()
    for path, weight in zip(files, weights):
        probs, meta = load_probabilities(path)
        accumulator.add(probs, weight, meta=meta, name=str(path))
        if moments is not None:
            moments.add(probs, weight)
        del probs
    return accumulator.mean(), accumulator.meta


def ensemble_folder(sources: list[str | os.PathLike[str]], input_dir: str | os.PathLike[str],
                    output_dir: str | os.PathLike[str], weights: list[float] | None = None,
                    work_dir: str | os.PathLike[str] | None = None, release: str | None = None,
                    device: str | None = None, checkpoint: str = "final",
                    overrides: dict[str, Any] | None = None, resume: bool = False,
                    overwrite: bool = False, progress: bool = True,
                    uncertainty_dir: str | os.PathLike[str] | None = None,
                    uncertainty_measure: str = "entropy") -> list[Path]:
    """Fuse the sources' probability maps into submission files, one per case of ``input_dir``.

    The output folder gets a ``manifest.json`` (kind ``ensemble``): input, release and per
    source (by folder name) its weight and the settings of the prediction that made its maps
    (for run sources: each member's checkpoint and inference settings). ``resume`` and
    ``overwrite`` treat the output folder and the run sources' work folders as
    :func:`brats.inference.predictor.predict_folder` does.

    Args:
        sources: probability folders and/or run sources (module docstring), at least one.
        input_dir: the dataset the maps belong to (image headers for the NIfTIs; runs predict it).
        output_dir: submission folder.
        weights: one non-negative weight per source (default: equal).
        work_dir: where run sources are predicted (default ``<output_dir>_members``).
        checkpoint: ``final`` or ``best`` checkpoint of the run sources.
        overrides: inference settings for the run sources, keys without ``inference.``.
        uncertainty_dir: also write each case's QU-BraTS uncertainty maps there
            (:mod:`brats.uncertainty`, ``uncertainty_measure`` ``entropy`` or ``std``): the
            samples are the sources' maps, weighted as in the ensemble. A folder of its own,
            with its own ``manifest.json`` (kind ``uncertainty``).

    Returns:
        The submission files, one per case.

    Raises:
        BratsInputError: bad weights, a case missing from a source, incompatible maps, inference
            overrides without a run source, or an output folder that cannot be used.
    """
    if not sources:
        raise BratsInputError("brats ensemble needs at least one source")
    weight_list = [1.0] * len(sources) if weights is None else [float(w) for w in weights]
    if len(weight_list) != len(sources):
        raise BratsInputError(f"got {len(sources)} sources but {len(weight_list)} weights")
    if any(not np.isfinite(w) or w < 0 for w in weight_list) or sum(weight_list) <= 0:
        raise BratsInputError(f"weights must be >= 0 with a positive sum, got {weight_list}")
    out = Path(output_dir)
    unc = None if uncertainty_dir is None else Path(uncertainty_dir)
    if unc is not None:
        check_measure(uncertainty_measure)
        if unc.resolve() == out.resolve():
            raise BratsInputError("the ensemble's uncertainty maps need their own folder, not the "
                                  "submission folder")
    work = Path(work_dir) if work_dir is not None else out.with_name(out.name + "_members")
    paths = [Path(s) for s in sources]
    tables = source_tables(paths)
    if overrides and all(t is not None for t in tables):
        raise BratsInputError("inference overrides apply to run sources, and every source here "
                              "is a folder of probability maps")
    cases = discover(input_dir, release)
    names = source_names(paths)
    recorded: dict[str, dict[str, Any]] = {}
    for name, weight, path, table in zip(names, weight_list, paths, tables):
        made = (_maps_settings(path, table) if table is not None
                else {"runs": member_settings(find_runs([path]), checkpoint, overrides)[0]})
        recorded[name] = {"weight": weight, **made}
    settings = {"input": str(Path(input_dir).resolve()), "release": cases[0].release,
                "sources": recorded}
    check_folder(out, "ensemble", settings, resume, overwrite)
    if unc is not None:
        unc_settings = {"ensemble": str(out.resolve()), "measure": uncertainty_measure,
                        "sources": [str(p.resolve()) for p in paths], "weights": weight_list}
        check_folder(unc, "uncertainty", unc_settings, resume, overwrite)
    for i, (path, name) in enumerate(zip(paths, names)):
        if tables[i] is None:
            print(f"predict {path} → {work / name}")
            predict_folder([path], input_dir, work / name / "predictions", release=release,
                           device=device, overrides=overrides,
                           probabilities_dir=work / name / "probabilities", checkpoint=checkpoint,
                           resume=resume, overwrite=overwrite, progress=progress)
            tables[i] = probability_files(work / name / "probabilities")
    for source, table in zip(sources, tables):
        missing = [c.id for c in cases if c.id not in table]
        if missing:
            raise BratsInputError(f"{source}: no probability map for case(s) "
                                  f"{', '.join(missing[:5])}" + (" …" if len(missing) > 5 else ""))
    prepare_outputs({out: [submission_name(c.id) for c in cases]}, "ensemble", settings,
                    resume=resume, overwrite=overwrite,
                    sources=[str(p.resolve()) for p in paths], work=str(work.resolve()))
    if unc is not None:
        prepare_outputs({unc: [n for c in cases for n in uncertainty_names(c.id)]}, "uncertainty",
                        unc_settings, resume=resume, overwrite=overwrite)
    written = []
    for case in tqdm(cases, desc="ensemble", unit="case", disable=not progress):
        target = out / submission_name(case.id)
        written.append(target)
        maps_done = unc is None or all((unc / n).is_file() for n in uncertainty_names(case.id))
        if target.is_file() and maps_done:
            continue
        moments = None if maps_done else RegionMoments()
        probs, meta = fuse_case([t[case.id] for t in tables], weight_list, moments)
        if meta.get("case_id", case.id) != case.id:
            raise BratsInputError(f"the map for {case.id} says it belongs to {meta['case_id']}")
        box = [tuple(b) for b in meta["box"]]
        if not target.is_file():
            labels = paste_back(probabilities_to_labels(probs), box, meta["shape"])
            write_submission(labels, case.images[0], target, release=case.release)
        if moments is not None:
            write_uncertainty(uncertainty_maps(moments, uncertainty_measure), box,
                              tuple(meta["shape"]), case.images[0], unc, case.id)
    return written
