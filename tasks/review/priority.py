"""Which review-band frames an expert sees first: uncertainty, disagreement with the previous
round, temporal inconsistency, and a budget spread round-robin over clips (docs/REVIEW_QUEUE.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.inference.clips import prediction_files, scored_frames
from visem_pl.tasks.pseudo.bands import REJECT, REVIEW, Band, assign_bands
from visem_pl.tasks.review.queue import COMPONENTS, QUEUE_COLUMNS
from visem_pl.tasks.training.metrics import box_iou, xywhn_to_xyxy
from visem_pl.tasks.workspace.paths import Workspace


@dataclass(frozen=True)
class QueueConfig:
    max_items: int = 30  # review budget in frames per round; 0 = every review-band frame
    per_clip_max: int = 0  # at most this many frames of one clip; 0 = no cap
    weights: dict = field(default_factory=lambda: {c: 1.0 for c in COMPONENTS})

    def __post_init__(self):
        if int(self.max_items) < 0 or int(self.per_clip_max) < 0:
            raise ValueError("review.max_items and review.per_clip_max must be >= 0")
        if not isinstance(self.weights, dict):
            raise ValueError(f"review.weights must be a mapping of {list(COMPONENTS)} to numbers")
        unknown = sorted(set(self.weights) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"review.weights: unknown key(s) {unknown}; known: {list(COMPONENTS)}")
        for k, v in self.weights.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"review.weights.{k} must be a number >= 0, got {v!r}")


def queue_config(ws: Workspace) -> QueueConfig:
    """The queue's part of params.yaml `review:` (the rest is the simulated expert's)."""
    from visem_pl.tasks.review.expert import REVIEW_KEYS

    return ws.section("review", QueueConfig, drop=REVIEW_KEYS)


# --- priority ---


def _xyxy(df: pd.DataFrame) -> np.ndarray:
    return xywhn_to_xyxy(df[["cx", "cy", "w", "h"]].to_numpy(np.float64), layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT)


def uncertainty(review_boxes: pd.DataFrame, bands: dict[int, Band]) -> float:
    best = 0.0
    for cls, conf in zip(review_boxes["cls"], review_boxes["conf"]):
        b = bands[int(cls)]
        half = (b.high - b.low) / 2
        u = 1.0 if half <= 0 else 1.0 - abs(float(conf) - (b.low + b.high) / 2) / half
        best = max(best, min(1.0, max(0.0, u)))
    return best


def disagreement(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """1 - 2 * sum(IoU of greedily matched same-class pairs) / (len(a) + len(b)); 0 if both empty."""
    n = len(a) + len(b)
    if n == 0:
        return 0.0
    if len(a) == 0 or len(b) == 0:
        return 1.0
    iou = box_iou(_xyxy(a), _xyxy(b))
    iou[a["cls"].to_numpy()[:, None] != b["cls"].to_numpy()[None, :]] = 0.0
    total = 0.0
    while iou.size and iou.max() > 0:
        i, j = np.unravel_index(int(iou.argmax()), iou.shape)
        total += float(iou[i, j])
        iou[i, :] = 0.0
        iou[:, j] = 0.0
    return 1.0 - 2.0 * total / n


def _has_partner(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """For each box of a: is there a same-class box of b within one box size (centre distance)?"""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a), dtype=bool)
    wh = np.array([layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT], dtype=np.float64)
    ca, cb = a[["cx", "cy"]].to_numpy(np.float64) * wh, b[["cx", "cy"]].to_numpy(np.float64) * wh
    size = (a[["w", "h"]].to_numpy(np.float64) * wh).max(axis=1)
    dist = np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2)
    same = a["cls"].to_numpy()[:, None] == b["cls"].to_numpy()[None, :]
    return ((dist <= size[:, None]) & same).any(axis=1)


def temporal(frame: pd.DataFrame, neighbours: list[pd.DataFrame]) -> float:
    """(boxes of the frame in no neighbour + neighbour boxes not in the frame) / all those boxes."""
    if not neighbours:
        return 0.0
    n = len(frame) + sum(len(nb) for nb in neighbours)
    if n == 0:
        return 0.0
    seen = np.zeros(len(frame), dtype=bool)
    lost = 0
    for nb in neighbours:
        seen |= _has_partner(frame, nb)
        lost += int((~_has_partner(nb, frame)).sum())
    return (int((~seen).sum()) + lost) / n


def _shown(pred: pd.DataFrame, bands: dict[int, Band]) -> pd.DataFrame:
    pred = pred.copy()
    pred["band"] = assign_bands(pred, bands)
    return pred[pred["band"] != REJECT]


def score_frames(
    pred_dir: Path | str,
    bands: dict[int, Band],
    prev_dir: Path | str | None = None,
    filtered: pd.DataFrame | None = None,
    clips: list[str] | None = None,
) -> pd.DataFrame:
    """Every frame with a review-band box, with its three components (QUEUE_COLUMNS less priority).

    `filtered`: the round's filtered boxes (`filter`'s boxes.parquet, with its `band` column), whose
    bands may come from the temporal rule too (an isolated confident box demoted to review); without
    them bands are decided by confidence here. `clips`: only these clips' files (names)."""
    rows = []
    for path in prediction_files(pred_dir, clips):
        clip = path.stem
        if filtered is not None:
            pred = filtered[(filtered["clip"] == clip) & (filtered["band"] != REJECT)]
        else:
            pred = _shown(pd.read_parquet(path), bands)
        by_frame = {int(f): g for f, g in pred.groupby("frame")}
        empty = pred.iloc[0:0]
        order = scored_frames(path)
        prev_path = Path(prev_dir) / path.name if prev_dir is not None else None
        prev_by_frame, prev_scored = {}, set()
        if prev_path is not None and prev_path.exists():
            prev = _shown(pd.read_parquet(prev_path), bands)
            prev_by_frame = {int(f): g for f, g in prev.groupby("frame")}
            prev_scored = set(scored_frames(prev_path))
        for k, frame in enumerate(order):
            boxes = by_frame.get(frame, empty)
            review = boxes[boxes["band"] == REVIEW]
            if review.empty:
                continue
            neighbours = [by_frame.get(order[j], empty) for j in (k - 1, k + 1) if 0 <= j < len(order)]
            d = disagreement(boxes, prev_by_frame.get(frame, empty)) if frame in prev_scored else 0.0
            rows.append(
                {
                    "item": layout.frame_item(clip, frame),
                    "clip": clip,
                    "frame": frame,
                    "uncertainty": uncertainty(review, bands),
                    "disagreement": d,
                    "temporal": temporal(boxes, neighbours),
                    "n_boxes": len(boxes),
                    "n_review": len(review),
                }
            )
    return pd.DataFrame(rows, columns=[c for c in QUEUE_COLUMNS if c != "priority"])


