"""Synthetic glioma: edema, tumour core and enhancing rim as level sets of noisy ellipsoids.

Every size is in mm, so a coarser output grid holds the same physical tumour.

* Edema (label 2): ``f_ed = ρ_ed/R_ed − a_ed·n_ed − β·(WM − 0.5) < 1`` where ``ρ_ed`` is the
  distance to the centre through a random anisotropic ellipsoid, ``n_ed`` smooth noise on two
  scales (14 mm and 6 mm) and the WM term lets the edema spread along white matter and stop at
  cortex. Nominal diameter 36–72 mm (HGG) or 24–60 mm (LGG); core radius 0.5–0.75 (HGG) or
  0.55–0.85 (LGG) of the edema radius.
* Tumour core (labels 1 and 4): ``f_c = ρ_c/R_c − a_c·n_c < 1``, a smaller noisy ellipsoid inside.
* HGG: enhancing rim (label 4) where the depth into the core ``(1 − f_c)·R_c`` is below an
  irregular thickness of 2–6 mm (at most 0.35·R_c); the necrotic centre keeps label 1.
* LGG: the core is non-enhancing (label 1); in about a third of cases a small (2–5 mm radius)
  enhancing focus.

Regions nest by construction (ET ⊂ TC ⊂ WT) and every label is inside the brain mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brats.data.labels import ED, ET, NCR
from brats.synth.anatomy import Anatomy
from brats.synth.fields import SmoothField, rotation_matrix, sigmoid

#: Half-width (mm) of the cube around the tumour centre on which its random fields live.
TUMOUR_EXTENT_MM = 90.0
#: Smooth-noise values are clipped to ±NOISE_CLIP standard deviations (bounds the tumour's extent).
NOISE_CLIP = 2.5
#: How strongly white matter attracts edema (level-set units per unit WM probability).
WM_ATTRACTION = 0.3


@dataclass(frozen=True)
class TumourParams:
    """Random parameters of one tumour (all lengths in mm, positions in output world mm).

    Attributes:
        lgg: low-grade (no necrosis, little or no enhancement) rather than high-grade.
        centre: (3,) edema centre; ``core_centre``: (3,) core centre.
        ed_radius, core_radius: nominal radii R_ed, R_c.
        ed_shape, core_shape: (3, 3) maps of world offsets to the unit-ellipsoid frame.
        ed_amp, core_amp, rim_amp: noise amplitudes (level-set units; rim: relative thickness).
        rim_mm: mean enhancing-rim thickness (HGG; 0 for LGG).
        focus_centre, focus_radius: LGG enhancing focus (radius 0: none).
        mass_a, mass_decay: mass effect (displaced radius, fade-out radius).
        ed_noise, core_noise, rim_noise: smooth noise fields.
    """

    lgg: bool
    centre: np.ndarray
    core_centre: np.ndarray
    ed_radius: float
    core_radius: float
    ed_shape: np.ndarray
    core_shape: np.ndarray
    ed_amp: float
    core_amp: float
    rim_amp: float
    rim_mm: float
    focus_centre: np.ndarray
    focus_radius: float
    mass_a: float
    mass_decay: float
    ed_noise: tuple[SmoothField, SmoothField]
    core_noise: SmoothField
    rim_noise: SmoothField

    @property
    def extent_mm(self) -> float:
        """Largest distance from ``centre`` a labelled voxel can have."""
        edema = (_max_stretch(self.ed_shape) * self.ed_radius
                 * (1 + NOISE_CLIP * self.ed_amp + WM_ATTRACTION / 2))
        core = (_max_stretch(self.core_shape) * self.core_radius * (1 + NOISE_CLIP * self.core_amp)
                + float(np.linalg.norm(self.core_centre - self.centre)))
        return float(max(edema, core)) + 2.0

    @property
    def field_box(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) world-mm corners of the cube the tumour's random fields live on."""
        return self.centre - TUMOUR_EXTENT_MM, self.centre + TUMOUR_EXTENT_MM


