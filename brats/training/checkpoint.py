"""Self-describing checkpoints, written atomically, checked on load, and loading a trained
network back.

A checkpoint is ``torch.save``'s zip archive, whose every record carries a CRC-32: loading first
verifies them all (``zipfile.ZipFile.testzip``), so a damaged file is an error rather than weights
silently read wrong. The state holds only tensors and plain Python values (NumPy arrays and
scalars are converted on save), so ``torch.load(path, weights_only=True)`` reads it.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brats import __version__
from brats.errors import BratsInputError
from brats.io import atomic_path

CHECKPOINT_FORMAT = 1
LAST, BEST = "checkpoint_last.pt", "checkpoint_best.pt"
#: Keys every brats checkpoint holds (what prediction and resuming read).
REQUIRED_KEYS = ("member", "fold", "config", "network", "network_kwargs", "in_channels",
                 "num_outputs", "target", "intensity", "epoch", "model")
#: What checkpoints written before the state was kept plain may hold (NumPy RNG state, NumPy
#: scalars in the history); allowed when loading with ``weights_only=True``.
_MULTIARRAY = getattr(np, "_core", np).multiarray
_LEGACY_GLOBALS = [np.ndarray, np.dtype, _MULTIARRAY._reconstruct, _MULTIARRAY.scalar,
                   *(type(np.dtype(t)) for t in (np.uint32, np.int64, np.float32, np.float64))]


def plain_state(value: Any) -> Any:
    """``value`` with NumPy arrays turned into lists and NumPy scalars into Python numbers, in
    nested dicts, lists and tuples; tensors and other values are kept."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_state(v) for v in value)
    return value


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``state`` (plus format and package version) with ``torch.save``, atomically."""
    with atomic_path(path) as tmp:
        torch.save(plain_state({"format": CHECKPOINT_FORMAT, "brats_version": __version__,
                                **state}), tmp)


def verify_checkpoint(path: str | os.PathLike[str]) -> None:
    """Check the CRC-32 of every record of a checkpoint archive.

    Raises:
        BratsInputError: not a zip archive, or a record whose bytes changed since it was written.
    """
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise BratsInputError(f"{p}: cannot read checkpoint, the file is corrupt or truncated "
                              f"({exc})") from None
    if damaged is not None:
        record = damaged.rpartition("/")[2]
        raise BratsInputError(f"{p}: checkpoint is damaged (checksum mismatch in record {record}); "
                              "delete it and retrain, or resume from an intact copy")


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        BratsInputError: missing, truncated, damaged (a record's CRC-32 fails) or foreign file.
    """
    p = Path(path)
    if not p.is_file():
        raise BratsInputError(f"{p}: checkpoint not found")
    verify_checkpoint(p)
    try:
        with torch.serialization.safe_globals(_LEGACY_GLOBALS):
            state = torch.load(p, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise BratsInputError(f"{p}: cannot read checkpoint, the file is corrupt, truncated or "
                              f"not a brats checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BratsInputError(f"{p}: not a brats checkpoint (format {CHECKPOINT_FORMAT})")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise BratsInputError(f"{p}: not a brats checkpoint (no {', '.join(missing)})")
    return state


def find_checkpoint(run: str | os.PathLike[str], which: str = "last") -> Path:
    """A run folder's ``checkpoint_<which>.pt``, or the path itself if it is a file."""
    p = Path(run)
    if p.is_file():
        return p
    candidate = p / f"checkpoint_{which}.pt"
    if not candidate.is_file():
        raise BratsInputError(f"{p}: no {candidate.name}; is this a finished `brats train` run?")
    return candidate
