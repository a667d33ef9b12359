"""Synthetic BraTS cases and data sets: warped MNI152 anatomy + a synthetic glioma + MRI contrasts.

``synth_case(seed)`` is deterministic: the same seed gives the same bytes on every call, on any
number of worker processes. Each stage draws from its own child of the seed (grade 0, anatomy 1,
tumour 2, contrast 3), and every random field lives on a world-mm lattice, so a smaller ``shape``
gives the same physical brain and tumour on coarser voxels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brats.data.geometry import BRATS_SHAPE, brats_affine, voxel_spacing
from brats.data.releases import VALIDATION_ID_OFFSET, get_release
from brats.data.writer import write_case, write_msd_dataset_json
from brats.errors import BratsInputError
from brats.synth.anatomy import draw_warp, templates_for, warp_anatomy, with_mass_effect
from brats.synth.contrast import synthesize
from brats.synth.fields import SeedLike, as_seed_sequence, child_rng
from brats.synth.tumour import draw_tumour, tumour_maps

#: Probability that a case with ``lgg=None`` is low-grade.
LGG_FRACTION = 0.25
MIN_DIM = 16


@dataclass(frozen=True)
class SynthCase:
    """One synthetic case in BraTS space.

    Attributes:
        image: (4, X, Y, Z) int16, canonical modality order (t1, t1ce, t2, flair); 0 outside the
            brain, ≥ 1 inside.
        labels: (X, Y, Z) uint8 canonical labels (0, 1 NCR/NET, 2 ED, 4 ET).
        affine: (4, 4) ``brats_affine(shape)``, mm.
        grade: ``"HGG"`` or ``"LGG"``.
        tissue: (X, Y, Z) uint8 dominant normal tissue under each voxel (0 outside the brain,
            1 CSF, 2 GM, 3 WM; under the tumour: the displaced anatomy), for tests and analysis.
    """

    image: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    grade: str
    tissue: np.ndarray

    @property
    def brain(self) -> np.ndarray:
        """(X, Y, Z) bool brain mask."""
        return self.tissue > 0


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise BratsInputError(f"shape {shape!r}: expected three integers") from None
    if len(dims) != 3 or min(dims) < MIN_DIM:
        raise BratsInputError(
            f"shape {tuple(shape)!r}: expected three dimensions, each at least {MIN_DIM}")
    return dims  # type: ignore[return-value]


def synth_case(seed: SeedLike, shape: Sequence[int] = BRATS_SHAPE,
               lgg: bool | None = None) -> SynthCase:
    """Generate one synthetic BraTS case.

    Args:
        seed: int or ``np.random.SeedSequence``; the case is a pure function of it (and shape, lgg).
        shape: output grid (X, Y, Z); any shape covers the 240×240×155 mm BraTS field of view.
        lgg: force a low-grade (True) or high-grade (False) tumour; None draws LGG with
            probability 0.25 from the seed.

    Returns:
        The case (see :class:`SynthCase`).

    Raises:
        BratsInputError: a negative seed, or a shape that is not three dimensions of at least
            16 voxels.
    """
    dims = _check_shape(shape)
    ss = as_seed_sequence(seed)
    if lgg is None:
        lgg = bool(child_rng(ss, 0).random() < LGG_FRACTION)
    affine = brats_affine(dims)
    spacing = voxel_spacing(affine)
    tpl = templates_for(dims)
    warp = draw_warp(child_rng(ss, 1), tpl)
    rng_t = child_rng(ss, 2)
    centre_mni = tpl.candidates[rng_t.integers(len(tpl.candidates))] + rng_t.uniform(-1, 1, 3)
    centre = warp.to_output(centre_mni)[0]
    params = draw_tumour(rng_t, centre, bool(lgg))
    warp = with_mass_effect(warp, centre, params.mass_a, params.mass_decay)
    anatomy = warp_anatomy(warp, tpl, dims)
    maps = tumour_maps(params, anatomy, spacing)
    values = synthesize(child_rng(ss, 3), anatomy, maps, params)

    image = np.zeros((4, *dims), np.int16)
    image[(slice(None), *anatomy.box)] = values
    labels = np.zeros(dims, np.uint8)
    box_labels = np.zeros(anatomy.brain.shape, np.uint8)
    box_labels[maps.sub] = maps.labels
    labels[anatomy.box] = box_labels
    fractions = np.stack([anatomy.csf, anatomy.gm, anatomy.wm])
    box_tissue = np.where(anatomy.brain, fractions.argmax(0) + 1, 0).astype(np.uint8)
    tissue = np.zeros(dims, np.uint8)
    tissue[anatomy.box] = box_tissue
    return SynthCase(image, labels, affine, "LGG" if lgg else "HGG", tissue)


def case_id(release: str, index: int, with_seg: bool) -> str:
    """Id of the ``index``-th (0-based) synthetic case of ``release``: training ids count from 1,
    validation ids from 1 + ``VALIDATION_ID_OFFSET`` (where the release shares one id space)."""
    rel = get_release(release)
    if with_seg:
        return rel.training_id.format(i=index + 1)
    return rel.validation_id.format(i=index + 1 + VALIDATION_ID_OFFSET.get(rel.name, 0))


def _write_one(out_dir: str, release: str, index: int, seed: int, shape: tuple[int, int, int],
               with_seg: bool) -> str:
    """Generate and write case ``index`` (a worker task; returns its id)."""
    case = synth_case(np.random.SeedSequence([seed, index, int(with_seg)]), shape)
    cid = case_id(release, index, with_seg)
    write_case(out_dir, release, cid, case.image, case.affine,
               case.labels if with_seg else None, case.grade)
    return cid


def generate_dataset(out_dir: str | os.PathLike[str], cases: int, seed: int = 0,
                     release: str = "2017", shape: Sequence[int] = BRATS_SHAPE,
                     with_seg: bool = True, jobs: int = 1, progress: bool = True,
                     first: int = 0) -> list[str]:
    """Write ``cases`` synthetic cases in ``release``'s on-disk layout.

    Case ``i`` (``first`` … ``first + cases − 1``) is ``synth_case(SeedSequence([seed, i,
    with_seg]), shape)``, so the data do not depend on ``jobs``, and ``first`` continues a split
    with new cases (e.g. labelled held-out cases after the training cases). Training cases
    (``with_seg``) carry a segmentation and, for 2017–2019, sit in ``HGG/``/``LGG/``;
    validation cases have no segmentation and their own ids.

    Args:
        out_dir: output folder; must not exist or be empty.
        cases: number of cases (≥ 1).
        seed: data-set seed.
        release: ``"2017"`` … ``"2024"`` or ``"msd"`` (any name :func:`get_release` accepts).
        shape: grid of every case (each dimension ≥ 16).
        with_seg: training split with labels (True) or validation split without (False).
        jobs: worker processes (1: in this process).
        progress: show a tqdm progress bar.
        first: index of the first case (≥ 0).

    Returns:
        The case ids written, in case order.

    Raises:
        BratsInputError: a non-empty ``out_dir``, ``cases`` < 1, ``jobs`` < 1, a negative seed, a
            bad shape or an unknown release.
    """
    from tqdm.auto import tqdm

    rel = get_release(str(release))
    dims = _check_shape(shape)
    if int(cases) < 1:
        raise BratsInputError(f"cases={cases}: need at least one case")
    if int(jobs) < 1:
        raise BratsInputError(f"jobs={jobs}: need at least one worker")
    if int(first) < 0:
        raise BratsInputError(f"first={first}: need a case index >= 0")
    as_seed_sequence(seed)  # validates the seed
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise BratsInputError(f"{root}: output path exists and is not a folder")
    if root.exists() and any(root.iterdir()):
        raise BratsInputError(f"{root}: output folder exists and is not empty; refusing to write")
    root.mkdir(parents=True, exist_ok=True)
    n, seed = int(cases), int(seed)
    ids: list[str | None] = [None] * n
    with tqdm(total=n, disable=not progress, desc=f"synth {rel.name}", unit="case") as bar:
        if jobs == 1:
            for i in range(n):
                ids[i] = _write_one(str(root), rel.name, first + i, seed, dims, with_seg)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=min(int(jobs), n)) as pool:
                futures = {pool.submit(_write_one, str(root), rel.name, first + i, seed, dims,
                                       with_seg): i for i in range(n)}
                for fut in as_completed(futures):
                    ids[futures[fut]] = fut.result()
                    bar.update()
    if rel.is_msd:
        write_msd_dataset_json(root)
    return [i for i in ids if i is not None]
