"""Wang et al. 2017 inference: slab tiling, view fusion and the WT → TC → ET cascade.

Registered as the ``cascade`` combine rule of the core predictor, so ``brats predict`` and
``brats reproduce`` run it for configs with ``combine: cascade``. Members are told apart by their
training config: ``data.target`` (WT, TC, ET) is the stage, ``data.view`` the view; the softmax of
every member of a stage (all views, all folds) is averaged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from brats.data.releases import MODALITIES
from brats.errors import BratsInputError
from brats.inference.combine import MeanAccumulator, labels_to_probabilities
from brats.inference.predictor import CASE_PREDICTORS, Member
from brats.preprocess.crop import Box, crop
from brats.training.views import from_view, to_view
from cascade.nets import SLICE_MARGIN
from cascade.postprocess import (
    box_with_margin,
    closing,
    fuse,
    keep_largest_components,
    remove_small_components,
)

OUTPUT_SLICES = 11
STAGES = ("WT", "TC", "ET")


def slab_starts(depth: int, output_slices: int = OUTPUT_SLICES) -> list[int]:
    """First output slice of each slab: 0, 11, 22, … with the last clamped to ``depth − 11`` so
    the slabs cover every slice without running past the end (the original's tiling)."""
    if depth <= output_slices:
        return [0]
    starts = list(range(0, depth - output_slices, output_slices))
    return starts + [depth - output_slices]


def predict_slabs(network: torch.nn.Module, image: np.ndarray, device: torch.device,
                  divisor: int = 4, amp: bool = False) -> np.ndarray:
    """Foreground-vs-background softmax of a slab network over a whole (C, D, H, W) volume.

    Slabs of 19 input slices give 11 output slices each; slices outside the volume and the
    in-plane padding up to a multiple of ``divisor`` are zero (z-scored background). ``amp``
    runs the network under bf16 autocast (the member's ``inference.amp`` speed switch).

    Returns:
        (2, D, H, W) float32 probabilities.
    """
    c, depth, height, width = image.shape
    pad_h, pad_w = (-height) % divisor, (-width) % divisor
    padded_depth = max(depth, OUTPUT_SLICES)
    volume = np.zeros((c, padded_depth + 2 * SLICE_MARGIN, height + pad_h, width + pad_w),
                      dtype=np.float32)
    volume[:, SLICE_MARGIN:SLICE_MARGIN + depth, :height, :width] = image
    out = np.zeros((2, padded_depth, height + pad_h, width + pad_w), dtype=np.float32)
    network.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        for start in slab_starts(padded_depth):
            slab = torch.from_numpy(volume[:, start:start + OUTPUT_SLICES + 2 * SLICE_MARGIN])
            logits = network(slab[None].to(device)).float()
            out[:, start:start + OUTPUT_SLICES] = torch.softmax(logits, 1)[0].cpu().numpy()
    return out[:, :depth, :height, :width]


def stage_probability(members: Sequence[Member], image: np.ndarray, device: torch.device
                      ) -> np.ndarray:
    """Mean foreground probability (x, y, z) of a stage's members on a (C, x, y, z) crop."""
    accumulator = MeanAccumulator()
    for member in members:
        view = member.config["data"]["view"]
        divisor = getattr(member.network, "divisor", 4)
        probs = predict_slabs(member.network, to_view(image, view), device, divisor,
                              amp=member.inference.amp)
        accumulator.add(np.ascontiguousarray(from_view(probs, view))[1:2])
    return accumulator.mean()[0]


def _stages(members: Sequence[Member]) -> dict[str, list[Member]]:
    stages: dict[str, list[Member]] = {s: [] for s in STAGES}
    for member in members:
        target = member.config["data"]["target"]
        if target not in stages or not member.config["data"].get("view"):
            raise BratsInputError(f"{member.source}: not a cascade stage (data.target {target!r}, "
                                  f"view {member.config['data'].get('view')!r})")
        stages[target].append(member)
    missing = [s for s, found in stages.items() if not found]
    if missing:
        raise BratsInputError(f"the cascade needs networks for {', '.join(missing)}")
    return stages


def _inside(box: Box, outer: Box) -> Box:
    """``box`` given relative to ``outer``, as coordinates of the grid ``outer`` lives in."""
    return tuple((o + a, o + b) for (a, b), (o, _) in zip(box, outer))  # type: ignore[return-value]


def predict_cascade(members: list[Member], image: np.ndarray, spacing: tuple[float, float, float],
                    device: torch.device, margin: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """WT on the brain crop → TC in the WT box + ``margin`` → ET in the TC box + ``margin`` →
    :func:`cascade.postprocess.fuse`. Each stage's binary prediction is multiplied by the brain
    mask FLAIR ≠ 0 (the original's ``pred * weight`` with ``weight = flair > 0``: taigw/brats17
    @d44297e ``test.py`` and ``util/data_loader.py``; the z-scored FLAIR is non-zero exactly where
    the raw FLAIR is, :func:`brats.preprocess.normalize.zscore`).

    Args:
        image: (4, x, y, z) z-scored brain crop, channels in ``MODALITIES`` order.
        spacing: voxel size in mm (for the size rules).

    Returns:
        ``(labels (x, y, z) uint8 canonical, one-hot (4, x, y, z) of the labels)``: the cascade
        has no joint class posterior, so in an ensemble its vote is its label map.
    """
    stages = _stages(members)
    shape = image.shape[1:]
    if image.shape[0] != len(MODALITIES):
        raise BratsInputError(f"the cascade needs the {len(MODALITIES)} modalities "
                              f"{', '.join(MODALITIES)}; got {image.shape[0]} channels")
    brain = image[MODALITIES.index("flair")] != 0
    whole: Box = tuple((0, n) for n in shape)  # type: ignore[assignment]
    wt = (stage_probability(stages["WT"], image, device) > 0.5) & brain
    wt_box = box_with_margin(remove_small_components(closing(wt), spacing=spacing), margin,
                             fallback=whole)
    tc = np.zeros(shape, bool)
    tc_crop = (stage_probability(stages["TC"], crop(image, wt_box), device) > 0.5) & crop(brain,
                                                                                        wt_box)
    tc[tuple(slice(a, b) for a, b in wt_box)] = tc_crop
    tc_core = keep_largest_components(closing(tc_crop))
    tc_box = _inside(box_with_margin(tc_core, margin), wt_box) if tc_core.any() else wt_box
    et = np.zeros(shape, bool)
    et[tuple(slice(a, b) for a, b in tc_box)] = (
        (stage_probability(stages["ET"], crop(image, tc_box), device) > 0.5) & crop(brain, tc_box))
    labels = fuse(wt, tc, et, spacing)
    return labels, labels_to_probabilities(labels)


CASE_PREDICTORS["cascade"] = predict_cascade
