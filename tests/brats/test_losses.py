"""Losses: hand-computed soft Dice / region Dice / cross-entropy values, region masks, the registry."""

from __future__ import annotations

import math

import pytest
import torch

from brats.errors import BratsInputError
from brats.losses import (
    LOSS_TARGETS,
    LOSSES,
    REGION_CLASSES,
    TARGET_CHANNELS,
    CrossEntropyLoss,
    RegionDiceLoss,
    SoftDiceLoss,
    build_loss,
    class_index_to_regions,
    register_loss,
)

NEG = -1e4  # softmax/sigmoid of this is exactly 0 in float32


def logits_from_probs(probs: list[list[list[float]]]) -> torch.Tensor:
    """(B, V, C) voxel-wise probabilities → (B, C, V, 1, 1) logits whose softmax gives them back."""
    p = torch.tensor(probs, dtype=torch.float64)
    z = torch.where(p > 0, p.clamp_min(1e-300).log(), torch.full_like(p, NEG))
    return z.permute(0, 2, 1)[..., None, None].float()


# Two samples, two voxels each (B, C, X, Y, Z) = (2, 4, 2, 1, 1); rows are voxels, columns classes 0–3.
#   sample 0: voxel a  p = (0.1, 0.6, 0.2, 0.1), target 1
#             voxel b  p = (0.1, 0.2, 0.6, 0.1), target 2
#   sample 1: voxel a  p = (0.5, 0.0, 0.25, 0.25), target 0
#             voxel b  p = (0.25, 0.0, 0.25, 0.5), target 3
PROBS = [[[0.1, 0.6, 0.2, 0.1], [0.1, 0.2, 0.6, 0.1]],
         [[0.5, 0.0, 0.25, 0.25], [0.25, 0.0, 0.25, 0.5]]]
TARGET = torch.tensor([[1, 2], [0, 3]])[..., None, None]  # (2, 2, 1, 1)

# Dice_bk = 2 Σ p·g / (Σ p + Σ g + 1e-6):
#   sample 0, class 1: Σpg = 0.6, Σp = 0.8, Σg = 1  → 1.2 / 1.800001
#   sample 0, class 2: Σpg = 0.6, Σp = 0.8, Σg = 1  → 1.2 / 1.800001
#   sample 0, class 3: Σpg = 0,   Σp = 0.2, Σg = 0  → 0
#   sample 1, class 1: Σpg = 0,   Σp = 0,   Σg = 0  → 0 / (0 + 0 + 1e-6) = 0  (absent from both: the
#                      smoothing keeps it finite, and with no numerator smoothing it scores 0, not 1)
#   sample 1, class 2: Σpg = 0,   Σp = 0.5, Σg = 0  → 0
#   sample 1, class 3: Σpg = 0.5, Σp = 0.75, Σg = 1 → 1.0 / 1.750001
# loss = −(2 · 1.2/1.800001 + 1.0/1.750001) / 6 = −0.3174601...
SOFT_DICE = -(2 * 1.2 / 1.800001 + 1.0 / 1.750001) / 6
# background too: sample 0 class 0 → 0 (Σg = 0); sample 1 class 0: Σpg = 0.5, Σp = 0.75, Σg = 1.
SOFT_DICE_WITH_BG = -(2 * 1.2 / 1.800001 + 2 * 1.0 / 1.750001) / 8
# batch Dice, sums over both samples: class 1: 2·0.6/(0.8 + 1 + 1e-6); class 2: 2·0.6/(1.3 + 1 + 1e-6);
# class 3: 2·0.5/(0.95 + 1 + 1e-6).
SOFT_DICE_BATCH = -(1.2 / 1.800001 + 1.2 / 2.300001 + 1.0 / 1.950001) / 3


