"""Inference: one network on one volume (whole or sliding window), mirror TTA with optional
test-time dropout, and combining probability maps across folds, views and members.

Probability maps are (4, X, Y, Z) float32 in the canonical class order (background, NCR/NET, ED,
ET ↔ labels 0, 1, 2, 4); networks return logits, turned into probabilities by softmax (label
networks, K = 4) or by sigmoids over the regions WT, TC, ET (region networks, K = 3).
"""

from __future__ import annotations

from brats.inference.combine import (
    CLASS_LABELS,
    CLASS_NAMES,
    REGION_ORDER,
    MeanAccumulator,
    class_probabilities_to_regions,
    labels_to_probabilities,
    load_probabilities,
    mean_probabilities,
    probabilities_to_labels,
    regions_to_class_probabilities,
    save_probabilities,
)
from brats.inference.sliding_window import padded_shape, predict_logits, predict_probabilities
from brats.inference.tta import MIRROR_COMBINATIONS, dropout_enabled, mirror_combinations, predict_with_tta

__all__ = [
    "CLASS_LABELS",
    "CLASS_NAMES",
    "MIRROR_COMBINATIONS",
    "REGION_ORDER",
    "MeanAccumulator",
    "class_probabilities_to_regions",
    "dropout_enabled",
    "labels_to_probabilities",
    "load_probabilities",
    "mean_probabilities",
    "mirror_combinations",
    "padded_shape",
    "predict_logits",
    "predict_probabilities",
    "predict_with_tta",
    "probabilities_to_labels",
    "regions_to_class_probabilities",
    "save_probabilities",
]
