"""Per-class accept thresholds calibrated on the labelled validation videos.

One fixed `high` for every class and every round ignores that a model's confidence means different
things per class and per round: a stronger round is more precise at the same score. The round's
model also runs over its labelled validation videos (`infer`), so the precision of the boxes it
would accept at each threshold is measured there: per class, `high` becomes the lowest confidence
at which the boxes scored at or above it reach `target_precision` (IoU >= 0.5, class-aware), and
`low` never exceeds it. A class with fewer than `min_boxes` such boxes, or whose target is out of
reach, keeps its configured band, and the report says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.pseudo.bands import Band


@dataclass(frozen=True)
class Calibration:
    enabled: bool = False
    target_precision: float = 0.95
    min_boxes: int = 20  # validation boxes at or above the threshold a class needs to be calibrated

    def __post_init__(self):
        if not 0.0 < float(self.target_precision) <= 1.0:
            raise ValueError(f"filter.calibrate.target_precision must be in (0, 1], got {self.target_precision}")
        if int(self.min_boxes) < 1:
            raise ValueError(f"filter.calibrate.min_boxes must be >= 1, got {self.min_boxes}")


def threshold_for(conf: np.ndarray, tp: np.ndarray, target: float, min_boxes: int) -> tuple[float | None, dict]:
    """The lowest confidence t such that the boxes with conf >= t are at least `target` precise and
    number at least `min_boxes`; None when no t qualifies. Also precision and recall-share there."""
    order = np.argsort(-conf, kind="stable")
    conf, tp = conf[order], tp[order].astype(np.int64)
    n = np.arange(1, len(conf) + 1)
    precision = np.cumsum(tp) / n
    # A threshold keeps every box tied with it: only the last box of each run of equal scores counts.
    last_of_tie = np.append(conf[1:] != conf[:-1], True)
    ok = last_of_tie & (precision >= target) & (n >= min_boxes)
    if not ok.any():
        best = int(np.argmax(np.where(n >= min_boxes, precision, -1.0))) if len(conf) >= min_boxes else None
        return None, {"best_precision": None if best is None else round(float(precision[best]), 4)}
    i = int(np.flatnonzero(ok)[-1])  # the lowest qualifying threshold: the most boxes kept
    return float(conf[i]), {"precision": round(float(precision[i]), 4), "boxes": int(n[i]),
                            "detected_true_kept": round(float(tp[: i + 1].sum() / max(tp.sum(), 1)), 4)}  # fmt: skip


def calibrate(boxes: pd.DataFrame, bands: dict[int, Band], cfg: Calibration) -> tuple[dict[int, Band], dict]:
    """`boxes`: the validation videos' predictions (cls, conf) with `tp` against their labels.
    Returns the bands to use and, per class, what was measured and decided."""
    out, report = dict(bands), {"target_precision": cfg.target_precision}
    for k, name in enumerate(layout.CLASS_NAMES):
        sel = boxes[(boxes["cls"] == k) & boxes["conf"].notna()]
        high, measured = threshold_for(sel["conf"].to_numpy(np.float64), sel["tp"].to_numpy(bool),
                                       float(cfg.target_precision), int(cfg.min_boxes))  # fmt: skip
        entry = {"validation_boxes": int(len(sel)), "configured": [bands[k].low, bands[k].high], **measured}
        if high is None:
            entry["used"] = entry["configured"]
            entry["why"] = f"fewer than {cfg.min_boxes} boxes" if len(sel) < cfg.min_boxes else "target out of reach"
        else:
            out[k] = Band(min(bands[k].low, high), high)
            entry["used"] = [out[k].low, out[k].high]
        report[name] = entry
    return out, report
