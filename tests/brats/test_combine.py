"""Combining probability maps: regions → classes, labels, weighted means, files."""

from __future__ import annotations

import numpy as np
import pytest

from brats.errors import BratsInputError
from brats.inference import (
    CLASS_LABELS,
    MeanAccumulator,
    class_probabilities_to_regions,
    load_probabilities,
    mean_probabilities,
    probabilities_to_labels,
    regions_to_class_probabilities,
    save_probabilities,
)


def column(*values: float) -> np.ndarray:
    """(K, 1, 1, 1) map from K channel values."""
    return np.asarray(values, dtype=np.float32)[:, None, None, None]


# (WT, TC, ET) → (bg, NCR, ED, ET)
@pytest.mark.parametrize("regions, classes", [
    ((0.9, 0.6, 0.2), (0.1, 0.4, 0.3, 0.2)),   # nested
    ((0.5, 0.7, 0.9), (0.5, 0.0, 0.0, 0.5)),   # TC > WT and ET > TC are clipped
    ((0.8, 0.3, 0.5), (0.2, 0.0, 0.5, 0.3)),   # ET > TC only
    ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0)),
    ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0, 1.0)),
])
def test_regions_to_class_probabilities(regions, classes):
    out = regions_to_class_probabilities(column(*regions))
    assert out.shape == (4, 1, 1, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0, 0], classes, atol=1e-6)


def test_regions_round_trip_and_sum():
    rng = np.random.default_rng(0)
    wt = rng.random((5, 4, 3))
    tc = wt * rng.random((5, 4, 3))
    et = tc * rng.random((5, 4, 3))
    regions = np.stack([wt, tc, et]).astype(np.float32)
    classes = regions_to_class_probabilities(regions)
    np.testing.assert_allclose(classes.sum(0), 1, atol=1e-6)
    assert classes.min() >= 0
    np.testing.assert_allclose(class_probabilities_to_regions(classes), regions, atol=1e-6)
    with pytest.raises(BratsInputError, match="3 channels"):
        regions_to_class_probabilities(np.zeros((4, 2, 2, 2)))


def test_probabilities_to_labels():
    p = np.zeros((4, 4, 1, 1), np.float32)
    for voxel, winner in enumerate([2, 0, 3, 1]):  # winners: ED, bg, ET, NCR
        p[:, voxel, 0, 0] = 0.1
        p[winner, voxel, 0, 0] = 0.7
    labels = probabilities_to_labels(p)
    assert labels.dtype == np.uint8 and labels.shape == (4, 1, 1)
    np.testing.assert_array_equal(labels[:, 0, 0], [2, 0, 4, 1])
    with pytest.raises(BratsInputError, match="4, X, Y, Z"):
        probabilities_to_labels(np.zeros((3, 2, 2, 2)))


def test_region_rule_can_differ_from_argmax():
    # WT 0.6, TC 0.3, ET 0.1: background wins the argmax but WT > 0.5 makes the voxel edema
    p = regions_to_class_probabilities(column(0.6, 0.3, 0.1))
    assert probabilities_to_labels(p)[0, 0, 0] == 0
    assert probabilities_to_labels(p, rule="regions")[0, 0, 0] == 2
    p = regions_to_class_probabilities(column(0.9, 0.8, 0.7))
    assert probabilities_to_labels(p, rule="regions")[0, 0, 0] == 4
    p = regions_to_class_probabilities(column(0.9, 0.8, 0.2))
    assert probabilities_to_labels(p, rule="regions")[0, 0, 0] == 1
    with pytest.raises(BratsInputError, match="rule"):
        probabilities_to_labels(p, rule="max")


def test_weighted_mean_decides_the_label():
    a = column(0.1, 0.6, 0.2, 0.1)  # NCR
    b = column(0.1, 0.2, 0.6, 0.1)  # ED
    acc = MeanAccumulator()
    acc.add(a, weight=1)
    acc.add(b, weight=3)
    np.testing.assert_allclose(acc.mean()[:, 0, 0, 0], [0.1, 0.3, 0.5, 0.1], atol=1e-6)
    assert probabilities_to_labels(acc.mean())[0, 0, 0] == 2
    assert probabilities_to_labels(mean_probabilities([a, b], weights=[3, 1]))[0, 0, 0] == 1
    np.testing.assert_allclose(mean_probabilities([a, b]), (a + b) / 2, atol=1e-6)
    assert acc.count == 2 and acc.total_weight == 4


