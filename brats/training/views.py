"""Views of a volume for 2.5-D networks: the slice axis first, as exact array transposes.

A (…, X, Y, Z) array in view order becomes (…, D, H, W) with D the view's slice axis:

=========  ====  ======
view       D     (H, W)
=========  ====  ======
axial      Z     (X, Y)
sagittal   X     (Y, Z)
coronal    Y     (X, Z)
=========  ====  ======
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brats.errors import BratsInputError

#: View name → order of the spatial axes (X=0, Y=1, Z=2) in (D, H, W).
VIEW_AXES: dict[str, tuple[int, int, int]] = {"axial": (2, 0, 1), "sagittal": (0, 1, 2),
                                              "coronal": (1, 0, 2)}


def _axes(view: str) -> tuple[int, int, int]:
    try:
        return VIEW_AXES[view]
    except KeyError:
        raise BratsInputError(f"unknown view {view!r}; expected one of {', '.join(VIEW_AXES)}"
                              ) from None


def view_permutation(ndim: int, view: str) -> tuple[int, ...]:
    """Axis order taking an ``ndim``-D (…, X, Y, Z) array to (…, D, H, W) of ``view``
    (for ``np.transpose`` and ``torch.Tensor.permute`` alike)."""
    lead = ndim - 3
    return (*range(lead), *(lead + a for a in _axes(view)))


def to_view(array: np.ndarray, view: str) -> np.ndarray:
    """(…, X, Y, Z) → (…, D, H, W) of ``view`` (a transposed view of the same memory)."""
    return np.transpose(array, view_permutation(array.ndim, view))


def from_view(array: np.ndarray, view: str) -> np.ndarray:
    """Inverse of :func:`to_view`: (…, D, H, W) → (…, X, Y, Z)."""
    lead = array.ndim - 3
    inverse = np.argsort(_axes(view))
    return np.transpose(array, (*range(lead), *(lead + int(a) for a in inverse)))


def size_in_array_order(size: Sequence[int], view: str | None) -> tuple[int, int, int]:
    """A (D, H, W) patch size of ``view`` as (X, Y, Z); unchanged without a view."""
    if view is None:
        return tuple(int(s) for s in size)  # type: ignore[return-value]
    out = [0, 0, 0]
    for position, axis in enumerate(_axes(view)):
        out[axis] = int(size[position])
    return tuple(out)  # type: ignore[return-value]
