"""One network, one (C, X, Y, Z) volume → logits or class probabilities of the same spatial shape.

Three modes:

- ``"whole"``: the whole (cropped) volume in one forward pass, as Isensee et al. 2017 did. Each
  spatial axis is padded at its upper end so the network's divisibility constraint holds, with the
  corner voxel's value per channel, and the output is cropped back exactly.
- ``"sliding_window"``: :func:`monai.inferers.sliding_window_inference` with our defaults
  (Gaussian blending of half-overlapping 128³ windows).
- ``"tiles"``: for networks with valid convolutions, whose logits are ``margin`` voxels smaller
  than their input on each side (DeepMedic): the volume is zero-padded by ``margin`` (the z-scored
  background) and tiled without overlap by input windows of ``roi_size``, each giving
  ``roi_size − 2·margin`` logits (DeepMedic's inference: stride = output size).

All run under :func:`torch.inference_mode`, optionally under :func:`torch.autocast`, and return
float32 on the CPU. None changes the network's train/eval flags: call ``network.eval()`` first,
or use :func:`brats.inference.tta.predict_with_tta`, which does it (and can switch dropout on).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn
from tqdm.auto import tqdm

from brats.errors import BratsInputError
from brats.inference.combine import CLASS_LABELS, REGION_ORDER, regions_to_class_probabilities

logger = logging.getLogger(__name__)

MODES = ("whole", "sliding_window", "tiles")
BLENDS = ("gaussian", "constant")
PAD_MODES = ("isensee", "minimal")
ACTIVATIONS = ("softmax", "sigmoid_regions")
AMP_DTYPES = (torch.bfloat16, torch.float16)


def _choice(name: str, value: str, options: Sequence[str]) -> None:
    if value not in options:
        raise BratsInputError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, options))}")


def as_image_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A (C, X, Y, Z) image as a float32 tensor (no copy when it already is one).

    Raises:
        BratsInputError: ``image`` is not 4-D.
    """
    if image.ndim != 4:
        raise BratsInputError(f"expected a (C, X, Y, Z) image, got shape {tuple(image.shape)}")
    if isinstance(image, torch.Tensor):
        return image.to(torch.float32)
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))


