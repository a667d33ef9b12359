"""Networks: IsenseeUNet parameter counts, shapes, gradients, dropout, init; blocks; the registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from brats.errors import BratsInputError
from brats.losses import SoftDiceLoss
from brats.nets import NETWORKS, IsenseeUNet, build_network, register_network
from brats.nets.blocks import (
    ConvNormAct,
    LocalizationModule,
    ResidualContextModule,
    UpsamplingModule,
    conv3d,
    get_act,
    get_norm,
)

# Conv weights + biases, base 16 (k³·c_in·c_out + c_out per conv; ≈ 9.48 M in the original):
#   encoder  level 1: 1,744 + 2·6,928 = 15,600           level 2: 13,856 + 2·27,680 = 69,216
#            level 3: 55,360 + 2·110,656 = 276,672       level 4: 221,312 + 2·442,496 = 1,106,304
#            level 5: 884,992 + 2·1,769,728 = 4,424,448                        sum 5,892,240
#   decoder  up 256→128 884,864; 1³ 128→128 16,512; loc4 1,769,728 + 32,896; up 128→64 221,248;
#            loc3 442,496 + 8,256; up 64→32 55,328; loc2 110,656 + 2,080; up 32→16 13,840;
#            loc1 27,680 + 132; heads 516 + 260                                sum 3,586,492
CONV_PARAMS = 9_478_732
# Norm γ and β (≈ 5 k): 2 · (16 + 3·32 + 3·64 + 3·128 + 2·256   (encoder: 1,200 channels)
#   + 256 + 128 + 128 + 256 + 128 + 64 + 128 + 64 + 32 + 64 + 32 + 16 + 32)  (decoder: 1,328)
NORM_PARAMS = 5_056


@pytest.fixture(scope="module")
def net() -> IsenseeUNet:
    torch.manual_seed(0)
    return IsenseeUNet()


def _count(model: nn.Module, kind: type) -> int:
    return sum(p.numel() for m in model.modules() if isinstance(m, kind) for p in m.parameters())


# ------------------------------------------------------------------------------------------
# architecture
# ------------------------------------------------------------------------------------------

def test_parameter_counts_match_the_reference(net) -> None:
    conv, norm = _count(net, nn.Conv3d), _count(net, nn.InstanceNorm3d)
    assert (conv, norm) == (CONV_PARAMS, NORM_PARAMS)
    assert sum(p.numel() for p in net.parameters()) == CONV_PARAMS + NORM_PARAMS == 9_483_788
    assert round(conv / 1e6, 2) == 9.48 and round(norm, -3) == 5_000  # MIC-DKFZ/BraTS2017
    modules = [type(m) for m in net.modules()]
    assert modules.count(nn.Conv3d) == 30 and modules.count(nn.InstanceNorm3d) == 25
    assert modules.count(nn.Dropout) == 5
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv3d))
    for m in net.modules():
        if isinstance(m, nn.InstanceNorm3d):
            assert m.affine and not m.track_running_stats and m.eps == 1e-4


def _reference_forward(m: IsenseeUNet, x: torch.Tensor) -> torch.Tensor:
    """Line-by-line transliteration of ``build_net`` (MIC-DKFZ/BraTS2017 network_architecture.py)
    with ``m``'s weights and dropout off, independent of how the blocks compose."""
    def lrelu(t):
        return F.leaky_relu(t, 0.01)

    def norm(t, n):
        return F.instance_norm(t, weight=n.weight, bias=n.bias, eps=1e-4)

    def conv(t, c):
        return F.conv3d(t, c.weight, c.bias, stride=c.stride, padding=c.padding)

    def upscale(t):
        return F.interpolate(t, scale_factor=2, mode="nearest")

    def norm_lrelu_upscale_conv_norm_lrelu(t, u):
        return lrelu(norm(conv(upscale(lrelu(norm(t, u.pre.norm))), u.conv), u.post.norm))

    def conv_norm_lrelu(t, c):
        return lrelu(norm(conv(t, c.conv), c.norm))

    h = r = conv(x, m.conv1)
    h = conv(lrelu(conv(lrelu(h), m.context1.block1.conv)), m.context1.block2.conv)
    h = h + r
    skips = [lrelu(h)]
    h = lrelu(norm(h, m.norm_act1.norm))
    for i in range(4):
        h = r = conv(h, m.down[i])
        blk1, blk2 = m.context[i].block1, m.context[i].block2
        h = conv(lrelu(norm(conv(lrelu(norm(h, blk1.norm)), blk1.conv), blk2.norm)), blk2.conv)
        h = h + r
        if i < 3:
            h = lrelu(norm(h, m.norm_act[i].norm))
            skips.append(h)
    h = norm_lrelu_upscale_conv_norm_lrelu(h, m.up5)
    h = conv_norm_lrelu(h, m.bottom)
    h = conv(conv_norm_lrelu(torch.cat([skips[3], h], 1), m.loc4.features), m.loc4.project)
    h = norm_lrelu_upscale_conv_norm_lrelu(h, m.up4)
    ds2 = conv_norm_lrelu(torch.cat([skips[2], h], 1), m.loc3.features)
    h = norm_lrelu_upscale_conv_norm_lrelu(conv(ds2, m.loc3.project), m.up3)
    ds3 = conv_norm_lrelu(torch.cat([skips[1], h], 1), m.loc2.features)
    h = norm_lrelu_upscale_conv_norm_lrelu(conv(ds3, m.loc2.project), m.up2)
    l_pred = conv(conv_norm_lrelu(torch.cat([skips[0], h], 1), m.loc1.features), m.loc1.project)
    ds = upscale(upscale(conv(ds2, m.seg_head3)) + conv(ds3, m.seg_head2))
    return l_pred + ds


