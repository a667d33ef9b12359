"""The 3-D U-Net of Isensee et al., 3rd place at BraTS 2017 (DKFZ)."""

from __future__ import annotations

import math

import torch
from torch import nn

from brats.errors import BratsInputError
from brats.nets.blocks import (
    ConvNormAct,
    LocalizationModule,
    NormAct,
    ResidualContextModule,
    UpsamplingModule,
    conv3d,
    get_act,
    init_he_normal_,
)
from brats.nets.registry import register_network


@register_network("isensee_unet")
class IsenseeUNet(nn.Module):
    """Residual 3-D U-Net with summed multi-level segmentation outputs, after Isensee et al. 2017.

    F. Isensee, P. Kickingereder, W. Wick, M. Bendszus, K. H. Maier-Hein, "Brain Tumor Segmentation
    and Radiomics Survival Prediction: Contribution to the BRATS 2017 Challenge", BrainLes 2017,
    LNCS 10670, https://arxiv.org/abs/1802.10508. Rebuilt layer by layer from ``build_net`` in
    ``network_architecture.py`` of github.com/MIC-DKFZ/BraTS2017 @dfc244c.

    Context pathway (f = ``base_filters``; 16, 32, 64, 128, 256 channels at levels 1–5):

    * level 1: conv ``in → f`` (= r), then ``r + conv(lrelu(dropout(conv(lrelu(r)))))``, no norm;
      skip1 = lrelu(sum), the main path goes on as norm → lrelu;
    * levels 2–5: stride-2 conv doubling the channels (= r), then the residual context module
      ``r + [norm → lrelu → conv] → dropout → [norm → lrelu → conv]``; levels 2–4 end with
      norm → lrelu, which is also skip2–skip4; level 5 does not (its upsampling module starts so).

    Localization pathway: upsampling modules (norm → lrelu → ×2 nearest → 3×3×3 conv halving the
    channels → norm → lrelu); below level 4 a 1×1×1 conv → norm → lrelu; at levels 4–1
    ``cat(skip, up)`` → 3×3×3 conv → norm → lrelu → 1×1×1 conv. The 3×3×3 outputs of levels 3
    and 2 (``ds2``, ``ds3`` in the original) feed 1×1×1 segmentation heads; the level-3 head is
    upscaled ×2, added to the level-2 head, upscaled ×2 and added to the main logits. There is one
    output and no auxiliary loss.

    Details kept from the original: ``InstanceNorm3d(affine=True, eps=1e-4)`` (Lasagne batch norm
    over the spatial axes with instance statistics), leaky ReLU 0.01, element-wise dropout 0.3 in
    every context module, biases on every conv, He-normal weights (gain √2, fan_in) and zero biases,
    except the final main-logit 1×1×1 conv, which the original left at Lasagne's default
    Glorot-uniform (``nn.init.xavier_uniform_``). Skips are concatenated before the upsampled path.
    The original also kept dropout on at test time (its prediction function is compiled
    non-deterministic, ``utils_validation.run_validation_mirroring``); to reproduce that, put only
    the ``nn.Dropout`` modules back in train mode after ``.eval()``.

    Parameters with the defaults: 9,478,732 conv weights and biases plus 5,056 norm affine
    parameters = 9,483,788 (the original's layers give ≈ 9.48 M plus ≈ 5 k).

    Input constraint: every spatial size must be divisible by 16 (four stride-2 levels); the output
    has the input's spatial size. Example: (2, 4, 128, 128, 128) → (2, 4, 128, 128, 128) logits;
    for whole-brain inference pad each axis up to a multiple of 16 first.

    Args:
        in_channels: input modalities (4: T1, T1c, T2, FLAIR).
        num_classes: output channels; the logits are not softmaxed (4 canonical classes, or 3 for
            region training with a sigmoid loss).
        base_filters: channels at full resolution (16 in the paper).
        dropout: element-wise dropout probability inside the context modules (0.3).
        norm_eps: instance-norm epsilon (1e-4, Lasagne's default).
        negative_slope: leaky-ReLU slope (0.01, Lasagne's ``leaky_rectify``).

    Raises:
        ValueError (from ``forward``): input not 5-D, wrong channel count, or a spatial size not
            divisible by 16.
    """

    #: Every spatial input size must be a multiple of this.
    divisor = 16

    def __init__(self, in_channels: int = 4, num_classes: int = 4, base_filters: int = 16,
                 dropout: float = 0.3, norm_eps: float = 1e-4, negative_slope: float = 0.01) -> None:
        super().__init__()
        if min(in_channels, num_classes, base_filters) < 1:
            raise ValueError(f"in_channels, num_classes and base_filters must be >= 1, got "
                             f"{in_channels}, {num_classes}, {base_filters}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels, self.num_classes = in_channels, num_classes
        f = base_filters
        widths = [f, 2 * f, 4 * f, 8 * f, 16 * f]
        kw = dict(norm="instance", act="leakyrelu", norm_eps=norm_eps, negative_slope=negative_slope)

        # context pathway
        self.conv1 = conv3d(in_channels, f)
        self.context1 = ResidualContextModule(f, dropout, norm=None, act="leakyrelu",
                                              negative_slope=negative_slope)
        self.skip1_act = get_act("leakyrelu", f, negative_slope)
        self.norm_act1 = NormAct(f, **kw)  # type: ignore[arg-type]
        self.down = nn.ModuleList(conv3d(c_in, c_out, stride=2) for c_in, c_out in zip(widths, widths[1:]))
        self.context = nn.ModuleList(ResidualContextModule(c, dropout, **kw) for c in widths[1:])  # type: ignore[arg-type]
        self.norm_act = nn.ModuleList(NormAct(c, **kw) for c in widths[1:4])  # type: ignore[arg-type]

        # localization pathway
        self.up5 = UpsamplingModule(16 * f, 8 * f, **kw)  # type: ignore[arg-type]
        self.bottom = ConvNormAct(8 * f, 8 * f, kernel_size=1, **kw)  # type: ignore[arg-type]
        self.loc4 = LocalizationModule(16 * f, 8 * f, **kw)  # type: ignore[arg-type]
        self.up4 = UpsamplingModule(8 * f, 4 * f, **kw)  # type: ignore[arg-type]
        self.loc3 = LocalizationModule(8 * f, 4 * f, **kw)  # type: ignore[arg-type]
        self.up3 = UpsamplingModule(4 * f, 2 * f, **kw)  # type: ignore[arg-type]
        self.loc2 = LocalizationModule(4 * f, 2 * f, **kw)  # type: ignore[arg-type]
        self.up2 = UpsamplingModule(2 * f, f, **kw)  # type: ignore[arg-type]
        self.loc1 = LocalizationModule(2 * f, num_classes, **kw)  # type: ignore[arg-type]

        # multi-level segmentation heads on ds2 (level 3) and ds3 (level 2)
        self.seg_head3 = conv3d(8 * f, num_classes, 1)
        self.seg_head2 = conv3d(4 * f, num_classes, 1)
        self.upscale = nn.Upsample(scale_factor=2, mode="nearest")

        init_he_normal_(self)
        nn.init.xavier_uniform_(self.loc1.project.weight)  # Lasagne default W for the original l_pred

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"IsenseeUNet expects (B, {self.in_channels}, X, Y, Z) input, got {tuple(x.shape)}")
        spatial = tuple(int(s) for s in x.shape[2:])
        if any(s % self.divisor for s in spatial):
            padded = tuple(-(-s // self.divisor) * self.divisor for s in spatial)
            raise BratsInputError(
                f"IsenseeUNet needs every spatial size divisible by {self.divisor}, got {spatial}; "
                f"pad the input to e.g. {padded}")
        if math.prod(s // self.divisor for s in spatial) < 2:
            raise BratsInputError(
                f"IsenseeUNet input {spatial} is too small: instance norm at the 1/{self.divisor} "
                f"level needs at least 2 voxels (e.g. {2 * self.divisor} along one axis)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, X, Y, Z) image → (B, num_classes, X, Y, Z) logits (X, Y, Z multiples of 16)."""
        self._check_input(x)
        x = self.context1(self.conv1(x))
        skips = [self.skip1_act(x)]
        x = self.norm_act1(x)
        for level, (down, context) in enumerate(zip(self.down, self.context)):
            x = context(down(x))
            if level < 3:
                x = self.norm_act[level](x)
                skips.append(x)

        x = self.bottom(self.up5(x))
        x = self.up4(self.loc4(torch.cat([skips[3], x], 1)))
        ds2 = self.loc3.features(torch.cat([skips[2], x], 1))
        x = self.up3(self.loc3.project(ds2))
        ds3 = self.loc2.features(torch.cat([skips[1], x], 1))
        x = self.up2(self.loc2.project(ds3))
        logits = self.loc1(torch.cat([skips[0], x], 1))

        side = self.upscale(self.seg_head3(ds2)) + self.seg_head2(ds3)
        return logits + self.upscale(side)
