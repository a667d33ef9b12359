"""MRI-like T1, T1ce, T2 and FLAIR intensities from tissue fractions and tumour memberships.

Mean intensity per class and modality, relative to white matter (:data:`CONTRAST`); white matter
sits at :data:`WM_INTENSITY` times a random per-case, per-modality scale (×0.70–1.42):

==========  =====  =====  =====  =====  ======  ======  =====
modality     CSF    GM     WM    edema  NCR     NET     ET
==========  =====  =====  =====  =====  ======  ======  =====
T1           0.35   0.72   1.00   0.70   0.45    0.62    0.68
T1ce         0.40   0.75   1.00   0.72   0.45    0.64    1.90
T2           2.60   1.35   1.00   1.90   2.20    1.80    1.55
FLAIR        0.35   1.15   1.00   1.85   1.30    1.60    1.45
==========  =====  =====  =====  =====  ======  ======  =====

Label 1 is necrosis (NCR) in high-grade cases and non-enhancing tumour (NET) in low-grade ones.
Per case, each class mean is jittered (×exp(N(0, 0.05)) for tissue, ×exp(N(0, 0.08)) for
tumour). Voxel intensity = partial-volume mix of the class means (tissue fractions from the
anatomy, tumour classes taking over smoothly at their borders; edema keeps 30 % of the underlying
tissue's contrast) × smooth multiplicative texture (2.5 % tissue, 8–15 % tumour, partly shared
between modalities with opposite signs on T1-weighted and T2-weighted images) × smooth bias field
(exp(N(0, 0.05–0.2))), then Rician noise ``sqrt((s + n1)² + n2²)`` with σ 1.5–4 % of WM.
Stored as int16, ≥ 1 inside the brain and 0 outside.
"""

from __future__ import annotations

import numpy as np

from brats.data.releases import MODALITIES
from brats.synth.anatomy import FOV_HI, FOV_LO, Anatomy
from brats.synth.fields import SmoothField
from brats.synth.tumour import TumourMaps, TumourParams

CLASSES: tuple[str, ...] = ("csf", "gm", "wm", "edema", "ncr", "net", "et")

#: Mean intensity per class, relative to white matter, per modality (canonical order).
CONTRAST: dict[str, dict[str, float]] = {
    "t1":    {"csf": 0.35, "gm": 0.72, "wm": 1.00, "edema": 0.70, "ncr": 0.45, "net": 0.62,
              "et": 0.68},
    "t1ce":  {"csf": 0.40, "gm": 0.75, "wm": 1.00, "edema": 0.72, "ncr": 0.45, "net": 0.64,
              "et": 1.90},
    "t2":    {"csf": 2.60, "gm": 1.35, "wm": 1.00, "edema": 1.90, "ncr": 2.20, "net": 1.80,
              "et": 1.55},
    "flair": {"csf": 0.35, "gm": 1.15, "wm": 1.00, "edema": 1.85, "ncr": 1.30, "net": 1.60,
              "et": 1.45},
}
#: White-matter intensity of each modality before the random per-case scale.
WM_INTENSITY: dict[str, float] = {"t1": 550.0, "t1ce": 650.0, "t2": 450.0, "flair": 400.0}
#: Sign of the shared tumour texture per modality (water content: dark on T1, bright on T2).
TEXTURE_SIGN: dict[str, float] = {"t1": -1.0, "t1ce": -1.0, "t2": 1.0, "flair": 1.0}
#: Texture amplitude (relative standard deviation) per class.
TEXTURE_AMP: dict[str, float] = {"tissue": 0.025, "edema": 0.08, "ncr": 0.15, "net": 0.10,
                                 "et": 0.12}
EDEMA_TISSUE_SHARE = 0.3


