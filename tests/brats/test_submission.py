"""Submission writer, portal-style validation and the flat zip."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from brats.data.layouts import discover
from brats.errors import BratsInputError
from brats.submission import check_submission, write_submission, zip_submission
from tests.conftest import make_arrays, write_tiny_dataset


@pytest.fixture()
def validation(tmp_path: Path) -> Path:
    root = tmp_path / "val"
    write_tiny_dataset(root, "2020", 2, with_seg=False)
    return root


def _write_all(images: Path, out: Path, release: str = "2020") -> None:
    for i, case in enumerate(discover(images), start=1):
        _, labels = make_arrays(i)
        write_submission(labels, case.images[0], out / f"{case.id}.nii.gz", release=release)


def test_round_trip_nibabel_and_simpleitk(validation: Path, tmp_path: Path) -> None:
    case = discover(validation)[0]
    _, labels = make_arrays(1)
    path = write_submission(labels, case.images[0], tmp_path / f"{case.id}.nii.gz", "2020")
    img = nib.load(path)
    ref = nib.load(case.images[0])
    assert img.get_data_dtype() == np.uint8
    assert np.array_equal(img.affine, ref.affine)
    assert np.array_equal(np.asanyarray(img.dataobj), labels)
    ours, theirs = sitk.ReadImage(str(path)), sitk.ReadImage(str(case.images[0]))
    assert ours.GetOrigin() == theirs.GetOrigin()
    assert ours.GetSpacing() == theirs.GetSpacing()
    assert ours.GetDirection() == theirs.GetDirection()
    assert np.array_equal(sitk.GetArrayFromImage(ours).transpose(2, 1, 0), labels)


def test_2023_writes_et_as_3(tmp_path: Path) -> None:
    write_tiny_dataset(tmp_path / "val", "2023", 1, with_seg=False)
    case = discover(tmp_path / "val")[0]
    _, labels = make_arrays(1)
    path = write_submission(labels, case.images[0], tmp_path / f"{case.id}.nii.gz", "2023")
    stored = np.asanyarray(nib.load(path).dataobj)
    assert set(np.unique(stored)) == {0, 1, 2, 3}
    assert np.array_equal(stored == 3, labels == 4)


def test_writer_errors(validation: Path, tmp_path: Path) -> None:
    case = discover(validation)[0]
    _, labels = make_arrays(1)
    with pytest.raises(BratsInputError, match=r"must be named <case id>\.nii\.gz"):
        write_submission(labels, case.images[0], tmp_path / f"{case.id}_seg.nii.gz", "2020")
    with pytest.raises(BratsInputError, match="does not match the reference"):
        write_submission(labels[:-1], case.images[0], tmp_path / f"{case.id}.nii.gz", "2020")
    path = write_submission(labels, case.images[0], tmp_path / f"{case.id}.nii.gz", "2020")
    with pytest.raises(BratsInputError, match="refusing to overwrite"):
        write_submission(labels, case.images[0], path, "2020")
    cavity = labels.copy()
    cavity[0, 0, 0] = 5
    with pytest.raises(BratsInputError, match=r"canonical labels \[5\]"):
        write_submission(cavity, case.images[0], tmp_path / "x" / f"{case.id}.nii.gz", "2020")


def test_valid_folder_is_zipped_flat(validation: Path, tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    _write_all(validation, sub)
    (sub / ".DS_Store").write_text("ignored")
    problems = check_submission(sub, validation, progress=False)
    assert problems.empty
    out = zip_submission(sub, tmp_path / "sub.zip")
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["BraTS20_Validation_001.nii.gz",
                                      "BraTS20_Validation_002.nii.gz"]
    with pytest.raises(BratsInputError, match="refusing to overwrite"):
        zip_submission(sub, out)


def _defect(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> None:
    img = nib.load(path)
    nib.save(nib.Nifti1Image(array, img.affine if affine is None else affine), path)


def test_every_defect_is_caught(validation: Path, tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    _write_all(validation, sub)
    first, second = sorted(sub.glob("*.nii.gz"))
    good = np.asanyarray(nib.load(first).dataobj)
    good_affine = nib.load(first).affine
    cases = {
        "shape": (good[:-1], None, "error", "shape"),
        "affine": (good, np.diag([2.0, 2, 2, 1]), "error", "affine differs"),
        "float": (good.astype(np.float32), None, "error", "not an integer type"),
        "label3": (np.where(good == 4, 3, good).astype(np.uint8), None, "error", r"labels \[3\]"),
        "int16": (good.astype(np.int16), None, "warning", "uint8 is recommended"),
        "4d": (good[..., None].repeat(2, axis=3), None, "error", "not a 3-D image"),
    }
    for name, (array, affine, severity, message) in cases.items():
        _defect(first, array, affine)
        problems = check_submission(sub, validation, progress=False)
        assert problems["severity"].tolist() == [severity], name
        assert problems["problem"].str.contains(message).all(), name
        _defect(first, good, good_affine)
    first.write_bytes(b"corrupt")
    problems = check_submission(sub, validation, progress=False)
    assert problems["problem"].str.contains("corrupt or truncated").all()
    first.unlink()
    (sub / "BraTS20_Validation_001.nii").write_bytes(b"")
    (sub / "notes").mkdir()
    (sub / "BraTS20_Validation_099.nii.gz").write_bytes(b"")
    problems = check_submission(sub, validation, progress=False)
    text = problems.set_index("file")["problem"].to_dict()
    assert text["BraTS20_Validation_001.nii.gz"] == "missing prediction"
    assert "must be gzip-compressed" in text["BraTS20_Validation_001.nii"]
    assert "sub-folder" in text["notes"]
    assert "no such case" in text["BraTS20_Validation_099.nii.gz"]
    assert second.name not in text
