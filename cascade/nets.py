"""MSNet, the anisotropic multi-scale network of Wang et al. 2017, and its presets WNet, TNet, ENet.

Importing this module registers the presets in the core network registry as ``"wang_wnet"``,
``"wang_tnet"`` and ``"wang_enet"`` (:func:`brats.nets.build_network`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from brats.errors import BratsInputError
from brats.nets import register_network
from brats.nets.blocks import conv3d, get_act, get_norm

#: Batch-norm epsilon of NiftyNet's ``BNLayer`` (its moving-average decay 0.9 is PyTorch's momentum 0.1).
BN_EPS = 1e-5
#: Initial PReLU slope: NiftyNet starts every channel's α at 0, i.e. as a ReLU.
PRELU_INIT = 0.0
#: Slices lost on each side of the slice axis: four valid 3-slice "fuse" convolutions.
SLICE_MARGIN = 4


def _bn_prelu(channels: int) -> OrderedDict[str, nn.Module]:
    return OrderedDict(norm=get_norm("batch", channels, BN_EPS), act=get_act("prelu", channels, PRELU_INIT))


def _conv_bn_prelu(conv: nn.Module, channels: int) -> nn.Sequential:
    """``conv`` (with ``channels`` outputs) → BN → PReLU: NiftyNet's ``ConvolutionalLayer``."""
    return nn.Sequential(OrderedDict(conv=conv, **_bn_prelu(channels)))


