"""Label conventions, converters and regions."""

from __future__ import annotations

import numpy as np
import pytest

from brats.data.labels import (
    CONVENTIONS,
    REGIONS,
    from_canonical,
    labels_from_regions,
    region_masks,
    to_canonical,
)
from brats.errors import BratsInputError


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_round_trip_every_convention(name: str) -> None:
    conv = CONVENTIONS[name]
    values = np.array(conv.labels * 3, dtype=np.uint8).reshape(len(conv.labels), 3, 1)
    canonical = to_canonical(values, name)
    assert np.array_equal(from_canonical(canonical, name), values)


@pytest.mark.parametrize("name, release_value, canonical_value", [
    ("brats2017", 4, 4), ("brats2017", 1, 1), ("brats2017", 2, 2),
    ("brats2023", 3, 4), ("brats2023", 1, 1), ("brats2023", 2, 2),
    ("brats2024", 3, 4), ("brats2024", 4, 5),
    ("msd", 1, 2), ("msd", 2, 1), ("msd", 3, 4),
])
def test_known_mappings(name: str, release_value: int, canonical_value: int) -> None:
    assert to_canonical(np.array([[[release_value]]]), name)[0, 0, 0] == canonical_value


def test_unknown_label_names_source_and_hints_release() -> None:
    with pytest.raises(BratsInputError, match=r"case_seg\.nii\.gz.*\[3\].*--release 2023"):
        to_canonical(np.array([[[0, 3]]]), "brats2017", source="case_seg.nii.gz")
    with pytest.raises(BratsInputError, match="--release 2024"):
        to_canonical(np.array([[[4]]]), "brats2023")


def test_resection_cavity_cannot_be_written_for_2017() -> None:
    with pytest.raises(BratsInputError, match=r"\[5\]"):
        from_canonical(np.array([[[5]]], dtype=np.uint8), "brats2017")


def test_regions_and_their_inverse() -> None:
    labels = np.array([0, 1, 2, 4, 5], dtype=np.uint8).reshape(5, 1, 1)
    masks = region_masks(labels)
    assert masks["WT"].ravel().tolist() == [False, True, True, True, False]
    assert masks["TC"].ravel().tolist() == [False, True, False, True, False]
    assert masks["ET"].ravel().tolist() == [False, False, False, True, False]
    assert list(REGIONS) == ["WT", "TC", "ET"]
    back = labels_from_regions(masks["WT"], masks["TC"], masks["ET"])
    assert back.ravel().tolist() == [0, 1, 2, 4, 0]


def test_regions_round_trip_random_map() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 1, 2, 4], dtype=np.uint8), size=(6, 5, 4))
    masks = region_masks(labels)
    assert np.array_equal(labels_from_regions(masks["WT"], masks["TC"], masks["ET"]), labels)
