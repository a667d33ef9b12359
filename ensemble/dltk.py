"""EMMA's 3-D FCN and 3-D U-Net members, reconstructed from DLTK's residual segmentation networks.

Importing this module registers ``"emma_fcn"`` (:class:`ResidualFCN`) and ``"emma_unet"``
(:class:`ResidualUNet`) in the core network registry (:func:`brats.nets.build_network`).

EMMA (K. Kamnitsas et al., "Ensembles of Multiple Models and Architectures for Robust Brain
Tumour Segmentation", BrainLes 2017, LNCS 10670, https://arxiv.org/abs/1711.01468) combined
DeepMedic with 3-D FCNs and 3-D U-Nets whose configuration was never published. DLTK
(github.com/DLTK/DLTK), the TensorFlow toolkit of the same Imperial group, ships a residual FCN
(``dltk/networks/segmentation/fcn.py``, ``residual_fcn_3d``) and a residual U-Net (``unet.py``,
``residual_unet_3d`` and ``asymmetric_residual_unet_3d``) from that period; this module rebuilds
them layer by layer (DLTK ``dltk/core/residual_unit.py``, ``fcn.py``, ``unet.py``). That EMMA's
members *were* these networks, with these defaults, is UNCONFIRMED.

TensorFlow details kept: ``padding='same'`` (for a size divisible by the stride, a kernel k at
stride s pads ``(k − s) // 2`` voxels before and the rest after: :class:`SameConv3d`), batch norm
with ``tf.layers.batch_normalization``'s defaults (ε = 1e-3, moving averages with decay 0.99, i.e.
PyTorch momentum 0.01), no convolution biases, and DLTK's kernel initialiser
``variance_scaling(distribution='uniform')``: U(−√(3 / fan_in), √(3 / fan_in))
(:func:`init_variance_scaling_uniform_`). Tensors are (B, C, X, Y, Z) instead of TensorFlow's
channels-last layout.
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
from brats.nets.blocks import Size3, _triple

#: Upsampling modes of the decoders (see :class:`Upsample3d`).
UPSAMPLING: tuple[str, ...] = ("linear", "transposed", "nearest")
#: ``tf.layers.batch_normalization`` defaults: epsilon 1e-3, moving-average decay 0.99.
TF_BN_EPS = 1e-3
TF_BN_MOMENTUM = 0.01

__all__ = ["UPSAMPLING", "ResidualEncoder", "ResidualFCN", "ResidualUNet", "ResidualUnit", "SameConv3d",
           "Upscore", "Upsample3d", "init_variance_scaling_uniform_"]


# ------------------------------------------------------------------------------------------
# layers
# ------------------------------------------------------------------------------------------

def _tf_same_pads(kernel: Sequence[int], stride: Sequence[int]) -> list[tuple[int, int]]:
    """(before, after) padding per axis of TensorFlow's ``'same'`` for sizes divisible by the stride."""
    return [((k - s) // 2, k - s - (k - s) // 2) for k, s in zip(kernel, stride)]


class SameConv3d(nn.Conv3d):
    """Bias-free ``nn.Conv3d`` with TensorFlow ``padding='same'``: size n ↦ n / stride.

    For a size divisible by the stride, TensorFlow pads ``k − s`` voxels per axis, ``(k − s) // 2``
    before and the rest after. That is symmetric for odd kernels at stride 1 (3³: one voxel each
    side) and for DLTK's 4-voxel kernels at stride 2; otherwise (e.g. 6 at stride 3: 1 before, 2
    after) the input is padded explicitly. (B, in, X, Y, Z) → (B, out, X / s, Y / s, Z / s).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size3 = 3,
                 stride: Size3 = 1) -> None:
        k, s = _triple(kernel_size), _triple(stride)
        if any(ki < si for ki, si in zip(k, s)):
            raise ValueError(f"kernel {k} must be at least the stride {s} on every axis")
        pads = _tf_same_pads(k, s)
        symmetric = all(before == after for before, after in pads)
        super().__init__(in_channels, out_channels, k, s,
                         padding=tuple(before for before, _ in pads) if symmetric else 0, bias=False)
        #: F.pad widths (z before, z after, y…, x…) when the padding is asymmetric, else None.
        self.asymmetric_pad = None if symmetric else tuple(p for pair in reversed(pads) for p in pair)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.asymmetric_pad is not None:
            x = F.pad(x, self.asymmetric_pad)
        return super().forward(x)


def _linear_taps(size: int) -> torch.Tensor:
    """DLTK's ``get_linear_upsampling_kernel`` along one axis: [¼, ¾, ¾, ¼] for 4, [1] for 1."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 else factor - 0.5
    return 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / factor


class Upsample3d(nn.Module):
    """×``stride`` upsampling per axis: (B, C, X, Y, Z) → (B, C, sx·X, sy·Y, sz·Z).

    Modes (:data:`UPSAMPLING`):

    * ``"linear"`` (DLTK's ``linear_upsample_3d``, the default of both networks): a fixed,
      channel-wise transposed convolution with stride s, kernel 2s on every upsampled axis (1 on
      the others) with taps ``1 − |i − (s − ½)| / s`` (¼, ¾, ¾, ¼ for s = 2), cropped like
      TensorFlow's ``'same'`` (``(2s − s) // 2`` output voxels dropped in front). For s = 2 this is
      trilinear interpolation with half-voxel alignment inside the volume (``F.interpolate(...,
      mode="trilinear", align_corners=False)``), and at the border the outside counts as zero, so
      the outermost output voxel is ¾ of the edge voxel; for odd s DLTK's kernel is not centred
      (s = 3 gives [2, 10/3, 14/3, 6, 22/3, 20/3] for [4, 8]). No parameters.
    * ``"transposed"`` (DLTK's ``trainable=True``): the same transposed convolution as a learnt
      C → C kernel, initialised to the linear one on the diagonal (C² · ∏ 2s parameters).
    * ``"nearest"``: nearest-neighbour repetition (not in DLTK); no parameters.
    """

    def __init__(self, channels: int, stride: Size3 = 2, mode: str = "linear") -> None:
        super().__init__()
        if mode not in UPSAMPLING:
            raise ValueError(f"unknown upsampling {mode!r}; expected one of {', '.join(UPSAMPLING)}")
        self.channels, self.stride, self.mode = channels, _triple(stride), mode
        if min(self.stride) < 1:
            raise ValueError(f"upsampling strides must be >= 1, got {self.stride}")
        size = tuple(2 * s if s > 1 else 1 for s in self.stride)
        self.crop = tuple(before for before, _ in _tf_same_pads(size, self.stride))
        taps = [_linear_taps(n) for n in size]
        kernel = (taps[0][:, None, None] * taps[1][None, :, None] * taps[2][None, None, :]).float()
        if mode == "linear":
            self.register_buffer("weight", kernel.expand(channels, 1, *size).clone(), persistent=False)
        elif mode == "transposed":
            eye = torch.eye(channels)[:, :, None, None, None]
            self.weight = nn.Parameter(eye * kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=self.stride, mode="nearest")
        groups = self.channels if self.mode == "linear" else 1
        y = F.conv_transpose3d(x, self.weight, stride=self.stride, groups=groups)
        out = [n * s for n, s in zip(x.shape[2:], self.stride)]
        (cx, cy, cz), (nx, ny, nz) = self.crop, out
        return y[:, :, cx:cx + nx, cy:cy + ny, cz:cz + nz]

    def extra_repr(self) -> str:
        return f"{self.channels}, stride={self.stride}, mode={self.mode!r}"


def _pre_activation(in_channels: int, out_channels: int, kernel_size: Size3, stride: Size3,
                    bn_eps: float, bn_momentum: float) -> nn.Sequential:
    """BN → ReLU6 → bias-free 'same' conv: one of DLTK's residual sub-units."""
    return nn.Sequential(OrderedDict(
        norm=nn.BatchNorm3d(in_channels, eps=bn_eps, momentum=bn_momentum),
        act=nn.ReLU6(),
        conv=SameConv3d(in_channels, out_channels, kernel_size, stride)))


class ResidualUnit(nn.Module):
    """DLTK's ``vanilla_residual_unit_3d``: pre-activation residual unit (He et al. 2016, identity mappings).

    ``y = conv(relu6(bn(conv(relu6(bn(x)))))) + shortcut(x)``, convolutions bias-free with
    TensorFlow 'same' padding (:class:`SameConv3d`):

    * ``sub_unit0``: BN → ReLU6 → conv ``in → out`` with ``stride``; along every strided axis its
      kernel is doubled to 2s ("to prevent losing information": 4 at stride 2, padded one voxel
      each side, so the size is exactly halved), along the others it is ``kernel_size``;
    * ``sub_unit1``: BN → ReLU6 → ``kernel_size`` conv ``out → out``;
    * shortcut: max-pooled with window = stride when the unit is strided; then, when it widens the
      channels, zero-padded in the channel axis with ``floor((out − in) / 2)`` channels before and
      ``ceil((out − in) / 2)`` after; when it narrows them, a bias-free ``kernel_size`` conv
      ``in → out`` (``projection``); otherwise the identity. Nothing follows the sum.

    Parameters: ``2·in + k0·in·out + 2·out + k·out² (+ k·in·out when narrowing)`` with k0, k the
    kernel volumes (BN γ, β; e.g. 60,512 for 16 → 32 at stride 2: 32 + 4³·16·32 + 64 + 3³·32²).

    Shapes: (B, in, X, Y, Z) → (B, out, X / sx, Y / sy, Z / sz), sizes divisible by the strides.

    Args:
        in_channels, out_channels: channels before and after the unit.
        stride: stride of ``sub_unit0`` and window of the shortcut's max pooling (int or 3 ints).
        kernel_size: kernel of the unstrided convolutions and of the narrowing projection (3).
        bn_eps, bn_momentum: batch-norm epsilon and PyTorch momentum (TensorFlow's 1e-3 and 0.01).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: Size3 = 1, kernel_size: Size3 = 3,
                 bn_eps: float = TF_BN_EPS, bn_momentum: float = TF_BN_MOMENTUM) -> None:
        super().__init__()
        if min(in_channels, out_channels) < 1:
            raise ValueError(f"channels must be >= 1, got {in_channels} → {out_channels}")
        s, k = _triple(stride), _triple(kernel_size)
        if min(s) < 1:
            raise ValueError(f"strides must be >= 1, got {s}")
        k0 = tuple(2 * si if si > 1 else ki for ki, si in zip(k, s))
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, s
        self.sub_unit0 = _pre_activation(in_channels, out_channels, k0, s, bn_eps, bn_momentum)
        self.sub_unit1 = _pre_activation(out_channels, out_channels, k, 1, bn_eps, bn_momentum)
        self.pool = nn.MaxPool3d(s, s) if math.prod(s) > 1 else nn.Identity()
        self.projection = SameConv3d(in_channels, out_channels, k) if in_channels > out_channels else None
        extra = max(out_channels - in_channels, 0)
        #: Zero channels added to the shortcut before and after its own (DLTK's floor/ceil split).
        self.channel_pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.pool(x)
        if self.projection is not None:
            shortcut = self.projection(shortcut)
        elif self.in_channels < self.out_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, 0, *self.channel_pad))
        return self.sub_unit1(self.sub_unit0(x)) + shortcut


def init_variance_scaling_uniform_(module: nn.Module) -> nn.Module:
    """DLTK's ``tf.initializers.variance_scaling(distribution='uniform')`` for every ``nn.Conv3d``, in place.

    Weights ~ U(−√(3 / fan_in), √(3 / fan_in)) (scale 1, fan_in = in_channels · kernel volume;
    variance 1 / fan_in, LeCun-uniform), the same as the older DLTK default
    ``uniform_unit_scaling_initializer()``. Returns ``module``.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="linear")
    return module


# ------------------------------------------------------------------------------------------
# encoder and decoder blocks
# ------------------------------------------------------------------------------------------

class ResidualEncoder(nn.Module):
    """The encoder shared by DLTK's ``residual_fcn_3d`` and ``residual_unet_3d``.

    Scale 0: a bias-free 3³ 'same' conv ``in_channels → filters[0]`` (no residual unit, whatever
    ``num_res_units``). Scale s ≥ 1: a :class:`ResidualUnit` ``filters[s − 1] → filters[s]`` with
    ``strides[s]``, then ``num_res_units − 1`` unstrided ones at ``filters[s]``. ``forward`` returns
    the features of every scale, finest first: (B, filters[s], X / ∏ strides[1..s], …).

    Args:
        in_channels: input channels.
        filters: channels per scale, at least two scales.
        strides: per scale, an int or 3 ints; ``strides[0]`` must be 1 (DLTK strides its initial
            conv with it, which would leave the logits coarser than the input).
        num_res_units: residual units per coarser scale (>= 1).
        bn_eps, bn_momentum: see :class:`ResidualUnit`.
    """

    def __init__(self, in_channels: int, filters: Sequence[int], strides: Sequence[Size3],
                 num_res_units: int = 1, bn_eps: float = TF_BN_EPS,
                 bn_momentum: float = TF_BN_MOMENTUM) -> None:
        super().__init__()
        filters, strides = [int(f) for f in filters], [_triple(s) for s in strides]
        if len(filters) != len(strides) or len(filters) < 2:
            raise ValueError(f"filters and strides need the same number (>= 2) of scales, got "
                             f"{len(filters)} and {len(strides)}")
        if min([in_channels, *filters]) < 1:
            raise ValueError(f"in_channels and filters must be >= 1, got {in_channels} and {filters}")
        if strides[0] != (1, 1, 1):
            raise ValueError(f"strides[0] (the initial conv) must be 1 so that the logits have the "
                             f"input's size, got {strides[0]}")
        if min(min(s) for s in strides) < 1:
            raise ValueError(f"strides must be >= 1, got {strides}")
        if num_res_units < 1:
            raise ValueError(f"num_res_units must be >= 1, got {num_res_units}")
        self.filters, self.strides = tuple(filters), tuple(strides)
        #: Every spatial input size must be a multiple of this (per axis: the product of the strides).
        self.divisor: tuple[int, int, int] = tuple(math.prod(axis) for axis in zip(*strides))  # type: ignore
        kw = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        self.init_conv = SameConv3d(in_channels, filters[0], 3)
        self.scales = nn.ModuleList(
            nn.Sequential(ResidualUnit(filters[s - 1], filters[s], strides[s], **kw),
                          *(ResidualUnit(filters[s], filters[s], **kw) for _ in range(num_res_units - 1)))
            for s in range(1, len(filters)))

    def check_input(self, x: torch.Tensor, network: str) -> None:
        """Raise :class:`BratsInputError` unless ``x`` is (B, in_channels, X, Y, Z) with sizes divisible
        by :attr:`divisor`; ``network`` names the caller in the message."""
        in_channels = self.init_conv.in_channels
        if x.ndim != 5 or x.shape[1] != in_channels:
            raise BratsInputError(
                f"{network} expects (B, {in_channels}, X, Y, Z) input, got {tuple(x.shape)}")
        spatial = tuple(int(n) for n in x.shape[2:])
        if any(n % d for n, d in zip(spatial, self.divisor)):
            padded = tuple(-(-n // d) * d for n, d in zip(spatial, self.divisor))
            raise BratsInputError(
                f"{network} needs every spatial size divisible by {self.divisor} (the product of the "
                f"strides), got {spatial}; pad the input to e.g. {padded}")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.init_conv(x)]
        for scale in self.scales:
            features.append(scale(features[-1]))
        return features


class Upscore(nn.Module):
    """DLTK's ``upscore_layer_3d`` (Long et al.'s FCN skip fusion): coarse scores up, plus encoder scores.

    ``up(conv1(x)) + bn(conv1(skip))``: the running tensor is projected to ``num_classes`` by a
    bias-free 1×1×1 conv (only when it has another width; ``conv`` is None otherwise), upsampled
    ×``stride`` (:class:`Upsample3d`); the encoder features go through a bias-free 1×1×1 conv to
    ``num_classes`` and BN; the two are summed.

    Shapes: x (B, in_channels, X, Y, Z), skip (B, skip_channels, sX, sY, sZ) →
    (B, num_classes, sX, sY, sZ).
    """

    def __init__(self, in_channels: int, skip_channels: int, num_classes: int, stride: Size3 = 2,
                 upsampling: str = "linear", bn_eps: float = TF_BN_EPS,
                 bn_momentum: float = TF_BN_MOMENTUM) -> None:
        super().__init__()
        self.conv = SameConv3d(in_channels, num_classes, 1) if in_channels != num_classes else None
        self.upsample = Upsample3d(num_classes, stride, upsampling)
        self.skip = nn.Sequential(OrderedDict(
            conv=SameConv3d(skip_channels, num_classes, 1),
            norm=nn.BatchNorm3d(num_classes, eps=bn_eps, momentum=bn_momentum)))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        return self.upsample(x) + self.skip(skip)


# ------------------------------------------------------------------------------------------
# the networks
# ------------------------------------------------------------------------------------------

@register_network("emma_fcn")
class ResidualFCN(nn.Module):
    """Residual 3-D FCN, DLTK's ``residual_fcn_3d``: EMMA's FCN members, reconstructed (UNCONFIRMED).

    J. Long et al., "Fully convolutional networks for semantic segmentation", CVPR 2015, with the
    pre-activation residual units of K. He et al., "Identity mappings in deep residual networks",
    ECCV 2016, as written in DLTK (``fcn.py``, ``residual_unit.py``). EMMA's FCN members were, by
    recollection only (UNCONFIRMED), 3-D adaptations of Long et al.'s FCN in several variants
    (loss, sampling); their depth,
    widths and upsampling are UNCONFIRMED (the EMMA paper's body could not be checked), and this
    DLTK network with its defaults is the most plausible reconstruction, not a documented one.

    * Encoder (:class:`ResidualEncoder`): a 3³ conv to ``filters[0]``; per coarser scale a strided
      :class:`ResidualUnit` (4³ kernel at stride 2, max-pooled and zero-padded shortcut) and
      ``num_res_units − 1`` unstrided ones. With the defaults: 16 channels at full size, 32 at ½,
      64 at ¼, 128 at ⅛.
    * Decoder, coarse to fine, one :class:`Upscore` per scale: 1×1×1 conv of the running tensor to
      ``num_classes`` (the first step only, from ``filters[-1]``), ×2 linear upsampling, plus a
      1×1×1 conv of that scale's encoder features to ``num_classes`` followed by BN, summed.
    * A last bias-free 1×1×1 conv ``num_classes → num_classes``: the logits (DLTK's softmax is
      left to the loss).

    No convolution has a bias (DLTK's ``use_bias=False``); BN uses TensorFlow's ε = 1e-3 and decay
    0.99; convolution weights are variance-scaling uniform (:func:`init_variance_scaling_uniform_`).

    Parameters with the defaults (4 input channels, 4 classes): 1,271,136 in the encoder (3³ conv
    1,728; units 60,512 + 241,856 + 967,040) + 984 in the upscores + 16 in the last conv
    = 1,272,136. ``upsampling="transposed"`` adds 3 · 4² · 4³ = 3,072.

    Input constraint: every spatial size must be divisible by the product of the strides (8 with
    the defaults); the output has the input's size. Example: (2, 4, 64, 64, 64) → (2, 4, 64, 64, 64)
    logits.

    Args:
        in_channels: input modalities (4: T1, T1c, T2, FLAIR).
        num_classes: logit channels (4 canonical classes); no softmax.
        filters: channels per scale (DLTK: 16, 32, 64, 128).
        strides: per scale, an int or 3 ints (DLTK: 1, 2, 2, 2); the first must be 1.
        num_res_units: residual units per coarser scale (DLTK: 1).
        upsampling: ``"linear"`` (DLTK's fixed trilinear transposed conv), ``"transposed"`` (the
            same, learnt) or ``"nearest"``; see :class:`Upsample3d`.
        bn_eps, bn_momentum: batch-norm epsilon and PyTorch momentum (1e-3 and 0.01, TensorFlow's).

    Raises:
        ValueError: inconsistent arguments (scale counts, strides, unknown upsampling).
        BratsInputError (from ``forward``): input of the wrong rank or channels, or sizes not
            divisible by the product of the strides.
    """

    def __init__(self, in_channels: int = 4, num_classes: int = 4, *,
                 filters: Sequence[int] = (16, 32, 64, 128),
                 strides: Sequence[Size3] = (1, 2, 2, 2),
                 num_res_units: int = 1,
                 upsampling: str = "linear",
                 bn_eps: float = TF_BN_EPS,
                 bn_momentum: float = TF_BN_MOMENTUM) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.encoder = ResidualEncoder(in_channels, filters, strides, num_res_units, bn_eps, bn_momentum)
        f, s = self.encoder.filters, self.encoder.strides
        self.upscores = nn.ModuleList(
            Upscore(f[-1] if scale == len(f) - 2 else num_classes, f[scale], num_classes, s[scale + 1],
                    upsampling, bn_eps, bn_momentum)
            for scale in range(len(f) - 2, -1, -1))
        self.last = SameConv3d(num_classes, num_classes, 1)
        init_variance_scaling_uniform_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, X, Y, Z) image → (B, num_classes, X, Y, Z) logits (sizes divisible by
        ``encoder.divisor``)."""
        self.encoder.check_input(x, type(self).__name__)
        *skips, x = self.encoder(x)
        for upscore, skip in zip(self.upscores, reversed(skips)):
            x = upscore(x, skip)
        return self.last(x)


@register_network("emma_unet")
class ResidualUNet(nn.Module):
    """Residual 3-D U-Net, DLTK's ``residual_unet_3d``: EMMA's U-Net members, reconstructed (UNCONFIRMED).

    O. Ronneberger et al., "U-Net", MICCAI 2015 / Ö. Çiçek et al., "3D U-Net", MICCAI 2016, with
    the pre-activation residual units of He et al. 2016, as written in DLTK (``unet.py``).
    EMMA's two U-Net members differed, by recollection only (UNCONFIRMED), in upsampling or other
    choices; their configuration is
    UNCONFIRMED (the EMMA paper's body could not be checked), and this DLTK network with its
    defaults is the most plausible reconstruction, not a documented one.

    * Encoder: as :class:`ResidualFCN` (:class:`ResidualEncoder`).
    * Decoder, coarse to fine, per scale s: ×``strides[s + 1]`` upsampling (:class:`Upsample3d`) of
      the running tensor, concatenation ``[encoder features of s, upsampled]`` (encoder first), then
      ``num_res_units`` :class:`ResidualUnit` s at ``filters[s]`` (the first narrows
      ``filters[s] + filters[s + 1] → filters[s]`` with a 3³ projection on the shortcut).
      ``asymmetric=True`` is DLTK's ``asymmetric_residual_unet_3d``: exactly one decoder unit per
      scale whatever ``num_res_units``.
    * A last bias-free 1×1×1 conv ``filters[0] → num_classes`` on the residual sum: the logits.

    No convolution has a bias; BN uses TensorFlow's ε = 1e-3 and decay 0.99; convolution weights
    are variance-scaling uniform (:func:`init_variance_scaling_uniform_`).

    Parameters with the defaults (4 input channels, 4 classes): 1,271,136 in the encoder (as
    :class:`ResidualFCN`) + 1,016,960 in the decoder units (192 → 64: 774,656; 96 → 32: 193,792;
    48 → 16: 48,512) + 64 in the last conv = 2,288,160. ``upsampling="transposed"`` adds
    (128² + 64² + 32²) · 4³ = 1,376,256.

    Input constraint: every spatial size must be divisible by the product of the strides (8 with
    the defaults); the output has the input's size. Example: (2, 4, 64, 64, 64) → (2, 4, 64, 64, 64)
    logits.

    Args:
        in_channels, num_classes, filters, strides, num_res_units, upsampling, bn_eps, bn_momentum:
            as :class:`ResidualFCN`.
        asymmetric: one decoder unit per scale (DLTK's asymmetric variant) instead of
            ``num_res_units``; the same network when ``num_res_units == 1``.

    Raises:
        ValueError: inconsistent arguments (scale counts, strides, unknown upsampling).
        BratsInputError (from ``forward``): input of the wrong rank or channels, or sizes not
            divisible by the product of the strides.
    """

    def __init__(self, in_channels: int = 4, num_classes: int = 4, *,
                 filters: Sequence[int] = (16, 32, 64, 128),
                 strides: Sequence[Size3] = (1, 2, 2, 2),
                 num_res_units: int = 1,
                 asymmetric: bool = False,
                 upsampling: str = "linear",
                 bn_eps: float = TF_BN_EPS,
                 bn_momentum: float = TF_BN_MOMENTUM) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_channels, self.num_classes, self.asymmetric = in_channels, num_classes, asymmetric
        self.encoder = ResidualEncoder(in_channels, filters, strides, num_res_units, bn_eps, bn_momentum)
        f, s = self.encoder.filters, self.encoder.strides
        units = 1 if asymmetric else num_res_units
        kw = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        scales = range(len(f) - 2, -1, -1)
        self.upsamples = nn.ModuleList(Upsample3d(f[scale + 1], s[scale + 1], upsampling) for scale in scales)
        self.decoder = nn.ModuleList(
            nn.Sequential(ResidualUnit(f[scale] + f[scale + 1], f[scale], **kw),
                          *(ResidualUnit(f[scale], f[scale], **kw) for _ in range(units - 1)))
            for scale in scales)
        self.last = SameConv3d(f[0], num_classes, 1)
        init_variance_scaling_uniform_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, X, Y, Z) image → (B, num_classes, X, Y, Z) logits (sizes divisible by
        ``encoder.divisor``)."""
        self.encoder.check_input(x, type(self).__name__)
        *skips, x = self.encoder(x)
        for upsample, decode, skip in zip(self.upsamples, self.decoder, reversed(skips)):
            x = decode(torch.cat([skip, upsample(x)], 1))
        return self.last(x)
