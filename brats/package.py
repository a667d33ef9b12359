"""Shareable trained models: ``brats export`` packs runs into one zip, ``brats predict --model``
and ``brats ensemble --model`` run it on a machine without the training folders.

A package is a zip with :data:`MANIFEST_NAME` (JSON: format, entry, combine rule, folds,
versions and, per member, how to build its network and the sha256 of its files) and, per member,
``members/NN/weights.pt`` (a plain ``state_dict``: tensors only) and ``members/NN/config.yaml``
(the run's resolved config). A package may come from anyone, so reading one never runs code:
nothing is extracted (members are read into memory), every name must be a plain relative path,
every file must match its recorded checksum, configs are read with ``yaml.safe_load`` and
weights with ``torch.load(weights_only=True)``, and a config may import only the method packages
of this repository (:data:`METHOD_PACKAGES`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import stat
import zipfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import torch
import yaml

from brats.config import InferenceConfig, from_dict, import_package, to_dict
from brats.errors import BratsInputError
from brats.inference.predictor import Member, checkpoint_file, find_runs
from brats.io import atomic_path
from brats.manifest import code_version, jsonable
from brats.nets import build_network
from brats.training.checkpoint import load_checkpoint

PACKAGE_FORMAT = 1
PACKAGE_KIND = "brats-model"
MANIFEST_NAME = "brats_model.json"
#: Method packages a packaged config may import (they register networks in the core registries).
METHOD_PACKAGES: tuple[str, ...] = ("cascade", "ensemble")
#: Largest file a package may hold (bytes, uncompressed): guards against zip bombs.
MAX_MEMBER_BYTES = 4 << 30
_BUILD_KEYS = ("network", "network_kwargs", "in_channels", "num_outputs", "target", "intensity")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _name(state: dict[str, Any]) -> str:
    return f"{state['member']}/fold{state['fold']}" if state["fold"] is not None else state["member"]


def export_package(runs: list[str | os.PathLike[str]], out: str | os.PathLike[str],
                   checkpoint: str = "final", overwrite: bool = False) -> dict[str, Any]:
    """Pack the runs' ``final`` (or ``best``) weights, resolved configs and combine rule.

    Args:
        runs: run folders, checkpoint files or folders holding runs (all of one entry).
        out: the ``.zip`` to write (atomically).

    Returns:
        The package manifest.

    Raises:
        BratsInputError: no runs, runs of different entries or combine rules, or ``out`` exists
            without ``overwrite``.
    """
    target = Path(out)
    if target.exists() and not overwrite:
        raise BratsInputError(f"{target} exists; pass --overwrite to replace it")
    states = [load_checkpoint(checkpoint_file(r, checkpoint)) for r in find_runs(runs)]
    entries = {s["config"]["entry"] for s in states}
    rules = {s["config"].get("combine", "mean") for s in states}
    if len(entries) != 1 or len(rules) != 1:
        raise BratsInputError(f"a package holds one entry with one combine rule; these runs have "
                              f"entries {sorted(entries)} and rules {sorted(rules)}")
    records, files = [], {}
    for i, state in enumerate(states):
        name, k = _name(state), 2
        while any(r["name"] == name for r in records):
            name, k = f"{_name(state)}#{k}", k + 1
        weights = io.BytesIO()
        torch.save({key: value.detach().cpu().contiguous()
                    for key, value in state["model"].items()}, weights)
        config = yaml.safe_dump(jsonable(state["config"]), sort_keys=False).encode()
        folder = f"members/{i:02d}"
        files[f"{folder}/weights.pt"] = weights.getvalue()
        files[f"{folder}/config.yaml"] = config
        records.append({"name": name, "member": state["member"], "fold": state["fold"],
                        "epoch": state["epoch"], **{key: state[key] for key in _BUILD_KEYS},
                        "files": {"weights": f"{folder}/weights.pt",
                                  "config": f"{folder}/config.yaml"},
                        "sha256": {f"{folder}/weights.pt": _sha256(files[f"{folder}/weights.pt"]),
                                   f"{folder}/config.yaml": _sha256(config)}})
    manifest = jsonable({
        "format": PACKAGE_FORMAT, "kind": PACKAGE_KIND, "entry": entries.pop(),
        "combine": rules.pop(), "checkpoint": checkpoint,
        "folds": sorted({s["fold"] for s in states}, key=str),
        "versions": {**code_version(), "torch": torch.__version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "members": records})
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2))
        for path, data in files.items():
            archive.writestr(path, data)
    return manifest


def _safe(name: str) -> bool:
    """A plain relative POSIX path without ``..``, drive, backslash or empty part."""
    if not name or name.startswith("/") or "\\" in name or ":" in name:
        return False
    return ".." not in PurePosixPath(name).parts


class ModelPackage:
    """A checked package, held in memory: its manifest and its files by name."""

    def __init__(self, path: Path, manifest: dict[str, Any], files: dict[str, bytes]) -> None:
        self.path = path
        self.manifest = manifest
        self._files = files

    def _config(self, record: dict[str, Any]) -> dict[str, Any]:
        path = record["files"]["config"]
        try:
            config = yaml.safe_load(self._files[path].decode())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise BratsInputError(f"{self.path}: {path} is not a YAML config ({exc})") from None
        if not isinstance(config, dict) or not isinstance(config.get("inference"), dict):
            raise BratsInputError(f"{self.path}: {path} is not a resolved brats config")
        package = config.get("package")
        if package is not None and package not in METHOD_PACKAGES:
            raise BratsInputError(f"{self.path}: {path} asks to import {package!r}; a package may "
                                  f"only use {', '.join(METHOD_PACKAGES)}")
        return config

    def _inference(self, config: dict[str, Any], overrides: dict[str, Any] | None
                   ) -> InferenceConfig:
        return from_dict(InferenceConfig, {**config["inference"], **(overrides or {})},
                         "inference")

    def settings(self, overrides: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Per member what a prediction depends on (for ``manifest.json``): weights checksum,
        epoch, resolved inference settings."""
        out = {}
        for record in self.manifest["members"]:
            weights = record["files"]["weights"]
            out[record["name"]] = {
                "package": self.path.name, "file": weights, "sha256": record["sha256"][weights],
                "epoch": record["epoch"],
                "inference": to_dict(self._inference(self._config(record), overrides))}
        return out

    def members(self, device: torch.device, overrides: dict[str, Any] | None = None
                ) -> list[Member]:
        """Build every member's network on ``device`` with its packaged weights.

        Raises:
            BratsInputError: weights that are not a plain state dict (e.g. a pickled object) or
                that do not fit the recorded network.
        """
        members = []
        for record in self.manifest["members"]:
            config = self._config(record)
            import_package(config.get("package"))
            weights = record["files"]["weights"]
            try:
                state = torch.load(io.BytesIO(self._files[weights]), map_location="cpu",
                                   weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise BratsInputError(f"{self.path}: {weights} is not a plain state dict of "
                                      f"tensors; refused ({first})") from None
            if not isinstance(state, dict) or not all(
                    isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
                raise BratsInputError(f"{self.path}: {weights} is not a state dict of tensors")
            network = build_network(record["network"], in_channels=record["in_channels"],
                                    num_classes=record["num_outputs"], **record["network_kwargs"])
            try:
                network.load_state_dict(state)
            except RuntimeError as exc:
                raise BratsInputError(f"{self.path}: the weights of {record['name']} do not fit "
                                      f"network {record['network']!r} "
                                      f"({str(exc).splitlines()[0]})") from None
            network.to(device).eval()
            members.append(Member(record["name"], network, self._inference(config, overrides),
                                  record["target"], record["intensity"],
                                  Path(f"{self.path}:{weights}"), config))
        return members


def _check_manifest(path: Path, manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("kind") != PACKAGE_KIND:
        raise BratsInputError(f"{path}: not a brats model package ({MANIFEST_NAME} has no kind "
                              f"{PACKAGE_KIND!r})")
    if manifest.get("format") != PACKAGE_FORMAT:
        raise BratsInputError(f"{path}: package format {manifest.get('format')!r}; this brats "
                              f"reads format {PACKAGE_FORMAT}")
    members = manifest.get("members")
    if not isinstance(members, list) or not members:
        raise BratsInputError(f"{path}: the package lists no members")
    for record in members:
        ok = (isinstance(record, dict) and all(k in record for k in ("name", "epoch", *_BUILD_KEYS))
              and isinstance(record.get("files"), dict) and isinstance(record.get("sha256"), dict)
              and isinstance(record["network_kwargs"], dict)
              and all(k in record["files"] for k in ("weights", "config")))
        if not ok:
            raise BratsInputError(f"{path}: a member record of {MANIFEST_NAME} is incomplete")
    return manifest


def open_package(path: str | os.PathLike[str]) -> ModelPackage:
    """Read and check a package written by :func:`export_package`, entirely in memory.

    Raises:
        BratsInputError: missing file, not a zip, an entry name outside the archive's folder
            (``../``, absolute) or a link, an oversized entry, a missing or foreign manifest, a
            file listed but absent, or a checksum mismatch.
    """
    source = Path(path)
    if not source.is_file():
        raise BratsInputError(f"{source}: model package not found")
    try:
        with zipfile.ZipFile(source) as archive:
            infos = archive.infolist()
            for info in infos:
                if not _safe(info.filename):
                    raise BratsInputError(f"{source}: entry {info.filename!r} is not a plain path "
                                          "inside the package; refused")
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise BratsInputError(f"{source}: entry {info.filename!r} is a link; refused")
                if info.file_size > MAX_MEMBER_BYTES:
                    raise BratsInputError(f"{source}: entry {info.filename!r} is too large")
            names = {info.filename for info in infos}
            if MANIFEST_NAME not in names:
                raise BratsInputError(f"{source}: not a brats model package (no {MANIFEST_NAME})")
            manifest = _check_manifest(source, json.loads(archive.read(MANIFEST_NAME)))
            files: dict[str, bytes] = {}
            for record in manifest["members"]:
                for file in record["files"].values():
                    if file not in names:
                        raise BratsInputError(f"{source}: {file} is listed but missing")
                    data = archive.read(file)
                    if _sha256(data) != record["sha256"].get(file):
                        raise BratsInputError(f"{source}: {file} does not match its checksum; "
                                              "the package is corrupt or was altered")
                    files[file] = data
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise BratsInputError(f"{source}: not a readable model package ({exc})") from None
    return ModelPackage(source, manifest, files)


def predict_packages(models: list[str | os.PathLike[str]], input_dir: str | os.PathLike[str],
                     work_dir: str | os.PathLike[str], **predict_kwargs: Any) -> list[Path]:
    """Predict ``input_dir`` with each package into ``work_dir/model_<name>/`` (labels and
    probability maps), for ``brats ensemble --model``; returns the probability folders.

    ``predict_kwargs`` go to :func:`brats.inference.predictor.predict_folder` (release, device,
    overrides, resume, overwrite, progress).
    """
    from brats.inference.predictor import predict_folder

    folders: list[Path] = []
    for model in models:
        base = f"model_{Path(model).stem}"
        name, k = base, 2
        while Path(work_dir) / name / "probabilities" in folders:
            name, k = f"{base}_{k}", k + 1
        print(f"predict {model} → {Path(work_dir) / name}")
        probabilities = Path(work_dir) / name / "probabilities"
        predict_folder([], input_dir, Path(work_dir) / name / "predictions", model=model,
                       probabilities_dir=probabilities, **predict_kwargs)
        folders.append(probabilities)
    return folders


def export_torchscript(run: str | os.PathLike[str], out: str | os.PathLike[str],
                       checkpoint: str = "final", patch: int = 32, overwrite: bool = False
                       ) -> Path:
    """Trace one run's network (eval mode, dropout off) to a TorchScript file, for deployment
    outside this repository. The trace uses a random (1, C, patch, patch, patch) input; fully
    convolutional networks then accept other sizes the network's pooling allows.

    Raises:
        BratsInputError: ``out`` exists without ``overwrite``, or not exactly one run.
    """
    target = Path(out)
    if target.exists() and not overwrite:
        raise BratsInputError(f"{target} exists; pass --overwrite to replace it")
    runs = find_runs([run])
    if len(runs) != 1:
        raise BratsInputError(f"TorchScript export takes one network; {run} holds {len(runs)} runs")
    state = load_checkpoint(checkpoint_file(runs[0], checkpoint))
    import_package(state["config"].get("package"))
    network = build_network(state["network"], in_channels=state["in_channels"],
                            num_classes=state["num_outputs"], **state["network_kwargs"])
    network.load_state_dict(state["model"])
    network.eval()
    example = torch.randn(1, state["in_channels"], patch, patch, patch)
    with torch.no_grad():
        traced = torch.jit.trace(network, example)
    with atomic_path(target) as tmp:
        torch.jit.save(traced, str(tmp))
    return target
