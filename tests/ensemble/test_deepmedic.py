"""DeepMedic: sizes, receptive field, parameter counts, a transliterated forward, gradients, BN, segments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from brats.errors import BratsInputError
from brats.nets import NETWORKS, build_network
from ensemble.deepmedic import (
    ChannelBias,
    DeepMedic,
    RollingAverageBatchNorm3d,
    deepmedic_wide,
    extract_segments,
    mirror_pad,
)

# Parameters, 4 input channels (DeepMedic v0.6 BraTS config: ≈ 1.05 M with 5 classes). Per DeepMedic layer:
# the first layer of a pathway has an input bias (4) and a bias-free 3³ conv; the others BN γ + β
# (2·c_in), PReLU (c_in) and a bias-free conv (k³·c_in·c_out); the classifier adds one bias per class.
#   pathway  4 + 3,240 | 90 + 24,300 | 90 + 32,400 | 3 · (120 + 43,200) | 120 + 54,000 | 150 + 67,500
#            = 311,854, two pathways                                                     = 623,708
#   FC1      300 + 100·150·27 = 405,300;  FC2  450 + 150·150 = 22,950
#   classes  450 + 150·K + K:  K = 4 → 1,054, K = 5 → 1,205
PARAMS = {4: 1_053_012, 5: 1_053_163}
# Wide (every count doubled, UNCONFIRMED width): pathways 2 · 1,239,304, FC1 1,620,600, FC2 90,900,
# classes 900 + 300·4 + 4 = 2,104.
PARAMS_WIDE = 4_192_212


@pytest.fixture(scope="module")
def net() -> DeepMedic:
    torch.manual_seed(0)
    return DeepMedic().eval()


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _pair(n: int, b: int = 1, seed: int = 0, sizes=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (normal, subsampled) segments for n normal voxels per axis (or per-axis ``sizes``)."""
    g = torch.Generator().manual_seed(seed)
    normal = sizes[0] if sizes else (n, n, n)
    low = sizes[1] if sizes else None
    if low is None:
        low = tuple(-(-(s - 16) // 3) + 16 for s in normal)
    return torch.randn(b, 4, *normal, generator=g), torch.randn(b, 4, *low, generator=g)


# ------------------------------------------------------------------------------------------
# sizes and receptive field
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("normal, low, out", [
    ((25, 25, 25), (19, 19, 19), (9, 9, 9)),        # training segments
    ((45, 45, 45), (26, 26, 26), (29, 29, 29)),     # inference tiles: ceil(29 / 3) + 16 = 26
    ((17, 18, 20), (17, 17, 18), (1, 2, 4)),        # validation samples (17³ → 1) and even outputs
])
def test_output_sizes(net, normal, low, out) -> None:
    assert net.output_size(normal) == out and net.input_size(out) == normal
    assert net.subsampled_input_size(out) == low
    with torch.no_grad():
        y = net(*_pair(0, sizes=(normal, low)))
    assert y.shape == (1, 4, *out) and torch.isfinite(y).all()


def test_size_helpers_accept_ints_and_reject_too_small(net) -> None:
    assert net.output_size(25) == (9, 9, 9) and net.input_size(29) == (45, 45, 45)
    assert net.subsampled_input_size(9) == (19, 19, 19) and net.subsampled_input_size(10) == (20, 20, 20)
    with pytest.raises(ValueError, match="at least 17"):
        net.output_size(16)
    with pytest.raises(ValueError, match=">= 1"):
        net.subsampled_input_size(0)


def test_receptive_field_matches_the_reference(net) -> None:
    # DeepMedic v0.6: 17³ normal, 17 low-res voxels ≈ 51³ subsampled; FC1 adds 2 (19³, ≈ 53³)
    rf = net.receptive_field
    assert tuple(rf) == (17, 17, 51, 19, 53)
    assert (rf.normal, rf.subsampled, rf.subsampled_extent) == (17, 17, 51)
    assert (rf.normal_with_fc, rf.subsampled_extent_with_fc) == (19, 53)
    assert deepmedic_wide().receptive_field == rf


def _support(grad: torch.Tensor) -> tuple[int, ...]:
    """Extent per spatial axis of the nonzero entries of a (1, C, X, Y, Z) gradient."""
    nz = grad.abs().sum((0, 1)).nonzero()
    return tuple(int(nz[:, a].max() - nz[:, a].min() + 1) for a in range(3))


def test_receptive_field_is_what_one_logit_sees(net) -> None:
    normal, low = _pair(23)  # 7³ logits, 19³ low-res samples
    normal.requires_grad_(True)
    low.requires_grad_(True)
    net(normal, low)[0, 1, 1, 1, 4].backward()
    # normal: 17 + FC1's 2. Subsampled: along x and y logit 1 is the middle of block 0 (logits
    # 0–2), so FC1's 3³ window sees one low-res logit, 17 samples; along z logit 4 is the middle
    # of block 1, samples 1..17. (Logit 3 would also see block 0: 18 samples.)
    assert _support(normal.grad) == (19, 19, 19)
    assert _support(low.grad) == (17, 17, 17)
    assert low.grad[0, 0, :17, :17, 1:18].abs().min() > 0


# ------------------------------------------------------------------------------------------
# parameters and layers
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("classes", [4, 5])
def test_parameter_counts_match_the_reference(classes) -> None:
    model = DeepMedic(num_classes=classes)
    assert _n_params(model) == PARAMS[classes]
    assert round(_n_params(model) / 1e6, 2) == 1.05  # DeepMedic v0.6 BraTS config
    assert _n_params(model.normal_pathway) == _n_params(model.subsampled_pathway) == 311_854


def test_wide_variant_doubles_every_feature_map() -> None:
    model = deepmedic_wide()
    assert _n_params(model) == PARAMS_WIDE
    convs = [m.out_channels for m in model.normal_pathway.modules() if isinstance(m, nn.Conv3d)]
    assert convs == [60, 60, 80, 80, 80, 80, 100, 100]
    assert [m.conv.out_channels for m in model.fc.layers] == [300, 300]
    explicit = DeepMedic(feature_maps_normal=(60, 60, 80, 80, 80, 80, 100, 100), feature_maps_fc=(300, 300))
    assert _n_params(explicit) == PARAMS_WIDE


def test_layers_follow_the_reference(net) -> None:
    for pathway in (net.normal_pathway, net.subsampled_pathway):
        first, *rest = pathway.layers
        # no BN or activation on the raw image: an input bias, then the conv
        assert isinstance(first.norm, ChannelBias) and not hasattr(first, "act")
        assert all(isinstance(layer.norm, RollingAverageBatchNorm3d) and isinstance(layer.act, nn.PReLU)
                   for layer in rest)
        assert [layer.conv.out_channels for layer in pathway.layers] == [30, 30, 40, 40, 40, 40, 50, 50]
        assert pathway.residual_layers == (4, 6, 8)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d)]
    assert all(c.padding == (0, 0, 0) for c in convs)
    assert [c.bias is None for c in convs] == [True] * (len(convs) - 1) + [False]
    assert [layer.conv.kernel_size for layer in net.fc.layers] == [(3, 3, 3), (1, 1, 1)]
    assert isinstance(net.fc.layers[0].norm, RollingAverageBatchNorm3d)  # BN on the concatenation
    assert net.fc.residual_layers == (2,)
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]  # FC2, classifier
    assert not hasattr(net.fc.layers[0], "dropout")  # rate 0.0 on FC1's input
    assert all(torch.allclose(m.weight, torch.tensor(0.01)) for m in DeepMedic().modules()
               if isinstance(m, nn.PReLU))


