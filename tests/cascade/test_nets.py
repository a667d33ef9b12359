"""MSNet (WNet, TNet, ENet): parameter counts, the slab contract, gradients, layers, the registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from brats.errors import BratsInputError
from brats.nets import NETWORKS, build_network
from cascade.nets import SLICE_MARGIN, MSNet, ResBlock, enet, tnet, wnet

# Parameters with the defaults (c = 32, K = 2; no conv has a bias; BN γ + β = 2 per channel, PReLU
# α = 1 per channel; a (1, 3, 3) conv has 9 · c_in · c_out weights, a (3, 1, 1) one 3 · c_in · c_out):
#   ResBlock 1_1 (4 → 32):  BN/PReLU(4) 12 + 9·4·32 1,152 + BN/PReLU(32) 96 + 9·32·32 9,216 = 10,476
#   9 ResBlocks 32 → 32:    9 · 2 · (96 + 9,216)                                          = 167,616
#   4 fuse layers:          4 · (3·32·32 3,072 + 96)                                      = 12,672
#   downsampling:           9,216 + 96 = 9,312 each; WNet/TNet 2 → 18,624, ENet 1 → 9,312
#   heads WNet/TNet:        p1 32→2 576 + 6 = 582; p2 32→4 1,152 + 12, 4→4 144 + 12 = 1,320;
#                           p3 32→8 2,304 + 24, 8→8 576 + 24 = 2,928                      = 4,830
#   heads ENet:             p1 plain conv 32→2 576; p2 1,164; p3 2,328                    = 4,068
#   final conv 14 → 2:      9·14·2                                                        = 252
# WNet/TNet 10,476 + 167,616 + 12,672 + 18,624 + 4,830 + 252 = 214,470 (taigw/brats17 MSNet: ≈ 214 k)
# ENet      10,476 + 167,616 + 12,672 +  9,312 + 4,068 + 252 = 204,396 (taigw/brats17 MSNet: ≈ 204 k)
PARAMS = {"wnet": 214_470, "tnet": 214_470, "enet": 204_396}
PRESETS = {"wnet": wnet, "tnet": tnet, "enet": enet}


@pytest.fixture(scope="module")
def nets() -> dict[str, MSNet]:
    torch.manual_seed(0)
    return {name: factory() for name, factory in PRESETS.items()}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------
# architecture
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PRESETS)
def test_parameter_counts_match_the_reference(nets, name) -> None:
    net = nets[name]
    assert _n_params(net) == PARAMS[name]
    assert round(_n_params(net), -3) == {"wnet": 214_000, "tnet": 214_000, "enet": 204_000}[name]


@pytest.mark.parametrize("name, n_down", [("wnet", 2), ("tnet", 2), ("enet", 1)])
def test_layers_are_bias_free_convs_with_batch_norm_and_prelu(nets, name, n_down) -> None:
    net = nets[name]
    modules = list(net.modules())
    assert sum(isinstance(m, ResBlock) for m in modules) == 10
    convs = [m for m in modules if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    assert all(m.bias is None for m in convs)
    fuses = [m for m in convs if m.kernel_size == (3, 1, 1)]
    assert len(fuses) == 4 and all(m.padding == (0, 0, 0) for m in fuses)
    assert all(m.kernel_size == (1, 3, 3) for m in convs if m not in fuses)
    assert sum(m.stride == (1, 2, 2) for m in convs if isinstance(m, nn.Conv3d)) == n_down
    assert sum(isinstance(m, nn.ConvTranspose3d) for m in convs) == (5 if n_down == 2 else 2)
    blocks = [m for m in modules if isinstance(m, ResBlock)]
    dilations = [unit.conv.dilation[1] for b in blocks for unit in (b.unit1, b.unit2)]
    assert dilations == [1] * 8 + [1, 1, 2, 2, 3, 3] + [3, 3, 2, 2, 1, 1]
    # BN → PReLU after every ResBlock unit (20), fuse (4), downsampling and upsampling head
    n_bn = 20 + 4 + n_down + (5 if n_down == 2 else 2)
    bns = [m for m in modules if isinstance(m, nn.BatchNorm3d)]
    prelus = [m for m in modules if isinstance(m, nn.PReLU)]
    assert len(bns) == len(prelus) == n_bn
    assert not any(isinstance(m, (nn.InstanceNorm3d, nn.ReLU, nn.LeakyReLU)) for m in modules)
    assert all(m.eps == 1e-5 and m.momentum == 0.1 and m.affine for m in bns)
    assert all(m.num_parameters == m.weight.numel() > 1 and bool((m.weight == 0).all()) for m in prelus)


def test_weights_are_truncated_he_normal(nets) -> None:
    conv = nets["wnet"].block2[0].unit1.conv  # 32 → 32, (1, 3, 3): fan_in 288
    std = math.sqrt(2 / 288)
    assert float(conv.weight.detach().abs().max()) <= 2 * std
    # the std of N(0, 1) truncated at ±2 is 0.88
    assert float(conv.weight.detach().std()) == pytest.approx(std * 0.88, rel=0.05)


def test_first_block_pads_the_shortcut_channels_symmetrically() -> None:
    block = ResBlock(4, 32)
    nn.init.zeros_(block.unit2.conv.weight)  # residual branch → 0, output = padded shortcut
    x = torch.randn(1, 4, 2, 5, 5)
    with torch.no_grad():
        y = block(x)
    assert torch.equal(y[:, 14:18], x)
    assert not y[:, :14].any() and not y[:, 18:].any()


# ------------------------------------------------------------------------------------------
# the slab contract
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, size", [("wnet", 144), ("tnet", 144), ("enet", 64)])
def test_training_slab_shapes(nets, name, size) -> None:
    net = nets[name].eval()
    with torch.no_grad():
        out = net(torch.randn(1, 4, 19, size, size))
    assert out.shape == (1, 2, 11, size, size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name, shape", [("wnet", (9, 8, 12)), ("enet", (23, 6, 10))])
def test_output_covers_the_centre_slices(nets, name, shape) -> None:
    net = nets[name].eval()
    with torch.no_grad():
        out = net(torch.randn(2, 4, *shape))
    d, h, w = shape
    assert SLICE_MARGIN == 4 and out.shape == (2, 2, d - 2 * SLICE_MARGIN, h, w)


def test_output_slice_sees_nine_input_slices(nets) -> None:
    """Output slice j depends on input slices j … j + 8 only (eval mode): the slab loop can tile."""
    net = nets["wnet"].eval()
    x = torch.randn(1, 4, 19, 16, 16)
    x2 = x.clone()
    x2[:, :, 0] += 1.0  # only output slice 0 sees input slice 0
    x2[:, :, 18] += 1.0  # only output slice 10 sees input slice 18
    with torch.no_grad():
        changed = (net(x) - net(x2)).abs().amax((0, 1, 3, 4)) > 0
    assert changed.tolist() == [True] + [False] * 9 + [True]


@pytest.mark.parametrize("name, shape, match", [
    ("wnet", (1, 3, 19, 16, 16), "expects"),
    ("wnet", (4, 19, 16, 16), "expects"),
    ("wnet", (1, 4, 8, 16, 16), "at least 9"),
    ("wnet", (1, 4, 19, 18, 16), "divisible by 4"),
    ("enet", (1, 4, 19, 16, 15), "divisible by 2"),
])
def test_input_errors(nets, name, shape, match) -> None:
    with pytest.raises(BratsInputError, match=match):
        nets[name](torch.zeros(shape))


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["wnet", "enet"])  # TNet is the WNet architecture
def test_a_gradient_step_reaches_every_parameter(name) -> None:
    torch.manual_seed(1)
    net = PRESETS[name]().train()
    logits = net(torch.randn(1, 4, 19, 32, 32))
    target = torch.randint(0, 2, (1, 11, 32, 32))
    nn.functional.cross_entropy(logits, target).backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    before = [p.detach().clone() for p in net.parameters()]
    torch.optim.Adam(net.parameters(), lr=1e-3).step()
    assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


# ------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, downsample_twice, params", [
    ("wang_wnet", True, 214_470), ("wang_tnet", True, 214_470), ("wang_enet", False, 204_396)])
def test_registry_builds_the_presets(key, downsample_twice, params) -> None:
    assert key in NETWORKS
    net = build_network(key, in_channels=4, num_classes=2)
    assert isinstance(net, MSNet) and net.downsample_twice is downsample_twice
    assert _n_params(net) == params
    wide = build_network(key, in_channels=4, num_classes=4, base_filters=16, dilations=[1, 2, 4])
    assert wide.final.out_channels == 4 and wide.final.in_channels == 28
    assert wide.block4[0].unit1.conv.dilation == (1, 4, 4)


def test_registry_rejects_a_misspelt_argument() -> None:
    with pytest.raises(BratsInputError, match="did you mean 'base_filters'"):
        build_network("wang_wnet", base_filter=16)
    with pytest.raises(BratsInputError, match="downsample_twice"):
        build_network("wang_enet", downsample_twice=True)
    with pytest.raises(BratsInputError, match="in_channels"):
        build_network("wang_tnet", in_channels=64)
