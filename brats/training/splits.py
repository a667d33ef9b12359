"""Deterministic k-fold cross-validation splits, saved to JSON once and reused by every fold."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from brats.errors import BratsInputError
from brats.io import write_json


def kfold(case_ids: list[str], folds: int, seed: int) -> list[dict[str, list[str]]]:
    """Split ``case_ids`` into ``folds`` folds as ``sklearn.model_selection.KFold(shuffle=True,
    random_state=seed)`` does (the Isensee 2017 split): indices shuffled by
    ``np.random.RandomState(seed)``, the first ``n % folds`` folds one case larger.

    Returns:
        One ``{"train": [...], "val": [...]}`` per fold, ids in input order.
    """
    n = len(case_ids)
    if folds < 2 or folds > n:
        raise BratsInputError(f"cannot make {folds} folds from {n} case(s)")
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(folds, n // folds)
    sizes[: n % folds] += 1
    splits, start = [], 0
    for size in sizes:
        val = set(order[start:start + size].tolist())
        start += size
        splits.append({"train": [c for i, c in enumerate(case_ids) if i not in val],
                       "val": [c for i, c in enumerate(case_ids) if i in val]})
    return splits


def load_or_make_splits(path: str | os.PathLike[str], case_ids: list[str], folds: int,
                        seed: int) -> list[dict[str, list[str]]]:
    """Read the splits from ``path``, or make and save them (atomically) if it does not exist.

    Raises:
        BratsInputError: the saved splits were made for other cases, folds or seed.
    """
    p = Path(path)
    if p.is_file():
        saved = json.loads(p.read_text())
        if (saved.get("folds"), saved.get("seed"), sorted(saved.get("cases", []))) != (
                folds, seed, sorted(case_ids)):
            raise BratsInputError(
                f"{p}: saved splits are for other cases, folds or seed; delete it or use "
                "another output folder")
        return saved["splits"]
    splits = kfold(case_ids, folds, seed)
    write_json({"folds": folds, "seed": seed, "cases": case_ids, "splits": splits}, p)
    return splits
