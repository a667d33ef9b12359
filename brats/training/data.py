"""Training data: a Dataset of patches from the preprocessing cache, seeded per sample, and the
sampler that tells persistent loader workers the epoch."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate

from brats.data.labels import CANONICAL_LABELS, REGIONS
from brats.errors import BratsInputError
from brats.preprocess.cache import load_masks, load_prepared
from brats.preprocess.crop import bounding_box
from brats.training.batch_augment import DeviceAugmenter, collate
from brats.training.sampling import read_block
from brats.training.views import to_view, view_permutation

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


BACKENDS = ("device", "scipy")
#: What ``require_foreground`` re-draws.
REDRAWS = ("patch", "batch")


@dataclass(frozen=True)
class _Case:
    """A cached case, possibly restricted to a region-of-interest box (views of the memmaps)."""

    image: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    locations: dict[str, list[list[int]]]


class EpochSampler(Sampler[int]):
    """Indices ``epoch · length + i`` (i = 0 … length−1) of the epoch set last, so persistent
    loader workers learn the epoch from the index they are asked for."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose patches the next iteration asks for."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.epoch * self.length, (self.epoch + 1) * self.length))

    def __len__(self) -> int:
        return self.length


class PatchDataset(Dataset):
    """``length`` patches per epoch, each drawn with its own generator seeded by
    ``(seed, epoch, rank, index, split)``, so the patches of an epoch do not depend on worker
    count or on where training was resumed. Item ``epoch · length + i`` is patch i of that epoch
    (:class:`EpochSampler`); validation patches are the same every epoch.

    With ``backend="scipy"`` items are finished ``(image, target)`` tensors: (C, *patch) float32
    and (*out) int64 class indices, the patch in view order (D, H, W) when ``view`` is set and
    ``out`` the patch minus ``output_crop`` voxels on each side (networks with valid
    convolutions). With ``backend="device"`` (the default) items are the worker's half of
    :mod:`brats.training.batch_augment` (a block and drawn parameters); batch them with
    :attr:`collate_fn` and finish them on the training device with :meth:`to_device`, which gives
    the same ``(image, target)`` per batch.

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
        require_foreground: re-draw (up to 20 times) patches whose target has no foreground
            (device backend with a spatial augmentation: judged on the untransformed patch).
        redraw: what ``require_foreground`` re-draws: ``"patch"`` (each patch until it has
            foreground) or ``"batch"`` (a whole batch of ``batch_size`` patches while none has
            foreground: Wang et al.'s ``get_subimage_batch``, taigw/brats17 @d44297e
            ``util/data_loader.py``). With ``"batch"`` an item is a whole collated batch drawn
            with one generator seeded by ``(seed, epoch, rank, batch index, split)``; load it
            with ``batch_size=None`` (:attr:`loader_batch_size`).
        batch_size: patches per batch (``redraw="batch"`` only).
        backend: ``"device"`` or ``"scipy"`` (see above).
    """

    def __init__(self, cache_dir: str | os.PathLike[str], case_ids: list[str], pipeline,
                 length: int, seed: int, rank: int = 0, validation: bool = False, *,
                 target: str = "classes", view: str | None = None,
                 output_crop: Sequence[int] = (0, 0, 0), roi: str | None = None,
                 roi_margin: int = 5, case_weights: Sequence[float] | None = None,
                 require_foreground: bool = False, redraw: str = "patch", batch_size: int = 1,
                 backend: str = "device") -> None:
        if not case_ids:
            raise BratsInputError("no cases to draw training patches from")
        if target not in TARGET_LUTS:
            raise BratsInputError(f"unknown data.target {target!r}; expected one of "
                                  + ", ".join(TARGET_LUTS))
        if roi is not None and roi not in REGIONS:
            raise BratsInputError(f"unknown data.roi {roi!r}; expected one of {', '.join(REGIONS)}")
        if backend not in BACKENDS:
            raise BratsInputError(f"unknown data.augmentation_backend {backend!r}; expected one "
                                  f"of {', '.join(BACKENDS)}")
        self.cache_dir = Path(cache_dir)
        self.case_ids = list(case_ids)
        self.pipeline = pipeline
        self.length = length
        self.seed = seed
        self.rank = rank
        self.validation = validation
        self.target = target
        self.lut = TARGET_LUTS[target]
        self.view = view
        self.output_crop = tuple(int(c) for c in output_crop)
        self.roi = roi
        self.roi_margin = roi_margin
        weights = np.ones(len(self.case_ids)) if case_weights is None else np.asarray(case_weights,
                                                                                    float)
        self.probabilities = weights / weights.sum()
        if redraw not in REDRAWS:
            raise BratsInputError(f"unknown data.foreground_redraw {redraw!r}; expected one of "
                                  + ", ".join(REDRAWS))
        if redraw == "batch" and not 1 <= batch_size <= length:
            raise BratsInputError(f"batch_size {batch_size} must be in 1..{length} (patches per "
                                  "epoch)")
        self.require_foreground = require_foreground
        self.batched = redraw == "batch"
        self.batch_size = batch_size if self.batched else 1
        self.backend = backend
        self.augmenter = (DeviceAugmenter(pipeline.patch_size, pipeline.needs_masks)
                          if backend == "device" else None)
        self._open: dict[str, _Case | None] = {}
        self._luts: dict[torch.device, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.length // self.batch_size

    @property
    def _collate(self) -> Callable[[list[Any]], Any]:
        return collate if self.backend == "device" else default_collate

    @property
    def collate_fn(self) -> Callable[[list[Any]], Any] | None:
        """How a DataLoader batches this dataset's items (None: items are batches already)."""
        return None if self.batched else self._collate

    def loader_batch_size(self, batch_size: int) -> int | None:
        """The DataLoader's ``batch_size`` for batches of ``batch_size`` patches (None when
        items are whole batches)."""
        return None if self.batched else batch_size

    def _case(self, case_id: str) -> _Case | None:
        if case_id not in self._open:
            prepared = load_prepared(self.cache_dir, case_id)
            image, labels, locations = prepared.image, prepared.labels, prepared.record.locations
            masks = (load_masks(self.cache_dir, case_id)
                     if (self.backend == "device" and self.pipeline.needs_masks)
                     or self.pipeline.needs_brain else None)
            if self.roi is not None:
                mask = np.isin(labels, REGIONS[self.roi])
                if not mask.any():
                    self._open[case_id] = None
                    return None
                box = bounding_box(mask, margin=self.roi_margin)
                start = np.array([a for a, _ in box])
                stop = np.array([b for _, b in box])
                spatial = tuple(slice(a, b) for a, b in box)
                image = image[(slice(None), *spatial)]
                labels = labels[spatial]
                masks = None if masks is None else masks[spatial]
                locations = {k: [list(np.subtract(c, start)) for c in v
                                 if np.all(np.asarray(c) >= start) and np.all(np.asarray(c) < stop)]
                             for k, v in locations.items()}
            self._open[case_id] = _Case(image, labels, masks, locations)
        return self._open[case_id]

    def _pick(self, rng: np.random.Generator) -> _Case:
        for _ in range(10 * len(self.case_ids)):
            case = self._case(self.case_ids[int(rng.choice(len(self.case_ids),
                                                           p=self.probabilities))])
            if case is not None:
                return case
        raise BratsInputError(f"no training case holds the region {self.roi!r}")

    def _crop(self, target: Any, lead: int) -> Any:
        """``output_crop`` voxels off each side of the last three axes (after ``lead`` others)."""
        return target[(*(slice(None),) * lead,
                       *(slice(c, n - c) for c, n in zip(self.output_crop, target.shape[lead:])))]

    def _target(self, labels: np.ndarray) -> np.ndarray:
        """(X, Y, Z) canonical labels → (*out) target in view order, output crop removed."""
        target = self.lut[labels]
        if self.view is not None:
            target = to_view(target, self.view)
        return self._crop(target, 0)

    def _draw(self, rng: np.random.Generator, epoch: int) -> tuple[Any, bool]:
        """One item of this dataset's backend, and whether its target (as far as the worker can
        tell) holds foreground, judged only when ``require_foreground`` asks."""
        case = self._pick(rng)
        if self.backend == "device":
            sample, location = self.pipeline.draw_block(case.image, case.labels, case.masks,
                                                        case.locations, rng, epoch)
            if not self.require_foreground:
                return sample, True
            # crop-only augmentations read exactly the patch; a spatial one: the untransformed patch
            patch = (sample["labels"] if "matrix" not in sample
                     else read_block(case.labels, location.start, location.stop))
            return sample, bool(self._target(patch).any())
        image, labels = self.pipeline(case.image, case.labels, case.locations, rng, epoch,
                                      masks=case.masks)
        target = self._target(labels)
        if self.view is not None:
            image = to_view(image, self.view)
        item = (torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(target)))
        return item, bool(target.any())

    def __getitem__(self, index: int) -> Any:
        epoch, index = divmod(int(index), len(self))
        if self.validation:
            epoch = 0
        rng = np.random.default_rng([self.seed, epoch, self.rank, index, int(self.validation)])
        for _ in range(MAX_REDRAWS):  # an item is one patch, or a whole batch (redraw="batch")
            drawn = [self._draw(rng, epoch) for _ in range(self.batch_size)]
            if not self.require_foreground or any(fg for _, fg in drawn):
                break
        items = [item for item, _ in drawn]
        return self._collate(items) if self.batched else items[0]

    def to_device(self, batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Finish a loader batch on the training device.

        Returns:
            ``(image, target)``: (B, C, *patch) float32 (view order) and (B, *out) int64.
        """
        cuda = device.type == "cuda"
        if self.augmenter is None:
            image, target = batch
            return image.to(device, non_blocking=cuda), target.to(device, non_blocking=cuda)
        image, labels = self.augmenter(batch, device)
        if device not in self._luts:
            self._luts[device] = torch.from_numpy(self.lut).to(device)
        target = self._luts[device][labels.long()]
        if self.view is not None:
            image = image.permute(view_permutation(image.ndim, self.view))
            target = target.permute(view_permutation(target.ndim, self.view))
        return image.contiguous(), self._crop(target, 1).contiguous()
