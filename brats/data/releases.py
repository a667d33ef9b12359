"""What each BraTS release looks like on disk: case names, file suffixes, folders, label convention.

Modalities are always handled in the canonical order ``MODALITIES = (t1, t1ce, t2, flair)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from brats.errors import BratsInputError

MODALITIES: tuple[str, str, str, str] = ("t1", "t1ce", "t2", "flair")
NIFTI_SUFFIX = r"\.nii(?:\.gz)?$"


@dataclass(frozen=True)
class Release:
    """Naming and layout rules of one BraTS release.

    Attributes:
        name: ``"2017"`` … ``"2024"`` or ``"msd"``.
        case_pattern: regex matching a case id of this release.
        suffixes: file suffix per canonical modality (t1, t1ce, t2, flair).
        seg_suffix: suffix of the segmentation file.
        separator: character between the case id and the suffix.
        convention: label convention name (:mod:`brats.data.labels`).
        grade_folders: training cases sit in ``HGG/`` and ``LGG/`` sub-folders (2017–2019).
        training_id: format of the i-th training id the writer uses (``{i}`` is an int).
        validation_id: format of the i-th validation id.
        msd_channels: for the MSD 4-D layout, the image channel holding each canonical modality.
    """

    name: str
    case_pattern: str
    suffixes: tuple[str, str, str, str]
    seg_suffix: str
    separator: str
    convention: str
    grade_folders: bool
    training_id: str
    validation_id: str
    msd_channels: tuple[int, int, int, int] | None = None

    @property
    def file_regex(self) -> re.Pattern[str]:
        """Matches ``<case><sep><suffix>.nii[.gz]`` with groups ``case`` and ``kind``."""
        kinds = "|".join(re.escape(s) for s in (*self.suffixes, self.seg_suffix))
        sep = re.escape(self.separator)
        return re.compile(rf"^(?P<case>{self.case_pattern}){sep}(?P<kind>{kinds}){NIFTI_SUFFIX}")

    @property
    def is_msd(self) -> bool:
        """True for the Medical Segmentation Decathlon 4-D layout."""
        return self.msd_channels is not None

    def file_name(self, case_id: str, kind: str, compressed: bool = True) -> str:
        """File name of one modality (``"t1"`` … ``"flair"``) or ``"seg"`` of a case."""
        if kind == "seg":
            suffix = self.seg_suffix
        else:
            suffix = self.suffixes[MODALITIES.index(kind)]
        return f"{case_id}{self.separator}{suffix}.nii" + (".gz" if compressed else "")


_LEGACY = dict(suffixes=("t1", "t1ce", "t2", "flair"), seg_suffix="seg", separator="_",
               convention="brats2017")
_GLI = dict(suffixes=("t1n", "t1c", "t2w", "t2f"), seg_suffix="seg", separator="-",
            case_pattern=r"BraTS-GLI-\d{5}-\d{3}")

RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        Release("2017", r"Brats17_[A-Za-z0-9]+_[A-Za-z0-9]+_\d+", grade_folders=True,
                training_id="Brats17_SYN_{i:03d}_1", validation_id="Brats17_SYNVAL_{i:03d}_1",
                **_LEGACY),
        Release("2018", r"Brats18_[A-Za-z0-9]+_[A-Za-z0-9]+_\d+", grade_folders=True,
                training_id="Brats18_SYN_{i:03d}_1", validation_id="Brats18_SYNVAL_{i:03d}_1",
                **_LEGACY),
        Release("2019", r"BraTS19_[A-Za-z0-9]+_[A-Za-z0-9]+_\d+", grade_folders=True,
                training_id="BraTS19_SYN_{i:03d}_1", validation_id="BraTS19_SYNVAL_{i:03d}_1",
                **_LEGACY),
        Release("2020", r"BraTS20_(?:Training|Validation|Testing)_\d{3}", grade_folders=False,
                training_id="BraTS20_Training_{i:03d}", validation_id="BraTS20_Validation_{i:03d}",
                **_LEGACY),
        Release("2021", r"BraTS2021_\d{5}", grade_folders=False,
                training_id="BraTS2021_{i:05d}", validation_id="BraTS2021_{i:05d}", **_LEGACY),
        Release("2023", convention="brats2023", grade_folders=False,
                training_id="BraTS-GLI-{i:05d}-000", validation_id="BraTS-GLI-{i:05d}-000", **_GLI),
        Release("2024", convention="brats2024", grade_folders=False,
                training_id="BraTS-GLI-{i:05d}-100", validation_id="BraTS-GLI-{i:05d}-100", **_GLI),
        Release("msd", r"BRATS_\d{3}", suffixes=("", "", "", ""), seg_suffix="", separator="",
                convention="msd", grade_folders=False, training_id="BRATS_{i:03d}",
                validation_id="BRATS_{i:03d}", msd_channels=(1, 2, 3, 0)),
    )
}

#: Offset added to validation ids where a release shares one id space between splits.
VALIDATION_ID_OFFSET = {"2021": 10000, "2023": 10000, "2024": 10000, "msd": 500}


def get_release(name: str) -> Release:
    """Look up a release by name (``"2017"``, ``"17"``, ``"brats2017"``, ``"msd"`` …)."""
    key = name.lower().removeprefix("brats").removeprefix("_")
    if len(key) == 2 and key.isdigit():
        key = "20" + key
    if key in ("2022",):
        key = "2021"
    if key in ("task01", "task01_braintumour", "decathlon"):
        key = "msd"
    try:
        return RELEASES[key]
    except KeyError:
        raise BratsInputError(
            f"unknown release {name!r}; expected one of {', '.join(RELEASES)}") from None
