"""The built wheel works outside the checkout: entry configs ship as package data, the CLI runs.

The wheel is built from a copy of the checkout's files (tracked and untracked, not ignored), so
the build never writes into the working tree, and installed with ``pip --target`` into a folder
put first on ``PYTHONPATH``, which reuses the test environment's dependencies without network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = ("isensee2017", "kamnitsas2017", "wang2017")


def _checkout_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed wheel (``--target`` layout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    for name in _checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"),
                    str(source)], check=True, capture_output=True)
    wheel, = (tmp / "dist").glob("brats17_top3-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"submissions/{entry}.yaml" for entry in ENTRIES} <= set(names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    target = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    return target


def _run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_installed_wheel_finds_its_own_entry_configs(installed: Path, tmp_path: Path) -> None:
    code = ("import brats, brats.entries as e; print(brats.__file__); "
            "print(e.resolve_entry('isensee2017')); print(e.configs_dir())")
    result = _run(installed, tmp_path, "-c", code)
    assert result.returncode == 0, result.stderr
    module, config, folder = (Path(line) for line in result.stdout.splitlines())
    assert module == installed / "brats" / "__init__.py"
    assert config == installed / "submissions" / "isensee2017.yaml"
    assert folder == installed / "submissions"
    assert config.read_text() == (ROOT / "submissions" / "isensee2017.yaml").read_text()


def test_installed_cli_lists_entries_and_resolves_them(installed: Path, tmp_path: Path) -> None:
    result = _run(installed, tmp_path, "-m", "brats", "entries")
    assert result.returncode == 0, result.stderr
    listed = [line.split(":")[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert listed == list(ENTRIES)
    assert result.stdout.count("profiles: paper, quick") == 3

    result = _run(installed, tmp_path, "-m", "brats", "train", "isensee2017", "--help")
    assert result.returncode == 0 and "usage: brats train" in result.stdout

    # The entry resolves and its config loads; training then stops at the missing cache.
    result = _run(installed, tmp_path, "-m", "brats", "--no-progress", "train", "isensee2017",
                  "--data", "nocache", "--out", "run", "--profile", "quick")
    assert result.returncode == 2
    assert "unknown entry" not in result.stderr and "nocache" in result.stderr
    assert not (tmp_path / "run").exists()
