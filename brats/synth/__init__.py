"""Synthetic BraTS generator on MNI152 anatomy.

``synth_case(seed, shape, lgg)`` builds one case (MNI152 2009a anatomy warped into BraTS space, a
synthetic glioma with edema / necrotic core / enhancing rim, four MRI contrasts);
``generate_dataset(out_dir, cases, ...)`` writes a data set in any release's on-disk layout.
"""

from brats.synth.contrast import CONTRAST
from brats.synth.generator import SynthCase, case_id, generate_dataset, synth_case

__all__ = ["CONTRAST", "SynthCase", "case_id", "generate_dataset", "synth_case"]
