"""The preprocessing cache written by ``brats prepare`` and read by training (memory-mapped).

Per case the cache holds ``<id>_image.npy`` ((4, x, y, z), z-scored inside the brain, cropped to
the brain box), ``<id>_labels.npy`` ((x, y, z) uint8 canonical labels, training cases only) and
``<id>_masks.npy`` ((x, y, z) uint8: bit c set inside modality c's hole-filled brain mask, used by
the Isensee intensity handling during training, computed once per case rather than per patch) and
``<id>.json`` (a :class:`CaseRecord`, written last: its presence marks the case finished). The
folder's ``dataset.json`` names the format, release and cases, and the provenance of each case:
the path, size and modification time of every source file. A later ``brats prepare`` into the
same folder refuses another source folder, rebuilds cases whose files changed and rebuilds cases
whose cached files are missing or damaged; readers name the command that rebuilds a damaged cache.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from brats import __version__
from brats.data.case import Case
from brats.data.labels import CANONICAL_LABELS, REGIONS
from brats.data.layouts import discover
from brats.data.releases import MODALITIES
from brats.errors import BratsInputError
from brats.io import write_json, write_npy
from brats.preprocess.crop import Box, bounding_box, brain_mask, brain_masks, crop, pack_masks, paste_back
from brats.preprocess.normalize import zscore

CACHE_FORMAT = "brats-cache"
CACHE_VERSION = 2
INDEX_NAME = "dataset.json"
DTYPES = ("float32", "float16")
MASKS_SUFFIX = "_masks.npy"


@dataclass(frozen=True)
class CaseRecord:
    """What ``brats prepare`` knows about one case; enough to paste a prediction back exactly.

    Attributes:
        id, release, grade: as on the :class:`~brats.data.case.Case`.
        box: brain bounding box in the original grid, ((start, stop) × 3) voxels, stop exclusive.
        shape: original spatial shape (X, Y, Z).
        affine: original 4×4 affine (exact float values).
        header: the original t1 NIfTI header, base64 of its 348 bytes.
        spacing: voxel size in mm.
        mean, std: per-modality z-score statistics over the brain (stored intensities).
        label_voxels: canonical label → voxel count (training cases); empty otherwise.
        region_voxels: WT/TC/ET → voxel count.
        locations: canonical label → up to N voxel coordinates of that label in the crop, for
            foreground sampling.
        image_dtype: dtype of the cached image array.
    """

    id: str
    release: str
    grade: str | None
    box: Box
    shape: tuple[int, int, int]
    affine: list[list[float]]
    header: str
    spacing: tuple[float, float, float]
    mean: list[float]
    std: list[float]
    label_voxels: dict[str, int] = field(default_factory=dict)
    region_voxels: dict[str, int] = field(default_factory=dict)
    locations: dict[str, list[list[int]]] = field(default_factory=dict)
    image_dtype: str = "float32"

    @property
    def has_labels(self) -> bool:
        """True for a training case (its labels were cached)."""
        return bool(self.label_voxels)

    @property
    def affine_array(self) -> np.ndarray:
        """The original affine as a (4, 4) float64 array."""
        return np.array(self.affine, dtype=np.float64)

    def nifti_header(self) -> nib.Nifti1Header:
        """The original t1 header, restored byte for byte."""
        return nib.Nifti1Header(binaryblock=base64.b64decode(self.header))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseRecord:
        """Inverse of ``dataclasses.asdict`` after a JSON round trip."""
        data = dict(data)
        data["box"] = tuple(tuple(b) for b in data["box"])
        data["shape"] = tuple(data["shape"])
        data["spacing"] = tuple(data["spacing"])
        return cls(**data)


@dataclass(frozen=True)
class PreparedCase:
    """A cached case opened for reading: ``image`` (4, x, y, z) and ``labels`` (x, y, z) or None."""

    record: CaseRecord
    image: np.ndarray
    labels: np.ndarray | None


def _header_b64(header: nib.Nifti1Header) -> str:
    return base64.b64encode(header.binaryblock).decode("ascii")


def _sample_locations(labels: np.ndarray, count: int, seed: int) -> dict[str, list[list[int]]]:
    rng = np.random.default_rng(seed)
    out = {}
    for label in CANONICAL_LABELS[1:]:
        coords = np.argwhere(labels == label)
        if len(coords) > count:
            coords = coords[np.sort(rng.choice(len(coords), count, replace=False))]
        if len(coords):
            out[str(label)] = coords.tolist()
    return out


def prepare_case(case: Case, out_dir: str | os.PathLike[str], dtype: str = "float32",
                 locations: int = 1000) -> CaseRecord:
    """Load, validate, crop to the brain box, z-score and cache one case.

    Args:
        case: the case to prepare.
        out_dir: cache folder.
        dtype: ``"float32"`` or ``"float16"`` for the cached image.
        locations: at most this many voxel coordinates stored per label for sampling.

    Returns:
        The case's :class:`CaseRecord` (also written as ``<id>.json``).
    """
    out = Path(out_dir)
    data = case.load()
    mask = brain_mask(data.image)
    box = bounding_box(mask)
    normalised, mean, std = zscore(crop(data.image, box), crop(mask, box))
    write_npy(normalised.astype(dtype), out / f"{case.id}_image.npy")
    write_npy(pack_masks(brain_masks(normalised)), out / f"{case.id}{MASKS_SUFFIX}")
    label_voxels: dict[str, int] = {}
    region_voxels: dict[str, int] = {}
    locs: dict[str, list[list[int]]] = {}
    if data.labels is not None:  # Case.load refused labels outside the brain, so none is cropped
        labels = np.ascontiguousarray(crop(data.labels, box))
        write_npy(labels, out / f"{case.id}_labels.npy")
        values, counts = np.unique(labels, return_counts=True)
        label_voxels = {str(int(v)): int(n) for v, n in zip(values, counts)}
        region_voxels = {name: int(np.isin(labels, members).sum())
                         for name, members in REGIONS.items()}
        locs = _sample_locations(labels, locations, zlib.crc32(case.id.encode()))
    record = CaseRecord(
        id=case.id, release=case.release, grade=case.grade, box=box,
        shape=tuple(int(n) for n in data.image.shape[1:]),  # type: ignore[arg-type]
        affine=data.affine.tolist(), header=_header_b64(data.header), spacing=data.spacing,
        mean=mean.tolist(), std=std.tolist(), label_voxels=label_voxels,
        region_voxels=region_voxels, locations=locs, image_dtype=dtype)
    write_json(asdict(record), out / f"{case.id}.json")
    return record


def source_files(case: Case) -> list[list[Any]]:
    """Provenance of one case: ``[path, size in bytes, modification time in ns]`` per file."""
    files = dict.fromkeys([*case.images, *([case.seg] if case.seg is not None else [])])
    out = []
    for path in files:
        stat = Path(path).stat()
        out.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    return out


def _read_json(path: Path, what: str) -> Any:
    """A JSON file of the cache; a truncated or unreadable one is a :class:`BratsInputError`."""
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BratsInputError(f"{path}: damaged {what} ({exc}); {_rebuild_hint(path.parent)}"
                              ) from None


def _rebuild_hint(cache: Path) -> str:
    """How to rebuild a cache: ``brats prepare SOURCE --out CACHE`` when the source is known."""
    try:
        source = json.loads((cache / INDEX_NAME).read_text()).get("source")
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        source = None
    return (f"rebuild it with `brats prepare {source or 'DATA_DIR'} --out {cache}` (damaged cases "
            "are redone)")


def _check_out_dir(out: Path, index: dict[str, Any]) -> dict[str, Any] | None:
    """Refuse to write into a folder that is not a cache of the same kind and source; returns
    the existing index (None for a new or empty folder)."""
    index_path = out / INDEX_NAME
    if out.exists() and not out.is_dir():
        raise BratsInputError(f"{out} is a file, not a cache folder; choose a new --out")
    if not out.exists() or not any(out.iterdir()):
        return None
    if not index_path.is_file():
        raise BratsInputError(
            f"{out}: folder exists, is not empty and is not a brats cache; choose a new --out")
    try:
        existing = json.loads(index_path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise BratsInputError(f"{index_path}: damaged cache index; delete {out} and run brats "
                              "prepare again, or choose a new --out") from None
    if not isinstance(existing, dict) or existing.get("format") != CACHE_FORMAT:
        raise BratsInputError(f"{index_path}: not a brats cache; choose a new --out")
    for key in ("release", "image_dtype", "modalities", "version", "source"):
        if existing.get(key) != index[key]:
            raise BratsInputError(
                f"{out}: existing cache has {key}={existing.get(key)!r}, this run "
                f"{index[key]!r}; use a new --out (or delete {out} to rebuild it)")
    return existing


def _is_done(out: Path, case: Case, existing: dict[str, Any] | None,
             sources: list[list[Any]]) -> bool:
    """True when the case is cached from the same source files and its cached files open."""
    if existing is None or (existing.get("inputs") or {}).get(case.id) != sources:
        return False
    try:
        prepared = load_prepared(out, case.id)
        load_masks(out, case.id)
    except (BratsInputError, OSError, ValueError):
        return False
    return prepared.record.id == case.id


def prepare_dataset(data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    release: str | None = None, jobs: int = 1, dtype: str = "float32",
                    locations: int = 1000, progress: bool = True) -> list[CaseRecord]:
    """Prepare every case of a dataset folder into a cache; finished cases are skipped.

    Args:
        data_dir: dataset folder of any release.
        out_dir: cache folder (created; must be empty or an earlier cache of the same kind).
        release: force the release instead of detecting it.
        jobs: worker processes.
        dtype: cached image dtype.
        locations: foreground coordinates kept per label.
        progress: show a progress bar.

    Returns:
        The records of all cases, sorted by id.

    Raises:
        BratsInputError: the dataset or output folder is unusable, or cases failed (all other
            cases are still prepared; the message lists the failures).
    """
    if dtype not in DTYPES:
        raise BratsInputError(f"dtype {dtype!r} not supported; expected one of {DTYPES}")
    cases = discover(data_dir, release)
    out = Path(out_dir)
    sources = {c.id: source_files(c) for c in cases}
    index = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "brats_version": __version__,
             "release": cases[0].release, "modalities": list(MODALITIES),
             "labels": "canonical (0, 1 NCR/NET, 2 ED, 4 ET)", "image_dtype": dtype,
             "normalisation": "z-score per modality inside the brain (non-zero in any modality)",
             "source": str(Path(data_dir).resolve()), "cases": [c.id for c in cases],
             "inputs": sources, "complete": False}
    existing = _check_out_dir(out, index)
    todo = [c for c in cases if not _is_done(out, c, existing, sources[c.id])]
    out.mkdir(parents=True, exist_ok=True)
    write_json(index, out / INDEX_NAME)
    failures: list[str] = []
    bar = tqdm(total=len(cases), initial=len(cases) - len(todo), desc="prepare", unit="case",
               disable=not progress)
    if jobs > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(prepare_case, c, out, dtype, locations): c for c in todo}
            for future in as_completed(futures):
                try:
                    future.result()
                except BratsInputError as exc:
                    failures.append(f"{futures[future].id}: {exc}")
                bar.update()
    else:
        for case in todo:
            try:
                prepare_case(case, out, dtype, locations)
            except BratsInputError as exc:
                failures.append(f"{case.id}: {exc}")
            bar.update()
    bar.close()
    if failures:
        raise BratsInputError(f"{len(failures)} case(s) failed: " + " | ".join(failures))
    write_json({**index, "complete": True}, out / INDEX_NAME)
    return [load_record(out, c.id) for c in cases]


def load_index(cache_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a cache's ``dataset.json``; a folder that is not a cache is a :class:`BratsInputError`."""
    path = Path(cache_dir) / INDEX_NAME
    if not path.is_file():
        raise BratsInputError(f"{cache_dir}: not a brats cache (no {INDEX_NAME}); run brats prepare")
    index = _read_json(path, "cache index")
    if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
        raise BratsInputError(f"{path}: not a brats cache")
    return index


