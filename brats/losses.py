"""Segmentation losses: multi-class soft Dice (Isensee 2017), region soft Dice, cross-entropy; a registry.

Conventions: networks return logits (B, C, X, Y, Z); targets are int64 canonical class-index maps
(B, X, Y, Z) with 0 background, 1 NCR/NET, 2 ED, 3 ET. A loss either trains the C = 4 classes
(``"labels"``) or the C = 3 nested regions WT, TC, ET with one sigmoid each (``"regions"``);
:data:`LOSS_TARGETS` says which, :data:`TARGET_CHANNELS` how many output channels that needs.

The Dice losses follow the original sign: ``loss = −mean Dice``, so a perfect prediction scores −1
(MONAI's ``DiceLoss`` returns ``1 − mean Dice``; we subtract its constant 1). Losses run in
float32 with autocast disabled, whatever the network's precision.

Example:
    >>> loss_fn = build_loss("soft_dice")
    >>> loss = loss_fn(net(image), target)   # (B, 4, X, Y, Z) logits, (B, X, Y, Z) int64
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from monai.losses import DiceLoss
from torch import nn
from torch.nn import functional as nnf

from brats.data.labels import CANONICAL_LABELS, REGIONS
from brats.errors import BratsInputError
from brats.nets.registry import build_from

F = TypeVar("F", bound=Callable[..., Any])

#: Canonical class index of each canonical label value: {0: 0, 1: 1, 2: 2, 4: 3}.
CLASS_OF_LABEL: dict[int, int] = {label: index for index, label in enumerate(CANONICAL_LABELS)}
#: Region → class indices it contains, in channel order: WT (1, 2, 3), TC (1, 3), ET (3,).
REGION_CLASSES: dict[str, tuple[int, ...]] = {
    region: tuple(CLASS_OF_LABEL[label] for label in labels) for region, labels in REGIONS.items()}
#: Output channels a network needs for each kind of training target.
TARGET_CHANNELS: dict[str, int] = {"labels": len(CANONICAL_LABELS), "regions": len(REGION_CLASSES)}


def class_index_to_regions(target: torch.Tensor) -> torch.Tensor:
    """Class-index map → float region masks WT, TC, ET.

    Args:
        target: (B, X, Y, Z) integer tensor of canonical class indices 0–3.

    Returns:
        (B, 3, X, Y, Z) float32 tensor; channel 0 WT = classes {1, 2, 3}, 1 TC = {1, 3}, 2 ET = {3}.

    Raises:
        BratsInputError: ``target`` is not a 4-D integer tensor.
    """
    if target.ndim != 4 or target.is_floating_point() or target.is_complex():
        raise BratsInputError(
            "target must be a (B, X, Y, Z) integer class-index map, "
            f"got {tuple(target.shape)} {target.dtype}")
    masks = [torch.isin(target, torch.tensor(classes, device=target.device))
             for classes in REGION_CLASSES.values()]
    return torch.stack(masks, 1).to(torch.float32)


def _check_pair(loss: str, logits: torch.Tensor, target: torch.Tensor, channels: int | None = None) -> None:
    if logits.ndim != 5 or target.ndim != 4 or logits.shape[0] != target.shape[0] \
            or logits.shape[2:] != target.shape[1:]:
        raise BratsInputError(
            f"{loss}: logits must be (B, C, X, Y, Z) and target (B, X, Y, Z) with the same B, X, Y, Z; "
            f"got {tuple(logits.shape)} and {tuple(target.shape)}")
    if target.is_floating_point() or target.is_complex():
        raise BratsInputError(f"{loss}: target must hold integer class indices, got dtype {target.dtype}")
    if channels is not None and logits.shape[1] != channels:
        raise BratsInputError(
            f"{loss}: expected {channels} output channels, got {logits.shape[1]}; build the network "
            f"with num_classes={channels} (see brats.losses.LOSS_TARGETS)")
    if channels is None and logits.shape[1] < 2:
        raise BratsInputError(f"{loss}: needs at least 2 class channels, got {logits.shape[1]}")


class SoftDiceLoss(nn.Module):
    """Multi-class soft Dice on softmax probabilities, Isensee et al. 2017 (arXiv:1802.10508).

    For each sample b and class k: ``Dice_bk = 2 Σ p·g / (Σ p + Σ g + smooth_dr)`` with p the softmax
    output and g the one-hot target, sums over voxels; ``loss = −mean_{b, k ≥ 1} Dice_bk``. A class
    absent from both target and prediction contributes Dice ≈ 0, as in the original (no numerator
    smoothing). Computed with MONAI ``DiceLoss(include_background, to_onehot_y=True, softmax=True,
    batch=batch_dice, smooth_nr=0, smooth_dr)``, which returns ``1 − mean Dice``, minus 1.

    With ``jaccard=True`` the ratio is the soft IoU ``Σ p·g / (Σ p + Σ g − Σ p·g)`` instead (the
    IoU-type loss of some EMMA members), the same MONAI loss with ``jaccard=True``.

    Args:
        include_background: also average over class 0 (the original excludes it).
        smooth_dr: denominator smoothing (1e-6 in the original).
        batch_dice: sum p·g, p and g over the whole batch before the ratio (one Dice per class).
        jaccard: soft IoU instead of soft Dice.
    """

    target_kind = "labels"

    def __init__(self, include_background: bool = False, smooth_dr: float = 1e-6,
                 batch_dice: bool = False, jaccard: bool = False) -> None:
        super().__init__()
        self.dice = DiceLoss(include_background=include_background, to_onehot_y=True, softmax=True,
                             batch=batch_dice, smooth_nr=0.0, smooth_dr=smooth_dr, jaccard=jaccard)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: logits (B, C, X, Y, Z); target (B, X, Y, Z) int64 class indices in [0, C).
        Returns the scalar loss in [−1, 0]. Raises BratsInputError on mismatched shapes or dtype."""
        _check_pair("soft_dice", logits, target)
        with torch.autocast(logits.device.type, enabled=False):
            return self.dice(logits.float(), target.unsqueeze(1)) - 1.0


