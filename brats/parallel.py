"""Run a function over items, in worker processes when asked, with a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


def map_progress(function: Callable[[T], R], items: Sequence[T], jobs: int = 1, desc: str = "",
                 unit: str = "case", progress: bool = True) -> list[R]:
    """``[function(item) for item in items]`` in order, over ``jobs`` processes when > 1."""
    if jobs > 1 and len(items) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            return list(tqdm(pool.map(function, items), total=len(items), desc=desc, unit=unit,
                             disable=not progress))
    return [function(item) for item in tqdm(items, desc=desc, unit=unit, disable=not progress)]