def test_forward_matches_the_original_layer_order() -> None:
    torch.manual_seed(1)
    model = IsenseeUNet(base_filters=8).eval()
    for name, p in model.named_parameters():  # non-trivial γ, β and biases so every term shows up
        if p.ndim == 1:
            p.data.normal_(1.0 if name.endswith("norm.weight") else 0.0, 0.2)
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        out, ref = model(x), _reference_forward(model, x)
    assert out.shape == (1, 4, 32, 32, 32)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_output_shape_paper_patch() -> None:
    """(2, 4, 128³) → (2, 4, 128³): shape traced on the meta device (free), values at batch 1 (~8 s)."""
    with torch.device("meta"):
        assert IsenseeUNet()(torch.empty(2, 4, 128, 128, 128)).shape == (2, 4, 128, 128, 128)
    torch.manual_seed(0)
    model = IsenseeUNet().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 4, 128, 128, 128))
    assert out.shape == (1, 4, 128, 128, 128) and torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(32, 32, 32), (16, 32, 48)])
def test_output_shape_small(net, shape) -> None:
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 4, *shape)).shape == (1, 4, *shape)
    assert IsenseeUNet(in_channels=2, num_classes=3, base_filters=4).eval()(
        torch.randn(1, 2, *shape)).shape == (1, 3, *shape)


@pytest.mark.parametrize("shape, match", [
    ((1, 4, 32, 32, 40), r"divisible by 16, got \(32, 32, 40\); pad the input to e.g. \(32, 32, 48\)"),
    ((1, 4, 16, 16, 16), r"input \(16, 16, 16\) is too small: .* at least 2 voxels"),
    ((1, 3, 32, 32, 32), r"expects \(B, 4, X, Y, Z\)"),
    ((4, 32, 32, 32), r"expects \(B, 4, X, Y, Z\)"),
])
def test_bad_input_raises(net, shape, match) -> None:
    with pytest.raises(ValueError, match=match):
        net(torch.zeros(shape))


def test_one_gradient_step_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = IsenseeUNet(base_filters=8).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = SoftDiceLoss()(model(torch.randn(1, 4, 32, 32, 32)), torch.randint(0, 4, (1, 32, 32, 32)))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    opt.step()
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_dropout_on_in_train_off_in_eval(net) -> None:
    assert all(m.p == 0.3 for m in net.modules() if isinstance(m, nn.Dropout))
    net = IsenseeUNet(base_filters=8)
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        net.train()
        a, b = net(x), net(x)
        net.eval()
        c, d = net(x), net(x)
    assert not torch.allclose(a, b)
    assert torch.equal(c, d)
    no_dropout = IsenseeUNet(base_filters=4, dropout=0.0).train()
    with torch.no_grad():
        assert torch.equal(no_dropout(x), no_dropout(x))


