"""Building blocks shared by the 3-D U-Nets and FCNs: conv-norm-act, residual context, up/localization.

Every block works on (B, C, X, Y, Z) tensors and picks its normalization and activation by name:

* ``norm``: ``"instance"`` (``InstanceNorm3d``, affine, instance statistics at train and test
  time), ``"batch"`` (``BatchNorm3d``) or ``None`` (no normalization);
* ``act``: ``"leakyrelu"``, ``"relu"``, ``"prelu"`` (one learnt slope per channel) or ``None``.

``norm_eps`` is the normalization epsilon; ``negative_slope`` is the leaky-ReLU slope, or the
initial slope of PReLU. Convolutions use "same" padding (``dilation · (k // 2)`` per axis), so a
stride-1 block keeps the spatial size and a stride-2 block maps ``n`` to ``ceil(n / 2)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

Size3 = int | Sequence[int]

NORMS: tuple[str, ...] = ("instance", "batch")
ACTIVATIONS: tuple[str, ...] = ("leakyrelu", "relu", "prelu")


def _triple(value: Size3) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    out = tuple(int(v) for v in value)
    if len(out) != 3:
        raise ValueError(f"expected an int or 3 ints, got {value!r}")
    return out  # type: ignore[return-value]


def get_norm(name: str | None, channels: int, eps: float = 1e-5) -> nn.Module:
    """Normalization layer by name for ``channels`` channels; ``None`` gives ``nn.Identity``.

    Raises:
        ValueError: unknown name (the message lists :data:`NORMS`).
    """
    if name is None:
        return nn.Identity()
    if name == "instance":
        return nn.InstanceNorm3d(channels, eps=eps, affine=True)
    if name == "batch":
        return nn.BatchNorm3d(channels, eps=eps)
    raise ValueError(f"unknown norm {name!r}; expected one of {', '.join(NORMS)} or None")


def get_act(name: str | None, channels: int = 1, negative_slope: float = 0.01) -> nn.Module:
    """Activation by name; ``channels`` sizes PReLU's per-channel slopes; ``None`` gives ``nn.Identity``.

    Raises:
        ValueError: unknown name (the message lists :data:`ACTIVATIONS`).
    """
    if name is None:
        return nn.Identity()
    if name == "leakyrelu":
        return nn.LeakyReLU(negative_slope)
    if name == "relu":
        return nn.ReLU()
    if name == "prelu":
        return nn.PReLU(channels, init=negative_slope)
    raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)} or None")


def conv3d(in_channels: int, out_channels: int, kernel_size: Size3 = 3, stride: Size3 = 1,
           dilation: Size3 = 1, bias: bool = True) -> nn.Conv3d:
    """``nn.Conv3d`` with "same" padding (odd kernels): stride 1 keeps the size, stride 2 halves it."""
    k, d = _triple(kernel_size), _triple(dilation)
    if any(ki % 2 == 0 for ki in k):
        raise ValueError(f"kernel size {k} must be odd on every axis for 'same' padding")
    padding = tuple(di * (ki // 2) for ki, di in zip(k, d))
    return nn.Conv3d(in_channels, out_channels, k, _triple(stride), padding, d, bias=bias)


class NormAct(nn.Sequential):
    """norm → activation on ``channels`` channels (shape-preserving)."""

    def __init__(self, channels: int, norm: str | None = "instance", act: str | None = "leakyrelu",
                 norm_eps: float = 1e-5, negative_slope: float = 0.01) -> None:
        super().__init__(OrderedDict(
            norm=get_norm(norm, channels, norm_eps), act=get_act(act, channels, negative_slope)))


class ConvNormAct(nn.Sequential):
    """conv → norm → activation (post-activation), e.g. the Isensee localization 3×3×3 conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size3 = 3, stride: Size3 = 1,
                 dilation: Size3 = 1, norm: str | None = "instance", act: str | None = "leakyrelu",
                 norm_eps: float = 1e-5, negative_slope: float = 0.01) -> None:
        super().__init__(OrderedDict(
            conv=conv3d(in_channels, out_channels, kernel_size, stride, dilation),
            norm=get_norm(norm, out_channels, norm_eps),
            act=get_act(act, out_channels, negative_slope)))


