"""PatchDataset options used by the cascade and the ensemble: binary targets, views, output
crops, region-of-interest sampling, case weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brats.errors import BratsInputError
from brats.preprocess.cache import load_index, load_prepared
from brats.training.data import TARGET_LUTS, PatchDataset
from brats.training.pipeline import PatchPipeline
from brats.training.views import size_in_array_order, to_view
from tests.conftest import synthetic_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_cache(tmp_path_factory.mktemp("data"), cases=2, seed=8)


def pipeline(size) -> PatchPipeline:
    return PatchPipeline(size, foreground_fraction=0.5, augmentation="none", intensity="none")


def item(ds: PatchDataset, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One finished ``(image, target)``, through the loader's collate and the device step."""
    if ds.backend == "scipy":
        return ds[index]
    image, target = ds.to_device(ds.collate_fn([ds[index]]), torch.device("cpu"))
    return image[0], target[0]


@pytest.mark.parametrize("backend", ["device", "scipy"])
def test_binary_region_target_in_view_order_with_output_crop(cache: Path, backend: str) -> None:
    ids = load_index(cache)["cases"]
    patch = (19, 24, 24)
    ds = PatchDataset(cache, ids, pipeline(size_in_array_order(patch, "axial")), 4, seed=3,
                      target="TC", view="axial", output_crop=(4, 0, 0), backend=backend)
    for index in range(4):
        image, target = item(ds, index)
        assert image.shape == (4, 19, 24, 24) and target.shape == (11, 24, 24)
        assert set(np.unique(target.numpy())) <= {0, 1}
        # Redo the draw by hand: same generator, same case, same patch.
        rng = np.random.default_rng([3, 0, 0, index, 0])
        case = load_prepared(cache, ids[int(rng.choice(len(ids), p=ds.probabilities))])
        raw_image, raw_labels = ds.pipeline(case.image, case.labels, case.record.locations, rng, 0)
        assert np.array_equal(image.numpy(), to_view(raw_image, "axial"))
        expected = to_view(TARGET_LUTS["TC"][raw_labels], "axial")[4:-4]
        assert np.array_equal(target.numpy(), expected)


@pytest.mark.parametrize("backend", ["device", "scipy"])
def test_roi_sampling_and_required_foreground(cache: Path, backend: str) -> None:
    ids = load_index(cache)["cases"]
    ds = PatchDataset(cache, ids, pipeline((16, 16, 16)), 6, seed=1, target="ET", roi="TC",
                      roi_margin=5, require_foreground=True, backend=backend)
    for index in range(6):
        _, target = item(ds, index)
        assert target.any()
    case = ds._case(ids[0])
    labels = np.asarray(load_prepared(cache, ids[0]).labels)
    tc = np.argwhere(np.isin(labels, (1, 4)))
    expected = tuple(min(hi + 6, n) - max(lo - 5, 0)
                     for lo, hi, n in zip(tc.min(0), tc.max(0), labels.shape))
    assert case.labels.shape == expected
    for coords in case.locations.values():
        assert all(0 <= c[i] < expected[i] for c in coords for i in range(3))


def test_case_weights_and_bad_options(cache: Path) -> None:
    ids = load_index(cache)["cases"]
    ds = PatchDataset(cache, ids, pipeline((16, 16, 16)), 1, seed=0, case_weights=[3.0, 1.0])
    assert ds.probabilities.tolist() == [0.75, 0.25]
    with pytest.raises(BratsInputError, match="unknown data.target 'XX'"):
        PatchDataset(cache, ids, pipeline((16, 16, 16)), 1, seed=0, target="XX")
    with pytest.raises(BratsInputError, match="unknown data.roi"):
        PatchDataset(cache, ids, pipeline((16, 16, 16)), 1, seed=0, roi="brain")


@pytest.mark.parametrize("backend", ["device", "scipy"])
def test_batch_redraw_keeps_tumour_free_patches_in_batches_with_tumour(cache: Path,
                                                                        backend: str) -> None:
    """Wang's rule: a whole batch is re-drawn only while none of its patches has foreground, so
    tumour-free patches still reach the network; the per-patch rule never lets one through."""
    from torch.utils.data import DataLoader

    from brats.training.data import EpochSampler

    ids = load_index(cache)["cases"]
    small = PatchPipeline((10, 10, 10), foreground_fraction=0.0, augmentation="none",
                          intensity="none")
    batched = PatchDataset(cache, ids, small, 40, seed=2, target="WT", require_foreground=True,
                           redraw="batch", batch_size=4, backend=backend)
    assert len(batched) == 10 and batched.loader_batch_size(4) is None
    loader = DataLoader(batched, batch_size=batched.loader_batch_size(4),
                        sampler=EpochSampler(len(batched)), collate_fn=batched.collate_fn)
    per_patch = []
    for batch in loader:
        _, target = batched.to_device(batch, torch.device("cpu"))
        assert target.shape == (4, 10, 10, 10)
        has = target.flatten(1).any(1)
        assert has.any()
        per_patch += has.tolist()
    assert len(per_patch) == 40 and 0 < sum(per_patch) < 40
    single = PatchDataset(cache, ids, small, 8, seed=2, target="WT", require_foreground=True,
                          backend=backend)
    assert all(item(single, i)[1].any() for i in range(8))
    with pytest.raises(BratsInputError, match="unknown data.foreground_redraw"):
        PatchDataset(cache, ids, small, 8, seed=2, redraw="epoch")