def _texture(cls: str, sign: float, shared: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Multiplicative texture of a tumour class: 1 + amp·(0.8·sign·shared + 0.6·own)."""
    return 1.0 + np.float32(TEXTURE_AMP[cls]) * (np.float32(0.8 * sign) * shared
                                                 + np.float32(0.6) * own)


def synthesize(rng: np.random.Generator, anatomy: Anatomy, tumour: TumourMaps,
               params: TumourParams) -> np.ndarray:
    """Four modalities on the anatomy box.

    Args:
        rng: source of every random draw of the contrast stage.
        anatomy: tissue fractions and brain mask (box-shaped).
        tumour: soft tumour memberships on a sub-box of the anatomy box.
        params: the tumour's parameters (grade; the lattice its texture fields live on).

    Returns:
        (4, *box shape) int16 in canonical order (t1, t1ce, t2, flair), 0 outside the brain.
    """
    label1 = "net" if params.lgg else "ncr"
    means = {m: {c: v * float(np.exp(rng.normal(0.0, 0.05 if c in ("csf", "gm", "wm") else 0.08)))
                 for c, v in CONTRAST[m].items()} for m in MODALITIES}
    scales = {m: WM_INTENSITY[m] * float(np.exp(rng.uniform(-0.35, 0.35))) for m in MODALITIES}
    bias_amp = {m: float(rng.uniform(0.05, 0.2)) for m in MODALITIES}
    noise_rel = {m: float(rng.uniform(0.015, 0.04)) for m in MODALITIES}
    # Random fields: drawn on fixed world-mm lattices, so they do not depend on the grid shape.
    t_lo, t_hi = params.field_box
    shared = {c: SmoothField(rng, t_lo, t_hi, corr) for c, corr in (("edema", 5.0), ("core", 3.0))}
    per_mod = {m: SmoothField(rng, t_lo, t_hi, 3.0) for m in MODALITIES}
    tissue_tex = {m: SmoothField(rng, FOV_LO, FOV_HI, 6.0) for m in MODALITIES}
    bias = {m: SmoothField(rng, FOV_LO, FOV_HI, 60.0) for m in MODALITIES}

    brain = anatomy.brain
    total = anatomy.csf + anatomy.gm + anatomy.wm
    inv = np.where(brain, 1.0 / np.maximum(total, 1e-3), 0.0).astype(np.float32)
    fc, fg, fw = anatomy.csf * inv, anatomy.gm * inv, anatomy.wm * inv
    sub, tw = tumour.sub, tumour.world
    has_tumour = tumour.labels.size > 0
    if has_tumour:
        n_ed = shared["edema"].grid(*tw)
        n_core = shared["core"].grid(*tw)
        p_ed = tumour.p_wt - tumour.p_tc
        p_1 = tumour.p_tc - tumour.p_et
        p_et = tumour.p_et
        p_tissue = 1.0 - tumour.p_wt
    out = np.zeros((len(MODALITIES), *brain.shape), np.int16)
    n_brain = int(brain.sum())
    for k, m in enumerate(MODALITIES):
        mu = means[m]
        img = (fc * mu["csf"] + fg * mu["gm"] + fw * mu["wm"]).astype(np.float32)
        img *= 1.0 + np.float32(TEXTURE_AMP["tissue"]) * tissue_tex[m].grid(*anatomy.world)
        if has_tumour:
            tissue = img[sub]
            n_m = per_mod[m].grid(*tw)
            s = TEXTURE_SIGN[m]
            edema = ((EDEMA_TISSUE_SHARE * tissue + (1 - EDEMA_TISSUE_SHARE) * mu["edema"])
                     * _texture("edema", s, n_ed, n_m))
            img[sub] = (p_tissue * tissue + p_ed * edema
                        + p_1 * (mu[label1] * _texture(label1, s, n_core, n_m))
                        + p_et * (mu["et"] * _texture("et", s, n_core, n_m)))
        img *= np.exp(np.float32(bias_amp[m]) * bias[m].grid(*anatomy.world))
        vals = img[brain] * np.float32(scales[m])
        sigma = np.float32(noise_rel[m] * scales[m])
        n1 = rng.standard_normal(n_brain, dtype=np.float32)
        n2 = rng.standard_normal(n_brain, dtype=np.float32)
        vals = np.sqrt((vals + sigma * n1) ** 2 + (sigma * n2) ** 2)
        out[k][brain] = np.clip(np.rint(vals), 1, np.iinfo(np.int16).max).astype(np.int16)
    return out
