"""DeepMedic, the two-pathway 3-D CNN of Kamnitsas et al. (EMMA's DeepMedic member), and its segment geometry.

Importing this module registers ``"deepmedic"`` (the residual BraTS configuration of DeepMedic v0.6)
and ``"deepmedic_wide"`` (all feature maps doubled) in the core network registry
(:func:`brats.nets.build_network`).

DeepMedic classifies the centre of an image *segment*: a normal-resolution segment and a segment
sampled every ``subsample_factor``-th voxel around the same place feed two pathways of valid
convolutions, so the logits are smaller than the inputs. :func:`extract_segments` cuts both
segments from a (C, X, Y, Z) volume for a given output block; :meth:`DeepMedic.output_size`,
:meth:`DeepMedic.input_size` and :meth:`DeepMedic.subsampled_input_size` convert between the sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from brats.errors import BratsInputError
from brats.nets import register_network
from brats.nets.blocks import Size3, _triple, get_act, init_he_normal_

#: Kernel of every pathway convolution (3×3×3, valid) in the BraTS configuration.
PATHWAY_KERNEL = 3
#: Initial PReLU slope: DeepMedic starts every channel's a at 0.01 ("Delving deep into rectifiers").
PRELU_INIT = 0.01

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

__all__ = ["ChannelBias", "DeepMedic", "Pathway", "PreActivationConv", "ReceptiveField",
           "RollingAverageBatchNorm3d", "add_residual", "deepmedic_wide", "extract_segments", "mirror_pad"]


# ------------------------------------------------------------------------------------------
# layers
# ------------------------------------------------------------------------------------------

class RollingAverageBatchNorm3d(nn.BatchNorm3d):
    """Batch norm whose inference statistics are the plain mean over the last ``rolling_batches`` batches.

    DeepMedic's batch normalisation (``cnnLayerTypes.applyBn``): training normalises with the batch
    statistics over (B, X, Y, Z); inference uses the average of the means and of the unbiased
    variances of the last ``rolling_batches`` training batches (60 in DeepMedic), not PyTorch's
    exponential moving average. As in the original, the window starts filled with means 0 and
    variances 1, so early checkpoints are dominated by them. ``running_mean`` and ``running_var``
    always hold the current inference statistics; ``mean_history``/``var_history``, (n, C)
    buffers, hold the window. γ starts at 1, β at 0. Shape-preserving on (B, C, X, Y, Z).

    Args:
        num_features: channels C.
        rolling_batches: window length n (DeepMedic's ``rollAverageForBNOverThatManyBatches``).
        eps: added to the variance. The original added float32's smallest normal number
            (≈ 1.2e-38); the default 1e-5 only guards constant channels.
    """

    def __init__(self, num_features: int, rolling_batches: int = 60, eps: float = 1e-5) -> None:
        if rolling_batches < 1:
            raise ValueError(f"rolling_batches must be >= 1, got {rolling_batches}")
        super().__init__(num_features, eps=eps, momentum=None)
        self.rolling_batches = rolling_batches
        self.register_buffer("mean_history", torch.zeros(rolling_batches, num_features))
        self.register_buffer("var_history", torch.ones(rolling_batches, num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        with torch.no_grad():
            stats_input = x if x.dtype == torch.float64 else x.float()
            var, mean = torch.var_mean(stats_input, dim=(0, 2, 3, 4), correction=1)
            slot = int(self.num_batches_tracked) % self.rolling_batches
            self.mean_history[slot] = mean
            self.var_history[slot] = var
            self.num_batches_tracked += 1
            self.running_mean.copy_(self.mean_history.mean(0))
            self.running_var.copy_(self.var_history.mean(0))
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rolling_batches={self.rolling_batches}"


class ChannelBias(nn.Module):
    """A learnt bias per channel, added to (B, C, X, Y, Z): the pre-activation of a layer without BN.

    DeepMedic's ``makeBiasParamsAndApplyToFms``: a pathway's first layer (on the raw image) has no
    BN; its input gets this bias (zero-initialised) instead, before the convolution.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.view(1, -1, 1, 1, 1)


class PreActivationConv(nn.Sequential):
    """One DeepMedic layer: [BN | input bias] → [PReLU | linear] → dropout → valid bias-free conv.

    The order of ``cnnLayerTypes.ConvLayer`` (He et al.'s "identity mappings" pre-activation). A
    pathway's first layer sees the raw image: ``preactivate=False`` replaces BN with a per-channel
    input bias and drops the activation. The convolution has no padding, so a kernel k maps
    (B, in, X, Y, Z) → (B, out, X − k + 1, Y − k + 1, Z − k + 1). ``bias=True`` adds a bias after
    the convolution: the classification layer's bias before the softmax (``SoftmaxLayer``).

    Args:
        in_channels, out_channels: channels before and after the convolution.
        kernel_size: cubic kernel edge (3 in the pathways and FC1, 1 in the later FC layers).
        preactivate: BN → PReLU before the convolution (True), or input bias only (False).
        dropout: element-wise drop probability on the convolution's input (0 disables it).
        bias: bias after the convolution.
        bn_rolling_batches, bn_eps: see :class:`RollingAverageBatchNorm3d`.
        prelu_init: initial PReLU slope.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = PATHWAY_KERNEL, *,
                 preactivate: bool = True, dropout: float = 0.0, bias: bool = False,
                 bn_rolling_batches: int = 60, bn_eps: float = 1e-5,
                 prelu_init: float = PRELU_INIT) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        super().__init__()
        if preactivate:
            self.norm = RollingAverageBatchNorm3d(in_channels, bn_rolling_batches, bn_eps)
            self.act = get_act("prelu", in_channels, prelu_init)
        else:
            self.norm = ChannelBias(in_channels)
        if dropout > 0:
            self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, bias=bias)


def _centre_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The central ``size`` voxels of (B, C, X, Y, Z); an even excess leaves one more voxel behind."""
    for axis, n in enumerate(size, start=2):
        start = (x.shape[axis] - 1) // 2 - (n - 1) // 2  # DeepMedic's getMiddlePartOfFms
        x = x.narrow(axis, start, n)
    return x


def add_residual(deeper: torch.Tensor, earlier: torch.Tensor) -> torch.Tensor:
    """``deeper`` plus the centre crop of ``earlier``, zero-padding the channels of the narrower one.

    DeepMedic's residual connection (``makeResidualConnectionBetweenLayersAndReturnOutput``):
    ``earlier`` is centre-cropped to ``deeper``'s spatial size and added into ``deeper``'s first
    channels; if ``earlier`` has more channels, only its first ones are added. The result has
    ``deeper``'s shape (B, C_deeper, X, Y, Z).
    """
    earlier = _centre_crop(earlier, deeper.shape[2:])
    c_deep, c_early = deeper.shape[1], earlier.shape[1]
    if c_deep <= c_early:
        return deeper + earlier[:, :c_deep]
    return torch.cat([deeper[:, :c_early] + earlier, deeper[:, c_early:]], 1)


def mirror_pad(x: torch.Tensor, total: int) -> torch.Tensor:
    """Pad every spatial axis of (B, C, X, Y, Z) by ``total`` voxels, mirroring with the edge voxel included.

    DeepMedic's ``padImageWithMirroring`` before FC1 (numpy's ``"symmetric"`` mode):
    ``total // 2`` voxels in front, the rest behind; for ``total = 2`` this repeats each edge voxel.
    """
    front, back = total // 2, total - total // 2
    for axis in (2, 3, 4):
        parts = [x]
        if front:
            parts.insert(0, x.narrow(axis, 0, front).flip(axis))
        if back:
            parts.append(x.narrow(axis, x.shape[axis] - back, back).flip(axis))
        x = torch.cat(parts, axis)
    return x


class Pathway(nn.Module):
    """A stack of :class:`PreActivationConv` layers with DeepMedic's residual connections.

    At each (1-based) layer i in ``residual_layers`` the input of layer i − 1 is added to the
    output of layer i (:func:`add_residual`): e.g. [4, 6, 8] adds the input of layer 3 to the output
    of layer 4, that of 5 to 6 and that of 7 to 8.

    Args:
        in_channels: input channels.
        feature_maps: output channels per layer.
        kernel_sizes: kernel edge per layer.
        residual_layers: 1-based layers whose output gets a residual, each in 2..len(feature_maps).
        dropout: drop probability on each layer's input.
        first_preactivated: whether layer 1 has BN → PReLU (FC pathway) or only an input bias
            (pathways on the raw image).
        **layer_kwargs: ``bn_rolling_batches``, ``bn_eps``, ``prelu_init``.
    """

    def __init__(self, in_channels: int, feature_maps: Sequence[int], kernel_sizes: Sequence[int],
                 residual_layers: Sequence[int], dropout: Sequence[float], first_preactivated: bool,
                 **layer_kwargs: Any) -> None:
        super().__init__()
        n = len(feature_maps)
        bad = [i for i in residual_layers if not 2 <= i <= n]
        if bad:
            raise ValueError(f"residual layers are 1-based layer numbers in 2..{n} (the input of the "
                             f"previous layer is added), got {list(residual_layers)}")
        channels = [in_channels, *feature_maps]
        self.layers = nn.ModuleList(
            PreActivationConv(channels[i], channels[i + 1], kernel_sizes[i], dropout=dropout[i],
                              preactivate=first_preactivated or i > 0, **layer_kwargs)
            for i in range(n))
        self.residual_layers = tuple(int(i) for i in residual_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = []
        for number, layer in enumerate(self.layers, start=1):
            inputs.append(x)
            x = layer(x)
            if number in self.residual_layers:
                x = add_residual(x, inputs[number - 2])  # the input of layer number − 1
        return x


# ------------------------------------------------------------------------------------------
# the network
# ------------------------------------------------------------------------------------------

class ReceptiveField(NamedTuple):
    """Receptive field of a :class:`DeepMedic` per axis (v0.6 BraTS config: 17, 17 ≈ 51, 19, ≈ 53)."""

    #: Normal pathway, in voxels (17 = 1 + 8 · 2).
    normal: int
    #: Subsampled pathway, in its own low-resolution voxels (17).
    subsampled: int
    #: ``subsampled · subsample_factor``: the normal-resolution voxels the subsampled pathway covers (51).
    subsampled_extent: int
    #: ``normal`` widened by FC1's kernel (19): the normal-resolution input one logit depends on.
    normal_with_fc: int
    #: ``subsampled_extent`` widened by FC1's kernel (53).
    subsampled_extent_with_fc: int


@register_network("deepmedic")
class DeepMedic(nn.Module):
    """DeepMedic with residual connections, the BraTS configuration of DeepMedic v0.6 (EMMA's member).

    K. Kamnitsas et al., "Efficient multi-scale 3D CNN with fully connected CRF for accurate brain
    lesion segmentation", Medical Image Analysis 36, 2017 (https://arxiv.org/abs/1603.05959), in
    the residual version of the group's BraTS 2016 entry (BrainLes 2016), used as a member of EMMA:
    K. Kamnitsas et al., "Ensembles of Multiple Models and
    Architectures for Robust Brain Tumour Segmentation", BrainLes 2017, LNCS 10670,
    https://arxiv.org/abs/1711.01468. Rebuilt from github.com/deepmedic/deepmedic v0.6
    @8ae281d (``modelConfig.cfg``, ``pathways.py``, ``cnnLayerTypes.py``, ``cnn3d.py``).

    * Normal pathway on the normal-resolution segment and subsampled pathway (separate weights) on
      the segment sampled every ``subsample_factor``-th voxel: eight valid 3×3×3 convolutions each
      with 30, 30, 40, 40, 40, 40, 50, 50 feature maps, pre-activation BN → PReLU → conv (the first
      layer: input bias → conv, no BN or activation on the raw image), convolutions without bias.
      Residuals at layers 4, 6, 8: the input of the previous layer, centre-cropped, is added into
      the first channels of the output (:func:`add_residual`).
    * The subsampled output is repeated ``subsample_factor`` times per axis (nearest neighbour) and
      its trailing voxels are clipped to the normal pathway's output size (``pathways.py``
      ``cropRczOf5DimArrayToMatchOther`` keeps the *first* voxels).
    * "FC" layers as convolutions on the 100-channel concatenation (normal first): FC1 a 3×3×3
      convolution on the mirror-padded input (:func:`mirror_pad`, size-preserving), FC2 1×1×1, both
      150 feature maps and BN → PReLU → dropout (0.0, 0.5) → conv; FC2's output gets FC1's input
      (the concatenation) as residual. Classification layer: BN → PReLU → dropout 0.5 → 1×1×1 conv
      with a bias → ``num_classes`` logits (no softmax).
    * BN at inference uses the mean statistics of the last 60 training batches
      (:class:`RollingAverageBatchNorm3d`); PReLU slopes start at 0.01; convolution weights are He
      normal N(0, 2 / fan_in), biases 0.

    Deviations: dropout is PyTorch's inverted dropout (the original scaled by 1 − p at inference
    instead of 1 / (1 − p) in training, the same function up to a rescaling of the next weights);
    the BN epsilon is 1e-5 instead of ≈ 1.2e-38.

    Parameters with the defaults and 4 input channels: 623,708 in the two pathways + 429,304 in the
    FC and classification layers = 1,053,012 for 4 classes, 1,053,163 for DeepMedic's 5 (v0.6
    ``modelConfig.cfg``: ≈ 1.05 M); the wide variant (``width_multiplier=2``) has 4,192,212 for
    4 classes.

    Input constraint: the output is ``normal − 16`` voxels per axis, so the normal segment needs at
    least 17 voxels, and the subsampled segment must be ``ceil(output / 3) + 16`` voxels per axis.
    Example: (2, 4, 25, 25, 25) normal + (2, 4, 19, 19, 19) subsampled → (2, 4, 9, 9, 9) logits
    (training); inference tiles use 45³ + 26³ → 29³. :func:`extract_segments` cuts both segments.

    Args:
        in_channels: input modalities (4: T1, T1c, T2, FLAIR), the same for both pathways.
        num_classes: logit channels (4 canonical classes; DeepMedic's BraTS example used 5).
        feature_maps_normal: feature maps per normal-pathway layer (``numberFMsPerLayerNormal``).
        feature_maps_subsampled: per subsampled-pathway layer (``numberFMsPerLayerSubsampled``);
            ``None`` mirrors the normal pathway. Both pathways need the same number of layers
            (the same receptive field, as DeepMedic requires).
        residual_layers_normal: 1-based layers with a residual (``layersWithResidualConnNormal``).
        residual_layers_subsampled: ``layersWithResidualConnSubsampled``; ``None`` mirrors normal.
        feature_maps_fc: feature maps per hidden FC layer (``numberFMsPerLayerFC``), at least one.
        kernel_size_fc1: kernel edge of FC1, odd (``kernelDimFor1stFcLayer``).
        residual_layers_fc: 1-based hidden FC layers with a residual (``layersWithResidualConnFC``).
        dropout_fc: drop probability on the input of each FC layer and of the classification layer
            (``dropoutRatesFc``), ``len(feature_maps_fc) + 1`` entries.
        subsample_factor: subsampling of the second pathway's input per axis (``subsampleFactor``).
        width_multiplier: multiplies every feature-map count above (rounded); 2 is the wide member.
        bn_rolling_batches: training batches averaged for the BN inference statistics
            (``rollAverageForBNOverThatManyBatches``).
        bn_eps: BN epsilon.
        prelu_init: initial PReLU slope.

    Raises:
        ValueError: inconsistent arguments (layer counts, residual layer numbers, dropout length).
        BratsInputError (from ``forward``): inputs of the wrong rank, channels or sizes.
    """

    def __init__(self, in_channels: int = 4, num_classes: int = 4, *,
                 feature_maps_normal: Sequence[int] = (30, 30, 40, 40, 40, 40, 50, 50),
                 feature_maps_subsampled: Sequence[int] | None = None,
                 residual_layers_normal: Sequence[int] = (4, 6, 8),
                 residual_layers_subsampled: Sequence[int] | None = None,
                 feature_maps_fc: Sequence[int] = (150, 150),
                 kernel_size_fc1: int = 3,
                 residual_layers_fc: Sequence[int] = (2,),
                 dropout_fc: Sequence[float] = (0.0, 0.5, 0.5),
                 subsample_factor: int = 3,
                 width_multiplier: float = 1,
                 bn_rolling_batches: int = 60,
                 bn_eps: float = 1e-5,
                 prelu_init: float = PRELU_INIT) -> None:
        super().__init__()
        if min(in_channels, num_classes, subsample_factor) < 1:
            raise ValueError(f"in_channels, num_classes and subsample_factor must be >= 1, got "
                             f"{in_channels}, {num_classes}, {subsample_factor}")
        if width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
        if kernel_size_fc1 < 1 or kernel_size_fc1 % 2 == 0:
            raise ValueError(f"kernel_size_fc1 must be odd (the mirror padding keeps the size), got "
                             f"{kernel_size_fc1}")

        def widen(fms: Sequence[int]) -> list[int]:
            return [max(1, round(int(f) * width_multiplier)) for f in fms]

        fms_normal = widen(feature_maps_normal)
        fms_subsampled = widen(feature_maps_normal if feature_maps_subsampled is None
                               else feature_maps_subsampled)
        fms_fc = widen(feature_maps_fc)
        if not fms_normal or len(fms_subsampled) != len(fms_normal):
            raise ValueError(f"both pathways need the same, non-zero number of layers (the same "
                             f"receptive field), got {len(fms_normal)} normal and {len(fms_subsampled)} "
                             f"subsampled")
        if not fms_fc:
            raise ValueError("feature_maps_fc needs at least one hidden FC layer")
        if len(dropout_fc) != len(fms_fc) + 1:
            raise ValueError(f"dropout_fc needs {len(fms_fc) + 1} rates (the FC layers and the "
                             f"classification layer), got {list(dropout_fc)}")
        if residual_layers_subsampled is None:
            residual_layers_subsampled = residual_layers_normal

        self.in_channels, self.num_classes = in_channels, num_classes
        self.subsample_factor = subsample_factor
        self.kernel_size_fc1 = kernel_size_fc1
        layer_kw: dict[str, Any] = dict(bn_rolling_batches=bn_rolling_batches, bn_eps=bn_eps,
                                        prelu_init=prelu_init)
        n = len(fms_normal)
        no_dropout = [0.0] * n
        self.normal_pathway = Pathway(in_channels, fms_normal, [PATHWAY_KERNEL] * n, residual_layers_normal,
                                      no_dropout, first_preactivated=False, **layer_kw)
        self.subsampled_pathway = Pathway(in_channels, fms_subsampled, [PATHWAY_KERNEL] * n,
                                          residual_layers_subsampled, no_dropout,
                                          first_preactivated=False, **layer_kw)
        concat = fms_normal[-1] + fms_subsampled[-1]
        fc_kernels = [kernel_size_fc1] + [1] * (len(fms_fc) - 1)
        self.fc = Pathway(concat, fms_fc, fc_kernels, residual_layers_fc, list(dropout_fc[:-1]),
                          first_preactivated=True, **layer_kw)
        self.classifier = PreActivationConv(fms_fc[-1], num_classes, 1, dropout=dropout_fc[-1], bias=True,
                                            **layer_kw)
        init_he_normal_(self)

    # ---- geometry ---------------------------------------------------------------------------

    @property
    def receptive_field(self) -> ReceptiveField:
        """Receptive field per axis of both pathways, alone and with FC1 (see :class:`ReceptiveField`)."""
        normal = 1 + len(self.normal_pathway.layers) * (PATHWAY_KERNEL - 1)
        subsampled = 1 + len(self.subsampled_pathway.layers) * (PATHWAY_KERNEL - 1)
        extent = subsampled * self.subsample_factor
        fc = self.kernel_size_fc1 - 1
        return ReceptiveField(normal, subsampled, extent, normal + fc, extent + fc)

    def output_size(self, input_size: Size3) -> tuple[int, int, int]:
        """Logit size per axis for a normal-resolution segment of ``input_size`` (25 → 9, 45 → 29).

        Raises:
            ValueError: a size smaller than the receptive field (17).
        """
        rf = self.receptive_field.normal
        size = _triple(input_size)
        if min(size) < rf:
            raise ValueError(f"DeepMedic needs a normal segment of at least {rf} voxels per axis "
                             f"(its receptive field), got {size}")
        return tuple(s - rf + 1 for s in size)  # type: ignore[return-value]

    def input_size(self, output_size: Size3) -> tuple[int, int, int]:
        """Normal-resolution segment size per axis that gives ``output_size`` logits (9 → 25, 29 → 45)."""
        return tuple(o + self.receptive_field.normal - 1 for o in _check_positive(output_size))  # type: ignore

    def subsampled_input_size(self, output_size: Size3) -> tuple[int, int, int]:
        """Subsampled segment size per axis for ``output_size`` logits: ``ceil(output / factor) + 16``.

        9 → 19 and 29 → 26 with the defaults (DeepMedic's
        ``calcInputRczDimsToProduceOutputFmsOfCompatibleDims``).
        """
        rf, f = self.receptive_field.subsampled, self.subsample_factor
        return tuple(math.ceil(o / f) + rf - 1 for o in _check_positive(output_size))  # type: ignore

    @property
    def context_margin(self) -> int:
        """Voxels per side a single-tensor *context patch* extends beyond its logits (24).

        A context patch of ``output + 2 × 24`` voxels per axis (57³ for 9³ logits, 77³ for 29³)
        holds both segments: the normal segment is its centre, the subsampled one every
        ``subsample_factor``-th voxel from its first voxel (:meth:`split_context`). This is how
        the shared trainer and tiled inference, which pass one image tensor, feed DeepMedic.
        """
        half_normal = (self.receptive_field.normal - 1) // 2
        half_subsampled = (self.receptive_field.subsampled - 1) // 2
        return max(half_normal, self.subsample_factor * half_subsampled)

    def split_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (normal, subsampled) segment pair inside a (B, C, o + 48, …) context patch.

        The same segments as :func:`extract_segments` for the block of ``o`` logits at the
        patch's centre (a 57³ patch → 25³ + 19³, 77³ → 45³ + 26³).

        Raises:
            BratsInputError: not 5-D, or a patch no larger than twice :attr:`context_margin`.
        """
        margin = self.context_margin
        if context.ndim != 5 or min(context.shape[2:]) <= 2 * margin:
            raise BratsInputError(f"DeepMedic expects a (B, C, X, Y, Z) context patch larger than "
                                  f"{2 * margin} voxels per axis, got {tuple(context.shape)}")
        out = [n - 2 * margin for n in context.shape[2:]]
        offset = margin - (self.receptive_field.normal - 1) // 2
        normal = context[:, :, offset:context.shape[2] - offset, offset:context.shape[3] - offset,
                         offset:context.shape[4] - offset]
        f = self.subsample_factor
        start = margin - f * ((self.receptive_field.subsampled - 1) // 2)
        counts = self.subsampled_input_size(tuple(out))
        subsampled = context[:, :, start::f, start::f, start::f][:, :, :counts[0], :counts[1], :counts[2]]
        return normal, subsampled

    # ---- forward ----------------------------------------------------------------------------

    def _check_inputs(self, normal: torch.Tensor, subsampled: torch.Tensor) -> tuple[int, int, int]:
        for name, x in (("normal", normal), ("subsampled", subsampled)):
            if x.ndim != 5 or x.shape[1] != self.in_channels:
                raise BratsInputError(f"DeepMedic expects a (B, {self.in_channels}, X, Y, Z) {name} "
                                      f"segment, got {tuple(x.shape)}")
        if normal.shape[0] != subsampled.shape[0]:
            raise BratsInputError(f"DeepMedic: the normal and subsampled segments have different batch "
                                  f"sizes, {normal.shape[0]} and {subsampled.shape[0]}")
        size = tuple(int(s) for s in normal.shape[2:])
        try:
            out = self.output_size(size)
        except ValueError as exc:
            raise BratsInputError(str(exc)) from None
        expected = self.subsampled_input_size(out)
        if tuple(subsampled.shape[2:]) != expected:
            raise BratsInputError(
                f"DeepMedic: a {size} normal segment gives {out} logits and needs a {expected} "
                f"subsampled segment (ceil(output / {self.subsample_factor}) + "
                f"{self.receptive_field.subsampled - 1}), got {tuple(subsampled.shape[2:])}; cut both "
                f"with ensemble.deepmedic.extract_segments")
        return out

    def forward(self, normal: torch.Tensor, subsampled: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for the centre of a segment pair, or of one context patch.

        Args:
            normal: (B, in_channels, X, Y, Z) normal-resolution segment, X, Y, Z >= 17; or, without
                ``subsampled``, a context patch of ``output + 48`` voxels per axis
                (:meth:`split_context`).
            subsampled: (B, in_channels, X', Y', Z') segment sampled every ``subsample_factor``-th
                voxel, ``X' = ceil((X − 16) / subsample_factor) + 16`` (:func:`extract_segments`).

        Returns:
            (B, num_classes, X − 16, Y − 16, Z − 16) logits, no softmax (context patch:
            ``X − 48`` …).

        Raises:
            BratsInputError: wrong rank, channel count, batch size or segment sizes.
        """
        if subsampled is None:
            normal, subsampled = self.split_context(normal)
        out = self._check_inputs(normal, subsampled)
        low = self.subsampled_pathway(subsampled)
        low = F.interpolate(low, scale_factor=self.subsample_factor, mode="nearest")
        low = low[:, :, :out[0], :out[1], :out[2]]  # clip the trailing voxels, as DeepMedic does
        x = torch.cat([self.normal_pathway(normal), low], 1)
        x = self.fc(mirror_pad(x, self.kernel_size_fc1 - 1))
        return self.classifier(x)


@register_network("deepmedic_wide")
def deepmedic_wide(in_channels: int = 4, num_classes: int = 4, width_multiplier: float = 2,
                   **kwargs: Any) -> DeepMedic:
    """EMMA's wider DeepMedic member: :class:`DeepMedic` with every feature-map count doubled.

    Pathways 60, 60, 80, 80, 80, 80, 100, 100 and FC 300, 300 feature maps (4,192,212 parameters
    for 4 input channels and 4 classes). The width is UNCONFIRMED (a recollection of the EMMA
    paper, arXiv:1711.01468, whose body could not be checked, is roughly double; DeepMedic's own
    ``modelConfig_wide1.cfg`` dates from 2019 and is not evidence). ``kwargs`` are further
    :class:`DeepMedic` arguments.
    """
    return DeepMedic(in_channels, num_classes, width_multiplier=width_multiplier, **kwargs)


# ------------------------------------------------------------------------------------------
# segments
# ------------------------------------------------------------------------------------------

def _check_positive(size: Size3) -> tuple[int, int, int]:
    out = _triple(size)
    if min(out) < 1:
        raise ValueError(f"sizes must be >= 1 voxel per axis, got {out}")
    return out


def _take(volume: ArrayT, starts: Sequence[int], sizes: Sequence[int], step: int) -> ArrayT:
    """``volume[:, s::step][:n]`` per axis for start s and count n, zeros where outside the volume."""
    index, inside = [], []
    for axis, (start, n) in enumerate(zip(starts, sizes)):
        positions = start + step * np.arange(n)
        extent = volume.shape[axis + 1]
        inside.append((positions >= 0) & (positions < extent))
        index.append(np.clip(positions, 0, extent - 1))
    grid = np.ix_(*index)
    mask = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    if isinstance(volume, torch.Tensor):
        cut = volume[(slice(None), *(torch.as_tensor(g, device=volume.device) for g in grid))]
        return torch.where(torch.as_tensor(mask, device=volume.device), cut, torch.zeros_like(cut))
    cut = volume[(slice(None), *grid)]
    return np.where(mask, cut, np.zeros_like(cut))


def extract_segments(volume: ArrayT, centre: Sequence[int], out_size: Size3, *,
                     receptive_field: int = 17, subsample_factor: int = 3) -> tuple[ArrayT, ArrayT]:
    """Cut the normal and the subsampled DeepMedic input segments for one block of output voxels.

    The block is ``out_size`` voxels per axis around ``centre``: it starts at
    ``first = centre − (out_size − 1) // 2`` (an even size puts the centre one voxel before the
    middle, as DeepMedic does), and logit i of :class:`DeepMedic` belongs to voxel ``first + i``.

    * The normal segment is ``out_size + receptive_field − 1`` voxels starting at
      ``first − (receptive_field − 1) // 2`` (25³ for 9³ logits, 45³ for 29³).
    * The subsampled segment takes every ``subsample_factor``-th voxel (strided sampling, no
      smoothing or averaging): ``ceil(out_size / f) + receptive_field − 1`` samples at
      ``first + f · (k − (receptive_field − 1) // 2)`` (19³ at ``first − 24 + 3k`` for 9³ logits,
      26³ for 29³). So low-resolution logit j is centred on voxel ``first + f · j``, the first of
      the f voxels it is repeated onto: the grid of DeepMedic v0.6's
      ``getImagePartFromSubsampledImageForTraining`` (for f = 3). It contains ``centre`` only when
      ``(out_size − 1) // 2`` is a multiple of f (not for 9 or 29: the 9³ block's grid passes
      through ``centre − 1``).

    Voxels outside the volume are zero. DeepMedic itself reflect-padded whole images by half the
    receptive field and filled the subsampled segment with the image's corner intensity; with
    z-scored images whose background is 0, pass the volume as is, or pad it first.

    Args:
        volume: (C, X, Y, Z) image (numpy array or tensor), e.g. float32 z-scored modalities.
        centre: (x, y, z) voxel index of the block's centre; it may lie near or outside the border.
        out_size: logits per axis (9 for training, 29 for inference tiles; int or 3 ints).
        receptive_field: receptive field of both pathways in their own voxels
            (``DeepMedic.receptive_field.normal``, 17).
        subsample_factor: ``DeepMedic.subsample_factor`` (3).

    Returns:
        ``(normal, subsampled)``: (C, out + rf − 1, …) and (C, ceil(out / f) + rf − 1, …), same
        type, dtype and device as ``volume``.

    Raises:
        ValueError: ``volume`` not 4-D or empty, ``centre`` not 3 ints, sizes < 1, or an even
            receptive field.

    Example:
        >>> normal, low = extract_segments(image, (120, 120, 77), 9)  # (4, 25, 25, 25), (4, 19, 19, 19)
        >>> logits = net(torch.as_tensor(normal)[None], torch.as_tensor(low)[None])  # (1, K, 9, 9, 9)
    """
    if volume.ndim != 4 or min(volume.shape[1:]) < 1:
        raise ValueError(f"volume must be (C, X, Y, Z) with non-empty axes, got {tuple(volume.shape)}")
    if len(centre) != 3:
        raise ValueError(f"centre must be an (x, y, z) voxel index, got {centre!r}")
    if receptive_field < 1 or receptive_field % 2 == 0 or subsample_factor < 1:
        raise ValueError(f"receptive_field must be odd and subsample_factor >= 1, got {receptive_field} "
                         f"and {subsample_factor}")
    out = _check_positive(out_size)
    half = (receptive_field - 1) // 2
    first = [int(c) - (o - 1) // 2 for c, o in zip(centre, out)]
    normal = _take(volume, [f - half for f in first], [o + 2 * half for o in out], 1)
    f = subsample_factor
    subsampled = _take(volume, [s - f * half for s in first],
                       [math.ceil(o / f) + 2 * half for o in out], f)
    return normal, subsampled
