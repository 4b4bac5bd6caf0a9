"""How good are the pseudo-labels? Precision and recall (IoU >= 0.5) per class and per band,
against the synthetic twin's ground truth, over every frame the model scored.

`accept` is what the filter accepted (the temporal rule applied where it is on);
`accept_confidence_only` is what confidence alone would have accepted, side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.truth import TruthStore
from visem_pl.tasks.inference.clips import prediction_files, scored_frames
from visem_pl.tasks.pseudo.bands import ACCEPT, REVIEW
from visem_pl.tasks.training.metrics import match_boxes

# name: (column, bands counted)
BANDS = {
    ACCEPT: ("band", (ACCEPT,)),
    "accept_confidence_only": ("band_conf", (ACCEPT,)),
    REVIEW: ("band", (REVIEW,)),
    "accept+review": ("band", (ACCEPT, REVIEW)),
}


def pseudo_label_quality(
    boxes: pd.DataFrame, pred_dir: Path, truth: TruthStore, clips: list[str] | None = None
) -> dict:
    """{band: {class: {precision, recall, boxes, truth}}} over all scored frames of all clips (`clips`, names:
    of these only)."""
    tally = {b: np.zeros((3, 3), dtype=np.int64) for b in BANDS}  # per class: tp, n_pred, n_truth
    if "band_conf" not in boxes:  # a round filtered before the temporal rule existed
        boxes = boxes.assign(band_conf=boxes["band"])
    boxes = boxes.assign(conf=boxes["conf"].fillna(0.0))  # interpolated boxes: no score, matched last
    grouped = {k: g for k, g in boxes.groupby(["clip", "frame"])}
    for path in prediction_files(pred_dir, clips):
        clip = path.stem
        gt_clip = truth.clip(clip)
        gt_by_frame = {f: g for f, g in gt_clip.groupby("frame")}
        for frame in scored_frames(path):
            gt = gt_by_frame.get(frame, gt_clip.iloc[0:0])
            gt_cls = gt["class"].to_numpy()
            pred = grouped.get((clip, frame))
            for band, (column, members) in BANDS.items():
                sel = pred[pred[column].isin(members)] if pred is not None else None
                t = tally[band]
                t[:, 2] += np.bincount(gt_cls.astype(int), minlength=3)[:3]
                if sel is None or sel.empty:
                    continue
                tp = match_boxes(sel, gt)
                cls = sel["cls"].to_numpy().astype(int)
                t[:, 0] += np.bincount(cls[tp], minlength=3)[:3]
                t[:, 1] += np.bincount(cls, minlength=3)[:3]
    out = {}
    for band, t in tally.items():
        out[band] = {}
        for k, name in enumerate(layout.CLASS_NAMES):
            tp, n_pred, n_truth = (int(v) for v in t[k])
            out[band][name] = {
                "precision": tp / n_pred if n_pred else None,
                "recall": tp / n_truth if n_truth else None,
                "boxes": n_pred,
                "truth": n_truth,
            }
        tp, n_pred, n_truth = (int(v) for v in t.sum(axis=0))
        out[band]["all"] = {
            "precision": tp / n_pred if n_pred else None,
            "recall": tp / n_truth if n_truth else None,
            "boxes": n_pred,
            "truth": n_truth,
        }
    return out
