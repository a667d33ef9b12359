"""Provenance manifests: settings diffs, round trips, refusing and clearing output folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brats import __version__
from brats.errors import BratsInputError
from brats.manifest import (
    MANIFEST_NAME,
    check_folder,
    clear_folder,
    code_version,
    diff_settings,
    file_fingerprint,
    prepare_outputs,
    read_manifest,
    require_same,
    unrecorded_files,
    write_manifest,
)

SETTINGS = {"train": {"epochs": 2, "patch": (64, 64, 64)},
            "inference": {"amp": False, "mirror_axes": (0, 1, 2)},
            "members": {"a": {"sha256": "1"}}, "path": Path("/data/x")}


def test_diff_settings_nested_lists_and_ignore() -> None:
    new = {"train": {"epochs": 5, "patch": [64, 64, 64]},
           "inference": {"amp": True, "mirror_axes": [0, 1]},
           "members": {"a": {"sha256": "2"}, "x": {"sha256": "3"}}, "path": "/data/x"}
    assert diff_settings(SETTINGS, new) == [
        "inference.amp: False → True", "inference.mirror_axes: [0, 1, 2] → [0, 1]",
        "members.a.sha256: '1' → '2'", "members: added x", "train.epochs: 2 → 5"]
    assert diff_settings(new, SETTINGS, ignore=["inference", "members.a"]) == [
        "members: removed x", "train.epochs: 5 → 2"]
    assert diff_settings(SETTINGS, {**SETTINGS, "extra": 1}) == ["added extra"]
    assert diff_settings({"n": 1}, {"n": True}) == ["n: 1 → True"]
    assert diff_settings(SETTINGS, json.loads(json.dumps(SETTINGS, default=str))) == []


def test_round_trip_equals_a_fresh_record(tmp_path: Path) -> None:
    record = write_manifest(tmp_path, "predict", SETTINGS, outputs=["a.nii.gz"])
    assert read_manifest(tmp_path) == record
    assert record["settings"]["train"]["patch"] == [64, 64, 64]
    assert record["settings"]["path"] == "/data/x"
    assert record["kind"] == "predict" and record["outputs"] == ["a.nii.gz"]
    assert record["code"] == code_version() and code_version()["brats"] == __version__
    assert record["created"].endswith("+00:00")
    require_same(tmp_path, "predict", SETTINGS)
    with pytest.raises(BratsInputError, match=r"was made by other settings \(train.epochs: 2 → 3\); "
                                              "pass --overwrite"):
        require_same(tmp_path, "predict", {**SETTINGS, "train": {"epochs": 3, "patch": [64] * 3}})
    require_same(tmp_path, "predict", {**SETTINGS, "train": {"epochs": 3, "patch": [64] * 3}},
                 ignore=["train.epochs"])
    with pytest.raises(BratsInputError, match="made by 'predict', not 'ensemble'"):
        require_same(tmp_path, "ensemble", SETTINGS)
    require_same(tmp_path / "absent", "predict", {})


def test_long_diffs_are_cut_after_five(tmp_path: Path) -> None:
    write_manifest(tmp_path, "k", {f"k{i}": i for i in range(8)})
    with pytest.raises(BratsInputError, match=r"cross-validation folder .*k4: 4 → 5; … 3 more\)"):
        require_same(tmp_path, "k", {f"k{i}": i + 1 for i in range(8)},
                     what="cross-validation folder")


@pytest.mark.parametrize("content, message", [("{not json", "cannot read the manifest"),
                                              ('["a"]', "not a brats manifest"),
                                              ('{"kind": "predict"}', "not a brats manifest")])
def test_corrupt_manifest_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / MANIFEST_NAME).write_text(content)
    with pytest.raises(BratsInputError, match=f"{MANIFEST_NAME}: {message}"):
        read_manifest(tmp_path)
    assert read_manifest(tmp_path / "none") is None


def test_code_version_is_this_checkout() -> None:
    commit = code_version()["commit"]
    assert commit == "unknown" or len(commit) == 40 and int(commit, 16) >= 0


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(b"abc")
    first = file_fingerprint(path)
    assert first == {"size": 3, "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
    path.write_bytes(b"abd")
    assert file_fingerprint(path)["sha256"] != first["sha256"]


def test_clear_folder_removes_only_recorded_outputs(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    (folder / "tb").mkdir(parents=True)
    for name in ("a.nii.gz", "b.nii.gz", ".a.nii.gz.x1.tmp.nii.gz", "tb/events"):
        (folder / name).write_text("x")
    write_manifest(folder, "predict", {}, outputs=["a.nii.gz", "b.nii.gz", "tb"])
    (folder / "notes.txt").write_text("mine")
    assert unrecorded_files(folder) == ["notes.txt"]
    with pytest.raises(BratsInputError, match=r"holds files that no manifest.json says brats wrote "
                                              r"\(notes.txt\)"):
        clear_folder(folder)
    assert (folder / "a.nii.gz").is_file()  # nothing removed
    clear_folder(folder, keep=["notes.txt"])
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_clear_folder_refuses_a_folder_without_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x.nii.gz").write_text("x")
    with pytest.raises(BratsInputError, match=r"\(x.nii.gz\)"):
        clear_folder(folder)
    (tmp_path / "evil").mkdir()
    write_manifest(folder, "predict", {}, outputs=["../evil"])
    with pytest.raises(BratsInputError, match="not a path inside the folder"):
        clear_folder(folder)
    assert (tmp_path / "evil").is_dir() and (folder / "x.nii.gz").is_file()


def test_check_folder_modes(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    assert check_folder(folder, "predict", {"a": 1}) is False  # missing: fine
    prepare_outputs({folder: ["c1.nii.gz"]}, "predict", {"a": 1})
    (folder / "c1.nii.gz").write_text("x")
    with pytest.raises(BratsInputError, match="is not empty; pass --continue .* or --overwrite"):
        check_folder(folder, "predict", {"a": 1})
    assert check_folder(folder, "predict", {"a": 1}, resume=True) is False
    with pytest.raises(BratsInputError, match=r"other settings \(a: 1 → 2\)"):
        check_folder(folder, "predict", {"a": 2}, resume=True)
    assert check_folder(folder, "predict", {"a": 2}, overwrite=True) is True
    assert check_folder(folder, "predict", {"a": 1}, resume=True, overwrite=True) is False
    assert check_folder(folder, "predict", {"a": 2}, resume=True, overwrite=True) is True
    prepare_outputs({folder: ["c2.nii.gz"]}, "predict", {"a": 1}, resume=True)
    assert read_manifest(folder)["outputs"] == ["c1.nii.gz", "c2.nii.gz"]
    prepare_outputs({folder: ["c3.nii.gz"]}, "predict", {"a": 2}, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST_NAME]
    assert read_manifest(folder)["outputs"] == ["c3.nii.gz"]
    (folder / "other.txt").write_text("x")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "x.nii.gz").write_text("x")
    with pytest.raises(BratsInputError, match="holds files but no manifest.json"):
        check_folder(tmp_path / "bare", "predict", {}, resume=True)
    with pytest.raises(BratsInputError, match=r"\(other.txt\)"):  # checked before anything changes
        prepare_outputs({tmp_path / "new": [], folder: []}, "predict", {"a": 3}, overwrite=True)
    assert not (tmp_path / "new").exists() and read_manifest(folder)["settings"] == {"a": 2}
