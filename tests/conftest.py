"""Shared fixtures: tiny NIfTI cases written in any release's layout; logger state restored."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from brats.data.geometry import brats_affine
from brats.data.writer import write_case
from brats.logs import LOGGERS

SMALL = (20, 18, 12)


def make_arrays(seed: int, shape: tuple[int, int, int] = SMALL) -> tuple[np.ndarray, np.ndarray]:
    """A (4, X, Y, Z) int16 image (an ellipsoidal 'brain', zero outside) and canonical labels
    with all of 1, 2, 4 inside it."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    brain = (grid ** 2).sum(0) < 0.8
    image = np.zeros((4, *shape), dtype=np.int16)
    for c in range(4):
        image[c][brain] = rng.integers(50 * (c + 1), 100 * (c + 1), brain.sum())
    radius = np.sqrt(((grid - np.array([0.2, 0.1, 0.0])[:, None, None, None]) ** 2).sum(0))
    labels = np.zeros(shape, dtype=np.uint8)
    labels[(radius < 0.55) & brain] = 2
    labels[radius < 0.35] = 4
    labels[radius < 0.2] = 1
    return image, labels


def write_tiny_dataset(root: Path, release: str, n: int = 2, with_seg: bool = True,
                       shape: tuple[int, int, int] = SMALL) -> list[str]:
    """Write ``n`` tiny cases of ``release``; returns their ids."""
    from brats.data.releases import get_release

    rel = get_release(release)
    ids = []
    for i in range(1, n + 1):
        image, labels = make_arrays(i, shape)
        case_id = (rel.training_id if with_seg else rel.validation_id).format(i=i)
        write_case(root, rel, case_id, image, brats_affine(shape), labels if with_seg else None,
                   grade="HGG" if i % 2 else "LGG")
        ids.append(case_id)
    if rel.is_msd:
        from brats.data.writer import write_msd_dataset_json

        write_msd_dataset_json(root)
    return ids


@pytest.fixture()
def tiny_2017(tmp_path: Path) -> Path:
    """A 2017 training folder with two tiny cases (one HGG, one LGG)."""
    root = tmp_path / "Brats17TrainingData"
    write_tiny_dataset(root, "2017", 2)
    return root


def synthetic_cache(root: Path, cases: int, seed: int,
                    shape: tuple[int, int, int] = (64, 64, 42)) -> Path:
    """Generate ``cases`` synthetic 2017 training cases under ``root/data`` and prepare them into
    ``root/cache``; returns the cache folder."""
    from brats.preprocess.cache import prepare_dataset
    from brats.synth.generator import generate_dataset

    generate_dataset(root / "data", cases=cases, seed=seed, shape=shape, progress=False)
    prepare_dataset(root / "data", root / "cache", progress=False)
    return root / "cache"


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    """Leave the project's loggers as they were (``brats.cli.main`` configures them), around
    every test."""
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers))
             for name in LOGGERS}
    yield
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
