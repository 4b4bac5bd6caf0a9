"""Tracks against truth: HOTA, MOTA and IDF1 (Roboflow `trackers.eval`, written to match TrackEval).

Scored on the frames the tracks were made on (every `stride`-th frame), all classes together,
boxes matched by IoU (MOTA and IDF1 at IoU >= 0.5; HOTA averages 0.05 ... 0.95).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def truth_boxes(truth: pd.DataFrame, stride: int) -> pd.DataFrame:
    """A clip's truth boxes on the frames a round at `stride` scores, as the tracker takes boxes
    (column cls, confidence 1): what the tracker alone is scored on."""
    return truth[truth["frame"] % stride == 0].rename(columns={"class": "cls"}).assign(conf=1.0)


def _xyxy(df: pd.DataFrame) -> np.ndarray:
    cx, cy, w, h = (df[c].to_numpy(np.float64) for c in ("cx", "cy", "w", "h"))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def sequence(truth: pd.DataFrame, tracks: pd.DataFrame, stride: int) -> tuple[list, list, list]:
    """Per scored frame: truth ids, track ids and their IoU matrix (inputs of trackers.eval).

    `truth`: frame, track_id, cx, cy, w, h (normalised; any frames); `tracks`: frame, track, cx,
    cy, w, h. Normalised coordinates are fine: IoU does not change when an axis is scaled."""
    from trackers.eval import box_iou

    truth = truth[truth["frame"] % stride == 0]
    gt_codes = pd.factorize(truth["track_id"])[0]
    frames = sorted(set(truth["frame"]) | set(tracks["frame"]))
    by_gt = dict(tuple(truth.assign(_id=gt_codes).groupby("frame")))
    by_tr = dict(tuple(tracks.groupby("frame")))
    gt_ids, tr_ids, sims = [], [], []
    for f in frames:
        g, t = by_gt.get(f), by_tr.get(f)
        gi = g["_id"].to_numpy() if g is not None else np.zeros(0, int)
        ti = t["track"].to_numpy() if t is not None else np.zeros(0, int)
        if len(gi) and len(ti):
            sim = box_iou(_xyxy(g), _xyxy(t), box_format="xyxy")
        else:
            sim = np.zeros((len(gi), len(ti)))
        gt_ids.append(gi), tr_ids.append(ti), sims.append(sim)
    return gt_ids, tr_ids, sims


def score(pairs: list[tuple[pd.DataFrame, pd.DataFrame]], stride: int) -> dict:
    """HOTA, MOTA, IDF1 (and their parts) over clips: [(truth, tracks) per clip]."""
    from trackers.eval import (
        aggregate_clear_metrics,
        aggregate_hota_metrics,
        aggregate_identity_metrics,
        compute_clear_metrics,
        compute_hota_metrics,
        compute_identity_metrics,
    )

    hota, clear, ident = [], [], []
    for truth, tracks in pairs:
        seq = sequence(truth, tracks, stride)
        hota.append(compute_hota_metrics(*seq))
        clear.append(compute_clear_metrics(*seq))
        ident.append(compute_identity_metrics(*seq))
    h, c, i = aggregate_hota_metrics(hota), aggregate_clear_metrics(clear), aggregate_identity_metrics(ident)
    return {
        "hota": round(float(h["HOTA"]), 4),
        "deta": round(float(h["DetA"]), 4),
        "assa": round(float(h["AssA"]), 4),
        "mota": round(float(c["MOTA"]), 4),
        "idf1": round(float(i["IDF1"]), 4),
        "id_switches": int(c["IDSW"]),
        "clips": len(pairs),
    }
