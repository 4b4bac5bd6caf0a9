"""Synthetic twin of VISEM-Tracking: same on-disk layout, known ground truth.

    from visem_pl.tasks.synth import SynthConfig, synthesize
    counts = synthesize(out_dir, SynthConfig(seed=0))

Everything a reader of the real dataset may see is written in the real layout; the
ground truth (per-box motility, kinematics, realised shares) goes to `_truth/`, outside it.
"""

from .config import SynthConfig
from .generate import synthesize

__all__ = ["SynthConfig", "synthesize"]