def test_he_normal_init() -> None:
    torch.manual_seed(0)
    model = IsenseeUNet()
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv3d):
            continue
        assert torch.count_nonzero(m.bias) == 0, name
        fan_in = m.weight[0].numel()
        if name == "loc1.project":  # the original l_pred kept Lasagne's Glorot-uniform default
            fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
            assert m.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out))
        elif m.weight.numel() >= 20_000:
            assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05), name
            assert abs(m.weight.mean().item()) < 0.05 * math.sqrt(2 / fan_in), name
    norms = [m for m in model.modules() if isinstance(m, nn.InstanceNorm3d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)


# ------------------------------------------------------------------------------------------
# blocks
# ------------------------------------------------------------------------------------------

def test_block_factories() -> None:
    assert isinstance(get_norm("instance", 8, 1e-4), nn.InstanceNorm3d)
    assert isinstance(get_norm("batch", 8), nn.BatchNorm3d)
    assert isinstance(get_norm(None, 8), nn.Identity)
    assert isinstance(get_act("relu"), nn.ReLU)
    assert get_act("leakyrelu", negative_slope=0.2).negative_slope == 0.2
    prelu = get_act("prelu", 8, 0.01)
    assert prelu.weight.shape == (8,) and torch.allclose(prelu.weight, torch.full((8,), 0.01))
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        get_norm("group", 8)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        get_act("gelu")
    with pytest.raises(ValueError, match="odd"):
        conv3d(4, 4, 2)


def test_block_shapes() -> None:
    x = torch.randn(2, 8, 8, 10, 6)
    assert conv3d(8, 4, (1, 3, 3), dilation=(1, 2, 2))(x).shape == (2, 4, 8, 10, 6)
    assert conv3d(8, 4, stride=2)(x).shape == (2, 4, 4, 5, 3)
    assert ConvNormAct(8, 16, norm="batch", act="prelu")(x).shape == (2, 16, 8, 10, 6)
    assert UpsamplingModule(8, 4)(x).shape == (2, 4, 16, 20, 12)
    loc = LocalizationModule(8, 3)
    assert loc(x).shape == (2, 3, 8, 10, 6) and loc.features(x).shape == (2, 8, 8, 10, 6)
    res = ResidualContextModule(8, dropout=0.0)
    for block in (res.block1, res.block2):
        nn.init.zeros_(block.conv.weight)
        nn.init.zeros_(block.conv.bias)
    assert torch.equal(res(x), x)  # zero residual branch → identity


# ------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------

def test_registry_builds_and_reports_errors() -> None:
    assert NETWORKS["isensee_unet"] is IsenseeUNet
    model = build_network("isensee_unet", base_filters=4, num_classes=3)
    assert isinstance(model, IsenseeUNet) and model.num_classes == 3
    with pytest.raises(BratsInputError, match=r"unknown network 'unet'( \(did you mean '\w+'\?\))?; "
                                              r"expected one of .*isensee_unet"):
        build_network("unet")
    with pytest.raises(BratsInputError, match=r"network 'isensee_unet': unexpected argument 'dropuot' "
                                              r"\(did you mean 'dropout'\?\)"):
        build_network("isensee_unet", dropuot=0.1)
    with pytest.raises(BratsInputError, match=r"network 'isensee_unet': dropout must be in \[0, 1\)"):
        build_network("isensee_unet", dropout=1.5)


def test_register_network() -> None:
    @register_network("_test_identity")
    class Identity(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.channels = channels

    try:
        assert build_network("_test_identity", channels=3).channels == 3
        with pytest.raises(BratsInputError, match="missing required argument 'channels'"):
            build_network("_test_identity")
        register_network("_test_identity")(Identity)  # same factory again: allowed
        with pytest.raises(ValueError, match="already registered"):
            register_network("_test_identity")(nn.Identity)
    finally:
        NETWORKS.pop("_test_identity", None)
