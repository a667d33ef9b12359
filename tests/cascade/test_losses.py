"""The Wang et al. Dice loss: hand-computed value, reference formula, perfect and empty cases, registry."""

from __future__ import annotations

import math

import pytest
import torch

from brats.errors import BratsInputError
from brats.losses import LOSS_TARGETS, LOSSES, build_loss
from cascade.losses import WangDiceLoss

# Two samples of one voxel each, (B, C, D, H, W) = (2, 2, 1, 1, 1), classes 0 background, 1 foreground:
#   sample 0: logits (0, ln 3) → p = (1/4, 3/4), target 1
#   sample 1: logits (0, 0)    → p = (1/2, 1/2), target 0
LOGITS = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]).reshape(2, 2, 1, 1, 1)
TARGET = torch.tensor([1, 0]).reshape(2, 1, 1, 1)
# Sums over both samples jointly, Dice_k = 2 Σ p·g / (Σ p² + Σ g + 1e-5):
#   foreground: Σpg = 3/4,  Σp² = 9/16 + 1/4 = 0.8125, Σg = 1 → 1.5 / 1.81251
#   background: Σpg = 1/2,  Σp² = 1/16 + 1/4 = 0.3125, Σg = 1 → 1.0 / 1.31251
# loss = 1 − (1.5 / 1.81251 + 1.0 / 1.31251) / 2 = 1 − (0.8275816 + 0.7618990) / 2 = 0.2052597
WANG_DICE = 1 - (1.5 / 1.81251 + 1.0 / 1.31251) / 2
# Per-sample Dice would differ: sample 1 has no foreground, so its foreground Dice would be 0.
PER_SAMPLE = 1 - (1.5 / (0.5625 + 1 + 1e-5) + 0.0 + 0.0 + 1.0 / (0.25 + 1 + 1e-5)) / 4


def reference(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> float:
    """NiftyNet 0.2.0 ``dice`` after a softmax, in float64 over all voxels of the batch."""
    p = torch.softmax(logits.double(), 1).movedim(1, -1).reshape(-1, logits.shape[1])
    g = torch.nn.functional.one_hot(target.reshape(-1), logits.shape[1]).double()
    dice = 2 * (p * g).sum(0) / ((p * p).sum(0) + g.sum(0) + eps)
    return float(1 - dice.mean())


def test_hand_computed() -> None:
    loss = WangDiceLoss()(LOGITS, TARGET)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert float(loss) == pytest.approx(WANG_DICE, abs=1e-6)
    assert WANG_DICE == pytest.approx(0.2052597, abs=1e-7)
    assert abs(WANG_DICE - PER_SAMPLE) > 0.1  # the batch is summed jointly, not averaged per sample


@pytest.mark.parametrize("classes", [2, 4])
def test_matches_the_reference_formula_on_random_input(classes) -> None:
    torch.manual_seed(0)
    logits = 3 * torch.randn(3, classes, 5, 4, 6)
    target = torch.randint(0, classes, (3, 5, 4, 6))
    assert float(WangDiceLoss()(logits, target)) == pytest.approx(reference(logits, target), abs=1e-6)


def test_perfect_prediction_is_minimal() -> None:
    target = torch.zeros(2, 3, 4, 4, dtype=torch.int64)
    target[0, 1, 1:3, 1:3] = 1  # 4 foreground voxels, 92 background
    logits = torch.stack([1 - target, target], 1).float() * 40 - 20  # softmax ≈ one-hot (e^-40 ≈ 4e-18)
    loss = WangDiceLoss()(logits, target)
    # Dice_k = 2 N_k / (2 N_k + 1e-5): loss = 1 − (8 / 8.00001 + 184 / 184.00001) / 2 ≈ 6.5e-7
    assert float(loss) == pytest.approx(1 - (8 / 8.00001 + 184 / 184.00001) / 2, abs=1e-7)
    assert 0 <= float(loss) < 1e-6
    assert float(loss) < float(WangDiceLoss()(0.1 * logits, target))  # softer: p ≈ 0.98


def test_background_is_included_and_an_empty_foreground_costs_half() -> None:
    target = torch.zeros(1, 2, 2, 2, dtype=torch.int64)  # no foreground at all
    logits = torch.stack([torch.full((1, 2, 2, 2), 20.0), torch.full((1, 2, 2, 2), -20.0)], 1)
    # background Dice ≈ 1, foreground Dice = 0 / (0 + 0 + 1e-5) = 0 → loss ≈ 1 − (1 + 0) / 2
    assert float(WangDiceLoss()(logits, target)) == pytest.approx(0.5, abs=1e-6)


def test_gradients_and_float32_under_autocast() -> None:
    logits = LOGITS.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = WangDiceLoss()(logits, TARGET)
    assert loss.dtype == torch.float32 and float(loss.detach()) == pytest.approx(WANG_DICE, abs=1e-6)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("logits, target, match", [
    (torch.zeros(2, 2, 1, 1, 1), torch.zeros(2, 1, 1), "logits must be"),
    (torch.zeros(2, 2, 1, 1, 1), torch.zeros(2, 2, 1, 1, dtype=torch.int64), "logits must be"),
    (torch.zeros(2, 1, 1, 1, 1), torch.zeros(2, 1, 1, 1, dtype=torch.int64), "at least 2"),
    (torch.zeros(2, 2, 1, 1, 1), torch.zeros(2, 1, 1, 1), "integer class indices"),
])
def test_shape_and_dtype_errors(logits, target, match) -> None:
    with pytest.raises(BratsInputError, match=match):
        WangDiceLoss()(logits, target)


def test_registry() -> None:
    assert LOSSES["wang_dice"] is WangDiceLoss and LOSS_TARGETS["wang_dice"] == "labels"
    assert isinstance(build_loss("wang_dice", smooth_dr=1e-5), WangDiceLoss)
    with pytest.raises(BratsInputError, match="did you mean 'smooth_dr'"):
        build_loss("wang_dice", smooth=1e-5)