def _in_plane_conv(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Conv3d:
    """Bias-free (1, 3, 3) convolution with in-plane dilation and "same" padding."""
    return conv3d(in_channels, out_channels, (1, 3, 3), dilation=(1, dilation, dilation), bias=False)


class ResBlock(nn.Module):
    """Pre-activation residual block of two in-plane convolutions: ``x + conv(act(bn(conv(act(bn(x))))))``.

    Both convolutions are bias-free (1, 3, 3) with in-plane dilation ``dilation``. When
    ``out_channels > in_channels`` (only the first block, 4 → 32) the shortcut is zero-padded along
    the channel axis, ⌊Δ/2⌋ channels in front and the rest behind, as NiftyNet's
    ``ElementwiseLayer('SUM')`` does. (B, in, D, H, W) → (B, out, D, H, W).

    Args:
        in_channels: input channels.
        out_channels: output channels, at least ``in_channels``.
        dilation: in-plane dilation d of both convolutions (padding (0, d, d) keeps H and W).

    Raises:
        ValueError: ``out_channels < in_channels`` (the original would need a projection there).
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"ResBlock needs out_channels >= in_channels, got {in_channels} → "
                             f"{out_channels}")
        extra = out_channels - in_channels
        self.pad = extra // 2, extra - extra // 2
        self.unit1 = nn.Sequential(OrderedDict(
            **_bn_prelu(in_channels), conv=_in_plane_conv(in_channels, out_channels, dilation)))
        self.unit2 = nn.Sequential(OrderedDict(
            **_bn_prelu(out_channels), conv=_in_plane_conv(out_channels, out_channels, dilation)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.pad == (0, 0) else F.pad(x, (0, 0, 0, 0, 0, 0, *self.pad))
        return shortcut + self.unit2(self.unit1(x))


def _fuse(channels: int) -> nn.Sequential:
    """Through-plane "fuse" layer: (3, 1, 1) convolution, no padding, → BN → PReLU; D → D − 2."""
    return _conv_bn_prelu(nn.Conv3d(channels, channels, (3, 1, 1), bias=False), channels)


def _downsample(channels: int) -> nn.Sequential:
    """In-plane (1, 3, 3) convolution with stride (1, 2, 2) → BN → PReLU; (D, H, W) → (D, H/2, W/2)."""
    return _conv_bn_prelu(conv3d(channels, channels, (1, 3, 3), stride=(1, 2, 2), bias=False), channels)


def _upsample(in_channels: int, out_channels: int) -> nn.Sequential:
    """In-plane ×2 transposed conv (1, 3, 3), stride (1, 2, 2) → BN → PReLU; (D, H, W) → (D, 2H, 2W)."""
    deconv = nn.ConvTranspose3d(in_channels, out_channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1),
                                output_padding=(0, 1, 1), bias=False)
    return _conv_bn_prelu(deconv, out_channels)


def _init_truncated_he_(module: nn.Module) -> None:
    """Every (transposed) conv weight ~ N(0, 2 / fan_in) truncated at ±2 std (NiftyNet's default), in place.

    fan_in = input channels × kernel volume, for transposed convolutions too.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            fan_in = m.in_channels * math.prod(m.kernel_size)
            std = math.sqrt(2.0 / fan_in)
            nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)


class MSNet(nn.Module):
    """Anisotropic multi-scale residual network, one class for WNet, TNet and ENet (Wang et al. 2017).

    G. Wang, W. Li, S. Ourselin, T. Vercauteren, "Automatic Brain Tumor Segmentation using Cascaded
    Anisotropic Convolutional Neural Networks", BrainLes 2017, LNCS 10670, https://arxiv.org/abs/1709.00382.
    Rebuilt layer by layer from ``util/MSNet.py`` of github.com/taigw/brats17 @d44297e.

    Axes: tensors are (B, C, D, H, W) where D, the first spatial axis, is the **slice axis of the
    current view** (axial, sagittal or coronal; permute the (X, Y, Z) volume before calling) and H, W
    are in-plane. All in-plane convolutions are (1, 3, 3) ("3×3×1" in the paper); through-plane
    convolutions are (3, 1, 1) without padding.

    Layers (c = ``base_filters`` everywhere; every conv is bias-free; BN → PReLU throughout):

    1. ResBlocks 1_1, 1_2 (dilation 1, in_channels → c → c) → fuse1 → downsample1 (WNet/TNet only);
    2. ResBlocks 2_1, 2_2 (dilation 1) → fuse2 = f1;
    3. downsample2 → ResBlocks 3_1–3_3 (in-plane dilations ``dilations``, e.g. 1, 2, 3) → fuse3 = f2;
    4. ResBlocks 4_1–4_3 (``dilations`` reversed, 3, 2, 1) → fuse4 = f3;
    5. heads on the centre slices, upsampled by (1, 3, 3) stride-(1, 2, 2) transposed convs → BN → PReLU:
       p1 = f1 without 2 slices on each side → one upsampling to K channels (ENet: a plain
       (1, 3, 3) conv to K channels, no BN/PReLU); p2 = f2 without 1 slice on each side → two
       upsamplings to 2K (ENet: one); p3 = f3 → two upsamplings to 4K (ENet: one);
    6. concatenation (K + 2K + 4K = 7K channels) → (1, 3, 3) conv → K logits (no softmax).

    Each ResBlock is pre-activation (BN → PReLU → conv, twice) with an identity shortcut,
    zero-padded along channels for the first one (:class:`ResBlock`). There are 10 ResBlocks, 4 fuse
    layers, and K = ``num_classes`` (2 in the original).

    Slab contract: (B, in_channels, D, H, W) → (B, num_classes, D − 8, H, W). The four fuse layers
    each drop one slice on either side, so the logits cover the **centre D − 8 slices** of the input
    (:data:`SLICE_MARGIN` = 4 on each side): the original trains and infers on 19-slice slabs with
    11-slice outputs. D ≥ 9. H and W must be multiples of :attr:`divisor`, 4 with two in-plane
    downsamplings (WNet, TNet) and 2 with one (ENet); in-plane, output and input sizes are equal.
    Examples: WNet (1, 4, 19, 144, 144) → (1, 2, 11, 144, 144); ENet (1, 4, 19, 64, 64) →
    (1, 2, 11, 64, 64). A slab loop tiles the volume's slice axis with these outputs (the
    original's ``test.py``).

    Details kept from the original (NiftyNet 0.2): BN ε = 1e-5 and decay 0.9 (PyTorch momentum 0.1);
    channel-wise PReLU starting at α = 0; weights ~ truncated normal, std √(2 / fan_in); no biases,
    not even on the final classifier. Parameters (BN γ, β and PReLU α included): 214,470 for
    WNet/TNet and 204,396 for ENet with the defaults (the original's layers: ≈ 214 k, ≈ 204 k).
    The transposed convolutions use PyTorch's symmetric padding; TensorFlow's 'SAME' pads
    asymmetrically, which shifts both the downsampling grid and the upsampling by one fine pixel,
    consistently, so the architecture and shapes are identical but ported TF weights would land
    one pixel off.

    Args:
        in_channels: input modalities (4: FLAIR, T1, T1c, T2 in the original order).
        num_classes: output channels K; the head widths are K, 2K and 4K (2 in the original: binary).
        base_filters: channels of every ResBlock, fuse and downsampling layer (32;
            ``base_feature_number`` in the original).
        downsample_twice: two in-plane downsamplings (WNet, TNet) or one (ENet).
        dilations: in-plane dilations of ResBlocks 3_1–3_3; ResBlocks 4_1–4_3 use them reversed.

    Raises:
        ValueError: non-positive sizes, ``in_channels > base_filters``, or not three dilations.
        BratsInputError (from ``forward``): input not (B, in_channels, D, H, W), D < 9, or H, W not
            multiples of :attr:`divisor`.
    """

    def __init__(self, in_channels: int = 4, num_classes: int = 2, base_filters: int = 32,
                 downsample_twice: bool = True, dilations: Sequence[int] = (1, 2, 3)) -> None:
        super().__init__()
        if min(in_channels, num_classes, base_filters) < 1:
            raise ValueError(f"in_channels, num_classes and base_filters must be >= 1, got "
                             f"{in_channels}, {num_classes}, {base_filters}")
        if in_channels > base_filters:
            raise ValueError(f"in_channels ({in_channels}) must not exceed base_filters ({base_filters})")
        dilations = tuple(int(d) for d in dilations)
        if len(dilations) != 3 or min(dilations) < 1:
            raise ValueError(f"dilations must be three positive ints, got {dilations!r}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.downsample_twice = downsample_twice
        #: H and W must be multiples of this.
        self.divisor = 4 if downsample_twice else 2
        c, k = base_filters, num_classes

        self.block1 = nn.Sequential(ResBlock(in_channels, c), ResBlock(c, c))
        self.fuse1 = _fuse(c)
        self.downsample1 = _downsample(c) if downsample_twice else nn.Identity()
        self.block2 = nn.Sequential(ResBlock(c, c), ResBlock(c, c))
        self.fuse2 = _fuse(c)
        self.downsample2 = _downsample(c)
        self.block3 = nn.Sequential(*(ResBlock(c, c, d) for d in dilations))
        self.fuse3 = _fuse(c)
        self.block4 = nn.Sequential(*(ResBlock(c, c, d) for d in reversed(dilations)))
        self.fuse4 = _fuse(c)

        if downsample_twice:
            self.pred1: nn.Module = _upsample(c, k)
            self.pred2 = nn.Sequential(_upsample(c, 2 * k), _upsample(2 * k, 2 * k))
            self.pred3 = nn.Sequential(_upsample(c, 4 * k), _upsample(4 * k, 4 * k))
        else:
            self.pred1 = _in_plane_conv(c, k)
            self.pred2 = nn.Sequential(_upsample(c, 2 * k))
            self.pred3 = nn.Sequential(_upsample(c, 4 * k))
        self.final = _in_plane_conv(7 * k, k)
        _init_truncated_he_(self)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise BratsInputError(f"MSNet expects (B, {self.in_channels}, D, H, W) input with D the slice "
                                  f"axis, got {tuple(x.shape)}")
        d, h, w = (int(s) for s in x.shape[2:])
        if d < 2 * SLICE_MARGIN + 1:
            raise BratsInputError(f"MSNet needs at least {2 * SLICE_MARGIN + 1} input slices (it drops "
                                  f"{SLICE_MARGIN} on each side), got D = {d}; the original uses 19 → 11")
        if h % self.divisor or w % self.divisor:
            padded = tuple(-(-s // self.divisor) * self.divisor for s in (h, w))
            raise BratsInputError(f"MSNet needs H and W divisible by {self.divisor}, got {(h, w)}; pad the "
                                  f"slab in-plane to e.g. {padded}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, D, H, W) slab → (B, num_classes, D − 8, H, W) logits of its centre slices."""
        self._check_input(x)
        f1 = self.fuse2(self.block2(self.downsample1(self.fuse1(self.block1(x)))))
        f2 = self.fuse3(self.block3(self.downsample2(f1)))
        f3 = self.fuse4(self.block4(f2))
        p1 = self.pred1(f1[:, :, 2:-2])
        p2 = self.pred2(f2[:, :, 1:-1])
        p3 = self.pred3(f3)
        return self.final(torch.cat([p1, p2, p3], 1))


@register_network("wang_wnet")
def wnet(in_channels: int = 4, num_classes: int = 2, base_filters: int = 32,
         dilations: Sequence[int] = (1, 2, 3)) -> MSNet:
    """WNet, the whole-tumour stage: :class:`MSNet` with two in-plane downsamplings.

    Trained on 19×144×144 → 11×144×144 slabs of the whole cropped brain. See :class:`MSNet` for the
    arguments.
    """
    return MSNet(in_channels, num_classes, base_filters, downsample_twice=True, dilations=dilations)


@register_network("wang_tnet")
def tnet(in_channels: int = 4, num_classes: int = 2, base_filters: int = 32,
         dilations: Sequence[int] = (1, 2, 3)) -> MSNet:
    """TNet, the tumour-core stage: the WNet architecture (two in-plane downsamplings).

    Trained on 19×96×96 → 11×96×96 slabs inside the whole-tumour box. See :class:`MSNet` for the
    arguments.
    """
    return MSNet(in_channels, num_classes, base_filters, downsample_twice=True, dilations=dilations)


@register_network("wang_enet")
def enet(in_channels: int = 4, num_classes: int = 2, base_filters: int = 32,
         dilations: Sequence[int] = (1, 2, 3)) -> MSNet:
    """ENet, the enhancing-core stage: :class:`MSNet` with one in-plane downsampling.

    Trained on 19×64×64 → 11×64×64 slabs inside the tumour-core box. See :class:`MSNet` for the
    arguments.
    """
    return MSNet(in_channels, num_classes, base_filters, downsample_twice=False, dilations=dilations)
