"""Cascade inference with known predictors: slab tiling, view fusion, the stage order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brats.config import InferenceConfig
from brats.errors import BratsInputError
from brats.inference.predictor import CASE_PREDICTORS, Member
from cascade.pipeline import predict_cascade, predict_slabs, slab_starts, stage_probability


class ChannelNet(torch.nn.Module):
    """A slab 'network' whose foreground logit is one input channel on the 11 centre slices."""

    divisor = 4

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.channel = channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2] == 19 and x.shape[3] % 4 == 0 and x.shape[4] % 4 == 0
        centre = x[:, self.channel:self.channel + 1, 4:15]
        return torch.cat([torch.zeros_like(centre), centre], 1)


def member(channel: int, target: str, view: str) -> Member:
    return Member(f"{target}-{view}", ChannelNet(channel), InferenceConfig(), "labels", "none",
                  Path("."), {"data": {"target": target, "view": view}, "combine": "cascade"})


def test_slab_starts_cover_every_slice() -> None:
    assert slab_starts(30) == [0, 11, 19]
    assert slab_starts(11) == [0] and slab_starts(4) == [0]
    for depth in range(11, 60):
        covered = set()
        for s in slab_starts(depth):
            covered |= set(range(s, s + 11))
        assert covered == set(range(depth))


@pytest.mark.parametrize("shape", [(3, 30, 13, 18), (3, 5, 8, 8), (3, 11, 4, 6)])
def test_slabs_reproduce_a_pointwise_predictor(shape) -> None:
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    probs = predict_slabs(ChannelNet(1), image, torch.device("cpu"))
    assert probs.shape == (2, *shape[1:])
    np.testing.assert_allclose(probs[1], 1 / (1 + np.exp(-image[1])), rtol=1e-5)
    np.testing.assert_allclose(probs.sum(0), 1, rtol=1e-6)


def test_views_are_fused_back_in_array_order() -> None:
    image = np.random.default_rng(1).normal(size=(3, 12, 9, 7)).astype(np.float32)
    members = [member(2, "WT", v) for v in ("axial", "sagittal", "coronal")]
    fused = stage_probability(members, image, torch.device("cpu"))
    np.testing.assert_allclose(fused, 1 / (1 + np.exp(-image[2])), rtol=1e-5)


def test_cascade_order_and_fusion() -> None:
    shape = (40, 40, 40)
    image = np.full((4, *shape), -10, np.float32)
    image[0, 5:30, 5:30, 5:30] = 10    # WT evidence
    image[1, 10:20, 10:20, 10:20] = 10  # TC evidence
    image[1, 35:38, 35:38, 35:38] = 10  # TC evidence outside the WT box: never looked at
    image[2, 12:16, 12:16, 12:16] = 10  # ET evidence
    members = [member(c, t, v) for c, t in ((0, "WT"), (1, "TC"), (2, "ET"))
               for v in ("axial", "sagittal", "coronal")]
    labels, probs = CASE_PREDICTORS["cascade"](members, image, (1.0, 1.0, 1.0),
                                               torch.device("cpu"))
    np.testing.assert_array_equal(probs.argmax(0), np.searchsorted([0, 1, 2, 4], labels))
    assert probs.shape == (4, *shape) and set(np.unique(probs)) == {0.0, 1.0}
    assert labels[6, 6, 6] == 2 and labels[11, 11, 11] == 1 and labels[13, 13, 13] == 4
    assert (labels == 4).sum() == 64 and labels[36, 36, 36] == 0
    with pytest.raises(BratsInputError, match="needs networks for ET"):
        predict_cascade(members[:6], image, (1.0, 1.0, 1.0), torch.device("cpu"))


def test_slabs_under_bf16_autocast_stay_close_to_fp32() -> None:
    from brats.nets import build_network

    torch.manual_seed(0)
    net = build_network("wang_wnet", in_channels=4, num_classes=2, base_filters=4).eval()
    image = np.random.default_rng(2).normal(size=(4, 13, 16, 12)).astype(np.float32)
    fp32 = predict_slabs(net, image, torch.device("cpu"))
    bf16 = predict_slabs(net, image, torch.device("cpu"), amp=True)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert 0 < np.abs(bf16 - fp32).max() < 0.05


class Recorder(torch.nn.Module):
    """A slab network whose foreground is ``rule(core slices)``; it records each input's in-plane
    size, so a test sees which part of the volume a stage was run on."""

    def __init__(self, rule) -> None:
        super().__init__()
        self.rule = rule
        self.in_plane: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.in_plane.append(tuple(x.shape[-2:]))
        foreground = self.rule(x[:, :, 4:-4]).float()
        return torch.stack([1 - foreground, foreground], 1) * 10


def test_tc_and_et_run_inside_the_boxes_of_the_stage_before() -> None:
    """WT is a 4³ blob: TC must see only the WT box + 5 voxels (14 → padded 16 in-plane), not
    the whole 40×40 crop; ET only the TC box + 5, inside the WT box."""
    image = np.zeros((4, 40, 40, 20), np.float32)
    image[0, 16:20, 16:20, 8:12] = 1.0
    image[3] = 1.0                                        # FLAIR: brain everywhere
    nets = {"WT": Recorder(lambda x: x[:, 0] > 0.5), "TC": Recorder(lambda x: x[:, 0] > -1),
            "ET": Recorder(lambda x: x[:, 0] > 0.5)}
    members = [Member(f"{stage}_axial", net, InferenceConfig(), "labels", "none", Path(stage),
                      {"data": {"target": stage, "view": "axial"}})
               for stage, net in nets.items()]
    labels, _ = predict_cascade(members, image, (1.0, 1.0, 1.0), torch.device("cpu"))
    assert set(nets["WT"].in_plane) == {(40, 40)}
    assert set(nets["TC"].in_plane) == {(16, 16)}          # WT box 4 + 2 × 5 = 14, padded to 16
    # TC fills its input, so the TC box + 5 (clipped to the WT box it lives in) is the WT box
    assert set(nets["ET"].in_plane) == {(16, 16)}
    assert labels[16:20, 16:20, 8:12].all() and not labels[:10].any()


def test_every_stage_is_masked_by_flair_nonzero() -> None:
    """Networks that call everything tumour: WT, TC and ET are kept only where FLAIR ≠ 0 (the
    original multiplies each stage by FLAIR > 0). A 4-voxel hole in the FLAIR brain is closed
    into the core by the fusion's closing, as in the original, but is never ET."""
    image = np.ones((4, 30, 30, 20), np.float32)
    image[3, :, :, :3] = 0.0            # outside the FLAIR brain: three bottom slices
    image[3, 14:16, 14:16, 10] = 0.0    # a hole inside it
    members = [Member(f"{stage}_axial", Recorder(lambda x: x[:, 0] > -1), InferenceConfig(),
                      "labels", "none", Path(stage), {"data": {"target": stage, "view": "axial"}})
               for stage in ("WT", "TC", "ET")]
    labels, _ = predict_cascade(members, image, (1.0, 1.0, 1.0), torch.device("cpu"))
    assert not labels[:, :, :3].any()
    assert (labels[14:16, 14:16, 10] == 1).all()
    assert (labels[5:25, 5:25, 5:18] == 4).sum() == 20 * 20 * 13 - 4
    with pytest.raises(BratsInputError, match="needs the 4 modalities"):
        predict_cascade(members, image[:3], (1.0, 1.0, 1.0), torch.device("cpu"))
