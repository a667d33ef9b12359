"""``brats evaluate``: matching, errors, and values against a direct computation."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brats.cli import main
from brats.data.geometry import voxel_spacing
from brats.data.layouts import discover
from brats.errors import BratsInputError
from brats.evaluation import COLUMNS, default_convention, evaluate_folder
from brats.metrics import case_metrics
from tests.conftest import write_tiny_dataset


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "train"
    write_tiny_dataset(root, "2017", 3)
    return root


def copy_predictions(dataset: Path, out: Path, change=None) -> Path:
    """Write each case's reference as its prediction, optionally changed by ``change(labels)``."""
    out.mkdir()
    for case in discover(dataset):
        img = nib.load(case.seg)
        labels = np.asanyarray(img.dataobj)
        if change is not None:
            labels = change(labels)
        nib.save(nib.Nifti1Image(labels.astype(np.uint8), img.affine), out / f"{case.id}.nii.gz")
    return out


def test_against_itself_is_perfect(dataset: Path, tmp_path: Path) -> None:
    preds = copy_predictions(dataset, tmp_path / "pred")
    table = evaluate_folder(preds, dataset, progress=False)
    assert table.columns.tolist() == COLUMNS
    assert len(table) == 9 and table["region"].tolist()[:3] == ["WT", "TC", "ET"]
    assert (table["dice"] == 1).all() and (table["hd95"] == 0).all()
    assert (table["sensitivity"] == 1).all() and (table["specificity"] == 1).all()
    assert (table["volume_pred"] == table["volume_ref"]).all()


def test_perturbed_copy_matches_direct_computation(dataset: Path, tmp_path: Path) -> None:
    def shift(labels: np.ndarray) -> np.ndarray:
        out = np.roll(labels, 1, axis=0)
        out[out == 1] = 4  # necrosis predicted as enhancing
        return out

    preds = copy_predictions(dataset, tmp_path / "pred", shift)
    table = evaluate_folder(preds, dataset, jobs=2, progress=False)
    for case in discover(dataset):
        data = case.load()
        expected = pd.DataFrame(case_metrics(shift(data.labels), data.labels,
                                             spacing=voxel_spacing(data.affine)))
        got = table[table["case"] == case.id].drop(columns="case").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected[got.columns])
    assert (table.loc[table["region"] == "TC", "dice"] < 1).all()


def test_missing_and_extra_predictions(dataset: Path, tmp_path: Path) -> None:
    preds = copy_predictions(dataset, tmp_path / "pred")
    missing = sorted(preds.iterdir())[0]
    missing.unlink()
    with pytest.raises(BratsInputError, match=r"1 case\(s\) have no prediction.*Brats17_SYN_001_1"
                                              r".*--allow-missing"):
        evaluate_folder(preds, dataset, progress=False)
    table = evaluate_folder(preds, dataset, allow_missing=True, progress=False)
    first = table[table["case"] == "Brats17_SYN_001_1"]
    assert (first["dice"] == 0).all() and (first["volume_pred"] == 0).all()
    # CaPTk's empty-prediction HD95: the image diagonal in voxels (20×18×12 grid), not in mm
    assert first["hd95"].iloc[0] == pytest.approx(np.sqrt(20**2 + 18**2 + 12**2))
    (preds / "Brats17_EXTRA_1_1.nii.gz").write_bytes(missing.name.encode())
    with pytest.raises(BratsInputError, match="1 prediction.* without a reference.*EXTRA"):
        evaluate_folder(preds, dataset, allow_missing=True, progress=False)


def test_bad_predictions_name_the_case(dataset: Path, tmp_path: Path) -> None:
    preds = copy_predictions(dataset, tmp_path / "pred")
    path = preds / "Brats17_SYN_002_1.nii.gz"
    img = nib.load(path)
    labels = np.asanyarray(img.dataobj)
    nib.save(nib.Nifti1Image(labels[:, :, :-1], img.affine), path)
    with pytest.raises(BratsInputError, match="Brats17_SYN_002_1: prediction shape"):
        evaluate_folder(preds, dataset, progress=False)
    nib.save(nib.Nifti1Image(labels, np.eye(4)), path)
    with pytest.raises(BratsInputError, match="Brats17_SYN_002_1: prediction affine differs"):
        evaluate_folder(preds, dataset, progress=False)
    nib.save(nib.Nifti1Image(np.where(labels == 4, 3, labels).astype(np.uint8), img.affine), path)
    with pytest.raises(BratsInputError, match=r"Brats17_SYN_002_1: .*labels \[3\]"):
        evaluate_folder(preds, dataset, progress=False)
    path.write_bytes(b"truncated")
    with pytest.raises(BratsInputError, match="corrupt or truncated"):
        evaluate_folder(preds, dataset, progress=False)


def test_flat_reference_folder(dataset: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for case in discover(dataset):
        (flat / case.seg.name).write_bytes(case.seg.read_bytes())
    preds = copy_predictions(dataset, tmp_path / "pred")
    table = evaluate_folder(preds, flat, progress=False)
    assert sorted(table["case"].unique()) == [c.id for c in discover(dataset)]
    assert (table["dice"] == 1).all()


def test_cli_writes_csv_and_summary(dataset: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    preds = copy_predictions(dataset, tmp_path / "pred")
    out = tmp_path / "metrics.csv"
    assert main(["evaluate", str(preds), str(dataset), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for row in ("Mean", "StdDev", "Median", "25quantile", "75quantile"):
        assert row in printed
    assert pd.read_csv(out).columns.tolist() == COLUMNS
    assert main(["evaluate", str(preds), str(dataset), "--out", str(out), "--no-progress"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("release, expected", [("2017", "brats-legacy"), ("2021", "brats-legacy"),
                                               ("2023", "brats2023-lesionwise"),
                                               ("2024", "brats2024")])
def test_default_convention_follows_the_release(tmp_path: Path, release: str, expected: str) -> None:
    root = tmp_path / "data"
    write_tiny_dataset(root, release, 1)
    preds = copy_predictions(root, tmp_path / "pred")
    # 2023 and 2024 share their file names, so 2024 is named rather than detected
    assert evaluate_folder(preds, root, release=release,
                           progress=False).attrs["convention"] == expected
    table = evaluate_folder(preds, root, convention="max-directed", progress=False)
    assert table.attrs["convention"] == "max-directed"


def test_default_convention_mapping_and_perfect_2024_scores(tmp_path: Path) -> None:
    """2024 references are scored by the ``brats2024`` convention; a prediction equal to the
    reference has every instance matched to itself: Dice 1 and HD95 0 in every region."""
    assert default_convention("brats2017") == "brats-legacy"
    assert default_convention("brats2023") == "brats2023-lesionwise"
    assert default_convention("brats2024") == "brats2024"
    root = tmp_path / "data"
    write_tiny_dataset(root, "2024", 1)
    preds = copy_predictions(root, tmp_path / "pred")
    table = evaluate_folder(preds, root, release="2024", progress=False)
    assert table.attrs["convention"] == "brats2024"
    assert table["dice"].tolist() == [1.0, 1.0, 1.0]
    assert table["hd95"].tolist() == [0.0, 0.0, 0.0]
