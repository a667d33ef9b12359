"""Entry configs found through the ``submissions`` package; names, paths and descriptions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from brats.entries import configs_dir, describe_entries, entry_configs, resolve_entry
from brats.errors import BratsInputError

SUBMISSIONS = Path(__file__).resolve().parents[2] / "submissions"


def test_configs_dir_is_the_checkouts_submissions_folder() -> None:
    assert configs_dir() == SUBMISSIONS
    assert entry_configs() == {name: SUBMISSIONS / f"{name}.yaml"
                               for name in ("isensee2017", "kamnitsas2017", "wang2017")}


def test_a_submissions_folder_in_the_working_directory_does_not_hide_the_entries(
        tmp_path: Path) -> None:
    """``python -m brats`` puts the working directory first on sys.path; the demo's output holds a
    ``submissions/`` folder, which must not shadow the installed entry configs."""
    import subprocess
    import sys

    (tmp_path / "submissions" / "isensee2017").mkdir(parents=True)
    found = subprocess.run([sys.executable, "-m", "brats", "entries"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert all(name in found for name in ("isensee2017", "kamnitsas2017", "wang2017"))


def test_resolve_entry_by_name_and_by_path(tmp_path: Path) -> None:
    assert resolve_entry("wang2017") == SUBMISSIONS / "wang2017.yaml"
    own = tmp_path / "mine.yml"
    own.write_text("entry: mine\n")
    assert resolve_entry(str(own)) == own
    with pytest.raises(BratsInputError, match="absent.yaml: config file not found"):
        resolve_entry(str(tmp_path / "absent.yaml"))
    with pytest.raises(BratsInputError, match="known: isensee2017, kamnitsas2017, wang2017"):
        resolve_entry("wang2018")


def test_describe_entries_reads_description_and_profiles() -> None:
    infos = {info.name: info for info in describe_entries()}
    assert list(infos) == ["isensee2017", "kamnitsas2017", "wang2017"]
    for name, info in infos.items():
        raw = yaml.safe_load((SUBMISSIONS / f"{name}.yaml").read_text())
        assert info.description == raw["description"] and info.description
        assert info.profiles == ("paper", *raw["profiles"])
        assert "quick" in info.profiles
        assert info.path == SUBMISSIONS / f"{name}.yaml"
