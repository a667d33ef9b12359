"""Self-describing checkpoints, written atomically, and loading a trained network back."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from brats import __version__
from brats.errors import BratsInputError
from brats.io import atomic_path

CHECKPOINT_FORMAT = 1
LAST, BEST = "checkpoint_last.pt", "checkpoint_best.pt"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``state`` (plus format and package version) with ``torch.save``, atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "brats_version": __version__, **state}, tmp)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        BratsInputError: missing, truncated or foreign file.
    """
    p = Path(path)
    if not p.is_file():
        raise BratsInputError(f"{p}: checkpoint not found")
    try:
        state = torch.load(p, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise BratsInputError(f"{p}: cannot read checkpoint, the file is corrupt or truncated "
                              f"({exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BratsInputError(f"{p}: not a brats checkpoint (format {CHECKPOINT_FORMAT})")
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
