"""DeepMedic's RMSProp with Nesterov momentum, the L1 penalty and the soft IoU loss, by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from brats.config import OptimConfig, load_config
from brats.errors import BratsInputError
from brats.losses import build_loss
from brats.training.optim import RMSpropNesterov
from brats.training.trainer import build_optimizer, l1_penalty, l2_penalty


def test_rmsprop_nesterov_matches_two_hand_computed_steps() -> None:
    w = nn.Parameter(torch.tensor([1.0]))
    opt = RMSpropNesterov([w], lr=0.1, rho=0.9, eps=1e-4, momentum=0.6)
    lr, rho, eps, mu, c = 0.1, 0.9, 1e-4, 0.6, 0.4
    a = v = 0.0
    expected = 1.0
    for g in (2.0, -1.0):
        w.grad = torch.tensor([g])
        opt.step()
        a = rho * a + (1 - rho) * g * g
        s = lr * g / math.sqrt(a + eps)
        v = mu * v - c * s
        expected = expected + mu * v - c * s
        assert w.item() == pytest.approx(expected, rel=1e-6)
    # first step by hand: a = 0.4, s = 0.1 * 2 / sqrt(0.4001) = 0.316188, v = -0.126475,
    # w = 1 - 0.6 * 0.126475 - 0.126475 = 0.797640
    opt2 = RMSpropNesterov([w2 := nn.Parameter(torch.tensor([1.0]))], lr=0.1)
    w2.grad = torch.tensor([2.0])
    opt2.step()
    assert w2.item() == pytest.approx(0.797640, abs=1e-6)


def test_rmsprop_nesterov_without_momentum_is_rmsprop() -> None:
    w = nn.Parameter(torch.tensor([3.0]))
    opt = RMSpropNesterov([w], lr=0.01, momentum=0.0)
    w.grad = torch.tensor([0.5])
    opt.step()
    assert w.item() == pytest.approx(3.0 - 0.01 * 0.5 / math.sqrt(0.1 * 0.25 + 1e-4), rel=1e-6)
    with pytest.raises(ValueError, match="momentum"):
        RMSpropNesterov([w], momentum=1.0)


def test_build_optimizer_picks_the_rule() -> None:
    params = [nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer(params, OptimConfig(name="rmsprop", nesterov=True)),
                      RMSpropNesterov)
    plain = build_optimizer(params, OptimConfig(name="rmsprop", rho=0.95))
    assert type(plain) is torch.optim.RMSprop and plain.defaults["alpha"] == 0.95
    with pytest.raises(BratsInputError, match="optim.l1"):
        build_optimizer(params, OptimConfig(name="rmsprop", nesterov=True, weight_decay=1e-4))


def test_l1_penalty_counts_weights_not_biases() -> None:
    conv = nn.Conv3d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([-1.5, 2.0]).view(2, 1, 1, 1, 1))
        conv.bias.fill_(10.0)
    assert l1_penalty(conv).item() == pytest.approx(3.5)


def test_deepmedic_regularises_convolution_kernels_only() -> None:
    """``regularize: conv`` skips BN γ and PReLU slopes (DeepMedic); ``weights`` counts them."""
    model = nn.Sequential(nn.BatchNorm3d(2), nn.PReLU(2), nn.Conv3d(2, 1, 1, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(3.0)                               # γ: 2 × 3
        model[1].weight.fill_(0.5)                               # PReLU a: 2 × 0.5
        model[2].weight.copy_(torch.tensor([-1.0, 2.0]).view(1, 2, 1, 1, 1))
    assert l1_penalty(model, "conv").item() == pytest.approx(3.0)
    assert l2_penalty(model, "conv").item() == pytest.approx(5.0)
    assert l1_penalty(model, "weights").item() == pytest.approx(3.0 + 6.0 + 1.0)
    assert l2_penalty(model, "weights").item() == pytest.approx(5.0 + 18.0 + 0.5)
    with pytest.raises(BratsInputError, match="optim.regularize"):
        l1_penalty(model, "all")


def test_emma_members_regularise_as_their_originals() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "submissions" / "kamnitsas2017.yaml")
    assert {name: config.member(name).optim.regularize for name in config.member_names} == {
        name: "conv" if name.startswith("deepmedic") else "weights" for name in config.member_names}


def test_soft_iou_by_hand() -> None:
    # two voxels, two classes; logits chosen so the softmax is (0.8, 0.2) and (0.2, 0.8)
    logit = math.log(4.0)
    logits = torch.tensor([[logit, 0.0], [0.0, logit]]).T.reshape(1, 2, 2, 1, 1)
    target = torch.tensor([0, 0]).reshape(1, 2, 1, 1)
    iou = build_loss("soft_dice", include_background=True, jaccard=True, smooth_dr=0.0)
    # class 0: I = 0.8 + 0.2 = 1.0, Σp + Σg − I = 1.0 + 2 − 1.0 = 2 → 0.5
    # class 1: I = 0, Σp + Σg − I = 1.0 → 0;   loss = −mean(0.5, 0) = −0.25
    assert iou(logits, target).item() == pytest.approx(-0.25, abs=1e-6)
    dice = build_loss("soft_dice", include_background=True, smooth_dr=0.0)
    # Dice class 0: 2 · 1.0 / 3 = 0.6667, class 1: 0 → −0.3333
    assert dice(logits, target).item() == pytest.approx(-1 / 3, abs=1e-6)
