"""DLTK residual FCN / U-Net (EMMA's reconstructed members): shapes, parameters, units, errors, learning."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from brats.errors import BratsInputError
from brats.nets import NETWORKS, build_network
from ensemble.dltk import (
    ResidualEncoder,
    ResidualFCN,
    ResidualUNet,
    ResidualUnit,
    SameConv3d,
    Upsample3d,
    Upscore,
)

# Parameters with the defaults (4 input channels, 4 classes, filters 16, 32, 64, 128, strides 1, 2, 2, 2).
# A residual unit in → out has BN γ, β on in and out channels, a first conv with kernel k0 (4³ when
# strided by 2, else 3³), a 3³ conv out → out and, when narrowing, a 3³ projection in → out:
#   unit(16 → 32, /2) = 32 + 64·16·32 + 64 + 27·32² = 60,512;  (32 → 64, /2) = 241,856;
#   (64 → 128, /2) = 967,040;  encoder = 27·4·16 + the three = 1,271,136.
# FCN upscores: 128·4 (first projection) + (64 + 32 + 16)·4 (skip convs) + 3 · 2·4 (BN) = 984; last 4·4.
# U-Net decoder: (192 → 64) = 2·192 + 27·192·64 + 2·64 + 27·64² + 27·192·64 = 774,656;
#   (96 → 32) = 193,792;  (48 → 16) = 48,512;  last 16·4.
PARAMS_FCN = 1_272_136
PARAMS_UNET = 2_288_160


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _unit_params(c_in: int, c_out: int, k0: int = 27, k: int = 27) -> int:
    """Parameters of a ResidualUnit from the layer formula (k0, k: kernel volumes)."""
    projection = k * c_in * c_out if c_in > c_out else 0
    return 2 * c_in + k0 * c_in * c_out + 2 * c_out + k * c_out * c_out + projection


# ------------------------------------------------------------------------------------------
# shapes and parameter counts
# ------------------------------------------------------------------------------------------

def test_default_networks_output_shapes() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 24, 32)
    for net in (ResidualFCN(), ResidualUNet()):
        with torch.no_grad():
            y = net.eval()(x)
        assert y.shape == (2, 4, 16, 24, 32) and torch.isfinite(y).all()
        assert net.encoder.divisor == (8, 8, 8)


@pytest.mark.parametrize("kwargs", [
    dict(upsampling="linear"), dict(upsampling="transposed"), dict(upsampling="nearest"),
    dict(num_res_units=2), dict(strides=(1, (1, 2, 2), 2)),
])
@pytest.mark.parametrize("cls", [ResidualFCN, ResidualUNet])
def test_variants_keep_the_input_size(cls, kwargs) -> None:
    net = cls(2, 3, filters=(4, 6, 8), **{"strides": (1, 2, 2), **kwargs})
    x = torch.randn(1, 2, 8, 12, 4)
    assert net(x).shape == (1, 3, 8, 12, 4)
    if "strides" in kwargs:
        assert net.encoder.divisor == (2, 4, 4)


def test_parameter_counts_of_the_defaults() -> None:
    fcn, unet = ResidualFCN(), ResidualUNet()
    assert _n_params(fcn) == PARAMS_FCN and _n_params(unet) == PARAMS_UNET
    encoder = 27 * 4 * 16 + sum(_unit_params(a, b, k0=64) for a, b in [(16, 32), (32, 64), (64, 128)])
    assert _n_params(fcn.encoder) == _n_params(unet.encoder) == encoder == 1_271_136
    assert [_n_params(s) for s in fcn.encoder.scales] == [60_512, 241_856, 967_040]
    upscores = 128 * 4 + (64 + 32 + 16) * 4 + 3 * 2 * 4
    assert _n_params(fcn.upscores) == upscores == 984 and _n_params(fcn.last) == 16
    decoder = [_unit_params(64 + 128, 64), _unit_params(32 + 64, 32), _unit_params(16 + 32, 16)]
    assert [_n_params(d) for d in unet.decoder] == decoder == [774_656, 193_792, 48_512]
    assert encoder + upscores + 16 == PARAMS_FCN and encoder + sum(decoder) + 16 * 4 == PARAMS_UNET
    # learnt transposed upsampling: C² · 4³ per upsampling (C = 4 classes in the FCN)
    assert _n_params(ResidualFCN(upsampling="transposed")) == PARAMS_FCN + 3 * 4 * 4 * 64 == 1_275_208
    assert _n_params(ResidualUNet(upsampling="transposed")) == PARAMS_UNET + (128**2 + 64**2 + 32**2) * 64
    assert _n_params(ResidualFCN(upsampling="nearest")) == PARAMS_FCN


def test_num_res_units_and_the_asymmetric_u_net() -> None:
    extra_encoder = sum(_unit_params(c, c) for c in (32, 64, 128))  # one unstrided unit per scale
    extra_decoder = sum(_unit_params(c, c) for c in (64, 32, 16))
    asym = ResidualUNet(num_res_units=2, asymmetric=True)
    sym = ResidualUNet(num_res_units=2)
    assert _n_params(asym) == PARAMS_UNET + extra_encoder == 3_450_272
    assert _n_params(sym) == PARAMS_UNET + extra_encoder + extra_decoder == 3_741_024
    assert [len(d) for d in asym.decoder] == [1, 1, 1] and [len(d) for d in sym.decoder] == [2, 2, 2]
    assert [len(s) for s in sym.encoder.scales] == [2, 2, 2]
    assert _n_params(ResidualUNet(asymmetric=True)) == PARAMS_UNET  # the same network for one unit
    assert _n_params(ResidualFCN(num_res_units=2)) == PARAMS_FCN + extra_encoder


def test_layers_follow_dltk() -> None:
    fcn, unet = ResidualFCN(), ResidualUNet()
    for net in (fcn, unet):
        convs = [m for m in net.modules() if isinstance(m, nn.Conv3d)]
        assert all(c.bias is None for c in convs)
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
        assert all(b.eps == 1e-3 and b.momentum == 0.01 and b.affine for b in bns)
        assert sum(isinstance(m, nn.ReLU6) for m in net.modules()) == 2 * sum(
            isinstance(m, ResidualUnit) for m in net.modules())
        strided = [u for u in net.encoder.modules() if isinstance(u, ResidualUnit)]
        assert [u.sub_unit0.conv.kernel_size for u in strided] == [(4, 4, 4)] * 3
        assert [u.sub_unit0.conv.padding for u in strided] == [(1, 1, 1)] * 3
        assert [u.channel_pad for u in strided] == [(8, 8), (16, 16), (32, 32)]
        assert all(u.projection is None for u in strided)
        assert net.encoder.init_conv.kernel_size == (3, 3, 3)
    # the first upscore projects 128 → 4 channels; the later ones already have 4
    assert [u.conv is not None for u in fcn.upscores] == [True, False, False]
    assert [u.skip.conv.in_channels for u in fcn.upscores] == [64, 32, 16]
    first = [d[0] for d in unet.decoder]
    assert [(u.in_channels, u.out_channels) for u in first] == [(192, 64), (96, 32), (48, 16)]
    assert all(u.projection.kernel_size == (3, 3, 3) for u in first)


def test_variance_scaling_uniform_initialisation() -> None:
    torch.manual_seed(1)
    w = ResidualFCN().encoder.scales[2][0].sub_unit1.conv.weight  # fan_in 27 · 128
    bound = (3 / (27 * 128)) ** 0.5
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.99 * bound
    assert w.std().item() == pytest.approx((1 / (27 * 128)) ** 0.5, rel=0.02)


# ------------------------------------------------------------------------------------------
# the residual unit
# ------------------------------------------------------------------------------------------

def _zero_sub_unit_convs(unit: ResidualUnit) -> ResidualUnit:
    with torch.no_grad():
        unit.sub_unit0.conv.weight.zero_()
        unit.sub_unit1.conv.weight.zero_()
    return unit


def test_residual_unit_parameters_by_hand() -> None:
    # 16 → 32 at stride 2: BN 2·16, conv 4³·16·32, BN 2·32, conv 3³·32·32
    assert _n_params(ResidualUnit(16, 32, stride=2)) == 32 + 32_768 + 64 + 27_648 == 60_512
    # 48 → 16 (narrowing): BN 96, conv 3³·48·16, BN 32, conv 3³·16², projection 3³·48·16
    assert _n_params(ResidualUnit(48, 16)) == 96 + 20_736 + 32 + 6_912 + 20_736 == 48_512
    assert _n_params(ResidualUnit(8, 8)) == _unit_params(8, 8) == 16 + 1_728 + 16 + 1_728


def test_strided_unit_halves_the_size() -> None:
    x = torch.randn(2, 3, 8, 10, 12)
    assert ResidualUnit(3, 5, stride=2)(x).shape == (2, 5, 4, 5, 6)
    mixed = ResidualUnit(3, 5, stride=(1, 2, 2))
    assert mixed(x).shape == (2, 5, 8, 5, 6)
    assert mixed.sub_unit0.conv.kernel_size == (3, 4, 4)
    assert ResidualUnit(3, 5)(x).shape == (2, 5, 8, 10, 12)


@pytest.mark.parametrize("c_in, c_out, pad", [(3, 8, (2, 3)), (3, 4, (0, 1)), (4, 8, (2, 2))])
def test_widening_shortcut_is_the_zero_padded_max_pool(c_in, c_out, pad) -> None:
    torch.manual_seed(2)
    unit = _zero_sub_unit_convs(ResidualUnit(c_in, c_out, stride=2))
    assert unit.channel_pad == pad
    x = torch.randn(2, c_in, 6, 8, 4)
    y = unit(x)
    pooled = F.max_pool3d(x, 2)
    assert torch.equal(y[:, pad[0]:pad[0] + c_in], pooled)
    assert not y[:, :pad[0]].any() and not y[:, pad[0] + c_in:].any()
    assert y.shape == (2, c_out, 3, 4, 2)


def test_narrowing_shortcut_is_a_projection_and_equal_widths_the_identity() -> None:
    torch.manual_seed(3)
    x = torch.randn(1, 6, 4, 6, 8)
    unit = _zero_sub_unit_convs(ResidualUnit(6, 4))
    assert torch.allclose(unit(x), F.conv3d(x, unit.projection.weight, padding=1), atol=1e-6)
    strided = _zero_sub_unit_convs(ResidualUnit(6, 4, stride=2))  # pooled first, then projected
    assert torch.allclose(strided(x), F.conv3d(F.max_pool3d(x, 2), strided.projection.weight, padding=1),
                          atol=1e-6)
    same = _zero_sub_unit_convs(ResidualUnit(6, 6))
    assert same.projection is None and torch.equal(same(x), x)


def test_residual_unit_matches_a_written_out_reference() -> None:
    """Eval mode, non-trivial BN statistics: bn → relu6 → conv (4³, stride 2, pad 1) → bn → relu6 → conv."""
    torch.manual_seed(4)
    unit = ResidualUnit(3, 6, stride=2).double().eval()
    with torch.no_grad():
        for bn in (unit.sub_unit0.norm, unit.sub_unit1.norm):
            bn.running_mean.normal_(0, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.3)
    x = torch.randn(2, 3, 8, 6, 4, dtype=torch.float64) * 4  # reaches ReLU6's upper clip

    def bn_relu6(t, bn):
        shape = (1, -1, 1, 1, 1)
        t = (t - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + 1e-3)
        return (t * bn.weight.view(shape) + bn.bias.view(shape)).clamp(0, 6)

    h = F.conv3d(bn_relu6(x, unit.sub_unit0.norm), unit.sub_unit0.conv.weight, stride=2, padding=1)
    h = F.conv3d(bn_relu6(h, unit.sub_unit1.norm), unit.sub_unit1.conv.weight, padding=1)
    expected = h + F.pad(F.max_pool3d(x, 2), (0, 0, 0, 0, 0, 0, 1, 2))
    with torch.no_grad():
        assert torch.allclose(unit(x), expected, atol=1e-10)


def test_same_conv_pads_like_tensorflow() -> None:
    torch.manual_seed(5)
    conv = SameConv3d(2, 3, kernel_size=6, stride=3)  # TensorFlow: 1 before, 2 after
    assert conv.asymmetric_pad == (1, 2, 1, 2, 1, 2) and conv.padding == (0, 0, 0)
    x = torch.randn(1, 2, 9, 6, 3)
    y = conv(x)
    assert y.shape == (1, 3, 3, 2, 1)
    assert torch.allclose(y, F.conv3d(F.pad(x, (1, 2) * 3), conv.weight, stride=3), atol=1e-6)
    assert SameConv3d(2, 3, 3).padding == (1, 1, 1) and SameConv3d(2, 3, 1).padding == (0, 0, 0)
    with pytest.raises(ValueError, match="at least the stride"):
        SameConv3d(2, 3, kernel_size=1, stride=2)


# ------------------------------------------------------------------------------------------
# upsampling and the upscore layer
# ------------------------------------------------------------------------------------------

def test_linear_upsampling_is_dltks_kernel() -> None:
    x = torch.tensor([4.0, 8.0]).view(1, 1, 2, 1, 1)
    up = Upsample3d(1, stride=(2, 1, 1))
    assert up(x).flatten().tolist() == [3.0, 5.0, 7.0, 6.0]  # taps ¼ ¾ ¾ ¼, zero outside
    assert Upsample3d(1, stride=(1, 1, 3))(x.view(1, 1, 1, 1, 2)).flatten().tolist() == pytest.approx(
        [2, 10 / 3, 14 / 3, 6, 22 / 3, 20 / 3])  # taps 1/6, 1/2, 5/6, 5/6, 1/2, 1/6; crop 1 before
    assert sum(p.numel() for p in up.parameters()) == 0 and "weight" not in up.state_dict()
    torch.manual_seed(6)
    y = torch.randn(2, 3, 4, 5, 6)
    out = Upsample3d(3, 2)(y)
    trilinear = F.interpolate(y, scale_factor=2, mode="trilinear", align_corners=False)
    assert out.shape == (2, 3, 8, 10, 12)
    assert torch.allclose(out[:, :, 1:-1, 1:-1, 1:-1], trilinear[:, :, 1:-1, 1:-1, 1:-1], atol=1e-6)
    assert torch.allclose(out[:, :, 0, 1:-1, 1:-1], 0.75 * trilinear[:, :, 0, 1:-1, 1:-1], atol=1e-6)


def test_transposed_and_nearest_upsampling() -> None:
    torch.manual_seed(7)
    y = torch.randn(1, 3, 2, 3, 4)
    learnt = Upsample3d(3, 2, "transposed")
    assert learnt.weight.shape == (3, 3, 4, 4, 4) and learnt.weight.requires_grad
    assert torch.allclose(learnt(y), Upsample3d(3, 2)(y), atol=1e-6)  # initialised to the linear kernel
    nearest = Upsample3d(3, (2, 1, 2), "nearest")(y)
    assert torch.equal(nearest, y.repeat_interleave(2, 2).repeat_interleave(2, 4))
    with pytest.raises(ValueError, match="unknown upsampling 'bilinear'"):
        Upsample3d(3, 2, "bilinear")


def test_upscore_sums_upsampled_scores_and_normalised_skip_scores() -> None:
    torch.manual_seed(8)
    layer = Upscore(8, 5, 3).eval()
    x, skip = torch.randn(1, 8, 2, 3, 2), torch.randn(1, 5, 4, 6, 4)
    bn = layer.skip.norm
    expected = Upsample3d(3, 2)(F.conv3d(x, layer.conv.weight)) + (
        F.conv3d(skip, layer.skip.conv.weight) / (1 + bn.eps) ** 0.5)
    with torch.no_grad():
        assert torch.allclose(layer(x, skip), expected, atol=1e-6)
    assert Upscore(3, 5, 3).conv is None


# ------------------------------------------------------------------------------------------
# errors and the registry
# ------------------------------------------------------------------------------------------

def test_bad_inputs_raise_brats_input_error() -> None:
    net = ResidualFCN(filters=(4, 6, 8, 10))  # default strides 1, 2, 2, 2
    with pytest.raises(BratsInputError, match=r"divisible by \(8, 8, 8\).*got \(12, 16, 16\).*"
                                              r"e\.g\. \(16, 16, 16\)"):
        net(torch.randn(1, 4, 12, 16, 16))
    with pytest.raises(BratsInputError, match=r"ResidualFCN expects \(B, 4, X, Y, Z\)"):
        net(torch.randn(1, 3, 16, 16, 16))
    with pytest.raises(BratsInputError, match="ResidualUNet"):
        ResidualUNet(filters=(4, 6), strides=(1, 2))(torch.randn(4, 16, 16, 16))
    with pytest.raises(BratsInputError, match=r"divisible by \(1, 2, 2\)"):
        ResidualUNet(filters=(4, 6), strides=(1, (1, 2, 2)))(torch.randn(1, 4, 5, 6, 7))


def test_constructor_rejects_inconsistent_arguments() -> None:
    with pytest.raises(ValueError, match="same number"):
        ResidualFCN(filters=(16, 32), strides=(1, 2, 2))
    with pytest.raises(ValueError, match=">= 2"):
        ResidualUNet(filters=(16,), strides=(1,))
    with pytest.raises(ValueError, match=r"strides\[0\]"):
        ResidualFCN(strides=(2, 2, 2, 2))
    with pytest.raises(ValueError, match="num_res_units"):
        ResidualUNet(num_res_units=0)
    with pytest.raises(ValueError, match="unknown upsampling"):
        ResidualFCN(upsampling="bilinear")
    with pytest.raises(ValueError, match="num_classes"):
        ResidualUNet(num_classes=0)
    with pytest.raises(ValueError, match="strides must be >= 1"):
        ResidualEncoder(4, (4, 8), (1, 0))


def test_registry_builds_both_networks() -> None:
    assert NETWORKS["emma_fcn"] is ResidualFCN and NETWORKS["emma_unet"] is ResidualUNet
    fcn = build_network("emma_fcn", in_channels=4, num_classes=4)
    unet = build_network("emma_unet", in_channels=4, num_classes=4)
    assert isinstance(fcn, ResidualFCN) and isinstance(unet, ResidualUNet)
    assert (_n_params(fcn), _n_params(unet)) == (PARAMS_FCN, PARAMS_UNET)
    asym = build_network("emma_unet", num_res_units=2, asymmetric=True, upsampling="nearest")
    assert _n_params(asym) == 3_450_272
    with pytest.raises(BratsInputError, match="did you mean 'upsampling'"):
        build_network("emma_fcn", upsampleing="linear")
    with pytest.raises(BratsInputError, match=r"network 'emma_unet': strides\[0\]"):
        build_network("emma_unet", strides=(2, 2, 2, 2))


# ------------------------------------------------------------------------------------------
# training behaviour
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [ResidualFCN, ResidualUNet])
def test_one_gradient_step_reaches_every_parameter(cls) -> None:
    torch.manual_seed(9)
    net = cls(2, 3, filters=(4, 6, 8), strides=(1, 2, 2), upsampling="transposed").train()
    loss = F.cross_entropy(net(torch.randn(2, 2, 8, 8, 8)), torch.randint(0, 3, (2, 8, 8, 8)))
    loss.backward()
    assert not [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


def _blob_volume(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 2, n³) noisy image, brighter inside an off-centre ellipsoid, and its (1, n³) label."""
    g = torch.Generator().manual_seed(10)
    grid = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32)] * 3, indexing="ij"))
    centre = torch.tensor([7.0, 9.0, 8.0]).view(3, 1, 1, 1)
    radii = torch.tensor([5.0, 4.0, 3.5]).view(3, 1, 1, 1)
    label = ((((grid - centre) / radii) ** 2).sum(0) < 1).long()
    image = torch.randn(2, n, n, n, generator=g) + torch.stack([1.5 * label, -1.0 * label])
    return image[None], label[None]


