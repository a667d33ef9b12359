"""Case discovery on fake trees of every release (empty files where only names matter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from brats.data.layouts import detect_release, discover, scan
from brats.data.releases import MODALITIES, get_release
from brats.errors import BratsInputError


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def fake_case(root: Path, release: str, case_id: str, seg: bool = True, ext: str = ".nii.gz",
              skip: tuple[str, ...] = ()) -> None:
    rel = get_release(release)
    for kind in (*MODALITIES, "seg") if seg else MODALITIES:
        if kind not in skip:
            touch(root / rel.file_name(case_id, kind).replace(".nii.gz", ext))


TREES = [
    ("2017", ["HGG/Brats17_TCIA_105_1", "LGG/Brats17_2013_0_1", "HGG/Brats17_CBICA_AAB_1"], ".nii.gz"),
    ("2018", ["HGG/Brats18_TCIA01_390_1", "LGG/Brats18_TCIA09_177_1"], ".nii.gz"),
    ("2019", ["HGG/BraTS19_CBICA_AAB_1", "LGG/BraTS19_TMC_09043_1"], ".nii"),
    ("2020", ["BraTS20_Training_001", "BraTS20_Training_369"], ".nii"),
    ("2021", ["BraTS2021_00000", "BraTS2021_01666"], ".nii.gz"),
    ("2023", ["BraTS-GLI-00000-000", "BraTS-GLI-01666-001"], ".nii.gz"),
]


@pytest.mark.parametrize("release, folders, ext", TREES)
def test_every_release_is_detected_and_discovered(tmp_path: Path, release: str,
                                                  folders: list[str], ext: str) -> None:
    for folder in folders:
        case_id = folder.split("/")[-1]
        fake_case(tmp_path / folder, release, case_id, ext=ext)
    assert detect_release(tmp_path).name == release
    cases = discover(tmp_path)
    assert [c.id for c in cases] == sorted(f.split("/")[-1] for f in folders)
    rel = get_release(release)
    for case in cases:
        assert case.release == release
        assert [p.name for p in case.images] == [
            rel.file_name(case.id, m).replace(".nii.gz", ext) for m in MODALITIES]
        assert case.seg is not None and case.seg.name.startswith(case.id)
        expected_grade = next(f.split("/")[0] for f in folders if f.endswith(case.id))
        assert case.grade == (expected_grade if rel.grade_folders else None)


def test_gli_modalities_map_to_canonical_order(tmp_path: Path) -> None:
    fake_case(tmp_path / "BraTS-GLI-00001-000", "2023", "BraTS-GLI-00001-000")
    (case,) = discover(tmp_path)
    assert [p.name.split("-")[-1] for p in case.images] == [
        "t1n.nii.gz", "t1c.nii.gz", "t2w.nii.gz", "t2f.nii.gz"]


def test_validation_folder_without_segmentations(tmp_path: Path) -> None:
    for i in (1, 2):
        fake_case(tmp_path / f"BraTS20_Validation_00{i}", "2020", f"BraTS20_Validation_00{i}",
                  seg=False)
    cases = discover(tmp_path)
    assert [c.seg for c in cases] == [None, None]


def test_forced_release_2024_reads_gli_names(tmp_path: Path) -> None:
    fake_case(tmp_path / "BraTS-GLI-02000-100", "2024", "BraTS-GLI-02000-100")
    assert discover(tmp_path)[0].release == "2023"
    assert discover(tmp_path, release="2024")[0].release == "2024"


def test_msd_layout(tmp_path: Path) -> None:
    for i in (1, 2):
        touch(tmp_path / "imagesTr" / f"BRATS_00{i}.nii.gz")
        touch(tmp_path / "labelsTr" / f"BRATS_00{i}.nii.gz")
        touch(tmp_path / "imagesTr" / f"._BRATS_00{i}.nii.gz")  # macOS resource forks in the tar
    touch(tmp_path / "imagesTs" / "BRATS_485.nii.gz")
    cases = discover(tmp_path)
    assert detect_release(tmp_path).name == "msd"
    assert [c.id for c in cases] == ["BRATS_001", "BRATS_002"]
    assert cases[0].seg == tmp_path / "labelsTr" / "BRATS_001.nii.gz"
    assert len(set(cases[0].images)) == 1
    test = discover(tmp_path / "imagesTs")
    assert [(c.id, c.seg) for c in test] == [("BRATS_485", None)]


def test_kaggle_2020_case_355_label_name(tmp_path: Path) -> None:
    folder = tmp_path / "BraTS20_Training_355"
    fake_case(folder, "2020", "BraTS20_Training_355", seg=False, ext=".nii")
    touch(folder / "W39_1998.09.19_Segm.nii")
    fake_case(tmp_path / "BraTS20_Training_001", "2020", "BraTS20_Training_001", ext=".nii")
    cases = discover(tmp_path)
    assert cases[1].seg == folder / "W39_1998.09.19_Segm.nii"


def test_missing_modality_is_named(tmp_path: Path) -> None:
    fake_case(tmp_path / "HGG/Brats17_TCIA_1_1", "2017", "Brats17_TCIA_1_1", skip=("t1ce",))
    fake_case(tmp_path / "HGG/Brats17_TCIA_2_1", "2017", "Brats17_TCIA_2_1")
    cases, problems = scan(tmp_path)
    assert [c.id for c in cases] == ["Brats17_TCIA_2_1"]
    assert len(problems) == 1
    assert "missing modality t1ce (expected Brats17_TCIA_1_1_t1ce.nii.gz)" in problems[0].message
    with pytest.raises(BratsInputError, match="Brats17_TCIA_1_1: missing modality t1ce"):
        discover(tmp_path)


def test_missing_segmentation_among_training_cases(tmp_path: Path) -> None:
    fake_case(tmp_path / "BraTS2021_00001", "2021", "BraTS2021_00001")
    fake_case(tmp_path / "BraTS2021_00002", "2021", "BraTS2021_00002", seg=False)
    with pytest.raises(BratsInputError, match="BraTS2021_00002: no segmentation"):
        discover(tmp_path)


def test_file_present_twice(tmp_path: Path) -> None:
    fake_case(tmp_path / "BraTS2021_00001", "2021", "BraTS2021_00001")
    touch(tmp_path / "BraTS2021_00001" / "BraTS2021_00001_t2.nii")
    with pytest.raises(BratsInputError, match="t2 present more than once"):
        discover(tmp_path)


def test_nothing_found(tmp_path: Path) -> None:
    touch(tmp_path / "scan.nii.gz")
    with pytest.raises(BratsInputError, match="no BraTS files found"):
        discover(tmp_path)
    with pytest.raises(BratsInputError, match="not found"):
        discover(tmp_path / "absent")
    with pytest.raises(BratsInputError, match="unknown release"):
        discover(tmp_path, release="2016")
