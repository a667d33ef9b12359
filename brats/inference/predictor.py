"""Predict cases with trained members: load checkpoints, preprocess as in training, combine the
members' probability maps, paste back into the original grid, write submissions."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from brats.config import InferenceConfig, from_dict, import_package, to_dict
from brats.data.case import Case, CaseData
from brats.data.layouts import discover
from brats.errors import BratsInputError
from brats.inference.combine import MeanAccumulator, probabilities_to_labels, save_probabilities
from brats.inference.tta import predict_with_tta
from brats.manifest import file_fingerprint, prepare_outputs, read_manifest, remove_unused
from brats.nets import build_network
from brats.postprocess import PostprocessRule, apply_rule
from brats.preprocess.crop import Box, bounding_box, brain_mask, crop, paste_back
from brats.preprocess.normalize import zscore
from brats.submission import submission_name, write_submission
from brats.training.augment import isensee_intensity_preprocess
from brats.training.checkpoint import BEST, LAST, load_checkpoint
from brats.uncertainty import (
    RegionMoments,
    check_measure,
    uncertainty_maps,
    uncertainty_names,
    write_uncertainty,
)

PROBABILITIES_SUFFIX = "_probabilities.npz"


@dataclass
class Member:
    """A trained network ready for inference, with what it needs to know from its checkpoint."""

    name: str
    network: torch.nn.Module
    inference: InferenceConfig
    target: str
    intensity: str
    source: Path
    config: dict[str, Any]


def find_runs(paths: list[str | os.PathLike[str]]) -> list[Path]:
    """Run folders (holding ``checkpoint_last.pt``) given as run folders, checkpoint files or
    folders that contain runs (e.g. ``runs/`` of ``brats reproduce``)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif (path / LAST).is_file():
            found.append(path)
        elif path.is_dir():
            nested = sorted(p.parent for p in path.rglob(LAST))
            if not nested:
                raise BratsInputError(f"{path}: no trained run (no {LAST}) inside")
            found.extend(nested)
        else:
            raise BratsInputError(f"{path}: run folder not found")
    return found


#: ``--checkpoint`` choices → file in a run folder.
CHECKPOINTS = {"final": LAST, "best": BEST}


def checkpoint_file(run: str | os.PathLike[str], which: str = "final") -> Path:
    """The checkpoint of a run folder (a checkpoint file is used as given).

    ``final`` is ``checkpoint_last.pt``, the weights after the last epoch: what the original
    entries submitted and what the cross-validation scores use. ``best`` is
    ``checkpoint_best.pt``, the epoch with the highest mean pseudo-Dice on the fold's validation
    patches; those are the cases the cross-validation scores, so it is used only when asked.

    Raises:
        BratsInputError: unknown ``which``, or the run has no such checkpoint (no ``best`` for a
            run trained without validation, e.g. ``--fold all``).
    """
    if which not in CHECKPOINTS:
        raise BratsInputError(f"checkpoint {which!r}: expected one of {', '.join(CHECKPOINTS)}")
    path = Path(run)
    if path.is_file():
        return path
    target = path / CHECKPOINTS[which]
    if target.is_file():
        return target
    if which == "best":
        raise BratsInputError(f"{path}: no {BEST}; the run kept no best epoch (trained without "
                              "validation patches, e.g. --fold all); use --checkpoint final")
    raise BratsInputError(f"{path}: no {LAST}; is this a `brats train` run folder?")


