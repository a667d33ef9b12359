"""predict / ensemble / validate / evaluate end to end on every label convention: the label
values written and checked per release (2017: ET 4; 2023: ET 3; 2024: ET 3 and RC 4 in the
references; MSD: 1 edema, 2 non-enhancing, 3 enhancing)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brats.cli import main
from brats.data.labels import CANONICAL_LABELS
from brats.data.layouts import discover
from brats.data.releases import get_release
from brats.inference.combine import save_probabilities
from brats.preprocess.crop import bounding_box, brain_mask
from brats.submission import submission_name
from tests.conftest import write_tiny_dataset

#: release → the label values a prediction may hold
WRITTEN = {"2017": {0, 1, 2, 4}, "2023": {0, 1, 2, 3}, "2024": {0, 1, 2, 3}, "msd": {0, 1, 2, 3}}
TINY = ["data.patch_size=[32, 32, 32]", "data.workers=0", "network.kwargs.base_filters=4",
        "train.epochs=1", "train.iterations_per_epoch=2", "train.val_batches=0",
        "train.tensorboard=false", "inference.num_mirrors=1", "inference.test_time_dropout=false",
        "inference.repeats=1"]


def raw(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def release_args(release: str) -> list[str]:
    return ["--release", release] if release == "2024" else []


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Isensee network trained for two steps on 2017 data (any release may be predicted)."""
    root = tmp_path_factory.mktemp("model")
    write_tiny_dataset(root / "Brats17TrainingData", "2017", 2)
    assert main(["prepare", str(root / "Brats17TrainingData"), "--out", str(root / "cache"),
                 "--no-progress"]) == 0
    assert main(["train", "isensee2017", "--data", str(root / "cache"), "--fold", "all",
                 "--out", str(root / "run"), "--profile", "quick", "--no-progress", *TINY]) == 0
    return root / "run"


@pytest.mark.parametrize("release", ["2017", "2023", "2024", "msd"])
def test_every_release_round_trips_through_ensemble_validate_and_evaluate(
        release: str, tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    write_tiny_dataset(data, release, 2)
    cases = discover(data, release if release == "2024" else None)
    assert {c.release for c in cases} == {get_release(release).name}
    if release == "2024":             # a resection cavity (4) in the first reference
        first = cases[0].load()
        spots = np.argwhere(brain_mask(first.image) & (first.labels == 0))[:2]
        seg = nib.load(cases[0].seg)
        values = np.asarray(seg.dataobj).copy()
        values[tuple(spots.T)] = 4
        nib.save(nib.Nifti1Image(values, seg.affine, seg.header), cases[0].seg)
    # probability maps that are one-hot on the references' canonical labels, on the brain box
    source = tmp_path / "maps"
    for case in cases:
        loaded = case.load()
        box = bounding_box(brain_mask(loaded.image))
        crop = loaded.labels[tuple(slice(a, b) for a, b in box)]
        probs = np.stack([(crop == v) for v in CANONICAL_LABELS]).astype(np.float32)
        probs[0] += ~probs.any(0)                       # RC and anything else: background
        save_probabilities(source / f"{case.id}_probabilities.npz", probs,
                           {"case_id": case.id, "box": box, "shape": list(loaded.labels.shape)})
    fused = tmp_path / "fused"
    assert main(["ensemble", str(source), "--input", str(data), "--output", str(fused),
                 "--no-progress", *release_args(release)]) == 0
    for case in cases:
        written, reference = raw(fused / submission_name(case.id)), raw(case.seg)
        assert set(np.unique(written).tolist()) <= WRITTEN[release]
        cavity = (reference == 4) if release == "2024" else np.zeros(reference.shape, bool)
        assert np.array_equal(written[~cavity], reference[~cavity])
        assert not written[cavity].any()
    assert release != "2024" or (raw(cases[0].seg) == 4).sum() == 2
    assert main(["validate", str(fused), "--images", str(data), "--zip", str(tmp_path / "s.zip"),
                 *release_args(release)]) == 0
    scores = tmp_path / "scores.csv"
    assert main(["evaluate", str(fused), str(data), "--out", str(scores), "--no-progress",
                 *release_args(release)]) == 0
    table = pd.read_csv(scores)
    assert len(table) == 3 * len(cases) and (table["dice"] == 1.0).all(), table
    capsys.readouterr()
    predicted = tmp_path / "predicted"
    assert main(["predict", str(model), "--input", str(data), "--output", str(predicted),
                 "--no-progress", *release_args(release)]) == 0
    for case in cases:
        assert set(np.unique(raw(predicted / submission_name(case.id))).tolist()) <= WRITTEN[release]
    assert main(["validate", str(predicted), "--images", str(data), "--zip",
                 str(tmp_path / "p.zip"), *release_args(release)]) == 0
