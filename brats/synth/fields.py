"""Random smooth fields in world millimetres, and seed helpers shared by the synthetic generator.

A :class:`SmoothField` is a sum of Gaussian radial basis functions on a regular node lattice with
i.i.d. standard-normal weights. The lattice is fixed in world mm (not in voxels), so the same seed
gives the same physical field on every output grid; evaluation on an axis-aligned grid is
separable (three small matrix products), which makes a full-volume field cost a few tens of ms.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brats.errors import BratsInputError

SeedLike = int | np.random.SeedSequence


def as_seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    """A non-negative int or a SeedSequence → a SeedSequence (a SeedSequence is returned as is).

    Raises:
        BratsInputError: a negative or non-integer seed.
    """
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BratsInputError(f"seed={seed!r}: expected a non-negative integer or a SeedSequence")
    return np.random.SeedSequence(int(seed))


def child_rng(seed: np.random.SeedSequence, key: int) -> np.random.Generator:
    """Independent generator for one part of a case (``key``), derived without mutating ``seed``.

    ``SeedSequence.spawn`` counts its calls, so a second call with the same object would give new
    streams; this derives the child from the seed's entropy and spawn key only.
    """
    child = np.random.SeedSequence(entropy=seed.entropy, spawn_key=(*seed.spawn_key, key))
    return np.random.default_rng(child)


class SmoothField:
    """Zero-mean, unit-variance random field, smooth on the scale ``corr_mm``.

    Nodes lie every ``corr_mm`` mm over ``[lo − 2·corr_mm, hi + 2·corr_mm]`` on each world axis;
    each basis function is a Gaussian with σ = ``corr_mm``. The weights of every evaluation point
    are normalised to unit sum of squares, so the field has variance exactly 1 at every point
    inside the lattice.

    Args:
        rng: source of the node weights (the number drawn depends only on lo, hi and corr_mm).
        lo, hi: (3,) world-mm bounds of the region the field is evaluated in.
        corr_mm: correlation length in mm.
    """

    def __init__(self, rng: np.random.Generator, lo: Sequence[float], hi: Sequence[float],
                 corr_mm: float) -> None:
        self.corr_mm = float(corr_mm)
        self.nodes = [np.arange(float(a) - 2 * corr_mm, float(b) + 2 * corr_mm + 1e-6, corr_mm)
                      for a, b in zip(lo, hi)]
        self.coef = rng.standard_normal(tuple(len(n) for n in self.nodes)).astype(np.float32)

    def _weights(self, axis: int, x: np.ndarray) -> np.ndarray:
        """(N,) world-mm positions along ``axis`` → (N, nodes) float32 weights, unit L2 rows."""
        d = (np.asarray(x, np.float64)[:, None] - self.nodes[axis][None, :]) / self.corr_mm
        w = np.exp(-0.5 * np.minimum(d * d, 64.0))
        w /= np.sqrt((w * w).sum(axis=1, keepdims=True))
        w[w < 1e-6] = 0.0  # beyond ~5σ; also keeps float32 denormals (slow matmuls) out
        return w.astype(np.float32)

    def grid(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Field on the axis-aligned grid ``x × y × z`` (1-D world-mm vectors).

        Returns:
            (nx, ny, nz) float32.
        """
        wx, wy, wz = self._weights(0, x), self._weights(1, y), self._weights(2, z)
        cx, cy, cz = self.coef.shape
        t = (wx @ self.coef.reshape(cx, cy * cz)).reshape(len(x), cy, cz)  # (nx, cy, cz)
        t = t @ wz.T                                                          # (nx, cy, nz)
        return np.ascontiguousarray(wy @ t)                                   # (nx, ny, nz)

    def at(self, points: np.ndarray) -> np.ndarray:
        """Field at (N, 3) world-mm points → (N,) float32."""
        p = np.atleast_2d(np.asarray(points, np.float64))
        wx, wy, wz = self._weights(0, p[:, 0]), self._weights(1, p[:, 1]), self._weights(2, p[:, 2])
        cx, cy, cz = self.coef.shape
        t = (wx @ self.coef.reshape(cx, cy * cz)).reshape(len(p), cy, cz)
        t = np.matmul(wy[:, None, :], t)[:, 0, :]                            # (N, cz)
        return (t * wz).sum(axis=1, dtype=np.float32)


def axis_world(affine: np.ndarray, shape: Sequence[int],
               box: tuple[slice, slice, slice] | None = None) -> list[np.ndarray]:
    """World-mm coordinate of every voxel centre along each axis of a diagonal affine.

    Args:
        affine: 4×4 voxel-to-world affine whose 3×3 part is diagonal (BraTS space).
        shape: grid shape (X, Y, Z).
        box: optional slices selecting part of the grid.

    Returns:
        Three 1-D float64 arrays (the selected voxels along x, y, z).
    """
    out = []
    for a in range(3):
        idx = np.arange(shape[a], dtype=np.float64)
        if box is not None:
            idx = idx[box[a]]
        out.append(affine[a, a] * idx + affine[a, 3])
    return out


def rotation_matrix(angles_rad: Sequence[float]) -> np.ndarray:
    """(3,) rotation angles about x, y, z in radians → (3, 3) rotation Rz·Ry·Rx."""
    ax, ay, az = angles_rad
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, float32 in and out, without overflow warnings."""
    x = np.clip(x, -30.0, 30.0)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32, copy=False)
