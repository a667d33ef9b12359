"""Packaging: pyproject and environment.yml agree; the core never imports the method packages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_pyproject_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r): r.replace(" ", "") for r in project["dependencies"]}
    tests = {_name(r): r.replace(" ", "") for r in project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = {}
    for item in env:
        if isinstance(item, str) and not item.startswith(("python", "pip")):
            name = _name(item)
            pip_name = CONDA_NAMES.get(name, name)
            conda[pip_name] = pip_name + item.replace(" ", "")[len(name):]
    pip = {_name(r): r.replace(" ", "") for r in next(i["pip"] for i in env if isinstance(i, dict))}
    assert conda == runtime
    assert pip == tests


def test_core_does_not_import_method_packages() -> None:
    for path in (ROOT / "brats").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("cascade", "ensemble"), f"{path} imports {name}"


def _imported_top_level_names() -> set[str]:
    names = set()
    for package in ("brats", "cascade", "ensemble"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names


def test_every_runtime_dependency_is_imported() -> None:
    import_names = {"pyyaml": "yaml"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {import_names.get(_name(r), _name(r)) for r in project["dependencies"]}
    assert required - _imported_top_level_names() == set()
