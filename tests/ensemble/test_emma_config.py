"""The shipped EMMA config: seven members of three families, their networks and segment sizes."""

from __future__ import annotations

from pathlib import Path

import torch

from brats.config import load_config
from brats.nets import build_network
from ensemble.deepmedic import DeepMedic

CONFIG = Path(__file__).resolve().parents[2] / "submissions" / "kamnitsas2017.yaml"

#: member → (network, parameters with 4 inputs and 4 classes).
MEMBERS = {
    "deepmedic": ("deepmedic", 1_053_012),
    "deepmedic_wide": ("deepmedic_wide", 4_192_212),
    "fcn_ce_uniform": ("emma_fcn", 1_272_136),
    "fcn_dice_balanced": ("emma_fcn", 1_272_136),
    # encoder 3,456 + 241,856 + 967,040 + 3,867,392; upscores 1,544 + 264 + 136; last conv 16
    "fcn_iou_wide": ("emma_fcn", 5_081_704),
    "unet_ce_uniform": ("emma_unet", 2_288_160),
    "unet_dice_balanced": ("emma_unet", 2_288_160 + 1_376_256),  # + learnt upsampling kernels
}


def test_seven_members_with_their_networks_and_sizes() -> None:
    config = load_config(CONFIG)
    assert config.member_names == list(MEMBERS) and config.combine == "mean"
    for name, (network, parameters) in MEMBERS.items():
        member = config.member(name)
        assert member.network.name == network
        net = build_network(network, in_channels=4, num_classes=4, **member.network.kwargs)
        assert sum(p.numel() for p in net.parameters()) == parameters, name


def test_deepmedic_members_train_on_25_cube_segments_and_tile_29_cubes() -> None:
    config = load_config(CONFIG)
    member = config.member("deepmedic")
    net = DeepMedic()
    margin = net.context_margin
    assert member.data.output_crop == (margin,) * 3
    out = tuple(p - 2 * margin for p in member.data.patch_size)
    assert out == (9, 9, 9) and net.input_size(out) == (25, 25, 25)
    assert net.subsampled_input_size(out) == (19, 19, 19)
    tile = tuple(r - 2 * margin for r in member.inference.roi_size)
    assert tile == (29, 29, 29) and net.input_size(tile) == (45, 45, 45)
    assert member.inference.mode == "tiles" and member.inference.num_mirrors == 1
    net.eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 4, *member.data.patch_size)).shape == (2, 4, 9, 9, 9)
    assert (member.optim.name, member.optim.nesterov, member.optim.momentum) == ("rmsprop", True, 0.6)
    assert member.optim.milestones == (12, 16, 19, 22, 25, 28, 31, 34) and member.optim.gamma == 0.5
    assert (member.train.epochs * member.train.iterations_per_epoch, member.data.batch_size) == (
        70_000, 10)
    assert member.data.foreground_fraction == 0.5 and member.loss.name == "cross_entropy"


def test_fcn_and_unet_members_vary_loss_and_sampling() -> None:
    config = load_config(CONFIG)
    settings = {name: (config.member(name).loss.name,
                       config.member(name).loss.kwargs.get("jaccard", False),
                       config.member(name).data.foreground_fraction)
                for name in MEMBERS if not name.startswith("deepmedic")}
    assert settings == {
        "fcn_ce_uniform": ("cross_entropy", False, 0.0),
        "fcn_dice_balanced": ("soft_dice", False, 0.75),
        "fcn_iou_wide": ("soft_dice", True, 0.75),
        "unet_ce_uniform": ("cross_entropy", False, 0.0),
        "unet_dice_balanced": ("soft_dice", False, 0.75),
    }
    assert all(config.member(n).inference.mode == "whole" for n in settings)
