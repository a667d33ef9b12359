"""Training data: a Dataset of patches from the preprocessing cache, seeded per sample."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from brats.data.labels import CANONICAL_LABELS
from brats.preprocess.cache import PreparedCase, load_prepared

#: Canonical label value → class index (0 bg, 1 NCR/NET, 2 ED, 3 ET); RC (5) counts as background.
CLASS_LUT = np.zeros(256, dtype=np.int64)
for _index, _label in enumerate(CANONICAL_LABELS):
    CLASS_LUT[_label] = _index
CLASS_NAMES = ("background", "NCR/NET", "ED", "ET")


class PatchDataset(Dataset):
    """``length`` patches per epoch, each drawn with its own generator seeded by
    ``(seed, epoch, rank, index, split)``, so the patches of an epoch do not depend on worker
    count or on where training was resumed.

    Items are ``(image, target)``: (C, *patch) float32 and (*patch) int64 class indices.
    """

    def __init__(self, cache_dir: str | os.PathLike[str], case_ids: list[str], pipeline,
                 length: int, seed: int, rank: int = 0, validation: bool = False) -> None:
        if not case_ids:
            raise ValueError("no cases to draw patches from")
        self.cache_dir = Path(cache_dir)
        self.case_ids = list(case_ids)
        self.pipeline = pipeline
        self.length = length
        self.seed = seed
        self.rank = rank
        self.validation = validation
        self.epoch = 0
        self._open: dict[str, PreparedCase] = {}

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose patches to draw (validation patches are the same every epoch)."""
        self.epoch = 0 if self.validation else epoch

    def __len__(self) -> int:
        return self.length

    def _case(self, case_id: str) -> PreparedCase:
        if case_id not in self._open:
            self._open[case_id] = load_prepared(self.cache_dir, case_id)
        return self._open[case_id]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, index, int(self.validation)])
        case = self._case(self.case_ids[int(rng.integers(len(self.case_ids)))])
        image, labels = self.pipeline(case.image, case.labels, case.record.locations, rng,
                                      self.epoch)
        return (torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                torch.from_numpy(CLASS_LUT[labels]))