def test_he_initialisation() -> None:
    torch.manual_seed(1)
    conv = DeepMedic().fc.layers[0].conv  # 100 · 27 inputs per output
    assert conv.weight.std().item() == pytest.approx((2 / 2700) ** 0.5, rel=0.02)


def _reference_forward(m: DeepMedic, normal: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """Eval-mode forward written out after DeepMedic v0.6 (``cnnLayerTypes``/``pathways``/``cnn3d``),
    with ``m``'s weights but its own cropping, channel padding, upsampling and mirror padding."""
    def layer(x, mod):
        if isinstance(mod.norm, ChannelBias):
            x = x + mod.norm.bias[None, :, None, None, None]
        else:
            n = mod.norm
            x = (x - n.running_mean[None, :, None, None, None]) / torch.sqrt(
                n.running_var[None, :, None, None, None] + n.eps)
            x = x * n.weight[None, :, None, None, None] + n.bias[None, :, None, None, None]
            x = torch.where(x > 0, x, mod.act.weight[None, :, None, None, None] * x)
        return F.conv3d(x, mod.conv.weight, mod.conv.bias)

    def residual(out, earlier):
        crops = [(e - o) // 2 for e, o in zip(earlier.shape[2:], out.shape[2:])]  # symmetric here
        earlier = earlier[:, :, crops[0]:crops[0] + out.shape[2], crops[1]:crops[1] + out.shape[3],
                          crops[2]:crops[2] + out.shape[4]]
        return out + F.pad(earlier, (0, 0, 0, 0, 0, 0, 0, out.shape[1] - earlier.shape[1]))

    def pathway(x, layers):
        inputs = []
        for i, mod in enumerate(layers, start=1):
            inputs.append(x)
            x = layer(x, mod)
            if i in (4, 6, 8):
                x = residual(x, inputs[i - 2])
        return x

    a = pathway(normal, m.normal_pathway.layers)
    b = pathway(low, m.subsampled_pathway.layers)
    for axis in (2, 3, 4):
        b = b.repeat_interleave(3, axis)
    b = b[:, :, :a.shape[2], :a.shape[3], :a.shape[4]]
    concat = torch.cat([a, b], 1)
    x = layer(F.pad(concat, (1,) * 6, mode="replicate"), m.fc.layers[0])  # symmetric pad of 1
    x = residual(layer(x, m.fc.layers[1]), concat)
    return layer(x, m.classifier)


def test_forward_matches_the_transliterated_reference() -> None:
    torch.manual_seed(2)  # narrow, to be fast; the counts still grow (channel zero-padding)
    model = DeepMedic(feature_maps_normal=(4, 4, 6, 6, 6, 6, 8, 8),
                      feature_maps_subsampled=(3, 5, 5, 5, 5, 5, 7, 7), feature_maps_fc=(12, 12))
    model = model.double().train()
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for _ in range(3):
            model(*(t.double() * 2 + 1 for t in _pair(19, b=2, seed=5)))
        for m in model.modules():
            if isinstance(m, (RollingAverageBatchNorm3d, ChannelBias)):
                m.bias.normal_(0, 0.1)
            if isinstance(m, RollingAverageBatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
    model.eval()
    # logits (5, 3, 4): 2, 1, 2 low-res logits repeated to 6, 3, 6 voxels, the trailing ones clipped
    normal, low = (t.double() for t in _pair(0, sizes=((21, 19, 20), (18, 17, 18)), seed=3))
    with torch.no_grad():
        assert torch.allclose(model(normal, low), _reference_forward(model, normal, low), atol=1e-10)


def test_mirror_pad_is_numpy_symmetric() -> None:
    x = torch.arange(2 * 3 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 3, 4, 5, 6)
    for total in (1, 2, 4):
        front, back = total // 2, total - total // 2
        expected = np.pad(x.numpy(), [(0, 0), (0, 0)] + [(front, back)] * 3, mode="symmetric")
        assert np.array_equal(mirror_pad(x, total).numpy(), expected)


# ------------------------------------------------------------------------------------------
# training behaviour
# ------------------------------------------------------------------------------------------

def test_one_gradient_step_reaches_every_parameter() -> None:
    torch.manual_seed(3)
    model = DeepMedic().train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    normal, low = _pair(19, b=2)  # 3³ logits, one low-res logit
    target = torch.randint(0, 4, (2, 3, 3, 3))
    loss = F.cross_entropy(model(normal, low), target)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    optim.step()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_dropout_only_in_training() -> None:
    model = DeepMedic(width_multiplier=0.2)  # 6–10 pathway and 30 FC feature maps
    pair = _pair(17, b=2)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(*pair), model(*pair))
        model.train()
        torch.manual_seed(0)
        a = model(*pair)
        torch.manual_seed(1)
        assert not torch.allclose(a, model(*pair))


def test_rolling_batch_norm_averages_the_last_batches() -> None:
    bn = RollingAverageBatchNorm3d(2, rolling_batches=3)
    x = torch.randn(2, 2, 3, 3, 3)
    assert torch.equal(bn.running_mean, torch.zeros(2)) and torch.equal(bn.running_var, torch.ones(2))
    bn.train()
    stats = []
    for shift in (1.0, 2.0, 3.0, 4.0):
        y = bn(x + shift)
        stats.append(((x + shift).mean((0, 2, 3, 4)), (x + shift).var((0, 2, 3, 4), unbiased=True)))
        assert torch.allclose(y.mean((0, 2, 3, 4)), torch.zeros(2), atol=1e-5)  # batch statistics
        if shift == 1.0:  # the window starts as zeros / ones, as in DeepMedic
            assert torch.allclose(bn.running_mean, stats[0][0] / 3)
            assert torch.allclose(bn.running_var, (stats[0][1] + 2) / 3)
    last = stats[1:]  # the first batch has left the window of 3
    assert torch.allclose(bn.running_mean, sum(m for m, _ in last) / 3)
    assert torch.allclose(bn.running_var, sum(v for _, v in last) / 3)
    bn.eval()
    expected = (x - bn.running_mean.view(1, -1, 1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1, 1)
                                                                     + bn.eps)
    assert torch.allclose(bn(x), expected, atol=1e-6)
    assert int(bn.num_batches_tracked) == 4 and "mean_history" in bn.state_dict()


# ------------------------------------------------------------------------------------------
# segments
# ------------------------------------------------------------------------------------------

def _coded_volume(shape=(40, 36, 33)) -> np.ndarray:
    """(2, X, Y, Z) float64 volume whose value encodes the voxel: 1 + 10⁴x + 10²y + z (+ 10⁶ for c = 1)."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    code = 1 + 10_000 * x + 100 * y + z
    return np.stack([code, code + 1_000_000]).astype(np.float64)


def _decode(value: float) -> tuple[int, int, int]:
    v = int(value) - 1
    return v // 10_000, v // 100 % 100, v % 100


@pytest.mark.parametrize("out, n_normal, n_low", [(9, 25, 19), (29, 45, 26)])
def test_extract_segments_sizes_centre_and_alignment(out, n_normal, n_low) -> None:
    vol = _coded_volume((80, 80, 80))
    centre = (40, 41, 39)
    normal, low = extract_segments(vol, centre, out)
    assert normal.shape == (2, n_normal, n_normal, n_normal) and low.shape == (2, n_low, n_low, n_low)
    mid = (n_normal - 1) // 2
    assert _decode(normal[0, mid, mid, mid]) == centre  # the centre voxel sits in the middle
    assert normal[1, mid, mid, mid] == vol[1, 40, 41, 39]
    first = tuple(c - (out - 1) // 2 for c in centre)
    assert _decode(normal[0, 8, 8, 8]) == first  # logit 0 ↔ the first voxel of the block
    # low-res sample k lies at first + 3 (k − 8): logit j of the subsampled pathway (samples
    # j..j + 16, centre j + 8) is centred on the voxel first + 3j it is repeated onto
    for k in range(n_low):
        assert _decode(low[0, k, 8, 8]) == (first[0] + 3 * (k - 8), first[1], first[2])
        assert _decode(low[0, 8, 8, k]) == (first[0], first[1], first[2] + 3 * (k - 8))
    assert _decode(low[0, 0, 0, 0]) == tuple(f - 24 for f in first)
    assert _decode(low[0, -1, -1, -1]) == tuple(f - 24 + 3 * (n_low - 1) for f in first)


def test_extract_segments_9_cube_grid_passes_next_to_the_centre() -> None:
    vol = _coded_volume()
    _, low = extract_segments(vol, (20, 18, 16), 9)
    grid_x = sorted(_decode(v)[0] for v in low[0, :, 9, 9])
    assert 20 not in grid_x and 19 in grid_x and 22 in grid_x  # first = 16, grid 16 + 3m


def test_extract_segments_pads_with_zeros_outside() -> None:
    vol = _coded_volume((40, 36, 60))  # every voxel inside is >= 1
    normal, low = extract_segments(vol, (0, 35, 30), 9)  # at the x = 0 face and the y = 35 face
    # normal segment: x positions −12..12 (12 outside), y positions 23..47 (12 outside, ≥ 36)
    assert (normal[:, :12] == 0).all() and (normal[:, 12:, :13] > 0).all()
    assert (normal[:, :, 13:] == 0).all()
    # subsampled: x positions −28 + 3k, inside from k = 10; y positions 7 + 3k, inside up to k = 9
    assert (low[:, :10] == 0).all() and (low[:, 10:, :10] > 0).all() and (low[:, :, 10:] == 0).all()
    assert _decode(low[0, 10, 0, 8]) == (2, 7, 26)
    # fully outside: all zeros
    normal, low = extract_segments(vol, (200, 200, 200), 9)
    assert not normal.any() and not low.any()


def test_extract_segments_tensor_input_and_even_sizes() -> None:
    vol = np.concatenate([_coded_volume()] * 2)  # 4 channels
    normal, low = extract_segments(vol, (20, 18, 16), (9, 10, 29))
    t_normal, t_low = extract_segments(torch.from_numpy(vol), (20, 18, 16), (9, 10, 29))
    assert isinstance(t_normal, torch.Tensor) and t_normal.dtype == torch.float64
    assert np.array_equal(t_normal.numpy(), normal) and np.array_equal(t_low.numpy(), low)
    assert normal.shape == (4, 25, 26, 45) and low.shape == (4, 19, 20, 26)
    assert _decode(normal[0, 12, 12, 22]) == (20, 18, 16)  # even size: centre one before the middle
    net = DeepMedic().eval()
    with torch.no_grad():
        y = net(t_normal[None].float() / 1e6, t_low[None].float() / 1e6)
    assert y.shape == (1, 4, 9, 10, 29)


def test_extract_segments_rejects_bad_arguments() -> None:
    vol = np.zeros((4, 10, 10, 10), np.float32)
    with pytest.raises(ValueError, match="C, X, Y, Z"):
        extract_segments(vol[0], (5, 5, 5), 9)
    with pytest.raises(ValueError, match="centre"):
        extract_segments(vol, (5, 5), 9)
    with pytest.raises(ValueError, match=">= 1"):
        extract_segments(vol, (5, 5, 5), 0)
    with pytest.raises(ValueError, match="odd"):
        extract_segments(vol, (5, 5, 5), 9, receptive_field=16)


# ------------------------------------------------------------------------------------------
# input errors and the registry
# ------------------------------------------------------------------------------------------

def test_forward_rejects_mismatched_segments(net) -> None:
    normal, low = _pair(25)
    with pytest.raises(BratsInputError, match=r"needs a \(19, 19, 19\) subsampled segment"):
        net(normal, low[:, :, :18])
    with pytest.raises(BratsInputError, match=r"\(B, 4, X, Y, Z\) normal"):
        net(normal[:, :3], low)
    with pytest.raises(BratsInputError, match="batch sizes"):
        net(torch.cat([normal, normal]), low)
    with pytest.raises(BratsInputError, match="at least 17"):
        net(normal[:, :, :16], low)


def test_constructor_rejects_inconsistent_arguments() -> None:
    with pytest.raises(ValueError, match="same, non-zero number of layers"):
        DeepMedic(feature_maps_subsampled=(30, 30))
    with pytest.raises(ValueError, match="1-based"):
        DeepMedic(residual_layers_normal=(1, 4))
    with pytest.raises(ValueError, match="3 rates"):
        DeepMedic(dropout_fc=(0.5, 0.5))
    with pytest.raises(ValueError, match="odd"):
        DeepMedic(kernel_size_fc1=2)


def test_registry_builds_both_variants() -> None:
    assert NETWORKS["deepmedic"] is DeepMedic and NETWORKS["deepmedic_wide"] is deepmedic_wide
    standard = build_network("deepmedic", in_channels=4, num_classes=4)
    wide = build_network("deepmedic_wide", in_channels=4, num_classes=4)
    assert isinstance(standard, DeepMedic) and isinstance(wide, DeepMedic)
    assert (_n_params(standard), _n_params(wide)) == (PARAMS[4], PARAMS_WIDE)
    assert _n_params(build_network("deepmedic", in_channels=4, num_classes=5)) == PARAMS[5]
    with pytest.raises(BratsInputError, match="did you mean 'subsample_factor'"):
        build_network("deepmedic", subsample_factr=3)
    with pytest.raises(BratsInputError, match="deepmedic_wide"):
        build_network("deepmedic_wide", feature_maps_fc=())


@pytest.mark.parametrize("out", [9, 29, 10])
def test_context_patch_holds_both_segments(net, out) -> None:
    volume = torch.randn(4, 90, 90, 90)
    centre = (45, 44, 46)
    normal, low = extract_segments(volume, centre, out)
    first = [c - (out - 1) // 2 for c in centre]
    context = volume[(slice(None), *(slice(f - 24, f + out + 24) for f in first))][None]
    assert net.context_margin == 24 and context.shape[2:] == (out + 48,) * 3
    n2, l2 = net.split_context(context)
    assert torch.equal(n2[0], normal) and torch.equal(l2[0], low)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(context), net(normal[None], low[None]))
    assert net(context).shape == (1, 4, out, out, out)


def test_context_patch_too_small_is_an_error(net) -> None:
    with pytest.raises(BratsInputError, match="larger than 48"):
        net(torch.zeros(1, 4, 48, 48, 48))
