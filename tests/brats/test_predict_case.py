"""predict_case: the brain crop goes in, the labels come back at the crop's place in the case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from brats.config import InferenceConfig
from brats.data.layouts import discover
from brats.inference.predictor import Member, predict_case
from brats.preprocess.crop import bounding_box, brain_mask


class ConstantED(nn.Module):
    """Logits that make every voxel of its input edema (class 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros((x.shape[0], 4, *x.shape[2:]), dtype=x.dtype, device=x.device)
        logits[:, 2] = 5.0
        return logits


def test_labels_are_pasted_into_the_brain_box(tiny_2017: Path) -> None:
    member = Member("constant", ConstantED(), InferenceConfig(num_mirrors=1), "labels", "none",
                    Path("constant"), {"data": {"output_crop": [0, 0, 0]}, "combine": "mean"})
    case = discover(tiny_2017)[0]
    labels, probs, box = predict_case([member], case, torch.device("cpu"))
    data = case.load(with_labels=False)
    expected_box = bounding_box(brain_mask(data.image))
    assert box == expected_box and expected_box[0][0] > 0   # the box does not start at the origin
    expected = np.zeros(data.image.shape[1:], dtype=np.uint8)
    expected[tuple(slice(a, b) for a, b in expected_box)] = 2
    assert np.array_equal(labels, expected)
    assert probs.shape == (4, *(b - a for a, b in expected_box))
