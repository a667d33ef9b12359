"""Per-case brain anatomy: the MNI152 2009a tissue templates warped into BraTS space.

Output voxel → world mm (``brats_affine(shape)``) → tumour mass effect (radial push away from the
tumour centre) → smooth random elastic displacement → random affine (rotation ±10°, isotropic
scale 0.85–0.95 with ±3 % per-axis jitter, small translation) → MNI voxel → trilinear sampling of
the nilearn templates (GM, WM probabilities and brain mask; 197×233×189, 1 mm). CSF is
mask − GM − WM, clipped to ≥ 0. Everything is zero outside the warped brain mask.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy import ndimage

from brats.data.geometry import BRATS_SHAPE, brats_affine, voxel_spacing
from brats.synth.fields import SmoothField, axis_world, rotation_matrix

#: World-mm centre of the BraTS field of view (identical for every grid shape).
OUT_CENTRE: np.ndarray = (brats_affine(BRATS_SHAPE)
                          @ np.r_[(np.asarray(BRATS_SHAPE) - 1) / 2.0, 1.0])[:3]
#: World-mm bounds of the BraTS field of view (lattice of the anatomy-scale random fields).
FOV_LO: np.ndarray = np.array([-240.0, 0.0, 0.0])
FOV_HI: np.ndarray = np.array([0.0, 240.0, 155.0])

ELASTIC_CORR_MM = 40.0
#: Tumour centres are drawn from MNI voxels with WM probability above this, at least
#: ``CENTRE_DEPTH_MM`` inside the brain mask and above ``CENTRE_MIN_Z_MM`` (supratentorial).
CENTRE_WM_MIN, CENTRE_DEPTH_MM, CENTRE_MIN_Z_MM = 0.9, 15.0, -10.0


@dataclass(frozen=True)
class Templates:
    """MNI152 2009a templates (1 mm, world = voxel + ``origin``) and derived point sets.

    Attributes:
        gm, wm: (197, 233, 189) float32 tissue probabilities in [0, 1].
        mask: (197, 233, 189) float32 brain mask, 0/1 (or smoothed for coarse output grids).
        origin: (3,) world mm of voxel (0, 0, 0).
        centre: (3,) world mm of the brain mask's bounding-box centre.
        surface: (N, 3) world mm of brain-surface voxels (subsampled), to fit the field of view.
        candidates: (M, 3) world mm of deep white-matter voxels, the possible tumour centres.
    """

    gm: np.ndarray
    wm: np.ndarray
    mask: np.ndarray
    origin: np.ndarray
    centre: np.ndarray
    surface: np.ndarray
    candidates: np.ndarray


@lru_cache(maxsize=1)
def load_templates() -> Templates:
    """Load the nilearn MNI152 templates once per process (bundled with nilearn, no download)."""
    from nilearn import datasets

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    gm = np.asarray(gm_img.get_fdata(dtype=np.float32))
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32))
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).get_fdata(dtype=np.float32))
    mask = (mask > 0.5).astype(np.float32)
    origin = np.asarray(gm_img.affine, np.float64)[:3, 3].copy()
    inside = mask > 0
    idx = np.argwhere(inside)
    centre = (idx.min(0) + idx.max(0)) / 2.0 + origin
    surface = np.argwhere(inside & ~ndimage.binary_erosion(inside))[::7] + origin
    # Tumour-centre candidates on a 2 mm subgrid: deep, supratentorial white matter.
    sub = inside[::2, ::2, ::2]
    depth = ndimage.distance_transform_edt(sub, sampling=2.0)
    cand = np.argwhere((wm[::2, ::2, ::2] > CENTRE_WM_MIN) & (depth >= CENTRE_DEPTH_MM)) * 2.0
    cand = cand + origin
    cand = cand[cand[:, 2] >= CENTRE_MIN_Z_MM]
    for a in (gm, wm, mask):
        a.flags.writeable = False
    return Templates(gm, wm, mask, origin, centre, surface.astype(np.float64), cand)


@lru_cache(maxsize=4)
def _smoothed_templates(sigma_mm: tuple[float, float, float]) -> Templates:
    base = load_templates()
    if not any(sigma_mm):
        return base
    gm, wm, mask = (ndimage.gaussian_filter(a, sigma_mm, mode="constant")
                    for a in (base.gm, base.wm, base.mask))
    return replace(base, gm=gm, wm=wm, mask=mask)


def templates_for(shape: tuple[int, int, int]) -> Templates:
    """Templates pre-blurred for a coarse output grid (anti-aliasing; none at 1 mm).

    A voxel of size h averages a box of width h (σ ≈ 0.29·h); the 1 mm template already holds
    σ ≈ 0.29 mm, and the brain is shrunk by ≈ 0.9 on its way to BraTS space.
    """
    spacing = voxel_spacing(brats_affine(shape))
    sigma = tuple(round(0.29 * float(np.sqrt(max(h * h - 1.0, 0.0))) / 0.9, 1) for h in spacing)
    return _smoothed_templates(sigma)


@dataclass(frozen=True)
class MassEffect:
    """Radial push of the anatomy away from ``centre`` (output world mm).

    The source radius of an output point at radius r is ``cbrt(max(r³ − a³·exp(−r²/R²), 0))``:
    monotone in r, it displaces a sphere of radius ≈ ``a`` mm of tissue and fades beyond ``R``.
    """

    centre: np.ndarray
    a: float
    decay: float


@dataclass(frozen=True)
class Warp:
    """Output world mm → MNI world mm: ``L·(mass(p) − OUT_CENTRE + amp·e(p) − shift) + centre_mni``.

    Attributes:
        linear: (3, 3) output-mm → MNI-mm matrix (inverse of rotation·scale).
        shift: (3,) translation of the brain in output mm.
        centre_mni: (3,) MNI world mm that lands on the field-of-view centre (plus ``shift``).
        elastic: three unit-variance smooth fields (x, y, z displacement) on the output FOV.
        elastic_mm: displacement amplitude (standard deviation) in mm.
        mass: tumour mass effect, or None.
    """

    linear: np.ndarray
    shift: np.ndarray
    centre_mni: np.ndarray
    elastic: tuple[SmoothField, SmoothField, SmoothField]
    elastic_mm: float
    mass: MassEffect | None = None

    @property
    def forward(self) -> np.ndarray:
        """(3, 3) MNI-mm → output-mm matrix (rotation·scale), the inverse of ``linear``."""
        return np.linalg.inv(self.linear)

    def elastic_at(self, points: np.ndarray) -> np.ndarray:
        """Elastic displacement at (N, 3) output world-mm points → (N, 3) mm."""
        return self.elastic_mm * np.stack([f.at(points) for f in self.elastic], axis=1)

    def to_output(self, mni: np.ndarray, iterations: int = 8) -> np.ndarray:
        """(N, 3) MNI world mm → output world mm (inverts the elastic part by fixed-point iteration;
        ignores the mass effect, which leaves its own centre in place)."""
        base = (np.atleast_2d(mni) - self.centre_mni) @ self.forward.T + OUT_CENTRE + self.shift
        p = base
        for _ in range(iterations):
            p = base - self.elastic_at(p)
        return p


def draw_warp(rng: np.random.Generator, tpl: Templates) -> Warp:
    """Random per-case affine + elastic deformation that keeps the brain in the field of view."""
    angles = np.deg2rad(rng.uniform(-10.0, 10.0, 3))
    scale = rng.uniform(0.85, 0.95) * (1.0 + rng.uniform(-0.03, 0.03, 3))
    forward = rotation_matrix(angles) @ np.diag(scale)
    shift = np.r_[rng.uniform(-5.0, 5.0, 2), rng.uniform(-4.0, 4.0)]
    elastic = tuple(SmoothField(rng, FOV_LO, FOV_HI, ELASTIC_CORR_MM) for _ in range(3))
    elastic_mm = float(rng.uniform(1.5, 3.0))
    # Keep the top of the brain inside the 155 mm axial field of view (the brainstem may be cut,
    # as in BraTS); shift up if there is room below.
    z = ((tpl.surface - tpl.centre) @ forward.T)[:, 2] + OUT_CENTRE[2] + shift[2]
    top, bottom = FOV_HI[2] - 3.0, FOV_LO[2] + 3.0
    if z.max() > top:
        shift[2] -= z.max() - top
    elif z.min() < bottom:
        shift[2] += min(bottom - z.min(), top - z.max())
    return Warp(np.linalg.inv(forward), shift, tpl.centre.copy(), elastic,  # type: ignore[arg-type]
                elastic_mm)


def with_mass_effect(warp: Warp, centre: np.ndarray, a: float, decay: float) -> Warp:
    """Copy of ``warp`` with a tumour mass effect around ``centre`` (output world mm)."""
    return replace(warp, mass=MassEffect(np.asarray(centre, np.float64), float(a), float(decay)))


@dataclass(frozen=True)
class Anatomy:
    """Warped anatomy inside ``box`` (the part of the output grid that can hold brain).

    Attributes:
        box: three slices into the (X, Y, Z) output grid.
        world: three 1-D world-mm coordinate vectors of the box's voxels.
        gm, wm, csf: box-shaped float32 tissue fractions, zero outside ``brain``.
        brain: box-shaped bool brain mask (interpolated mask ≥ 0.5).
    """

    box: tuple[slice, slice, slice]
    world: list[np.ndarray]
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray


def brain_box(warp: Warp, tpl: Templates,
              shape: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """Slices of the output grid that can contain brain: the brain surface mapped forward (affine,
    elastic and mass effect) plus 2 mm and two voxels."""
    pts = warp.to_output(tpl.surface, iterations=3)
    if warp.mass is not None:
        # Forward radius of a source point at radius r_s: r³ = r_s³ + a³·exp(−r²/R²) ≤ r_s³ + a³.
        d = pts - warp.mass.centre
        rs = np.linalg.norm(d, axis=1, keepdims=True)
        r = np.cbrt(rs ** 3 + warp.mass.a ** 3 * np.exp(-(rs / warp.mass.decay) ** 2))
        pts = warp.mass.centre + d * (r / np.maximum(rs, 1e-6))
    lo, hi = pts.min(0) - 2.0, pts.max(0) + 2.0
    inv = np.linalg.inv(brats_affine(shape))
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    vox = corners @ inv[:3, :3].T + inv[:3, 3]
    start = np.maximum(np.floor(vox.min(0)).astype(int) - 2, 0)
    stop = np.minimum(np.ceil(vox.max(0)).astype(int) + 3, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))  # type: ignore[return-value]


def source_coords(warp: Warp, tpl: Templates, world: list[np.ndarray]) -> np.ndarray:
    """MNI voxel coordinates sampled by each voxel of the output grid ``world`` (1-D mm vectors).

    Returns:
        (3, nx, ny, nz) float32.
    """
    px, py, pz = (np.asarray(w, np.float32) for w in world)
    px, py, pz = px[:, None, None], py[None, :, None], pz[None, None, :]
    shape = (px.shape[0], py.shape[1], pz.shape[2])
    if warp.mass is not None:
        t = warp.mass.centre.astype(np.float32)
        dx, dy, dz = px - t[0], py - t[1], pz - t[2]
        r2 = dx * dx + dy * dy + dz * dz
        r = np.sqrt(r2)
        a3 = np.float32(warp.mass.a ** 3)
        rs = np.cbrt(np.maximum(r2 * r - a3 * np.exp(r2 * np.float32(-1.0 / warp.mass.decay ** 2)),
                                0.0))
        f = rs / np.maximum(r, np.float32(1e-6))
        q = [t[0] + dx * f, t[1] + dy * f, t[2] + dz * f]
    else:
        q = [np.broadcast_to(p, shape) for p in (px, py, pz)]
    amp = np.float32(warp.elastic_mm)
    u = [q[i] - np.float32(OUT_CENTRE[i] + warp.shift[i])
         + amp * warp.elastic[i].grid(*world) for i in range(3)]
    lin = warp.linear.astype(np.float32)
    off = (warp.centre_mni - tpl.origin).astype(np.float32)
    out = np.empty((3, *shape), np.float32)
    for i in range(3):
        out[i] = lin[i, 0] * u[0] + lin[i, 1] * u[1] + lin[i, 2] * u[2] + off[i]
    return out


def warp_anatomy(warp: Warp, tpl: Templates, shape: tuple[int, int, int]) -> Anatomy:
    """Sample the templates through ``warp`` on the output grid ``shape`` (inside the brain box)."""
    box = brain_box(warp, tpl, shape)
    world = axis_world(brats_affine(shape), shape, box)
    coords = source_coords(warp, tpl, world)
    mask = ndimage.map_coordinates(tpl.mask, coords, order=1, output=np.float32, cval=0.0)
    brain = mask >= 0.5
    pts = coords[:, brain]
    gm = np.zeros(brain.shape, np.float32)
    wm = np.zeros(brain.shape, np.float32)
    gm[brain] = ndimage.map_coordinates(tpl.gm, pts, order=1, output=np.float32, cval=0.0)
    wm[brain] = ndimage.map_coordinates(tpl.wm, pts, order=1, output=np.float32, cval=0.0)
    csf = np.where(brain, np.maximum(mask - gm - wm, 0.0), 0.0).astype(np.float32)
    return Anatomy(box, world, gm, wm, csf, brain)