def _max_stretch(shape_matrix: np.ndarray) -> float:
    return float(1.0 / np.linalg.svd(shape_matrix, compute_uv=False).min())


def _ellipsoid(rng: np.random.Generator) -> np.ndarray:
    """Random (3, 3) world → unit-frame matrix: random rotation, axes ratio within ~0.75–1.33."""
    axes = np.exp(np.clip(rng.normal(0.0, 0.12, 3), -0.25, 0.25))
    axes /= np.prod(axes) ** (1 / 3)
    rot = rotation_matrix(rng.uniform(-np.pi, np.pi, 3))
    return np.diag(1.0 / axes) @ rot.T


def draw_tumour(rng: np.random.Generator, centre: np.ndarray, lgg: bool) -> TumourParams:
    """Draw the parameters of a tumour centred at ``centre`` (output world mm)."""
    centre = np.asarray(centre, np.float64)
    lo, hi = centre - TUMOUR_EXTENT_MM, centre + TUMOUR_EXTENT_MM
    if lgg:
        ed_radius = rng.uniform(12.0, 30.0)
        core_radius = ed_radius * rng.uniform(0.55, 0.85)
        rim_mm = 0.0
        mass_a = core_radius * rng.uniform(0.3, 0.6)
    else:
        ed_radius = rng.uniform(18.0, 36.0)
        rim_mm = rng.uniform(2.0, 6.0)
        core_radius = max(ed_radius * rng.uniform(0.5, 0.75), rim_mm + 7.0)
        rim_mm = min(rim_mm, max(2.0, 0.35 * core_radius))  # keep a necrotic centre
        mass_a = core_radius * rng.uniform(0.5, 0.85)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    core_centre = centre + direction * rng.uniform(0.0, 0.25) * (ed_radius - core_radius)
    focus_radius = 0.0
    focus_centre = core_centre.copy()
    has_focus = rng.random() < 0.35
    if lgg and has_focus:
        focus_radius = min(rng.uniform(2.0, 5.0), 0.5 * core_radius)
        d = rng.normal(size=3)
        focus_centre = core_centre + d / np.linalg.norm(d) * rng.uniform(0.0, 0.4) * core_radius
    return TumourParams(
        lgg=bool(lgg), centre=centre, core_centre=core_centre, ed_radius=float(ed_radius),
        core_radius=float(core_radius), ed_shape=_ellipsoid(rng), core_shape=_ellipsoid(rng),
        ed_amp=float(rng.uniform(0.12, 0.25)), core_amp=float(rng.uniform(0.08, 0.18)),
        rim_amp=float(rng.uniform(0.2, 0.45)), rim_mm=float(rim_mm), focus_centre=focus_centre,
        focus_radius=float(focus_radius), mass_a=float(mass_a),
        mass_decay=float(ed_radius * rng.uniform(1.0, 1.6)),
        ed_noise=(SmoothField(rng, lo, hi, 14.0), SmoothField(rng, lo, hi, 6.0)),
        core_noise=SmoothField(rng, lo, hi, 8.0), rim_noise=SmoothField(rng, lo, hi, 6.0))


@dataclass(frozen=True)
class TumourMaps:
    """Tumour labels and soft memberships on ``sub`` (slices into the anatomy box).

    Attributes:
        sub: three slices into the anatomy box arrays.
        world: three 1-D world-mm coordinate vectors of ``sub``.
        labels: sub-shaped uint8 canonical labels (0, 1, 2, 4).
        p_wt, p_tc, p_et: sub-shaped float32 soft memberships, 1 ≥ p_wt ≥ p_tc ≥ p_et ≥ 0, zero
            outside the brain; thresholding at 0.5 gives the labels.
    """

    sub: tuple[slice, slice, slice]
    world: list[np.ndarray]
    labels: np.ndarray
    p_wt: np.ndarray
    p_tc: np.ndarray
    p_et: np.ndarray


