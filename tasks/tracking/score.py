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
    # Each side sorted by frame once (stable: a frame's boxes in their order), then sliced per frame
    g_frame, t_frame = truth["frame"].to_numpy(), tracks["frame"].to_numpy()
    go, to = np.argsort(g_frame, kind="stable"), np.argsort(t_frame, kind="stable")
    g_frame, t_frame = g_frame[go], t_frame[to]
    g_id, g_box = gt_codes[go], _xyxy(truth)[go]
    t_id, t_box = tracks["track"].to_numpy()[to], _xyxy(tracks)[to]
    frames = np.union1d(g_frame, t_frame)
    g_lo, g_hi = np.searchsorted(g_frame, frames), np.searchsorted(g_frame, frames, "right")
    t_lo, t_hi = np.searchsorted(t_frame, frames), np.searchsorted(t_frame, frames, "right")
    gt_ids, tr_ids, sims = [], [], []
    for k in range(len(frames)):
        gi, ti = g_id[g_lo[k] : g_hi[k]], t_id[t_lo[k] : t_hi[k]]
        if len(gi) and len(ti):
            sim = box_iou(g_box[g_lo[k] : g_hi[k]], t_box[t_lo[k] : t_hi[k]], box_format="xyxy")
        else:
            sim = np.zeros((len(gi), len(ti)))
        gt_ids.append(gi), tr_ids.append(ti), sims.append(sim)
    return gt_ids, tr_ids, sims


def clip_metrics(truth: pd.DataFrame, tracks: pd.DataFrame, stride: int) -> tuple:
    """One clip's HOTA, CLEAR and identity counts (what `aggregate` pools over clips)."""
    from trackers.eval import compute_clear_metrics, compute_hota_metrics, compute_identity_metrics

    seq = sequence(truth, tracks, stride)
    return compute_hota_metrics(*seq), compute_clear_metrics(*seq), compute_identity_metrics(*seq)


def aggregate(per_clip: list[tuple]) -> dict:
    """HOTA, MOTA, IDF1 (and their parts) over clips from their `clip_metrics`, in clip order."""
    from trackers.eval import aggregate_clear_metrics, aggregate_hota_metrics, aggregate_identity_metrics

    h = aggregate_hota_metrics([m[0] for m in per_clip])
    c = aggregate_clear_metrics([m[1] for m in per_clip])
    i = aggregate_identity_metrics([m[2] for m in per_clip])
    return {
        "hota": round(float(h["HOTA"]), 4),
        "deta": round(float(h["DetA"]), 4),
        "assa": round(float(h["AssA"]), 4),
        "mota": round(float(c["MOTA"]), 4),
        "idf1": round(float(i["IDF1"]), 4),
        "id_switches": int(c["IDSW"]),
        "clips": len(per_clip),
    }


def score(pairs: list[tuple[pd.DataFrame, pd.DataFrame]], stride: int) -> dict:
    """HOTA, MOTA, IDF1 (and their parts) over clips: [(truth, tracks) per clip]."""
    return aggregate([clip_metrics(truth, tracks, stride) for truth, tracks in pairs])
