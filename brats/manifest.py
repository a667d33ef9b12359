"""Provenance records: one ``manifest.json`` per folder a command fills (run, prediction, ensemble
and reproduce folders).

A manifest says which command made the folder (``kind``), with which settings (``settings``,
plain JSON: what makes the results what they are), with which code and when, and optionally
which files it wrote (``outputs``, paths relative to the folder). Commands compare the settings
of an existing folder with their own before they add to it, and ``--overwrite`` removes only
the recorded outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Any

from brats import __version__
from brats.errors import BratsInputError
from brats.io import write_json

MANIFEST_NAME = "manifest.json"
SOURCE_ROOT = Path(__file__).resolve().parents[1]
MAX_SHOWN = 5


@lru_cache(maxsize=1)
def _git_head() -> str:
    """The commit checked out in the source tree, or ``"unknown"`` (no git checkout, no git)."""
    if not (SOURCE_ROOT / ".git").exists():
        return "unknown"
    try:
        done = subprocess.run(["git", "-C", str(SOURCE_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = done.stdout.strip()
    return text if done.returncode == 0 and len(text) == 40 else "unknown"


def code_version() -> dict[str, str]:
    """``{"brats": version, "commit": git HEAD of the source tree or "unknown"}``; never fails."""
    return {"brats": __version__, "commit": _git_head()}


def _plain(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"settings value {value!r} ({type(value).__name__}) is not JSON-able")


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON: tuples → lists, paths → str, keys → str."""
    return json.loads(json.dumps(value, default=_plain))


def file_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex}`` of a file: changes whenever its content does."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"size": Path(path).stat().st_size, "sha256": digest.hexdigest()}


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of ``folder``; None when it has none.

    Raises:
        BratsInputError: the manifest cannot be read or is not a brats manifest.
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BratsInputError(f"{path}: cannot read the manifest ({exc}); remove the folder or "
                              "choose a new output folder") from None
    if (not isinstance(record, dict) or not isinstance(record.get("kind"), str)
            or not isinstance(record.get("settings"), dict)):
        raise BratsInputError(f"{path}: not a brats manifest (no kind and settings); remove the "
                              "folder or choose a new output folder")
    return record