def padded_shape(shape: Sequence[int], divisible_by: int = 16, pad_mode: str = "isensee") -> tuple[int, ...]:
    """Spatial shape after whole-volume padding.

    ``"isensee"`` (the 2017 code) gives ``n + d - n % d`` per axis: always 1 to ``d`` more voxels,
    ``d`` more when ``n`` is already a multiple (e.g. d = 16: 139 → 144, 144 → 160). ``"minimal"``
    rounds up to the next multiple (139 → 144, 144 → 144).
    """
    _choice("pad_mode", pad_mode, PAD_MODES)
    if divisible_by < 1:
        raise BratsInputError(f"divisible_by must be >= 1, got {divisible_by}")
    if pad_mode == "isensee":
        return tuple(n + divisible_by - n % divisible_by for n in shape)
    return tuple(-(-n // divisible_by) * divisible_by for n in shape)


def pad_with_corner(image: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Pad a (C, X, Y, Z) tensor at the upper end of each spatial axis to ``shape``, filling each
    channel with its value at voxel (0, 0, 0). Returns ``image`` itself when nothing is added."""
    if tuple(shape) == tuple(image.shape[1:]):
        return image
    out = image[:, :1, :1, :1].expand(image.shape[0], *shape).clone()
    out[:, : image.shape[1], : image.shape[2], : image.shape[3]] = image
    return out


def _forward(network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    out = network(batch)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the network returned {type(out).__name__}, expected one logits tensor; switch off "
                        "deep supervision (e.g. network.eval()) for inference")
    return out.float()


def _triple_ints(value: Sequence[int] | int, name: str, minimum: int) -> tuple[int, int, int]:
    out = (value,) * 3 if isinstance(value, int) else tuple(int(v) for v in value)
    if len(out) != 3 or min(out) < minimum:
        raise BratsInputError(f"{name} must be 3 sizes >= {minimum}, got {value}")
    return out  # type: ignore[return-value]


def predict_tiles(network: nn.Module, x: torch.Tensor, roi_size: Sequence[int] | int,
                  margin: Sequence[int] | int, batch_size: int = 1,
                  progress: bool = False) -> torch.Tensor:
    """Logits of a valid-convolution network over a (C, X, Y, Z) tensor, tiled without overlap.

    Each (C, *roi_size) input window gives (K, *(roi_size − 2·margin)) logits for its centre; the
    volume is zero-padded by ``margin`` per side and up to whole tiles, and ``batch_size`` windows
    go through the network at once.

    Returns:
        (K, X, Y, Z) logits on ``x``'s device.

    Raises:
        BratsInputError: a window no larger than twice the margin, or logits of another size.
    """
    roi = _triple_ints(roi_size, "roi_size", 1)
    pad = _triple_ints(margin, "margin", 0)
    step = tuple(r - 2 * m for r, m in zip(roi, pad))
    if min(step) < 1:
        raise BratsInputError(f"tiles: roi_size {roi} leaves no output voxels with margin {pad}")
    spatial = x.shape[1:]
    counts = [-(-n // s) for n, s in zip(spatial, step)]
    padded = x.new_zeros((x.shape[0], *(c * s + 2 * m for c, s, m in zip(counts, step, pad))))
    padded[:, pad[0]:pad[0] + spatial[0], pad[1]:pad[1] + spatial[1], pad[2]:pad[2] + spatial[2]] = x
    starts = [(i * step[0], j * step[1], k * step[2]) for i in range(counts[0])
              for j in range(counts[1]) for k in range(counts[2])]
    out: torch.Tensor | None = None
    for first in tqdm(range(0, len(starts), batch_size), desc="tiles", unit="batch", leave=False,
                      disable=not progress):
        chunk = starts[first:first + batch_size]
        batch = torch.stack([padded[:, a:a + roi[0], b:b + roi[1], c:c + roi[2]] for a, b, c in chunk])
        logits = _forward(network, batch)
        if tuple(logits.shape[2:]) != step:
            raise BratsInputError(f"tiles: a {roi} window gave {tuple(logits.shape[2:])} logits, "
                                  f"expected {step} (roi_size − 2 × margin {pad})")
        if out is None:
            out = logits.new_empty((logits.shape[1], *(c * s for c, s in zip(counts, step))))
        for (a, b, c), tile in zip(chunk, logits):
            out[:, a:a + step[0], b:b + step[1], c:c + step[2]] = tile
    assert out is not None
    return out[:, :spatial[0], :spatial[1], :spatial[2]]


def predict_logits(
    network: nn.Module,
    image: np.ndarray | torch.Tensor,
    *,
    mode: str = "whole",
    roi_size: Sequence[int] | int = (128, 128, 128),
    overlap: float = 0.5,
    blend: str = "gaussian",
    sigma_scale: float = 0.125,
    sw_batch_size: int = 1,
    divisible_by: int = 16,
    pad_mode: str = "isensee",
    margin: Sequence[int] | int = 0,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Logits of ``network`` on one volume, at the volume's own spatial shape.

    The network maps (B, C, X, Y, Z) float32 to (B, K, X, Y, Z) logits. It is moved to ``device``
    (in place, as :meth:`torch.nn.Module.to` does) and its train/eval flags are left as they are.

    Args:
        network: the model; must keep the spatial shape of its input (``"tiles"``: lose
            ``margin`` voxels per side).
        image: (C, X, Y, Z) array or tensor (any real dtype; used as float32).
        mode: ``"whole"`` (one pass over the padded volume), ``"sliding_window"`` or ``"tiles"``.
        roi_size: window size (sliding-window and tiles modes); an int means a cube. Sliding
            windows larger than the volume are zero-padded by MONAI and cropped back.
        overlap: fraction of overlap between windows along each axis, in [0, 1).
        blend: ``"gaussian"`` or ``"constant"`` weighting of overlapping windows.
        sigma_scale: Gaussian sigma as a fraction of the window size.
        sw_batch_size: windows per forward pass (sliding-window and tiles modes).
        divisible_by: whole mode: per-axis divisibility the network needs (16 for four poolings).
        pad_mode: whole mode: ``"isensee"`` (``n + d - n % d``, always 1 to d voxels, as in the
            2017 code) or ``"minimal"`` (to the next multiple of d, 0 if already one).
        margin: tiles mode: voxels per side (int or 3) the network's output is smaller than its
            input (DeepMedic's context patch: 24).
        device: where the network runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, …).
        amp_dtype: ``None`` for float32, or ``torch.bfloat16`` / ``torch.float16`` to run under
            :func:`torch.autocast` (use bfloat16 on the CPU). Logits are returned as float32.
        progress: sliding-window mode: show a tqdm bar over windows.

    Returns:
        (K, X, Y, Z) float32 tensor on the CPU.

    Raises:
        BratsInputError: ``image`` is not (C, X, Y, Z), or an option has an unknown value.
    """
    _choice("mode", mode, MODES)
    _choice("blend", blend, BLENDS)
    _choice("pad_mode", pad_mode, PAD_MODES)
    if amp_dtype is not None and amp_dtype not in AMP_DTYPES:
        raise BratsInputError(f"amp_dtype must be None, torch.bfloat16 or torch.float16, got {amp_dtype}")
    device = torch.device(device)
    spatial = tuple(image.shape[1:])
    network.to(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        x = as_image_tensor(image).to(device)
        if mode == "whole":
            padded = padded_shape(spatial, divisible_by, pad_mode)
            logger.debug("whole-volume inference: %s padded to %s", spatial, padded)
            out = _forward(network, pad_with_corner(x, padded)[None])[0]
            del x
            if tuple(out.shape[1:]) != padded:
                raise ValueError(f"network output spatial shape {tuple(out.shape[1:])} differs from its "
                                 f"input's {padded}")
            out = out[:, : spatial[0], : spatial[1], : spatial[2]]
        elif mode == "tiles":
            out = predict_tiles(network, x, roi_size, margin, sw_batch_size, progress)
            del x
        else:
            roi = (roi_size,) * 3 if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
            if len(roi) != 3 or min(roi) < 1:
                raise BratsInputError(f"roi_size must be 3 positive sizes, got {roi_size}")
            if not 0 <= overlap < 1:
                raise BratsInputError(f"overlap must be in [0, 1), got {overlap}")
            out = sliding_window_inference(
                x[None], roi_size=roi, sw_batch_size=sw_batch_size,
                predictor=lambda window: _forward(network, window),
                overlap=overlap, mode=blend, sigma_scale=sigma_scale, progress=progress)[0]
            del x
    return out.to("cpu", torch.float32).contiguous()


def predict_probabilities(
    network: nn.Module,
    image: np.ndarray | torch.Tensor,
    *,
    activation: str = "softmax",
    **window_kwargs,
) -> np.ndarray:
    """Canonical class probabilities of ``network`` on one volume.

    Args:
        network, image: as for :func:`predict_logits`.
        activation: ``"softmax"`` for a network trained on labels (K = 4, canonical class order),
            or ``"sigmoid_regions"`` for one trained on regions (K = 3 in the order WT, TC, ET),
            converted with :func:`brats.inference.combine.regions_to_class_probabilities`.
        **window_kwargs: keyword arguments of :func:`predict_logits` (mode, roi_size, overlap, …).

    Returns:
        (4, X, Y, Z) float32 class probabilities (background, NCR/NET, ED, ET).

    Raises:
        BratsInputError: unknown activation, or the network's channel count does not fit it.
    """
    _choice("activation", activation, ACTIVATIONS)
    logits = predict_logits(network, image, **window_kwargs)
    expected = len(CLASS_LABELS) if activation == "softmax" else len(REGION_ORDER)
    if logits.shape[0] != expected:
        raise BratsInputError(f"activation {activation!r} needs a network with {expected} output channels, "
                              f"this one has {logits.shape[0]}")
    if activation == "softmax":
        return torch.softmax(logits, dim=0).numpy()
    return regions_to_class_probabilities(torch.sigmoid_(logits).numpy())