def test_accumulator_holds_one_running_array():
    acc = MeanAccumulator()
    rng = np.random.default_rng(0)
    maps = [rng.random((4, 6, 5, 4)) for _ in range(3)]  # float64 input is summed in float32
    for m in maps:
        acc.add(m)
    arrays = [v for v in vars(acc).values() if isinstance(v, np.ndarray)]
    assert len(arrays) == 1 and arrays[0].dtype == np.float32 and arrays[0].shape == (4, 6, 5, 4)
    assert not any(isinstance(v, (list, tuple)) and v and isinstance(v[0], np.ndarray)
                   for v in vars(acc).values())
    np.testing.assert_allclose(acc.mean(), np.mean(maps, axis=0), atol=1e-6)
    assert acc.mean().dtype == np.float32


def test_accumulator_errors():
    acc = MeanAccumulator()
    with pytest.raises(BratsInputError, match="no map"):
        acc.mean()
    acc.add(np.zeros((4, 3, 3, 3)), name="fold 0")
    shape_error = r"different shape.*fold 0.*\[4, 3, 3, 3\].*fold 1.*\[4, 3, 3, 2\]"
    with pytest.raises(BratsInputError, match=shape_error):
        acc.add(np.zeros((4, 3, 3, 2)), name="fold 1")
    with pytest.raises(BratsInputError, match=r"different classes.*fold 0.*fold 2"):
        acc.add(np.zeros((4, 3, 3, 3)), meta={"classes": [0, 2, 1, 4]}, name="fold 2")
    with pytest.raises(BratsInputError, match="weight"):
        acc.add(np.zeros((4, 3, 3, 3)), weight=-1)
    with pytest.raises(BratsInputError, match="K, X, Y, Z"):
        acc.add(np.zeros((3, 3, 3)))
    with pytest.raises(BratsInputError, match="2 probability maps but 1 weights"):
        mean_probabilities([np.zeros((4, 1, 1, 1))] * 2, weights=[1])
    with pytest.raises(BratsInputError, match="no probability maps"):
        mean_probabilities([])


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=(7, 6, 5)).transpose(3, 0, 1, 2).astype(np.float32)
    path = tmp_path / "out" / "Brats17_TCIA_101_1.npz"
    meta = {"case_id": "Brats17_TCIA_101_1", "box": ((10, 17), (20, 26), (0, 5)), "fold": np.int64(3)}
    save_probabilities(path, probs, meta)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    loaded, meta_back = load_probabilities(path)
    assert loaded.dtype == np.float32 and loaded.shape == probs.shape
    np.testing.assert_allclose(loaded, probs, atol=1e-3)
    assert meta_back == {"case_id": "Brats17_TCIA_101_1", "box": [[10, 17], [20, 26], [0, 5]], "fold": 3,
                         "shape": [7, 6, 5], "classes": list(CLASS_LABELS)}
    with np.load(path) as raw:
        assert raw["probabilities"].dtype == np.float16


def test_mean_from_files(tmp_path):
    a = column(0.1, 0.6, 0.2, 0.1)
    b = column(0.1, 0.2, 0.6, 0.1)
    save_probabilities(tmp_path / "a.npz", a, {"case_id": "c1"})
    save_probabilities(tmp_path / "b.npz", b, {"case_id": "c1"})
    mean = mean_probabilities([tmp_path / "a.npz", str(tmp_path / "b.npz"), b], weights=[2, 1, 1])
    np.testing.assert_allclose(mean, (2 * a + 2 * b) / 4, atol=1e-3)
    assert mean.dtype == np.float32

    save_probabilities(tmp_path / "swapped.npz", b, {"case_id": "c1", "classes": [0, 2, 1, 4]})
    classes_error = r"classes.*a\.npz.*\[0, 1, 2, 4\].*swapped\.npz.*\[0, 2, 1, 4\]"
    with pytest.raises(BratsInputError, match=classes_error):
        mean_probabilities([tmp_path / "a.npz", tmp_path / "swapped.npz"])
    save_probabilities(tmp_path / "other.npz", b, {"case_id": "c2"})
    with pytest.raises(BratsInputError, match=r"case_id.*c1.*other\.npz.*c2"):
        mean_probabilities([tmp_path / "a.npz", tmp_path / "other.npz"])
    save_probabilities(tmp_path / "big.npz", np.zeros((4, 2, 1, 1)), {"case_id": "c1"})
    with pytest.raises(BratsInputError, match=r"shape.*a\.npz.*big\.npz"):
        mean_probabilities([tmp_path / "a.npz", tmp_path / "big.npz"])


def test_file_errors(tmp_path):
    with pytest.raises(BratsInputError, match="not found"):
        load_probabilities(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BratsInputError, match="bad.npz"):
        load_probabilities(bad)
    with pytest.raises(BratsInputError, match="classes"):
        save_probabilities(tmp_path / "x.npz", np.zeros((3, 1, 1, 1)), {"classes": [0, 1, 2, 4]})
    with pytest.raises(BratsInputError, match="JSON"):
        save_probabilities(tmp_path / "y.npz", np.zeros((4, 1, 1, 1)), {"when": object()})
    assert not list(tmp_path.glob("*.npz.*"))
