"""``brats check``: run every input check over a dataset and collect the problems."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from brats.data.case import Case
from brats.data.layouts import Problem, scan
from brats.errors import BratsInputError
from brats.parallel import map_progress


def check_case(case: Case) -> list[Problem]:
    """Load one case with full validation; a failure becomes a :class:`Problem`."""
    try:
        case.load()
    except BratsInputError as exc:
        return [Problem(case.id, "", str(exc))]
    return []


def check_dataset(root: str | os.PathLike[str], release: str | None = None, jobs: int = 1,
                  progress: bool = True) -> tuple[int, pd.DataFrame]:
    """Check layout and every file of a dataset.

    Returns:
        ``(number of complete cases, problems)`` where problems is a DataFrame with columns
        ``case, path, problem`` (empty when the dataset is clean); paths are relative to ``root``.
    """
    cases, problems = scan(root, release)
    results = map_progress(check_case, cases, jobs, desc="check", progress=progress)
    for found in results:
        problems.extend(found)
    prefix = f"{Path(root)}{os.sep}"
    table = pd.DataFrame([(p.case, p.path.removeprefix(prefix), p.message.replace(prefix, ""))
                          for p in problems], columns=["case", "path", "problem"])
    return len(cases), table