def _foreground_dice(pred: torch.Tensor, label: torch.Tensor) -> float:
    both = ((pred == 1) & (label == 1)).sum().item()
    return 2 * both / ((pred == 1).sum() + (label == 1).sum()).item()


@pytest.mark.parametrize("cls", [ResidualFCN, ResidualUNet])
def test_narrow_net_overfits_a_blob(cls) -> None:
    """60 Adam steps on one 16³ volume: foreground Dice from chance (< 0.5) to > 0.8 (0.98–0.99 here).

    Dice is taken in train mode (batch statistics): with TensorFlow's BN decay 0.99 the moving
    averages are still far from settled after 60 steps.
    """
    torch.manual_seed(11)
    image, label = _blob_volume()
    assert label.sum().item() == 289
    net = cls(2, 2, filters=(4, 8, 16), strides=(1, 2, 2)).train()
    optim = torch.optim.Adam(net.parameters(), lr=1e-2)
    with torch.no_grad():
        dice_before = _foreground_dice(net(image).argmax(1), label)
    losses = []
    for _ in range(60):
        optim.zero_grad()
        loss = F.cross_entropy(net(image), label)
        loss.backward()
        optim.step()
        losses.append(loss.item())
    with torch.no_grad():
        dice = _foreground_dice(net(image).argmax(1), label)
    assert dice_before < 0.5
    assert dice > 0.8, f"foreground Dice {dice:.3f} after 60 steps"
    assert losses[-1] < 0.05 * losses[0]
