"""Combining probability maps (folds, mirrors, views, members), regions → classes, and labels.

Every probability map here is a (K, X, Y, Z) float array; for class maps K = 4 in the canonical class
order :data:`CLASS_LABELS` (background, NCR/NET, ED, ET ↔ labels 0, 1, 2, 4). Maps saved to disk are
compressed ``.npz`` files holding float16 probabilities and a JSON ``meta`` dict, so ensembles can be
combined from files, one map in memory at a time.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from brats.data.labels import CANONICAL_LABELS
from brats.errors import BratsInputError
from brats.io import atomic_path

logger = logging.getLogger(__name__)

#: Canonical label of each class channel of a class probability map, in channel order.
CLASS_LABELS: tuple[int, ...] = CANONICAL_LABELS
#: Name of each class channel, in channel order.
CLASS_NAMES: tuple[str, ...] = ("background", "NCR/NET", "ED", "ET")
#: Channel order of region probability maps (sigmoid outputs of region-trained networks).
REGION_ORDER: tuple[str, ...] = ("WT", "TC", "ET")
#: Meta keys that must agree (where both maps carry them) before two maps may be combined.
CONSISTENT_META_KEYS: tuple[str, ...] = ("classes", "case_id", "box")

_ARRAY_KEY = "probabilities"
_META_KEY = "meta"


def _normalise(value: Any) -> Any:
    """JSON-able copy of ``value``: tuples → lists, numpy scalars/arrays → Python values."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"meta value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


class MeanAccumulator:
    """Weighted running mean of probability maps that holds one float32 running sum and nothing else.

    Maps are added one at a time; each is added channel by channel, so an ensemble never holds more
    than the sum, the map being added and one channel of scratch. The first map fixes the shape and
    the meta keys in :data:`CONSISTENT_META_KEYS` (``classes``, ``case_id``, ``box``); a later map
    that disagrees raises :class:`BratsInputError` naming both maps.

    Example:
        >>> acc = MeanAccumulator()
        >>> for fold_map in fold_maps:          # each (4, X, Y, Z)
        ...     acc.add(fold_map)
        >>> mean = acc.mean()                    # (4, X, Y, Z) float32
    """

    def __init__(self) -> None:
        self._sum: np.ndarray | None = None
        self._total_weight = 0.0
        self._count = 0
        self._reference: dict[str, Any] = {}
        self._reference_name = ""
        self._meta: dict[str, Any] = {}

    @property
    def count(self) -> int:
        """Number of maps added so far."""
        return self._count

    @property
    def total_weight(self) -> float:
        """Sum of the weights added so far."""
        return self._total_weight

    @property
    def meta(self) -> dict[str, Any]:
        """Meta of the first map added (as passed to :meth:`add`); empty before that."""
        return dict(self._meta)

    def add(self, probs: np.ndarray, weight: float = 1.0, *, meta: Mapping[str, Any] | None = None,
            name: str | None = None) -> None:
        """Add one (K, X, Y, Z) probability map with weight ``weight``.

        Args:
            probs: (K, X, Y, Z) float array (float16, float32 or float64; it is not modified).
            weight: non-negative weight of this map in the mean.
            meta: the map's meta (as from :func:`load_probabilities`); used only for the consistency
                check. A map without ``classes`` is taken to be in the canonical order when K = 4.
            name: how to name this map in error messages (a file path, "fold 3", …).

        Raises:
            BratsInputError: ``probs`` is not 4-D, ``weight`` is negative or not finite, or the
                shape or a key of :data:`CONSISTENT_META_KEYS` differs from the first map's.
        """
        name = name or f"map {self._count + 1}"
        probs = np.asanyarray(probs)
        if probs.ndim != 4:
            raise BratsInputError(f"{name}: expected a (K, X, Y, Z) probability map, got shape {probs.shape}")
        if not np.isfinite(weight) or weight < 0:
            raise BratsInputError(f"{name}: weight must be a finite number >= 0, got {weight}")
        info = _identity(probs, meta)
        if self._sum is None:
            self._reference, self._reference_name = info, name
            self._meta = dict(meta or {})
            self._sum = np.zeros(probs.shape, dtype=np.float32)
        else:
            _check_compatible(self._reference, self._reference_name, info, name)
        for channel, source in zip(self._sum, probs):
            if weight == 1:
                channel += source
            else:
                channel += np.float32(weight) * source.astype(np.float32, copy=False)
        self._total_weight += float(weight)
        self._count += 1

    def mean(self) -> np.ndarray:
        """(K, X, Y, Z) float32 weighted mean of the maps added (a new array).

        Raises:
            BratsInputError: nothing was added, or all weights were zero.
        """
        if self._sum is None or self._total_weight <= 0:
            raise BratsInputError("cannot take the mean: no map with a positive weight was added")
        return self._sum / np.float32(self._total_weight)


