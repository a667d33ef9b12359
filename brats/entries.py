"""The reproduced entries: their configs, found as package data of the ``submissions`` package.

In a source checkout that package is the repository's ``submissions/`` folder; in an installed
wheel it is the copy installed beside ``brats``, so ``brats train isensee2017`` works from any
directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from brats.errors import BratsInputError

#: The import package whose ``*.yaml`` files are the entry configs.
CONFIG_PACKAGE = "submissions"


@dataclass(frozen=True)
class EntryInfo:
    """One entry config: its name, one-line description and profiles (``paper`` first)."""

    name: str
    description: str
    profiles: tuple[str, ...]
    path: Path


def configs_dir() -> Path:
    """The folder holding the ``<entry>.yaml`` configs (installed package data or the checkout).

    The ``submissions`` package sits beside ``brats`` (in a checkout and in an installed wheel
    alike); it is looked for there first, so that a ``submissions/`` folder in the current
    directory (e.g. the demo's output) cannot shadow it.

    Raises:
        BratsInputError: the ``submissions`` package is not installed (an install older than it).
    """
    beside = Path(__file__).resolve().parent.parent / CONFIG_PACKAGE
    if (beside / "__init__.py").is_file() and any(beside.glob("*.yaml")):
        return beside
    try:
        return Path(str(resources.files(CONFIG_PACKAGE)))
    except ModuleNotFoundError:
        raise BratsInputError(f"the entry configs (package {CONFIG_PACKAGE!r}) are not installed; "
                              "reinstall brats17-top3 (pip install -e . in a checkout)") from None


def entry_configs() -> dict[str, Path]:
    """Entry name → config file, sorted by name."""
    return {p.stem: p for p in sorted(configs_dir().glob("*.yaml"))}


def resolve_entry(entry: str) -> Path:
    """A config path (``.yaml``/``.yml``), or the name of a shipped entry config.

    Raises:
        BratsInputError: the path does not exist, or the name is no known entry.
    """
    path = Path(entry)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise BratsInputError(f"{path}: config file not found")
        return path
    configs = entry_configs()
    if entry not in configs:
        raise BratsInputError(f"unknown entry {entry!r}; known: {', '.join(configs) or 'none'} "
                              f"(or pass a .yaml path)")
    return configs[entry]


def describe_entries() -> list[EntryInfo]:
    """Every shipped entry with its ``description`` and profiles, sorted by name."""
    infos = []
    for name, path in entry_configs().items():
        raw = yaml.safe_load(path.read_text()) or {}
        profiles = ("paper", *(raw.get("profiles") or {}))
        infos.append(EntryInfo(name, str(raw.get("description", "")), profiles, path))
    return infos