def load_record(cache_dir: str | os.PathLike[str], case_id: str) -> CaseRecord:
    """Read one case's record from the cache."""
    path = Path(cache_dir) / f"{case_id}.json"
    if not path.is_file():
        raise BratsInputError(f"{path}: case {case_id} is not in the cache; "
                              f"{_rebuild_hint(Path(cache_dir))}")
    data = _read_json(path, "case record")
    try:
        return CaseRecord.from_dict(data)
    except (TypeError, KeyError, AttributeError) as exc:
        raise BratsInputError(f"{path}: damaged case record ({exc}); "
                              f"{_rebuild_hint(Path(cache_dir))}") from None


def load_prepared(cache_dir: str | os.PathLike[str], case_id: str,
                  mmap: bool = True) -> PreparedCase:
    """Open a cached case; arrays are read-only memory maps unless ``mmap`` is False."""
    cache = Path(cache_dir)
    record = load_record(cache, case_id)
    image = _load_array(cache / f"{case_id}_image.npy", mmap)
    labels = _load_array(cache / f"{case_id}_labels.npy", mmap) if record.has_labels else None
    spatial = tuple(b - a for a, b in record.box)
    if image.shape != (len(MODALITIES), *spatial) or (labels is not None
                                                      and labels.shape != spatial):
        raise BratsInputError(f"{cache}: cached arrays of {case_id} do not match its record "
                              f"(box {spatial}); {_rebuild_hint(cache)}")
    return PreparedCase(record, image, labels)


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    """One cached ``.npy`` (memory-mapped read-only if ``mmap``); missing or damaged → error."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = "missing" if not path.is_file() else f"damaged ({' '.join(str(exc).split())})"
        raise BratsInputError(f"{path}: cached array {reason}; {_rebuild_hint(path.parent)}"
                              ) from None


def load_masks(cache_dir: str | os.PathLike[str], case_id: str) -> np.ndarray:
    """A cached case's packed brain masks ((x, y, z) uint8, bit c = modality c), memory-mapped.

    A cache written before the masks were cached gets them now (computed from the cached image,
    written atomically, so concurrent loader workers never see half a file).
    """
    path = Path(cache_dir) / f"{case_id}{MASKS_SUFFIX}"
    if not path.is_file():
        image = load_prepared(cache_dir, case_id).image
        write_npy(pack_masks(brain_masks(image)), path)
    masks = _load_array(path, mmap=True)
    if masks.shape != image_shape(cache_dir, case_id):
        raise BratsInputError(f"{path}: cached brain masks do not match the image; "
                              f"{_rebuild_hint(Path(cache_dir))}")
    return masks


def image_shape(cache_dir: str | os.PathLike[str], case_id: str) -> tuple[int, ...]:
    """Spatial shape (x, y, z) of a cached case's crop, from its record."""
    return tuple(b - a for a, b in load_record(cache_dir, case_id).box)


def restore_full(cropped: np.ndarray, record: CaseRecord, fill: float = 0) -> np.ndarray:
    """Paste a (…, x, y, z) array in cache space back into the case's original (…, X, Y, Z) grid."""
    return paste_back(cropped, record.box, record.shape, fill)

