"""The repository stands alone: no file points at material outside it, and it carries its licence."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Paths of a development workspace that a clone of this repository does not have.
OUTSIDE = ("../shared", "shared/reference")


def _repository_files() -> list[Path]:
    """Tracked files and new ones not ignored (what the next commit may hold)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def test_no_file_refers_to_the_outside_workspace() -> None:
    offenders = []
    for path in _repository_files():
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (figures)
        offenders += [f"{path.relative_to(ROOT)}:{number}"
                      for number, line in enumerate(text.splitlines(), start=1)
                      if any(marker in line for marker in OUTSIDE)]
    assert offenders == []


def test_licence_file_is_apache_2_and_declared() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