def prioritise(frames: pd.DataFrame, cfg: QueueConfig) -> pd.DataFrame:
    """Priority (weighted mean of the components) and the budgeted, clip-spread review order."""
    frames = frames.copy()
    total = float(sum(cfg.weights.get(c, 0.0) for c in COMPONENTS))
    frames["priority"] = (
        sum(frames[c] * float(cfg.weights.get(c, 0.0)) for c in COMPONENTS) / total if total > 0 else 0.0
    )
    frames = frames.sort_values(["priority", "clip", "frame"], ascending=[False, True, True], kind="stable")
    per_clip = {clip: list(g.index) for clip, g in frames.groupby("clip", sort=False)}  # clips by best item
    cap = int(cfg.per_clip_max) or None
    budget = int(cfg.max_items) or len(frames)
    picked: list = []
    depth = 0
    while len(picked) < budget:
        layer = [idx[depth] for idx in per_clip.values() if depth < len(idx) and (cap is None or depth < cap)]
        if not layer:
            break
        picked += layer[: budget - len(picked)]
        depth += 1
    out = frames.loc[picked, QUEUE_COLUMNS].reset_index(drop=True)
    out["frame"] = out["frame"].astype(int)
    return out


def build_queue(
    pred_dir: Path | str,
    bands: dict[int, Band],
    cfg: QueueConfig,
    prev_dir: Path | str | None = None,
    boxes: pd.DataFrame | None = None,
    clips: list[str] | None = None,
) -> pd.DataFrame:
    return prioritise(score_frames(pred_dir, bands, prev_dir, filtered=boxes, clips=clips), cfg)
