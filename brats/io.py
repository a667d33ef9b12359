"""Atomic file writes: nothing half-written is ever left under a user's file name."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from brats.errors import BratsInputError


def _suffix(path: Path) -> str:
    """Full suffix that format-sniffing writers need (``.nii.gz`` rather than ``.gz``)."""
    name = path.name
    for double in (".nii.gz", ".tar.gz"):
        if name.endswith(double):
            return double
    return path.suffix


def current_umask() -> int:
    """The process's file-creation mask: from ``/proc/self/status`` where there is one (reading
    it changes nothing), else by setting and restoring it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    The temporary file carries the same suffix, so writers that pick a format from the file name
    (nibabel, numpy) behave as they would for ``path``. On error the temporary file is removed and
    ``path`` is left untouched. The file gets the mode a plain ``open`` would give it (0666
    less the umask).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + _suffix(target),
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(text: str, path: str | os.PathLike[str]) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(data: Any, path: str | os.PathLike[str]) -> None:
    """Write ``data`` as indented JSON, atomically. Floats keep their exact value (repr)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def write_npy(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write one array as ``.npy`` (loadable with ``mmap_mode='r'``), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def refuse_overwriting_inputs(outputs: Iterable[str | os.PathLike[str] | None],
                              inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse an output that is one of the inputs, or an existing file inside an input folder.

    Raises:
        BratsInputError: naming the output and the input it would replace.
    """
    sources = [Path(p).resolve() for p in inputs]
    for output in outputs:
        if output is None:
            continue
        target = Path(output).resolve()
        for source in sources:
            if target == source or (source.is_dir() and target.is_file()
                                    and source in target.parents):
                raise BratsInputError(f"{output} is (inside) the input {source}; this command "
                                      "never writes over what it reads, choose another output")