class NormActConv(nn.Sequential):
    """norm → activation → conv (pre-activation), the unit of residual context modules."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size3 = 3, stride: Size3 = 1,
                 dilation: Size3 = 1, norm: str | None = "instance", act: str | None = "leakyrelu",
                 norm_eps: float = 1e-5, negative_slope: float = 0.01) -> None:
        super().__init__(OrderedDict(
            norm=get_norm(norm, in_channels, norm_eps),
            act=get_act(act, in_channels, negative_slope),
            conv=conv3d(in_channels, out_channels, kernel_size, stride, dilation)))


class ResidualContextModule(nn.Module):
    """Pre-activation residual block: ``x + [norm → act → conv] → dropout → [norm → act → conv](x)``.

    Isensee et al.'s "context module" (arXiv:1802.10508). With ``norm=None`` it is their level-1
    block: ``x + conv(act(dropout(conv(act(x)))))``. Dropout is element-wise (``nn.Dropout``).

    Args:
        channels: input = output channels.
        dropout: drop probability between the two convolutions (0 disables it).
        kernel_size: kernel of both convolutions.
        norm, act, norm_eps, negative_slope: see the module docstring.
    """

    def __init__(self, channels: int, dropout: float = 0.3, kernel_size: Size3 = 3,
                 norm: str | None = "instance", act: str | None = "leakyrelu", norm_eps: float = 1e-5,
                 negative_slope: float = 0.01) -> None:
        super().__init__()
        kw = dict(kernel_size=kernel_size, norm=norm, act=act, norm_eps=norm_eps,
                  negative_slope=negative_slope)
        self.block1 = NormActConv(channels, channels, **kw)  # type: ignore[arg-type]
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.block2 = NormActConv(channels, channels, **kw)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block2(self.dropout(self.block1(x)))


class UpsamplingModule(nn.Sequential):
    """norm → act → ×``scale`` nearest-neighbour upscale → conv → norm → act.

    Isensee et al.'s upsampling module: the convolution after the upscale (3×3×3 there) changes the
    channel count, usually halving it. (B, in, X, Y, Z) → (B, out, 2X, 2Y, 2Z).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size3 = 3, scale: int = 2,
                 norm: str | None = "instance", act: str | None = "leakyrelu", norm_eps: float = 1e-5,
                 negative_slope: float = 0.01) -> None:
        super().__init__(OrderedDict(
            pre=NormAct(in_channels, norm, act, norm_eps, negative_slope),
            upscale=nn.Upsample(scale_factor=scale, mode="nearest"),
            conv=conv3d(in_channels, out_channels, kernel_size),
            post=NormAct(out_channels, norm, act, norm_eps, negative_slope)))


class LocalizationModule(nn.Module):
    """conv → norm → act (``features``), then a 1×1×1 conv projection to ``out_channels`` (``project``).

    Isensee et al.'s localization module after a skip concatenation; the projection has no norm or
    activation. ``features`` keeps ``mid_channels`` (default ``in_channels``) and is exposed so a
    network can tap it for a deep-supervision head: ``y = m.project(f)`` with ``f = m.features(x)``.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None,
                 kernel_size: Size3 = 3, norm: str | None = "instance", act: str | None = "leakyrelu",
                 norm_eps: float = 1e-5, negative_slope: float = 0.01) -> None:
        super().__init__()
        mid = in_channels if mid_channels is None else mid_channels
        self.features = ConvNormAct(in_channels, mid, kernel_size, norm=norm, act=act, norm_eps=norm_eps,
                                    negative_slope=negative_slope)
        self.project = conv3d(mid, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(x))


def init_he_normal_(module: nn.Module) -> nn.Module:
    """He-normal initialisation of every conv in ``module``, in place: weights ~ N(0, 2 / fan_in), biases 0.

    Matches Lasagne's ``HeNormal(gain='relu')`` (gain √2, fan_in = in_channels · kernel volume), the
    initialisation of Isensee et al. Returns ``module``.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module