@pytest.mark.parametrize("kwargs, expected", [
    ({}, SOFT_DICE),
    ({"include_background": True}, SOFT_DICE_WITH_BG),
    ({"batch_dice": True}, SOFT_DICE_BATCH),
])
def test_soft_dice_hand_computed(kwargs, expected) -> None:
    loss = SoftDiceLoss(**kwargs)(logits_from_probs(PROBS), TARGET)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_soft_dice_matches_the_reference_formula_on_random_input() -> None:
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(3, 4, 6, 5, 4, generator=g), torch.randint(0, 4, (3, 6, 5, 4), generator=g)
    p = logits.softmax(1)
    onehot = torch.nn.functional.one_hot(target, 4).permute(0, 4, 1, 2, 3).float()
    dice = 2 * (p * onehot).sum((2, 3, 4)) / (p.sum((2, 3, 4)) + onehot.sum((2, 3, 4)) + 1e-6)
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(-dice[:, 1:].mean().item(), abs=1e-6)


def test_soft_dice_perfect_prediction_is_minus_one() -> None:
    target = torch.tensor([[0, 1, 2, 3, 3, 2]])[..., None, None]  # (1, 6, 1, 1), every class present
    logits = 100.0 * torch.nn.functional.one_hot(target, 4).permute(0, 4, 1, 2, 3).float()
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(-1.0, abs=1e-6)
    # a class absent from both prediction and target scores Dice 0: perfect but without ET → −2/3
    no_et = torch.tensor([[0, 1, 2, 2]])[..., None, None]
    logits = 100.0 * torch.nn.functional.one_hot(no_et, 4).permute(0, 4, 1, 2, 3).float()
    assert SoftDiceLoss()(logits, no_et).item() == pytest.approx(-2 / 3, abs=1e-6)


def test_soft_dice_excludes_background() -> None:
    """An all-background patch predicted perfectly: only class 0 has Dice 1, classes 1–3 are absent.

    Without background the mean is over three zeros → loss 0; with it, −(1 + 0 + 0 + 0) / 4.
    """
    target = torch.zeros(1, 3, 1, 1, dtype=torch.long)
    logits = logits_from_probs([[[1.0, 0, 0, 0]] * 3])
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert SoftDiceLoss(include_background=True)(logits, target).item() == pytest.approx(-0.25, abs=1e-6)


