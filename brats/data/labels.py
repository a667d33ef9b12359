"""Label conventions of every BraTS release, converters to and from the canonical one, and regions.

Canonical convention (BraTS 2017–2022, used everywhere inside this package):

====  ==========================================
 0    background
 1    NCR/NET: necrotic and non-enhancing core
 2    ED: peritumoral edema
 4    ET: GD-enhancing tumour
 5    RC: resection cavity (BraTS 2024 only; in no region)
====  ==========================================

Evaluated regions: WT = {1, 2, 4}, TC = {1, 4}, ET = {4}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brats.errors import BratsInputError

BACKGROUND, NCR, ED, ET, RC = 0, 1, 2, 4, 5
CANONICAL_LABELS: tuple[int, ...] = (BACKGROUND, NCR, ED, ET)

#: Region name → canonical labels it contains, in the nesting order WT ⊃ TC ⊃ ET.
REGIONS: dict[str, tuple[int, ...]] = {"WT": (NCR, ED, ET), "TC": (NCR, ET), "ET": (ET,)}


@dataclass(frozen=True)
class LabelConvention:
    """A release's label values and how each maps to the canonical convention.

    Attributes:
        name: registry key, e.g. ``"brats2023"``.
        to_canonical_map: release value → canonical value; its keys are the release's valid labels.
        description: one line naming each value.
    """

    name: str
    to_canonical_map: dict[int, int]
    description: str

    @property
    def labels(self) -> tuple[int, ...]:
        """Valid label values in this convention, sorted."""
        return tuple(sorted(self.to_canonical_map))

    @property
    def from_canonical_map(self) -> dict[int, int]:
        """Canonical value → release value (the inverse of ``to_canonical_map``)."""
        return {c: r for r, c in self.to_canonical_map.items()}


CONVENTIONS: dict[str, LabelConvention] = {
    c.name: c
    for c in (
        LabelConvention("brats2017", {0: 0, 1: NCR, 2: ED, 4: ET},
                        "BraTS 2017-2022: 1 NCR/NET, 2 ED, 4 ET"),
        LabelConvention("brats2023", {0: 0, 1: NCR, 2: ED, 3: ET},
                        "BraTS 2023 GLI: 1 NETC, 2 SNFH, 3 ET"),
        LabelConvention("brats2024", {0: 0, 1: NCR, 2: ED, 3: ET, 4: RC},
                        "BraTS 2024 GLI: 1 NETC, 2 SNFH, 3 ET, 4 RC"),
        LabelConvention("msd", {0: 0, 1: ED, 2: NCR, 3: ET},
                        "MSD Task01_BrainTumour: 1 edema, 2 non-enhancing, 3 enhancing"),
    )
}


def get_convention(name: str) -> LabelConvention:
    """Look up a convention by name; unknown names are a :class:`BratsInputError` listing the valid ones."""
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise BratsInputError(
            f"unknown label convention {name!r}; expected one of {', '.join(CONVENTIONS)}") from None


def check_labels(labels: np.ndarray, convention: LabelConvention, source: str = "label map") -> None:
    """Raise if ``labels`` holds a value outside ``convention`` (names ``source`` and the values)."""
    present = np.unique(labels)
    unknown = sorted(set(present.tolist()) - set(convention.labels))
    if unknown:
        hint = ""
        if convention.name == "brats2023" and 4 in unknown:
            hint = " (label 4 is the BraTS 2024 resection cavity: use --release 2024)"
        elif convention.name == "brats2017" and 3 in unknown:
            hint = " (label 3 is ET from BraTS 2023 on: use --release 2023)"
        raise BratsInputError(
            f"{source}: labels {unknown} are not in the {convention.description} convention "
            f"(valid: {list(convention.labels)}){hint}")


def _remap(labels: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    lut = np.zeros(max(max(mapping), 255) + 1, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut[labels.astype(np.intp, copy=False)]


def to_canonical(labels: np.ndarray, convention: str | LabelConvention,
                 source: str = "label map") -> np.ndarray:
    """Convert a release's label map to the canonical convention.

    Args:
        labels: (X, Y, Z) integer label map in ``convention``.
        convention: convention or its name.
        source: what to name in the error message (usually the file path).

    Returns:
        (X, Y, Z) uint8 canonical label map.

    Raises:
        BratsInputError: a value is not a label of ``convention``.
    """
    conv = convention if isinstance(convention, LabelConvention) else get_convention(convention)
    check_labels(labels, conv, source)
    return _remap(labels, conv.to_canonical_map)


def from_canonical(labels: np.ndarray, convention: str | LabelConvention) -> np.ndarray:
    """Convert a canonical label map to ``convention``: (X, Y, Z) uint8 in, (X, Y, Z) uint8 out.

    Raises:
        BratsInputError: the map holds a canonical label the convention cannot express (e.g. RC
            for a 2017 submission).
    """
    conv = convention if isinstance(convention, LabelConvention) else get_convention(convention)
    inverse = conv.from_canonical_map
    unknown = sorted(set(np.unique(labels).tolist()) - set(inverse))
    if unknown:
        raise BratsInputError(
            f"canonical labels {unknown} cannot be written in the {conv.description} convention")
    return _remap(labels, inverse)


def region_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Canonical (X, Y, Z) label map → {"WT", "TC", "ET"} boolean masks of the same shape."""
    return {name: np.isin(labels, members) for name, members in REGIONS.items()}


def labels_from_regions(wt: np.ndarray, tc: np.ndarray, et: np.ndarray) -> np.ndarray:
    """Inverse of :func:`region_masks`: nested region masks → canonical uint8 label map.

    Regions are written in nesting order (WT → ED, then TC → NCR/NET, then ET → ET), so a voxel
    takes the label of the innermost region that claims it, even if the masks do not nest.
    """
    out = np.zeros(np.shape(wt), dtype=np.uint8)
    out[np.asarray(wt, bool)] = ED
    out[np.asarray(tc, bool)] = NCR
    out[np.asarray(et, bool)] = ET
    return out
