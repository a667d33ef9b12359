"""Training data: a Dataset of patches from the preprocessing cache, seeded per sample."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from brats.data.labels import CANONICAL_LABELS, REGIONS
from brats.errors import BratsInputError
from brats.preprocess.cache import load_prepared
from brats.preprocess.crop import bounding_box
from brats.training.views import to_view

#: Canonical label value → class index (0 bg, 1 NCR/NET, 2 ED, 3 ET); RC (5) counts as background.
CLASS_LUT = np.zeros(256, dtype=np.int64)
for _index, _label in enumerate(CANONICAL_LABELS):
    CLASS_LUT[_label] = _index
CLASS_NAMES = ("background", "NCR/NET", "ED", "ET")


def _region_lut(region: str) -> np.ndarray:
    lut = np.zeros(256, dtype=np.int64)
    lut[list(REGIONS[region])] = 1
    return lut


#: Training target → lookup table from canonical labels: 4 classes, or one binary region.
TARGET_LUTS: dict[str, np.ndarray] = {"classes": CLASS_LUT,
                                      **{r: _region_lut(r) for r in REGIONS}}
MAX_REDRAWS = 20


@dataclass(frozen=True)
class _Case:
    """A cached case, possibly restricted to a region-of-interest box (views of the memmaps)."""

    image: np.ndarray
    labels: np.ndarray
    locations: dict[str, list[list[int]]]


class PatchDataset(Dataset):
    """``length`` patches per epoch, each drawn with its own generator seeded by
    ``(seed, epoch, rank, index, split)``, so the patches of an epoch do not depend on worker
    count or on where training was resumed.

    Items are ``(image, target)``: (C, *patch) float32 and (*out) int64 class indices, where the
    patch is in view order (D, H, W) when ``view`` is set and ``out`` is the patch minus
    ``output_crop`` voxels on each side (networks with valid convolutions).

    Args:
        cache_dir, case_ids: where and which cases to draw from.
        pipeline: :class:`~brats.training.pipeline.PatchPipeline` in array (X, Y, Z) order.
        length: patches per epoch.
        seed, rank, validation: seed parts.
        target: ``"classes"`` (4 classes) or a region ``"WT"``/``"TC"``/``"ET"`` (binary).
        view: ``"axial"``/``"sagittal"``/``"coronal"`` to put that slice axis first, or None.
        output_crop: voxels removed from each side of the target, in patch order.
        roi: sample only inside the box of this reference region plus ``roi_margin`` voxels
            (the Wang cascade's TNet/ENet stages); cases without the region are skipped.
        case_weights: relative probability of drawing each case (e.g. LGG ×3).
        require_foreground: re-draw (up to 20 times) patches whose target has no foreground.
    """

    def __init__(self, cache_dir: str | os.PathLike[str], case_ids: list[str], pipeline,
                 length: int, seed: int, rank: int = 0, validation: bool = False, *,
                 target: str = "classes", view: str | None = None,
                 output_crop: Sequence[int] = (0, 0, 0), roi: str | None = None,
                 roi_margin: int = 5, case_weights: Sequence[float] | None = None,
                 require_foreground: bool = False) -> None:
        if not case_ids:
            raise BratsInputError("no cases to draw training patches from")
        if target not in TARGET_LUTS:
            raise BratsInputError(f"unknown data.target {target!r}; expected one of "
                                  + ", ".join(TARGET_LUTS))
        if roi is not None and roi not in REGIONS:
            raise BratsInputError(f"unknown data.roi {roi!r}; expected one of {', '.join(REGIONS)}")
        self.cache_dir = Path(cache_dir)
        self.case_ids = list(case_ids)
        self.pipeline = pipeline
        self.length = length
        self.seed = seed
        self.rank = rank
        self.validation = validation
        self.lut = TARGET_LUTS[target]
        self.view = view
        self.output_crop = tuple(int(c) for c in output_crop)
        self.roi = roi
        self.roi_margin = roi_margin
        weights = np.ones(len(self.case_ids)) if case_weights is None else np.asarray(case_weights,
                                                                                    float)
        self.probabilities = weights / weights.sum()
        self.require_foreground = require_foreground
        self.epoch = 0
        self._open: dict[str, _Case | None] = {}

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose patches to draw (validation patches are the same every epoch)."""
        self.epoch = 0 if self.validation else epoch

    def __len__(self) -> int:
        return self.length

    def _case(self, case_id: str) -> _Case | None:
        if case_id not in self._open:
            prepared = load_prepared(self.cache_dir, case_id)
            image, labels, locations = prepared.image, prepared.labels, prepared.record.locations
            if self.roi is not None:
                mask = np.isin(labels, REGIONS[self.roi])
                if not mask.any():
                    self._open[case_id] = None
                    return None
                box = bounding_box(mask, margin=self.roi_margin)
                start = np.array([a for a, _ in box])
                stop = np.array([b for _, b in box])
                image = image[(slice(None), *(slice(a, b) for a, b in box))]
                labels = labels[tuple(slice(a, b) for a, b in box)]
                locations = {k: [list(np.subtract(c, start)) for c in v
                                 if np.all(np.asarray(c) >= start) and np.all(np.asarray(c) < stop)]
                             for k, v in locations.items()}
            self._open[case_id] = _Case(image, labels, locations)
        return self._open[case_id]

    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        for _ in range(10 * len(self.case_ids)):
            case = self._case(self.case_ids[int(rng.choice(len(self.case_ids),
                                                           p=self.probabilities))])
            if case is not None:
                return self.pipeline(case.image, case.labels, case.locations, rng, self.epoch)
        raise BratsInputError(f"no training case holds the region {self.roi!r}")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, index, int(self.validation)])
        for _ in range(MAX_REDRAWS):
            image, labels = self._draw(rng)
            target = self.lut[labels]
            if self.view is not None:
                image, target = to_view(image, self.view), to_view(target, self.view)
            target = target[tuple(slice(c, target.shape[i] - c)
                                  for i, c in enumerate(self.output_crop))]
            if not self.require_foreground or target.any():
                break
        return (torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(target)))
