"""Entry configs: YAML validated into frozen dataclasses, with profiles and ``key=value`` overrides.

A config file (``submissions/<entry>.yaml``) holds the paper's settings. Its optional
``profiles:`` section maps a profile name (e.g. ``quick``) to overrides, and command-line
``key=value`` pairs (``train.epochs=2``) override again. Unknown keys are errors that suggest the
closest valid key; numeric values outside their ranges (:data:`VALUE_RANGES`) are errors naming
the key. ``members:`` lists the independently trained networks of an entry, each a name
and overrides of the sections above; an entry without it has one member, ``model``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from brats.errors import BratsInputError

CONFIG_VERSION = 1


@dataclass(frozen=True)
class DataConfig:
    """Training patches: size, batch, sampling, augmentation and loader workers.

    ``batch_size`` is per process (per GPU under torchrun). ``crop_size`` is the region a patch
    is drawn from (Isensee: 160×192×160), ``foreground_fraction`` the share of patches centred
    on tumour (0 = the paper's uniform sampling). ``target`` is ``classes`` (4 classes) or one
    binary region (``WT``, ``TC``, ``ET``). With ``view`` (``axial``, ``sagittal``, ``coronal``)
    ``patch_size`` and ``output_crop`` are in view order (slices first); ``output_crop`` voxels
    are removed from each side of the target for networks with valid convolutions. ``roi``
    restricts sampling to a reference region's box plus ``roi_margin`` voxels; ``lgg_weight``
    makes LGG cases that much likelier; ``require_foreground`` re-draws patches without target,
    each one (``foreground_redraw: patch``) or whole batches without any
    (``foreground_redraw: batch``, Wang et al.). ``slice_placement`` ``full`` lets an untargeted
    patch centre lie anywhere along the view's slice axis (zero context beyond the volume, Wang
    et al.); ``valid`` keeps the patch inside. ``background`` ``brain`` centres untargeted
    patches on brain voxels outside the tumour, zero-padded at the border (DeepMedic); ``box``
    draws them uniformly in the brain box / crop region.
    ``augmentation_backend``: ``device`` (default: loader workers read blocks and draw
    parameters, the training device augments whole batches, trilinear resampling;
    :mod:`brats.training.batch_augment`) or ``scipy`` (the exact original: each worker augments
    its patch with cubic splines; :mod:`brats.training.augment`).
    """

    patch_size: tuple[int, int, int] = (128, 128, 128)
    batch_size: int = 2
    crop_size: tuple[int, int, int] | None = None
    foreground_fraction: float = 0.0
    augmentation: str = "isensee2017"
    augmentation_kwargs: dict[str, Any] = field(default_factory=dict)
    intensity: str = "isensee2017"
    target: str = "classes"
    view: str | None = None
    output_crop: tuple[int, int, int] = (0, 0, 0)
    roi: str | None = None
    roi_margin: int = 5
    lgg_weight: float = 1.0
    require_foreground: bool = False
    foreground_redraw: str = "patch"
    slice_placement: str = "valid"
    background: str = "box"
    augmentation_backend: str = "device"
    workers: int = 4


@dataclass(frozen=True)
class NetworkConfig:
    """Network registry name and constructor arguments (``in_channels``/``num_classes`` are set
    by the trainer)."""

    name: str = "isensee_unet"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LossConfig:
    """Loss registry name (``soft_dice``, ``region_dice``, ``cross_entropy``) and arguments."""

    name: str = "soft_dice"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule.

    ``l2`` adds ``l2 · Σ w²`` and ``l1`` adds ``l1 · Σ |w|`` to the loss over the parameters
    ``regularize`` names: ``weights`` (conv weights, norm scales and PReLU slopes, not biases or
    shifts, as Lasagne's ``regularize_network_params`` did for Isensee) or ``conv`` (convolution
    kernels only, as DeepMedic did: 1e-6 and 1e-4); ``weight_decay`` is the optimiser's own.
    ``rho`` is RMSProp's squared-gradient decay; ``rmsprop`` with ``nesterov`` is DeepMedic's rule
    (:class:`brats.training.optim.RMSpropNesterov`, normalised momentum).
    Schedules (stepped once per epoch): ``exponential`` (lr · gamma^epoch), ``constant``,
    ``step`` (lr · gamma^(number of milestones passed)), ``poly`` (lr · (1 − epoch/epochs)^0.9).
    """

    name: str = "adam"
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
    nesterov: bool = False
    eps: float = 1e-8
    weight_decay: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    regularize: str = "weights"
    rho: float = 0.9
    schedule: str = "exponential"
    gamma: float = 0.985
    milestones: tuple[int, ...] = ()
    grad_clip: float | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Length, folds, seeds and speed switches (which never change the maths).

    ``amp`` uses autocast (bf16, or fp16 with a gradient scaler) on CUDA; on the CPU it uses bf16.
    ``init_from`` starts from another run's weights: a run folder, a checkpoint, or (under
    ``brats reproduce``) the name of another member, whose run of the same fold is used (e.g.
    Wang's sagittal and coronal networks from the axial one).
    """

    epochs: int = 300
    iterations_per_epoch: int = 100
    val_batches: int = 10
    folds: int = 5
    split_seed: int = 123456
    seed: int = 12345
    amp: bool = False
    amp_dtype: str = "bfloat16"
    compile: bool = False
    channels_last: bool = False
    tensorboard: bool = True
    init_from: str | None = None


@dataclass(frozen=True)
class InferenceConfig:
    """Prediction: whole volume or sliding window, mirror TTA, test-time dropout.

    ``repeats`` forward passes per mirror (useful only with ``test_time_dropout``). ``amp``
    (bf16 autocast) and ``channels_last`` (the network's weights in channels-last-3d memory
    format, about 2× faster on CPUs) are speed switches.
    """

    mode: str = "whole"
    roi_size: tuple[int, int, int] = (128, 128, 128)
    overlap: float = 0.5
    blend: str = "gaussian"
    pad_mode: str = "isensee"
    sw_batch_size: int = 1
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    num_mirrors: int = 8
    test_time_dropout: bool = False
    repeats: int = 1
    amp: bool = False
    channels_last: bool = False


@dataclass(frozen=True)
class MemberConfig:
    """One independently trained network of an entry: a name and overrides of the sections."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EntryConfig:
    """A reproduced entry: shared settings, its members and how their probabilities combine.

    ``package`` names a method package (``cascade``, ``ensemble``) imported before anything is
    built, so that it can register its networks and losses in the core registries.
    ``submission_models`` says which models ``brats reproduce`` predicts the validation set with:
    ``folds`` (every cross-validation model of every member, Isensee et al.'s 5-fold ensemble) or
    ``all`` (each member trained once more on every training case, as Wang et al. and EMMA
    submitted); cross-validation metrics always come from the fold models.
    """

    entry: str
    version: int = CONFIG_VERSION
    description: str = ""
    release: str = "2017"
    package: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    members: tuple[MemberConfig, ...] = (MemberConfig("model"),)
    combine: str = "mean"
    submission_models: str = "folds"
    reported: dict[str, Any] = field(default_factory=dict)

    @property
    def member_names(self) -> list[str]:
        """Names of the members, in order."""
        return [m.name for m in self.members]

    def member(self, name: str) -> EntryConfig:
        """The config one member trains with: this config with the member's overrides applied."""
        for member in self.members:
            if member.name == name:
                data = to_dict(self)
                _merge(data, member.overrides, "members." + name)
                data["members"] = [{"name": name}]
                return from_dict(EntryConfig, data)
        raise BratsInputError(f"entry {self.entry!r} has no member {name!r}; members: "
                              + ", ".join(self.member_names))


def _merge(base: dict[str, Any], overrides: dict[str, Any], where: str) -> None:
    """Deep-merge ``overrides`` into ``base`` in place; dotted keys address nested sections."""
    for key, value in overrides.items():
        parts = str(key).split(".")
        target = base
        for part in parts[:-1]:
            section = target.get(part)
            if section is None:
                section = target[part] = {}
            if not isinstance(section, dict):
                raise BratsInputError(f"{where}: {key!r} goes into {part!r}, which is not a section")
            target = section
        leaf = parts[-1]
        if isinstance(value, dict) and isinstance(target.get(leaf), dict):
            _merge(target[leaf], value, where)
        else:
            target[leaf] = copy.deepcopy(value)


def _type_error(path: str, expected: Any, value: Any) -> BratsInputError:
    name = getattr(expected, "__name__", str(expected))
    return BratsInputError(f"config key {path}: expected {name}, got {value!r}")


def _convert(value: Any, annotation: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, path)
            except BratsInputError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise _type_error(path, annotation, value)
        return from_dict(annotation, value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _type_error(path, annotation, value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise BratsInputError(f"config key {path}: expected {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(path, dict, value)
        return dict(value)
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise _type_error(path, bool, value)
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(path, int, value)
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(path, float, value)
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise _type_error(path, str, value)
        return value
    raise BratsInputError(f"config key {path}: unsupported type {annotation}")


def from_dict(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys raise with a suggestion."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
        raise BratsInputError(f"unknown config key {(path + '.' if path else '') + str(key)!r}"
                              + hint)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise BratsInputError(f"config key {(path + '.' if path else '') + f.name} is "
                                      "required")
            continue
        value = data[f.name]
        where = f"{path}.{f.name}" if path else f.name
        if f.name == "members" and cls is EntryConfig:
            if not isinstance(value, list) or not value:
                raise BratsInputError("config key members: expected a non-empty list")
            kwargs[f.name] = tuple(from_dict(MemberConfig, m, f"members[{i}]")
                                   for i, m in enumerate(value))
            names_seen = [m.name for m in kwargs[f.name]]
            if len(set(names_seen)) != len(names_seen):
                raise BratsInputError(f"config key members: duplicate names {names_seen}")
            continue
        kwargs[f.name] = _convert(value, hints[f.name], where)
    return cls(**kwargs)


def _positive(v: float) -> bool:
    return v > 0


def _non_negative(v: float) -> bool:
    return v >= 0


def _fraction(v: float) -> bool:
    return 0 <= v <= 1


def _below_one(v: float) -> bool:
    return 0 <= v < 1


#: Range checks of numeric config values: key → (check of each value, what it must be). A tuple
#: value is checked element by element; None (an unset optional value) is not checked.
VALUE_RANGES: dict[str, tuple[typing.Callable[[float], bool], str]] = {
    "data.patch_size": (_positive, "positive"), "data.batch_size": (_positive, "positive"),
    "data.crop_size": (_positive, "positive"), "data.foreground_fraction": (_fraction, "in [0, 1]"),
    "data.output_crop": (_non_negative, "≥ 0"), "data.roi_margin": (_non_negative, "≥ 0"),
    "data.lgg_weight": (_positive, "positive"), "data.workers": (_non_negative, "≥ 0"),
    "optim.lr": (_positive, "positive"), "optim.betas": (_below_one, "in [0, 1)"),
    "optim.momentum": (_below_one, "in [0, 1)"), "optim.eps": (_positive, "positive"),
    "optim.weight_decay": (_non_negative, "≥ 0"), "optim.l1": (_non_negative, "≥ 0"),
    "optim.l2": (_non_negative, "≥ 0"), "optim.rho": (_below_one, "in [0, 1)"),
    "optim.gamma": (_positive, "positive"), "optim.milestones": (_non_negative, "≥ 0"),
    "optim.grad_clip": (_positive, "positive"), "train.epochs": (_positive, "positive"),
    "train.iterations_per_epoch": (_positive, "positive"),
    "train.val_batches": (_non_negative, "≥ 0"), "train.folds": (lambda v: v >= 2, "≥ 2"),
    "inference.roi_size": (_positive, "positive"), "inference.overlap": (_below_one, "in [0, 1)"),
    "inference.sw_batch_size": (_positive, "positive"),
    "inference.num_mirrors": (lambda v: 1 <= v <= 8, "in 1..8"),
    "inference.repeats": (_positive, "positive"),
}


def check_ranges(config: EntryConfig) -> None:
    """Check every value named in :data:`VALUE_RANGES`.

    Raises:
        BratsInputError: one line naming the key, the value and the allowed range.
    """
    for key, (ok, allowed) in VALUE_RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        values = value if isinstance(value, tuple) else (value,)
        if not all(v is None or (math.isfinite(v) and ok(v)) for v in values):
            raise BratsInputError(f"config key {key}: {value!r} is out of range; it must be "
                                  f"{allowed}")


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain nested dicts and lists (JSON/YAML-ready)."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(config)


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["train.epochs=2", "data.patch_size=[64,64,64]"]`` → ``{"train.epochs": 2, ...}``;
    values are parsed as YAML."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise BratsInputError(f"override {pair!r}: expected key=value, e.g. train.epochs=2")
        key, _, text = pair.partition("=")
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise BratsInputError(f"override {pair!r}: value is not valid YAML ({problem})") from None
    return out


def load_config(path: str | os.PathLike[str], profile: str | None = None,
                overrides: dict[str, Any] | None = None) -> EntryConfig:
    """Read, merge (profile, then overrides) and validate an entry config.

    ``overrides`` apply to the shared settings and, after each member's own overrides, to every
    member, so ``train.epochs=1`` shortens every member's training.

    Raises:
        BratsInputError: missing/unreadable file, unknown profile or key, wrong value type.
    """
    p = Path(path)
    if not p.is_file():
        raise BratsInputError(f"{p}: config file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise BratsInputError(f"{p}: not valid YAML ({problem})") from None
    if not isinstance(raw, dict):
        raise BratsInputError(f"{p}: expected a mapping at the top level")
    profiles = raw.pop("profiles", {}) or {}
    if profile not in (None, "paper"):
        if profile not in profiles:
            raise BratsInputError(f"{p}: no profile {profile!r}; profiles: paper (the file as is)"
                                  + "".join(f", {name}" for name in profiles))
        _merge(raw, profiles[profile], f"profiles.{profile}")
    if overrides:
        _merge(raw, overrides, "overrides")
        # the user's overrides also win over each member's own settings
        shared = {k: v for k, v in overrides.items() if str(k).split(".")[0] != "members"}
        for member in raw.get("members") or []:
            if isinstance(member, dict) and shared:
                member["overrides"] = {**(member.get("overrides") or {}), **shared}
    try:
        config = from_dict(EntryConfig, raw)
    except BratsInputError as exc:
        raise BratsInputError(f"{p}: {exc}") from None
    if config.version != CONFIG_VERSION:
        raise BratsInputError(f"{p}: config version {config.version}, this brats reads "
                              f"version {CONFIG_VERSION}")
    try:
        for member in config.members:
            check_ranges(config.member(member.name))
    except BratsInputError as exc:
        raise BratsInputError(f"{p}: {exc}") from None
    return config


def import_package(name: str | None) -> None:
    """Import a method package named by a config (it registers its networks and losses)."""
    if not name:
        return
    try:
        importlib.import_module(name)
    except ImportError as exc:
        raise BratsInputError(f"config package {name!r} cannot be imported ({exc})") from None


def dump_config(config: EntryConfig) -> str:
    """The resolved config as YAML (written into every run folder)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