def write_manifest(folder: str | os.PathLike[str], kind: str, settings: dict[str, Any],
                   **extra: Any) -> dict[str, Any]:
    """Write ``folder/manifest.json`` atomically and return the record.

    The record is ``{"kind", "settings", "code": code_version(), "created": ISO time (UTC),
    **extra}``, normalised to what reads back from JSON. ``outputs=[relative paths]`` in
    ``extra`` lists what the command wrote (what :func:`clear_folder` may remove).
    """
    record = jsonable({"kind": kind, "settings": settings, "code": code_version(),
                       "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       **extra})
    write_json(record, Path(folder) / MANIFEST_NAME)
    return record


def _ignored(path: str, ignore: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in ignore)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _diff(old: Any, new: Any, path: str, ignore: tuple[str, ...], out: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else key
            if _ignored(sub, ignore):
                continue
            where = f"{path}: " if path else ""
            if key not in old:
                out.append(f"{where}added {key}")
            elif key not in new:
                out.append(f"{where}removed {key}")
            else:
                _diff(old[key], new[key], sub, ignore, out)
    elif json.dumps(old, sort_keys=True) != json.dumps(new, sort_keys=True):
        out.append(f"{path}: {_show(old)} → {_show(new)}")


def diff_settings(old: dict[str, Any], new: dict[str, Any], ignore: Iterable[str] = ()
                  ) -> list[str]:
    """The differences between two settings dicts, sorted.

    Nested dicts are compared key by key (``"train.epochs: 2 → 5"``, ``"members: added x"``);
    other values (lists and tuples alike) as wholes. Keys equal to or under a dotted prefix in
    ``ignore`` are skipped.
    """
    out: list[str] = []
    _diff(jsonable(old), jsonable(new), "", tuple(ignore), out)
    return sorted(out)


def _differences(manifest: dict[str, Any], kind: str, settings: dict[str, Any],
                 ignore: Iterable[str]) -> list[str]:
    if manifest["kind"] != kind:
        return [f"made by {manifest['kind']!r}, not {kind!r}"]
    return diff_settings(manifest["settings"], settings, ignore)


def _mismatch(folder: str | os.PathLike[str], diffs: list[str], what: str) -> BratsInputError:
    shown = "; ".join(diffs[:MAX_SHOWN])
    if len(diffs) > MAX_SHOWN:
        shown += f"; … {len(diffs) - MAX_SHOWN} more"
    label = f"{what} {folder}" if what else str(folder)
    return BratsInputError(f"{label} was made by other settings ({shown}); pass --overwrite to "
                           "start again or choose a new output folder")


def require_same(folder: str | os.PathLike[str], kind: str, settings: dict[str, Any],
                 ignore: Iterable[str] = (), what: str = "") -> None:
    """Nothing when ``folder`` has no manifest or one of ``kind`` with equal settings.

    Raises:
        BratsInputError: another kind or other settings (up to five differences listed);
            ``what`` (e.g. ``"cross-validation folder"``) prefixes the folder in the message.
    """
    manifest = read_manifest(folder)
    if manifest is not None:
        diffs = _differences(manifest, kind, settings, ignore)
        if diffs:
            raise _mismatch(folder, diffs, what)


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _outputs(folder: Path, manifest: dict[str, Any] | None) -> list[str]:
    outputs = [] if manifest is None else manifest.get("outputs") or []
    for name in outputs:
        parts = PurePath(name).parts if isinstance(name, str) else ()
        if not parts or PurePath(name).is_absolute() or ".." in parts:
            raise BratsInputError(f"{folder / MANIFEST_NAME}: output {name!r} is not a path "
                                  "inside the folder; the manifest is corrupt")
    return outputs


def _is_ours(name: str, recorded: set[str]) -> bool:
    """A recorded top-level name, or an atomic write's leftover ``.<name>.*`` beside one."""
    return name in recorded or (name.startswith(".") and any(
        name.startswith(f".{r}.") for r in recorded))


def unrecorded_files(folder: str | os.PathLike[str], keep: Iterable[str] = ()) -> list[str]:
    """Top-level entries of ``folder`` that its manifest does not list as outputs (nor ``keep``)."""
    path = Path(folder)
    manifest = read_manifest(path)
    recorded = {PurePath(o).parts[0] for o in _outputs(path, manifest)} | {MANIFEST_NAME, *keep}
    return [name for name in _entries(path) if not _is_ours(name, recorded)]


def _foreign(path: Path, names: list[str]) -> BratsInputError:
    shown = ", ".join(names[:MAX_SHOWN]) + (" …" if len(names) > MAX_SHOWN else "")
    return BratsInputError(f"{path} holds files that no {MANIFEST_NAME} says brats wrote "
                           f"({shown}); move them away or choose a new output folder")


def clear_folder(folder: str | os.PathLike[str], keep: Iterable[str] = ()) -> None:
    """Remove what a command wrote into ``folder``: its recorded outputs (folders among them
    with their content), leftovers of its atomic writes, and the manifest. Top-level names in
    ``keep`` stay and may be unrecorded.

    Raises:
        BratsInputError: the folder holds entries no manifest records (nothing is removed then).
    """
    path = Path(folder)
    keep = set(keep)
    foreign = unrecorded_files(path, keep)
    if foreign:
        raise _foreign(path, foreign)
    outputs = [o for o in _outputs(path, read_manifest(path)) if o not in keep]
    tops = {PurePath(o).parts[0] for o in outputs} | {MANIFEST_NAME}
    for name in outputs:
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    for name in _entries(path):
        if name.startswith(".") and _is_ours(name, tops) and (path / name).is_file():
            (path / name).unlink()
    for top in tops - keep:
        nested = path / top
        if nested.is_dir() and not any(nested.rglob("*")):
            shutil.rmtree(nested)
    (path / MANIFEST_NAME).unlink(missing_ok=True)


def check_folder(folder: str | os.PathLike[str], kind: str, settings: dict[str, Any],
                 resume: bool = False, overwrite: bool = False, ignore: Iterable[str] = ()
                 ) -> bool:
    """Whether a command may write into ``folder``; True when it must be cleared first.

    An empty or missing folder is always fine. Otherwise ``resume`` accepts a folder whose
    manifest has this kind and these settings, ``overwrite`` one whose every entry is recorded
    (to be cleared); with both, a matching folder is resumed and any other one cleared.

    Raises:
        BratsInputError: the folder cannot be used (the message says why and what to pass).
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise BratsInputError(f"{path} is a file, not a folder")
    if not _entries(path):
        return False
    manifest = read_manifest(path)
    diffs = None if manifest is None else _differences(manifest, kind, settings, ignore)
    if resume and diffs == []:
        return False
    if overwrite:
        foreign = unrecorded_files(path)
        if foreign:
            raise _foreign(path, foreign)
        return True
    if resume:
        if diffs is None:
            raise BratsInputError(f"{path} holds files but no {MANIFEST_NAME}, so nothing says "
                                  "how they were made; choose a new output folder")
        raise _mismatch(path, diffs, "")
    raise BratsInputError(f"{path} is not empty; pass --continue to finish it with the settings "
                          "it was made with, or --overwrite to start again")


def remove_unused(folders: Iterable[str | os.PathLike[str]]) -> None:
    """Remove each folder that holds nothing but its manifest (made by a command that then
    failed before writing anything); other folders are left alone."""
    for folder in map(Path, folders):
        if folder.is_dir() and [p.name for p in folder.iterdir()] == [MANIFEST_NAME]:
            (folder / MANIFEST_NAME).unlink()
            folder.rmdir()


def prepare_outputs(folders: Mapping[Path, Iterable[str]], kind: str, settings: dict[str, Any],
                    resume: bool = False, overwrite: bool = False, ignore: Iterable[str] = (),
                    **extra: Any) -> None:
    """Check every folder (:func:`check_folder`) before touching any, clear those that must be,
    then write each one's manifest with ``outputs``: the given file names plus, when resumed,
    those recorded before."""
    ignore = tuple(ignore)
    verdicts = {Path(f): check_folder(f, kind, settings, resume, overwrite, ignore)
                for f in folders}
    for folder, names in folders.items():
        folder = Path(folder)
        if verdicts[folder]:
            clear_folder(folder)
        recorded = set(_outputs(folder, read_manifest(folder)))
        folder.mkdir(parents=True, exist_ok=True)
        write_manifest(folder, kind, settings, outputs=sorted(recorded | set(names)), **extra)