def _identity(probs: np.ndarray, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a map's description that must agree across combined maps."""
    info = {key: _normalise(meta[key]) for key in CONSISTENT_META_KEYS if meta and key in meta}
    if "classes" not in info and probs.shape[0] == len(CLASS_LABELS):
        info["classes"] = list(CLASS_LABELS)
    info["shape"] = list(probs.shape)
    return info


def _check_compatible(ref: dict[str, Any], ref_name: str, info: dict[str, Any], name: str) -> None:
    for key in ("shape", *CONSISTENT_META_KEYS):
        if key in ref and key in info and ref[key] != info[key]:
            raise BratsInputError(
                f"cannot combine probability maps with different {key}: {ref_name} has {ref[key]}, "
                f"{name} has {info[key]}")


def mean_probabilities(maps_or_paths: Iterable[np.ndarray | str | os.PathLike[str]],
                       weights: Iterable[float] | None = None) -> np.ndarray:
    """Weighted mean of probability maps given as arrays or ``.npz`` paths (mixed is fine).

    Files are loaded one at a time (as float16, added without a float32 copy), so memory holds the
    running sum and one map. This is the combiner of all three entries: the mean over folds
    (Isensee), over views (Wang) and over members (EMMA).

    Args:
        maps_or_paths: (K, X, Y, Z) arrays, or paths written by :func:`save_probabilities`.
        weights: one non-negative weight per map; ``None`` for equal weights.

    Returns:
        (K, X, Y, Z) float32 mean.

    Raises:
        BratsInputError: no maps, a weight count that differs from the map count, an unreadable
            file, or maps of different shapes or class orders (the message names both).
    """
    items = list(maps_or_paths)
    weight_list = [1.0] * len(items) if weights is None else [float(w) for w in weights]
    if len(weight_list) != len(items):
        raise BratsInputError(f"got {len(items)} probability maps but {len(weight_list)} weights")
    if not items:
        raise BratsInputError("no probability maps to combine")
    acc = MeanAccumulator()
    for i, (item, weight) in enumerate(zip(items, weight_list)):
        if isinstance(item, (str, os.PathLike)):
            probs, meta = _load_raw(item)
            acc.add(probs, weight, meta=meta, name=str(item))
            del probs
        else:
            acc.add(item, weight, name=f"map {i + 1}")
    return acc.mean()


def regions_to_class_probabilities(p: np.ndarray) -> np.ndarray:
    """Convert region probabilities (WT, TC, ET) to canonical class probabilities.

    A region-trained network outputs independent sigmoids for the nested regions WT ⊃ TC ⊃ ET. They
    are first made nested, ``p_TC' = min(p_TC, p_WT)`` and ``p_ET' = min(p_ET, p_TC')``, and then
    differenced::

        p_bg  = 1 - p_WT
        p_NCR = p_TC' - p_ET'
        p_ED  = p_WT - p_TC'
        p_ET  = p_ET'

    The four maps are non-negative and sum to one. Thresholding the regions at 0.5 is recovered with
    ``probabilities_to_labels(…, rule="regions")``; plain argmax can differ from it.

    Args:
        p: (3, X, Y, Z) region probabilities in [0, 1], channels in :data:`REGION_ORDER` (WT, TC, ET).

    Returns:
        (4, X, Y, Z) float32 class probabilities in canonical class order.

    Raises:
        BratsInputError: ``p`` does not have 3 channels.
    """
    p = np.asanyarray(p)
    if p.ndim < 1 or p.shape[0] != len(REGION_ORDER):
        raise BratsInputError(
            f"expected region probabilities with {len(REGION_ORDER)} channels {REGION_ORDER}, "
            f"got shape {p.shape}")
    wt = p[0].astype(np.float32, copy=False)
    out = np.empty((4, *p.shape[1:]), dtype=np.float32)
    tc = np.minimum(p[1], wt, out=out[3])     # p_TC', parked in the ET channel for now
    np.subtract(wt, tc, out=out[2])           # ED = WT - TC'
    et = np.minimum(p[2], tc)                 # p_ET' (one channel of scratch)
    np.subtract(tc, et, out=out[1])           # NCR = TC' - ET'
    out[3] = et                               # ET = ET' (overwrites the parked TC')
    np.subtract(np.float32(1), wt, out=out[0])
    return out


def class_probabilities_to_regions(p: np.ndarray) -> np.ndarray:
    """Inverse of :func:`regions_to_class_probabilities`: (4, X, Y, Z) classes → (3, X, Y, Z) regions.

    ``p_WT = 1 - p_bg``, ``p_TC = p_NCR + p_ET``, ``p_ET = p_ET``; float32, channels (WT, TC, ET).
    """
    p = _check_class_probabilities(p)
    out = np.empty((3, *p.shape[1:]), dtype=np.float32)
    np.subtract(np.float32(1), p[0], out=out[0])
    np.add(p[1], p[3], out=out[1])
    out[2] = p[3]
    return out


def _check_class_probabilities(p: np.ndarray) -> np.ndarray:
    p = np.asanyarray(p)
    if p.ndim != 4 or p.shape[0] != len(CLASS_LABELS):
        raise BratsInputError(
            f"expected (4, X, Y, Z) class probabilities {CLASS_NAMES}, got shape {p.shape}")
    return p


def labels_to_probabilities(labels: np.ndarray) -> np.ndarray:
    """One-hot (4, X, Y, Z) float32 class probabilities of a canonical label map (0, 1, 2, 4).

    For methods whose final labels come from rules rather than one joint class posterior (the Wang
    cascade): their vote in an ensemble is their label map.

    Raises:
        BratsInputError: a value outside the canonical labels.
    """
    labels = np.asarray(labels)
    unknown = sorted(set(np.unique(labels).tolist()) - set(CLASS_LABELS))
    if unknown:
        raise BratsInputError(f"labels {unknown} are not canonical class labels {CLASS_LABELS}")
    return np.stack([labels == value for value in CLASS_LABELS]).astype(np.float32)


def probabilities_to_labels(p: np.ndarray, rule: str = "argmax") -> np.ndarray:
    """Turn (4, X, Y, Z) class probabilities into a canonical label map.

    Args:
        p: (4, X, Y, Z) class probabilities in canonical class order.
        rule: ``"argmax"`` (default; ties go to the lower channel, so to background first) or
            ``"regions"``: threshold WT = 1 - p_bg, TC = p_NCR + p_ET and ET = p_ET at 0.5 and nest
            them (2 = WT, overwritten by 1 = TC, overwritten by 4 = ET; a TC or ET voxel outside WT
            stays 0). ``"regions"`` is the natural rule for region-trained (sigmoid) networks.

    Returns:
        (X, Y, Z) uint8 map of canonical labels 0, 1, 2, 4.

    Raises:
        BratsInputError: ``p`` is not (4, X, Y, Z), or ``rule`` is unknown.
    """
    p = _check_class_probabilities(p)
    if rule == "argmax":
        lut = np.asarray(CLASS_LABELS, dtype=np.uint8)
        return lut[np.argmax(p, axis=0)]
    if rule == "regions":
        labels = np.zeros(p.shape[1:], dtype=np.uint8)
        wt = p[0] < 0.5
        labels[wt] = 2
        labels[wt & (p[1] + p[3] > 0.5)] = 1
        labels[wt & (p[3] > 0.5)] = 4
        return labels
    raise BratsInputError(f"unknown label rule {rule!r}; expected 'argmax' or 'regions'")


def save_probabilities(path: str | os.PathLike[str], probs: np.ndarray, meta: Mapping[str, Any]) -> None:
    """Write a (K, X, Y, Z) probability map as compressed ``.npz`` (float16), atomically.

    The file holds ``probabilities`` (float16) and ``meta`` (a JSON string). ``meta`` is stored as
    given (tuples become lists, numpy numbers Python numbers), plus ``shape`` (the spatial shape) and,
    for K = 4 without an explicit ``classes``, ``classes = [0, 1, 2, 4]``. Useful keys: ``case_id``,
    ``box`` (the crop box, for paste-back), ``member``, ``fold``.

    Args:
        path: output file, conventionally ``<case_id>.npz``.
        probs: (K, X, Y, Z) probabilities in [0, 1] (float16 keeps about 3 decimal digits).
        meta: JSON-able description of the map.

    Raises:
        BratsInputError: ``probs`` is not 4-D, ``meta["classes"]`` does not have K entries, or a
            meta value is not JSON-serialisable.
    """
    probs = np.asanyarray(probs)
    if probs.ndim != 4:
        raise BratsInputError(f"{path}: expected a (K, X, Y, Z) probability map, got shape {probs.shape}")
    try:
        meta_out = _normalise(dict(meta))
    except TypeError as err:
        raise BratsInputError(f"{path}: {err}") from None
    meta_out.setdefault("shape", list(probs.shape[1:]))
    if "classes" not in meta_out and probs.shape[0] == len(CLASS_LABELS):
        meta_out["classes"] = list(CLASS_LABELS)
    if "classes" in meta_out and len(meta_out["classes"]) != probs.shape[0]:
        raise BratsInputError(f"{path}: meta classes {meta_out['classes']} do not match the "
                              f"{probs.shape[0]} channels of the map")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **{_ARRAY_KEY: probs.astype(np.float16, copy=False),
                                   _META_KEY: np.array(json.dumps(meta_out))})
    logger.debug("wrote probabilities %s to %s", probs.shape, path)


def _load_raw(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """The stored (float16) array and meta of a file written by :func:`save_probabilities`."""
    path = Path(path)
    if not path.is_file():
        raise BratsInputError(f"{path}: probability file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            probs = data[_ARRAY_KEY]
            meta = json.loads(str(data[_META_KEY]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise BratsInputError(
            f"{path}: not a probability file written by save_probabilities ({err})") from None
    return probs, meta


def load_probabilities(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a file written by :func:`save_probabilities`.

    Returns:
        ``(probs, meta)``: (K, X, Y, Z) float32 probabilities and the meta dict.

    Raises:
        BratsInputError: the file is missing or is not such a file.
    """
    probs, meta = _load_raw(path)
    return probs.astype(np.float32), meta