def test_class_index_to_regions() -> None:
    target = torch.tensor([[0, 1, 2, 3]])[..., None, None]  # (1, 4, 1, 1)
    regions = class_index_to_regions(target)
    assert regions.shape == (1, 3, 4, 1, 1) and regions.dtype == torch.float32
    assert regions[0, :, :, 0, 0].tolist() == [[0, 1, 1, 1],   # WT = {1, 2, 3}
                                               [0, 1, 0, 1],   # TC = {1, 3}
                                               [0, 0, 0, 1]]   # ET = {3}
    assert REGION_CLASSES == {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
    with pytest.raises(BratsInputError, match="integer class-index"):
        class_index_to_regions(target.float())


def test_region_dice_hand_computed() -> None:
    # One sample, voxels with classes (0, 1, 2, 3): WT mask (0, 1, 1, 1), TC (0, 1, 0, 1), ET (0, 0, 0, 1).
    # Logits ±ln 3 and 0 give sigmoid 0.75 / 0.25 and 0.5:
    #   WT p = (0.25, 0.75, 0.75, 0.5):   Σpg = 2.0,  Σp = 2.25, Σg = 3 → 4.0 / 5.250001
    #   TC p = (0.5, 0.5, 0.5, 0.5):      Σpg = 1.0,  Σp = 2,    Σg = 2 → 2.0 / 4.000001
    #   ET p = (0.25, 0.25, 0.25, 0.75):  Σpg = 0.75, Σp = 1.5,  Σg = 1 → 1.5 / 2.500001
    # loss = −(4/5.250001 + 2/4.000001 + 1.5/2.500001) / 3 = −0.6206347...
    ln3 = math.log(3.0)
    logits = torch.tensor([[-ln3, ln3, ln3, 0.0], [0.0, 0.0, 0.0, 0.0], [-ln3, -ln3, -ln3, ln3]])
    logits = logits[None, :, :, None, None]  # (1, 3, 4, 1, 1)
    target = torch.tensor([[0, 1, 2, 3]])[..., None, None]
    expected = -(4 / 5.250001 + 2 / 4.000001 + 1.5 / 2.500001) / 3
    assert RegionDiceLoss()(logits, target).item() == pytest.approx(expected, abs=1e-6)
    perfect = 100.0 * (2 * class_index_to_regions(target) - 1)
    assert RegionDiceLoss()(perfect, target).item() == pytest.approx(-1.0, abs=1e-6)
    with pytest.raises(BratsInputError, match="expected 3 output channels"):
        RegionDiceLoss()(torch.zeros(1, 4, 4, 1, 1), target)


def test_cross_entropy_hand_computed() -> None:
    # voxel a: p = (0.5, 0.25, 0.125, 0.125), target 1 → −ln 0.25 = 2 ln 2
    # voxel b: p = (0.5, 0.25, 0.125, 0.125), target 0 → −ln 0.5  = ln 2
    # mean: 1.5 ln 2; with class weights (1, 3, 1, 1): (3 · 2 ln 2 + 1 · ln 2) / (3 + 1) = 1.75 ln 2
    logits = logits_from_probs([[[0.5, 0.25, 0.125, 0.125], [0.5, 0.25, 0.125, 0.125]]])
    target = torch.tensor([[1, 0]])[..., None, None]
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx(1.5 * math.log(2), abs=1e-6)
    weighted = CrossEntropyLoss(class_weights=[1, 3, 1, 1])
    assert weighted(logits, target).item() == pytest.approx(1.75 * math.log(2), abs=1e-6)
    with pytest.raises(BratsInputError, match="2 class_weights for 4 output channels"):
        CrossEntropyLoss(class_weights=[1, 2])(logits, target)


def test_losses_run_in_float32_under_autocast_and_give_gradients() -> None:
    logits = torch.randn(1, 4, 4, 4, 4, requires_grad=True)
    target = torch.randint(0, 4, (1, 4, 4, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = SoftDiceLoss()(logits.bfloat16(), target)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("loss", list(LOSSES))
def test_shape_and_dtype_errors(loss) -> None:
    fn = build_loss(loss)
    channels = TARGET_CHANNELS[LOSS_TARGETS[loss]]
    logits = torch.zeros(2, channels, 4, 4, 4)
    with pytest.raises(BratsInputError, match=loss):
        fn(logits, torch.zeros(2, 4, 4, 3, dtype=torch.long))  # spatial mismatch
    with pytest.raises(BratsInputError, match=loss):
        fn(logits, torch.zeros(2, 1, 4, 4, 4, dtype=torch.long))  # (B, 1, ...) target
    with pytest.raises(BratsInputError, match="integer"):
        fn(logits, torch.zeros(2, 4, 4, 4))


def test_registry() -> None:
    core = {"soft_dice": "labels", "region_dice": "regions", "cross_entropy": "labels"}
    assert LOSS_TARGETS.items() >= core.items()  # method packages may register more
    assert TARGET_CHANNELS == {"labels": 4, "regions": 3}
    assert isinstance(build_loss("soft_dice", batch_dice=True), SoftDiceLoss)
    assert isinstance(build_loss("region_dice"), RegionDiceLoss)
    assert isinstance(build_loss("cross_entropy", class_weights=[1, 1, 2, 2]), CrossEntropyLoss)
    with pytest.raises(BratsInputError, match=r"unknown loss 'dice'.*soft_dice"):
        build_loss("dice")
    with pytest.raises(BratsInputError, match=r"loss 'soft_dice': unexpected argument 'smooth'"):
        build_loss("soft_dice", smooth=1e-5)
    with pytest.raises(BratsInputError, match="loss 'cross_entropy': class_weights"):
        build_loss("cross_entropy", class_weights=[-1, 1, 1, 1])
    with pytest.raises(ValueError, match="loss target"):
        register_loss("x", "voxels")
    with pytest.raises(ValueError, match="already registered"):
        register_loss("soft_dice", "labels")(CrossEntropyLoss)
