"""Predict cases with trained members: load checkpoints, preprocess as in training, combine the
members' probability maps, paste back into the original grid, write submissions."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from brats.config import InferenceConfig, from_dict, import_package
from brats.data.case import Case, CaseData
from brats.data.layouts import discover
from brats.errors import BratsInputError
from brats.inference.combine import MeanAccumulator, probabilities_to_labels, save_probabilities
from brats.inference.tta import predict_with_tta
from brats.nets import build_network
from brats.preprocess.crop import Box, bounding_box, brain_mask, crop, paste_back
from brats.preprocess.normalize import zscore
from brats.submission import submission_name, write_submission
from brats.training.augment import isensee_intensity_preprocess
from brats.training.checkpoint import BEST, LAST, load_checkpoint

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


def load_member(run: str | os.PathLike[str], device: torch.device, which: str = "best",
                overrides: dict[str, Any] | None = None) -> Member:
    """Load one run's network (best checkpoint if there is one and ``which="best"``, else last).

    ``overrides`` replace inference settings of the run's config (e.g. ``{"num_mirrors": 1}``).
    """
    path = Path(run)
    if path.is_dir():
        path = path / (BEST if which == "best" and (path / BEST).is_file() else LAST)
    state = load_checkpoint(path, map_location="cpu")
    import_package(state["config"].get("package"))
    network = build_network(state["network"], in_channels=state["in_channels"],
                            num_classes=state["num_outputs"], **state["network_kwargs"])
    network.load_state_dict(state["model"])
    network.to(device).eval()
    settings = {**state["config"]["inference"], **(overrides or {})}
    name = f"{state['member']}/fold{state['fold']}" if state["fold"] is not None else state["member"]
    return Member(name, network, from_dict(InferenceConfig, settings, "inference"),
                  state["target"], state["intensity"], path, state["config"])


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
                    progress: bool = False) -> np.ndarray:
    """Mean class probabilities (4, x, y, z) of all members on a preprocessed crop."""
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
            amp_dtype=amp, progress=progress)
        accumulator.add(probs)
    return accumulator.mean()


def full_grid(probs: np.ndarray, box: Box, shape: tuple[int, int, int]) -> np.ndarray:
    """Paste (4, x, y, z) probabilities into (4, X, Y, Z): background probability 1 outside."""
    out = np.zeros((probs.shape[0], *shape), dtype=np.float32)
    out[0] = 1.0
    out[(slice(None), *(slice(a, b) for a, b in box))] = probs
    return out


def predict_mean(members: list[Member], image: np.ndarray, spacing: tuple[float, float, float],
                 device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The ``mean`` rule: average the members' class probabilities, then argmax.

    Returns:
        ``(labels (x, y, z) uint8 canonical, probabilities (4, x, y, z))`` on the crop.
    """
    probs = predict_cropped(members, image, device)
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


def predict_case(members: list[Member], case: Case, device: torch.device
                 ) -> tuple[np.ndarray, np.ndarray | None, Box]:
    """Predict one case: ``(labels (X, Y, Z) uint8 canonical, probabilities (4, x, y, z) in the
    brain box or None, box)``."""
    data = case.load(with_labels=False)
    image, box = preprocess(data)
    crop_labels, probs = CASE_PREDICTORS[combine_rule(members)](members, image, data.spacing,
                                                                device)
    return paste_back(crop_labels, box, data.image.shape[1:]), probs, box


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


def predict_folder(runs: list[str | os.PathLike[str]], input_dir: str | os.PathLike[str],
                   output_dir: str | os.PathLike[str], release: str | None = None,
                   device: str | None = None, overrides: dict[str, Any] | None = None,
                   probabilities_dir: str | os.PathLike[str] | None = None,
                   shard: str | None = None, cases: list[str] | None = None,
                   progress: bool = True) -> list[Path]:
    """Predict every case of a dataset folder with the mean of the given runs.

    Finished cases (their ``<id>.nii.gz`` exists) are skipped, so an interrupted run resumes and
    several processes can share a folder with ``shard="K/N"`` (every N-th case from the K-th).
    With ``probabilities_dir`` the mean class probabilities inside the brain box are also saved
    there as ``<id>_probabilities.npz`` (float16), outside the submission folder so it stays
    uploadable.

    Returns:
        The prediction files of this shard (new and already present).
    """
    from brats.training.trainer import select_device

    dev = select_device(device)
    all_cases = discover(input_dir, release)
    if cases is not None:
        missing = sorted(set(cases) - {c.id for c in all_cases})
        if missing:
            raise BratsInputError(f"{input_dir}: no case(s) {', '.join(missing[:5])}")
        all_cases = [c for c in all_cases if c.id in set(cases)]
    k, n = parse_shard(shard)
    mine = all_cases[k - 1::n]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    todo = [c for c in mine if not (out / submission_name(c.id)).is_file()]
    members = [load_member(r, dev, overrides=overrides) for r in find_runs(runs)] if todo else []
    for case in tqdm(todo, desc="predict", unit="case", disable=not progress):
        labels, probs, box = predict_case(members, case, dev)
        if probabilities_dir is not None and probs is not None:
            save_probabilities(Path(probabilities_dir) / f"{case.id}{PROBABILITIES_SUFFIX}", probs,
                               {"case_id": case.id, "box": [list(b) for b in box],
                                "shape": list(labels.shape),
                                "members": [m.name for m in members]})
        write_submission(labels, case.images[0], out / submission_name(case.id),
                         release=case.release)
    return [out / submission_name(c.id) for c in mine]