def split_overrides(overrides: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{"inference.amp": True, "train.epochs": 2}`` → ``({"amp": True}, {"train.epochs": 2})``.

    The inference settings lose their ``inference.`` prefix and are checked against
    :class:`InferenceConfig` (an ``inference`` key holding a dict counts as well).

    Raises:
        BratsInputError: an unknown inference key or a value of the wrong type.
    """
    inference: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        section, _, name = str(key).partition(".")
        if section == "inference" and name:
            inference[name] = value
        elif key == "inference" and isinstance(value, dict):
            inference.update(value)
        else:
            rest[key] = value
    from_dict(InferenceConfig, inference, "inference")
    return inference, rest


def inference_overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The ``inference.*`` overrides of ``brats predict``/``ensemble``, prefix removed.

    Raises:
        BratsInputError: any other key (the message lists the valid ones), or a bad value.
    """
    inference, rest = split_overrides(overrides)
    if rest:
        key = next(iter(rest))
        valid = ", ".join(f"inference.{f.name}" for f in dataclasses.fields(InferenceConfig))
        raise BratsInputError(f"override {key}={rest[key]!r}: only inference settings can change "
                              f"at prediction time; valid keys: {valid}")
    return inference


def _inference(state: dict[str, Any], overrides: dict[str, Any] | None) -> InferenceConfig:
    """The run's inference settings with ``overrides`` winning."""
    return from_dict(InferenceConfig, {**state["config"]["inference"], **(overrides or {})},
                     "inference")


def _member_name(run: Path) -> str:
    """The member a run folder trained (its manifest's ``member``; else the folder name)."""
    manifest = read_manifest(run)
    member = None if manifest is None else manifest.get("settings", {}).get("member")
    return str(member) if member else Path(run).name


def _name(state: dict[str, Any]) -> str:
    return f"{state['member']}/fold{state['fold']}" if state["fold"] is not None else state["member"]


def load_member(run: str | os.PathLike[str], device: torch.device, which: str = "final",
                overrides: dict[str, Any] | None = None) -> Member:
    """Load one run's network from its ``final`` or ``best`` checkpoint (:func:`checkpoint_file`).

    ``overrides`` replace inference settings of the run's stored config (e.g.
    ``{"num_mirrors": 1}``, keys without the ``inference.`` prefix).
    """
    path = checkpoint_file(run, which)
    state = load_checkpoint(path, map_location="cpu")
    import_package(state["config"].get("package"))
    network = build_network(state["network"], in_channels=state["in_channels"],
                            num_classes=state["num_outputs"], **state["network_kwargs"])
    network.load_state_dict(state["model"])
    network.to(device).eval()
    return Member(_name(state), network, _inference(state, overrides), state["target"],
                  state["intensity"], path, state["config"])


def member_settings(runs: list[Path], which: str = "final",
                    overrides: dict[str, Any] | None = None
                    ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """What a prediction with these runs depends on, for manifests, without building networks.

    Returns:
        ``({member name: {"checkpoint", "file", "size", "sha256", "epoch", "inference"}},
        {member name: run path})``; a name seen twice gets ``#2``, ``#3`` … appended.
    """
    records: dict[str, dict[str, Any]] = {}
    paths: dict[str, str] = {}
    for run in runs:
        path = checkpoint_file(run, which)
        state = load_checkpoint(path, map_location="cpu")
        name, k = _name(state), 2
        while name in records:
            name, k = f"{_name(state)}#{k}", k + 1
        records[name] = {"checkpoint": which, "file": path.name, **file_fingerprint(path),
                         "epoch": state["epoch"], "inference": to_dict(_inference(state, overrides))}
        paths[name] = str(Path(run).resolve())
    return records, paths


def preprocess(data: CaseData) -> tuple[np.ndarray, Box]:
    """Crop to the brain box and z-score inside the brain, exactly as ``brats prepare`` does.

    Returns:
        ``((4, x, y, z) float32, box)``.
    """
    mask = brain_mask(data.image)
    box = bounding_box(mask)
    image, _, _ = zscore(crop(data.image, box), crop(mask, box))
    return image, box


def predict_cropped(members: list[Member], image: np.ndarray, device: torch.device,
                    progress: bool = False, moments: RegionMoments | None = None,
                    on_member: Callable[[Member, np.ndarray], None] | None = None) -> np.ndarray:
    """Mean class probabilities (4, x, y, z) of all members on a preprocessed crop.

    With ``moments``, every TTA sample of every member is also added to it (same mean);
    ``on_member`` sees each member's own (4, x, y, z) probabilities.
    """
    accumulator = MeanAccumulator()
    for member in members:
        x = isensee_intensity_preprocess(image) if member.intensity == "isensee2017" else image
        cfg = member.inference
        if cfg.channels_last:
            member.network.to(memory_format=torch.channels_last_3d)
        amp = torch.bfloat16 if cfg.amp else None
        probs = predict_with_tta(
            member.network, x, mirror_axes=cfg.mirror_axes, num_mirrors=cfg.num_mirrors,
            test_time_dropout=cfg.test_time_dropout, repeats=cfg.repeats,
            activation="softmax" if member.target == "labels" else "sigmoid_regions",
            mode=cfg.mode, roi_size=cfg.roi_size, overlap=cfg.overlap, blend=cfg.blend,
            sw_batch_size=cfg.sw_batch_size, pad_mode=cfg.pad_mode,
            margin=tuple(member.config["data"].get("output_crop", (0, 0, 0))), device=device,
            amp_dtype=amp, progress=progress,
            on_sample=None if moments is None else moments.add)
        if on_member is not None:
            on_member(member, probs)
        accumulator.add(probs)
    return accumulator.mean()


def full_grid(probs: np.ndarray, box: Box, shape: tuple[int, int, int]) -> np.ndarray:
    """Paste (4, x, y, z) probabilities into (4, X, Y, Z): background probability 1 outside."""
    out = np.zeros((probs.shape[0], *shape), dtype=np.float32)
    out[0] = 1.0
    out[(slice(None), *(slice(a, b) for a, b in box))] = probs
    return out


def predict_mean(members: list[Member], image: np.ndarray, spacing: tuple[float, float, float],
                 device: torch.device, moments: RegionMoments | None = None,
                 on_member: Callable[[Member, np.ndarray], None] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The ``mean`` rule: average the members' class probabilities, then argmax
    (``moments``, ``on_member``: see :func:`predict_cropped`).

    Returns:
        ``(labels (x, y, z) uint8 canonical, probabilities (4, x, y, z))`` on the crop.
    """
    probs = predict_cropped(members, image, device, moments=moments, on_member=on_member)
    return probabilities_to_labels(probs), probs


#: How an entry turns its members into a label map: rule name (config ``combine``) → function
#: ``(members, z-scored brain crop (4, x, y, z), spacing mm, device) → (labels, probabilities or
#: None)``. Method packages add theirs (the cascade registers ``cascade``).
CASE_PREDICTORS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray | None]]] = {
    "mean": predict_mean}


def combine_rule(members: list[Member]) -> str:
    """The ``combine`` rule shared by all members (an error if they disagree or it is unknown)."""
    rules = {m.config.get("combine", "mean") for m in members}
    if len(rules) != 1:
        raise BratsInputError(f"the runs combine their members differently ({sorted(rules)}); "
                              "predict them separately")
    rule = rules.pop()
    if rule not in CASE_PREDICTORS:
        raise BratsInputError(f"unknown combine rule {rule!r}; known: {', '.join(CASE_PREDICTORS)}")
    return rule


def predict_case(members: list[Member], case: Case, device: torch.device,
                 moments: RegionMoments | None = None,
                 on_member: Callable[[Member, np.ndarray], None] | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None, Box]:
    """Predict one case: ``(labels (X, Y, Z) uint8 canonical, probabilities (4, x, y, z) in the
    brain box or None, box)``. ``mean`` rule only: ``moments`` collects the samples' region
    probabilities for uncertainty maps (:mod:`brats.uncertainty`), and ``on_member`` receives
    each member's own label map (X, Y, Z) uint8 canonical, to score members beside the mean."""
    data = case.load(with_labels=False)
    image, box = preprocess(data)
    rule = combine_rule(members)
    shape = data.image.shape[1:]
    extras: dict[str, Any] = {}
    if moments is not None:
        extras["moments"] = moments
    if on_member is not None:
        def member_labels(member: Member, member_probs: np.ndarray) -> None:
            on_member(member, paste_back(probabilities_to_labels(member_probs), box, shape))

        extras["on_member"] = member_labels
    if extras and rule != "mean":
        raise BratsInputError(f"uncertainty maps and member outputs need the mean rule; the "
                              f"{rule!r} rule keeps no per-sample probabilities")
    crop_labels, probs = CASE_PREDICTORS[rule](members, image, data.spacing, device, **extras)
    return paste_back(crop_labels, box, shape), probs, box


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"K/N"`` (1 ≤ K ≤ N) → (K, N); None → (1, 1)."""
    if text is None:
        return 1, 1
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise BratsInputError(f"--shard {text!r}: expected K/N, e.g. 2/4") from None
    if not 1 <= k <= n:
        raise BratsInputError(f"--shard {text!r}: need 1 <= K <= N")
    return k, n


def output_files(output_dir: Path, probabilities_dir: Path | None, cases: list[Case],
                 uncertainty_dir: Path | None = None) -> dict[Path, list[str]]:
    """Folder → names of the files a prediction of ``cases`` writes there."""
    folders = {output_dir: [submission_name(c.id) for c in cases]}
    extra = [(probabilities_dir, [f"{c.id}{PROBABILITIES_SUFFIX}" for c in cases]),
             (uncertainty_dir, [n for c in cases for n in uncertainty_names(c.id)])]
    for folder, names in extra:
        if folder is None:
            continue
        same = next((f for f in folders if f.resolve() == folder.resolve()), folder)
        folders[same] = folders.get(same, []) + names
    return folders


def predict_cases(runs: list[Path], cases: list[Case], output_dir: Path,
                  probabilities_dir: Path | None, device: torch.device, which: str = "final",
                  overrides: dict[str, Any] | None = None, progress: bool = True, *,
                  uncertainty_dir: Path | None = None, measure: str = "entropy",
                  load: Callable[[], list[Member]] | None = None,
                  postprocess: PostprocessRule | None = None,
                  members_dir: Path | None = None) -> list[Path]:
    """Predict the cases that lack their prediction (or probability map, uncertainty maps or
    member predictions, when asked) with the mean of ``runs``; the others are left alone.
    Returns every case's prediction file.

    Args:
        uncertainty_dir: also write the three QU-BraTS uncertainty maps of each case there
            (:mod:`brats.uncertainty`; ``measure`` ``entropy`` or ``std``).
        load: builds the members instead of loading ``runs`` (e.g. from a model package).
        postprocess: a tuned rule (:mod:`brats.postprocess`) applied to each label map before
            it is written (probabilities and uncertainty maps are left as predicted).
        members_dir: also write each member's own prediction to ``members_dir/<member>/``
            (``mean`` rule; the members are named by the runs' ``member``).
    """
    names = [_member_name(r) for r in runs] if members_dir is not None else []
    if len(set(names)) != len(names) or (members_dir is not None and load is not None):
        raise BratsInputError("member outputs need runs of distinct members "
                              f"(got {', '.join(names) or 'a model package'})")

    def done(case: Case) -> bool:
        return (output_dir / submission_name(case.id)).is_file() and (
            probabilities_dir is None
            or (probabilities_dir / f"{case.id}{PROBABILITIES_SUFFIX}").is_file()) and (
            uncertainty_dir is None
            or all((uncertainty_dir / n).is_file() for n in uncertainty_names(case.id))) and (
            members_dir is None
            or all((members_dir / n / submission_name(case.id)).is_file() for n in names))

    todo = [c for c in cases if not done(c)]
    if not todo:
        members = []
    elif load is not None:
        members = load()
    else:
        members = [load_member(r, device, which, overrides) for r in runs]
    for case in tqdm(todo, desc="predict", unit="case", disable=not progress):
        moments = None if uncertainty_dir is None else RegionMoments()

        def write_member(member: Member, member_labels: np.ndarray, case: Case = case) -> None:
            write_submission(member_labels, case.images[0],
                             members_dir / names[members.index(member)] / submission_name(case.id),
                             release=case.release, overwrite=True)

        labels, probs, box = predict_case(members, case, device, moments,
                                          None if members_dir is None else write_member)
        if moments is not None and uncertainty_dir is not None:
            write_uncertainty(uncertainty_maps(moments, measure), box, labels.shape,
                              case.images[0], uncertainty_dir, case.id)
        if probabilities_dir is not None and probs is not None:
            save_probabilities(probabilities_dir / f"{case.id}{PROBABILITIES_SUFFIX}", probs,
                               {"case_id": case.id, "box": [list(b) for b in box],
                                "shape": list(labels.shape),
                                "members": [m.name for m in members]})
        if postprocess is not None:
            labels = apply_rule(labels, postprocess)
        write_submission(labels, case.images[0], output_dir / submission_name(case.id),
                         release=case.release, overwrite=True)
    return [output_dir / submission_name(c.id) for c in cases]


def predict_folder(runs: list[str | os.PathLike[str]], input_dir: str | os.PathLike[str],
                   output_dir: str | os.PathLike[str], release: str | None = None,
                   device: str | None = None, overrides: dict[str, Any] | None = None,
                   probabilities_dir: str | os.PathLike[str] | None = None,
                   shard: str | None = None, cases: list[str] | None = None,
                   checkpoint: str = "final", resume: bool = False, overwrite: bool = False,
                   progress: bool = True, uncertainty_dir: str | os.PathLike[str] | None = None,
                   uncertainty_measure: str = "entropy",
                   model: str | os.PathLike[str] | None = None,
                   postprocess: PostprocessRule | None = None) -> list[Path]:
    """Predict every case of a dataset folder with the mean of the given runs.

    The output folder (and ``probabilities_dir``) gets a ``manifest.json`` (kind ``predict``):
    input, release, checkpoint choice, each member's checkpoint file (size, sha256, epoch) and
    resolved inference settings, the probabilities folder. A folder that is not empty is refused
    unless ``resume`` (finish the missing cases; refused when the recorded settings differ) or
    ``overwrite`` (remove what an earlier prediction recorded there, then start again; refused
    when the folder holds anything else); with both, matching settings resume and others start
    again. Processes sharing a folder with ``shard="K/N"`` (every N-th case from the K-th) each
    pass ``resume``. With ``probabilities_dir`` the mean class probabilities inside the brain box
    are also saved as ``<id>_probabilities.npz`` (float16); a case lacking its map is predicted
    again.

    Args:
        checkpoint: ``final`` or ``best`` (:func:`checkpoint_file`).
        overrides: inference settings replacing the runs' own, keys without ``inference.``.
        uncertainty_dir: also write each case's QU-BraTS uncertainty maps there
            (:mod:`brats.uncertainty`, ``uncertainty_measure`` ``entropy`` or ``std``).
        model: a model package (:mod:`brats.package`) to predict with instead of ``runs``.
        postprocess: a tuned post-processing rule for the label maps (recorded in the
            manifest as ``postprocess``); None (default) writes them as predicted.

    Returns:
        The prediction files of this shard (new and already present).
    """
    from brats.package import open_package
    from brats.training.trainer import select_device

    dev = select_device(device)
    all_cases = discover(input_dir, release)
    if cases is not None:
        missing = sorted(set(cases) - {c.id for c in all_cases})
        if missing:
            raise BratsInputError(f"{input_dir}: no case(s) {', '.join(missing[:5])}")
        all_cases = [c for c in all_cases if c.id in set(cases)]
    k, n = parse_shard(shard)
    load: Callable[[], list[Member]] | None = None
    if model is None:
        run_paths = find_runs(runs)
        members, paths = member_settings(run_paths, checkpoint, overrides)
    elif runs:
        raise BratsInputError("give either run folders or --model, not both")
    else:
        package = open_package(model)
        run_paths, checkpoint = [], "package"
        members, paths = package.settings(overrides), {"package": str(Path(model).resolve())}

        def load() -> list[Member]:
            return package.members(dev, overrides)
    out = Path(output_dir)
    probs = None if probabilities_dir is None else Path(probabilities_dir)
    unc = None if uncertainty_dir is None else Path(uncertainty_dir)
    check_measure(uncertainty_measure)
    settings = {"input": str(Path(input_dir).resolve()),
                "release": all_cases[0].release if all_cases else release,
                "checkpoint": checkpoint, "members": members,
                "probabilities": None if probs is None else str(probs.resolve())}
    if unc is not None:
        settings["uncertainty"] = {"folder": str(unc.resolve()), "measure": uncertainty_measure}
    if postprocess is not None:
        settings["postprocess"] = postprocess.to_dict()
    folders = output_files(out, probs, all_cases, unc)
    new = [f for f in folders if not f.exists()]
    prepare_outputs(folders, "predict", settings, resume=resume, overwrite=overwrite, runs=paths)
    try:
        return predict_cases(run_paths, all_cases[k - 1::n], out, probs, dev, checkpoint,
                             overrides, progress, uncertainty_dir=unc, measure=uncertainty_measure,
                             load=load, postprocess=postprocess)
    except BaseException:
        remove_unused(new)  # a failed prediction leaves no folder it created and left empty
        raise
