"""brats: one core for reproducing the top three BraTS 2017 segmentation entries."""

from __future__ import annotations

__version__ = "0.1.0"

from brats.data.case import Case, CaseData  # noqa: E402
from brats.data.layouts import discover  # noqa: E402
from brats.errors import BratsInputError  # noqa: E402

__all__ = ["BratsInputError", "Case", "CaseData", "__version__", "discover"]