class RegionDiceLoss(nn.Module):
    """Soft Dice on the nested regions WT, TC, ET with one sigmoid each (DKFZ's later region training).

    For each sample b and region r ∈ (WT, TC, ET): ``Dice_br = 2 Σ σ(z)·m / (Σ σ(z) + Σ m + smooth_dr)``
    with z the region logit and m the region mask from :func:`class_index_to_regions`;
    ``loss = −mean_{b, r} Dice_br``. Needs networks with 3 output channels.

    Args:
        smooth_dr: denominator smoothing.
        batch_dice: one Dice per region over the whole batch.
    """

    target_kind = "regions"

    def __init__(self, smooth_dr: float = 1e-6, batch_dice: bool = False) -> None:
        super().__init__()
        self.dice = DiceLoss(include_background=True, sigmoid=True, batch=batch_dice, smooth_nr=0.0,
                             smooth_dr=smooth_dr)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: logits (B, 3, X, Y, Z) WT/TC/ET logits; target (B, X, Y, Z) int64 class indices 0–3.
        Returns the scalar loss in [−1, 0]. Raises BratsInputError on mismatched shapes or dtype."""
        _check_pair("region_dice", logits, target, TARGET_CHANNELS["regions"])
        with torch.autocast(logits.device.type, enabled=False):
            return self.dice(logits.float(), class_index_to_regions(target)) - 1.0


class CrossEntropyLoss(nn.Module):
    """Voxel-wise softmax cross-entropy, mean over voxels (weighted mean with ``class_weights``).

    Args:
        class_weights: optional weight per class (length C), e.g. to up-weight small classes.
    """

    target_kind = "labels"
    class_weights: torch.Tensor | None

    def __init__(self, class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        if weights is not None and (weights.ndim != 1 or bool((weights < 0).any())):
            raise ValueError(f"class_weights must be a list of non-negative numbers, got {class_weights!r}")
        self.register_buffer("class_weights", weights)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: logits (B, C, X, Y, Z); target (B, X, Y, Z) int64 class indices. Returns a scalar ≥ 0."""
        _check_pair("cross_entropy", logits, target)
        if self.class_weights is not None and self.class_weights.numel() != logits.shape[1]:
            raise BratsInputError(f"cross_entropy: {self.class_weights.numel()} class_weights for "
                                  f"{logits.shape[1]} output channels")
        with torch.autocast(logits.device.type, enabled=False):
            return nnf.cross_entropy(logits.float(), target.long(), weight=self.class_weights)


#: Registered losses: name → factory of a module called as ``loss(logits, target)``.
LOSSES: dict[str, Callable[..., nn.Module]] = {
    "soft_dice": SoftDiceLoss, "region_dice": RegionDiceLoss, "cross_entropy": CrossEntropyLoss}
#: Loss name → the target it trains: ``"labels"`` (4 classes) or ``"regions"`` (3 sigmoids).
LOSS_TARGETS: dict[str, str] = {"soft_dice": "labels", "region_dice": "regions", "cross_entropy": "labels"}


def register_loss(name: str, target: str) -> Callable[[F], F]:
    """Decorator adding a loss factory to :data:`LOSSES` and its target kind to :data:`LOSS_TARGETS`.

    Raises:
        ValueError: ``name`` is taken by another factory, or ``target`` is not in :data:`TARGET_CHANNELS`.
    """
    if target not in TARGET_CHANNELS:
        raise ValueError(f"loss target must be one of {', '.join(TARGET_CHANNELS)}, got {target!r}")

    def decorator(factory: F) -> F:
        if LOSSES.get(name, factory) is not factory:
            raise ValueError(f"loss {name!r} is already registered to {LOSSES[name]!r}")
        LOSSES[name], LOSS_TARGETS[name] = factory, target
        return factory
    return decorator


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered loss ``name`` with keyword arguments ``kwargs``.

    Raises:
        BratsInputError: unknown name (the message lists the registered ones), unknown argument
            (with a suggestion) or a rejected value.
    """
    return build_from("loss", LOSSES, name, kwargs)