def _radius(shape_matrix: np.ndarray, world: list[np.ndarray], centre: np.ndarray) -> np.ndarray:
    """Ellipsoidal distance ``|S·(x − centre)|`` on the grid ``world`` → (nx, ny, nz) float32 mm."""
    d = [np.asarray(w - c, np.float32) for w, c in zip(world, centre)]
    d = [d[0][:, None, None], d[1][None, :, None], d[2][None, None, :]]
    s = shape_matrix.astype(np.float32)
    out = None
    for i in range(3):
        v = s[i, 0] * d[0] + s[i, 1] * d[1] + s[i, 2] * d[2]
        out = v * v if out is None else out + v * v
    return np.sqrt(out)


def _noise(field: SmoothField, world: list[np.ndarray]) -> np.ndarray:
    return np.clip(field.grid(*world), -NOISE_CLIP, NOISE_CLIP)


def tumour_maps(params: TumourParams, anatomy: Anatomy,
                spacing: tuple[float, float, float]) -> TumourMaps:
    """Labels and soft memberships of the tumour on the anatomy's grid.

    Args:
        params: tumour parameters.
        anatomy: warped anatomy (its WM steers the edema, its brain mask confines the labels).
        spacing: voxel size in mm; sets the partial-volume width of the soft memberships
            (max(0.5 mm, 0.35·mean voxel size)) and the thinnest rim a coarse grid can show.
    """
    ext = params.extent_mm
    sub = []
    for w, c in zip(anatomy.world, params.centre):
        idx = np.flatnonzero(np.abs(w - c) <= ext)
        sub.append(slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0))
    sub_t = tuple(sub)
    world = [w[s] for w, s in zip(anatomy.world, sub_t)]
    shape = tuple(len(w) for w in world)
    if min(shape) == 0:
        empty = np.zeros(shape, np.float32)
        return TumourMaps(sub_t, world, np.zeros(shape, np.uint8), empty, empty, empty)
    brain = anatomy.brain[sub_t]
    wm = anatomy.wm[sub_t]
    pv = max(0.5, 0.35 * float(np.mean(spacing)))

    n_ed = np.clip(0.8 * params.ed_noise[0].grid(*world) + 0.6 * params.ed_noise[1].grid(*world),
                   -NOISE_CLIP, NOISE_CLIP)
    f_ed = (_radius(params.ed_shape, world, params.centre) / np.float32(params.ed_radius)
            - np.float32(params.ed_amp) * n_ed - np.float32(WM_ATTRACTION) * (wm - 0.5))
    f_c = (_radius(params.core_shape, world, params.core_centre) / np.float32(params.core_radius)
           - np.float32(params.core_amp) * _noise(params.core_noise, world))
    tc = (f_c < 1) & brain
    wt = ((f_ed < 1) | tc) & brain
    p_ed = sigmoid((1 - f_ed) * np.float32(params.ed_radius / pv))
    p_tc = sigmoid((1 - f_c) * np.float32(params.core_radius / pv)) * brain
    p_wt = np.maximum(p_ed * brain, p_tc)
    if not params.lgg:
        depth = (1 - f_c) * np.float32(params.core_radius)       # mm into the core (radial)
        thick = params.rim_mm * (1 + params.rim_amp * _noise(params.rim_noise, world))
        thick = np.clip(thick, max(1.0, 0.5 * float(np.mean(spacing))), 8.0).astype(np.float32)
        et = tc & (depth < thick)
        p_et = p_tc * sigmoid((thick - depth) / np.float32(pv))
    elif params.focus_radius > 0:
        f_f = (_radius(np.eye(3), world, params.focus_centre) / np.float32(params.focus_radius)
               - np.float32(0.15) * _noise(params.rim_noise, world))
        et = tc & (f_f < 1)
        p_et = p_tc * sigmoid((1 - f_f) * np.float32(params.focus_radius / pv))
    else:
        et = np.zeros(shape, bool)
        p_et = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[wt] = ED
    labels[tc] = NCR
    labels[et] = ET
    return TumourMaps(sub_t, world, labels, p_wt.astype(np.float32), p_tc.astype(np.float32),
                      p_et.astype(np.float32))
