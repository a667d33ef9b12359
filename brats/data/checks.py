"""``brats check``: run every input check over a dataset and collect the problems."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from brats.data.case import Case
from brats.data.layouts import Problem, scan
from brats.errors import BratsInputError


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
    if jobs > 1 and len(cases) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(tqdm(pool.map(check_case, cases), total=len(cases), desc="check",
                                unit="case", disable=not progress))
    else:
        results = [check_case(c) for c in tqdm(cases, desc="check", unit="case",
                                               disable=not progress)]
    for found in results:
        problems.extend(found)
    prefix = f"{Path(root)}{os.sep}"
    table = pd.DataFrame([(p.case, p.path.removeprefix(prefix), p.message.replace(prefix, ""))
                          for p in problems], columns=["case", "path", "problem"])
    return len(cases), table
