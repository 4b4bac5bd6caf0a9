"""How good are the pseudo-labels? Precision and recall (IoU >= 0.5) per class and per band,
against the synthetic twin's ground truth, over every frame the model scored.

`accept` is what the filter accepted (the temporal rule applied where it is on);
`accept_confidence_only` is what confidence alone would have accepted, side by side;
merge@N scores the same way what it teaches once the experts' answers judged the tracks through the
reviewed frames (`adjust`; merge.json `accept_after_review`, tasks/pseudo/verdicts.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.truth import TruthStore
from visem_pl.tasks.inference.clips import prediction_files, scored_frames
from visem_pl.tasks.pseudo.bands import ACCEPT, REVIEW
from visem_pl.tasks.pseudo.boxfile import BoxFile
from visem_pl.tasks.training.metrics import greedy_matches, iou_pairs, xywhn_to_xyxy

# name: (column, bands counted)
BANDS = {
    ACCEPT: ("band", (ACCEPT,)),
    "accept_confidence_only": ("band_conf", (ACCEPT,)),
    REVIEW: ("band", (REVIEW,)),
    "accept+review": ("band", (ACCEPT, REVIEW)),
}
_XYWH = ["cx", "cy", "w", "h"]


def pseudo_label_quality(
    boxes: pd.DataFrame | Path,
    pred_dir: Path,
    truth: TruthStore,
    clips: list[str] | None = None,
    adjust: Callable[[str, pd.DataFrame], pd.DataFrame] | None = None,
) -> dict:
    """{band: {class: {precision, recall, boxes, truth}}} over all scored frames of all clips (`clips`, names:
    of these only). `boxes`: the round's boxes, or its boxes.parquet, read one clip at a time (`BoxFile`).
    `adjust(clip, boxes)`: each clip's boxes as they are to be scored (the review's verdicts applied)."""
    tally = {b: np.zeros((3, 3), dtype=np.int64) for b in BANDS}  # per class: tp, n_pred, n_truth
    if isinstance(boxes, pd.DataFrame):
        by_clip = {clip: g for clip, g in boxes.groupby("clip", sort=False)}
    else:
        by_clip = BoxFile(boxes)
    for path in prediction_files(pred_dir, clips):  # clip by clip: its boxes and its truth, read once
        clip = path.stem
        frames = scored_frames(path)
        gt = truth.clip(clip)
        gt = gt[gt["frame"].isin(frames)]
        truth_counts = np.bincount(gt["class"].to_numpy().astype(int), minlength=3)[:3]
        for t in tally.values():
            t[:, 2] += truth_counts
        pred = by_clip.get(clip)
        pred = adjust(clip, pred) if pred is not None and adjust is not None else pred
        pred = pred[pred["frame"].isin(frames)] if pred is not None else None
        if pred is None or pred.empty:
            continue
        if "band_conf" not in pred:  # a round filtered before the temporal rule existed
            pred = pred.assign(band_conf=pred["band"])
        # Pairs at IoU >= 0.5 once for all boxes; each band matches its own boxes among them
        frame, cls = pred["frame"].to_numpy(), pred["cls"].to_numpy()
        pairs = iou_pairs(
            frame,
            xywhn_to_xyxy(pred[_XYWH].to_numpy(), layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT),
            cls,
            gt["frame"].to_numpy(),
            xywhn_to_xyxy(gt[_XYWH].to_numpy(), layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT),
            gt["class"].to_numpy(),
        )
        conf = pred["conf"].fillna(0.0).to_numpy()  # interpolated boxes: no score, matched last
        cls = cls.astype(int)
        for band, (column, members) in BANDS.items():
            sel = pred[column].isin(members).to_numpy()
            keep = sel[pairs[0]]
            tp = greedy_matches(tuple(x[keep] for x in pairs), frame, conf, len(pred), len(gt)) & sel
            tally[band][:, 0] += np.bincount(cls[tp], minlength=3)[:3]
            tally[band][:, 1] += np.bincount(cls[sel], minlength=3)[:3]
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
