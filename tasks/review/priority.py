"""Which review-band frames an expert sees first: uncertainty, disagreement with the previous
round, temporal inconsistency and load (how much there is to decide in the frame), at most a few
frames per clip (docs/REVIEW_QUEUE.md; `visem-pl bench review` measures the order, docs/review.md).
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
from visem_pl.tasks.training.metrics import box_iou, key_pairs, xywhn_to_xyxy
from visem_pl.tasks.workspace.paths import Workspace

ORDERS = ("priority", "uncertainty", "random")


@dataclass(frozen=True)
class QueueConfig:
    max_items: int = 30  # review budget in frames per round; 0 = every review-band frame
    # At most this many frames of one clip (0 = no cap): one, since a reviewed frame judges every track through
    # it (tasks/pseudo/verdicts.py) and a second frame of a clip mostly judges the same tracks again.
    per_clip_max: int = 1
    weights: dict = field(default_factory=lambda: {c: 1.0 for c in COMPONENTS})
    # Which frames fill the budget: `priority` (the weighted components, highest first), `uncertainty`
    # (the frames with the most uncertain box alone, the classic active-learning pick) or `random` (a draw
    # from the review band with `order_seed`: an unbiased audit of the band; both are bench review's baselines).
    order: str = "priority"
    order_seed: int = 0

    def __post_init__(self):
        if int(self.max_items) < 0 or int(self.per_clip_max) < 0:
            raise ValueError("review.max_items and review.per_clip_max must be >= 0")
        if self.order not in ORDERS:
            raise ValueError(f"review.order must be one of {', '.join(ORDERS)}, not {self.order!r}")
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
    from visem_pl.tasks.review.exchange.overlap import IMPORT_KEYS
    from visem_pl.tasks.review.expert import REVIEW_KEYS

    return ws.section("review", QueueConfig, drop=REVIEW_KEYS + IMPORT_KEYS)


# --- priority ---


def _xyxy(df: pd.DataFrame) -> np.ndarray:
    return xywhn_to_xyxy(df[["cx", "cy", "w", "h"]].to_numpy(np.float64), layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT)


def uncertainty(review_boxes: pd.DataFrame, bands: dict[int, Band]) -> float:
    """The highest of the review boxes' closeness to their band's middle (1 there, 0 at its edges)."""
    u = _box_uncertainty(review_boxes["cls"].to_numpy(), review_boxes["conf"].to_numpy(), bands)
    return float(max(0.0, u.max())) if len(u) else 0.0


def _box_uncertainty(cls: np.ndarray, conf: np.ndarray, bands: dict[int, Band]) -> np.ndarray:
    """Per box: 1 - |conf - the band's middle| / half its width, within [0, 1] (1 for a band of no width;
    0 for a box without a score)."""
    cls = np.asarray(cls).astype(int)
    keys = sorted(bands)
    k = np.searchsorted(keys, cls)
    half = np.array([(bands[c].high - bands[c].low) / 2 for c in keys])[k]
    mid = np.array([(bands[c].low + bands[c].high) / 2 for c in keys])[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(half <= 0, 1.0, 1.0 - np.abs(np.asarray(conf, dtype=np.float64) - mid) / half)
    return np.where(np.isnan(u), 0.0, np.clip(u, 0.0, 1.0))


def disagreement(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """1 - 2 * sum(IoU of greedily matched same-class pairs) / (len(a) + len(b)); 0 if both empty."""
    return _disagreement(_xyxy(a), a["cls"].to_numpy(), _xyxy(b), b["cls"].to_numpy())


def _disagreement(a: np.ndarray, a_cls: np.ndarray, b: np.ndarray, b_cls: np.ndarray) -> float:
    """`disagreement` of two frames' boxes (xyxy) and classes."""
    n = len(a) + len(b)
    if n == 0:
        return 0.0
    if len(a) == 0 or len(b) == 0:
        return 1.0
    iou = box_iou(a, b)
    iou[a_cls[:, None] != b_cls[None, :]] = 0.0
    total = 0.0
    while iou.size and iou.max() > 0:
        i, j = np.unravel_index(int(iou.argmax()), iou.shape)
        total += float(iou[i, j])
        iou[i, :] = 0.0
        iou[:, j] = 0.0
    return 1.0 - 2.0 * total / n


def _temporal(index: np.ndarray, cls: np.ndarray, xywh: np.ndarray, frames: int) -> np.ndarray:
    """Temporal inconsistency of every scored frame of a clip (`frames` of them; box i on the `index[i]`-th):
    (boxes of the frame with no partner in a neighbouring scored frame + boxes of the neighbours with no
    partner in it) / all those boxes, where a box's partner is a same-class box whose centre is within the
    box's size (its larger side, pixels). 0 without a neighbour. One pass over the pairs of boxes on
    consecutive scored frames, not a loop over frames."""
    wh = np.array([layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT], dtype=np.float64)
    centre, size = xywh[:, :2] * wh, (xywh[:, 2:] * wh).max(axis=1)
    a, b = key_pairs(index, index - 1)  # a on a scored frame, b on the next one
    same = cls[a] == cls[b]
    a, b = a[same], b[same]
    dist = np.linalg.norm(centre[a] - centre[b], axis=1)
    has_next, has_prev = np.zeros(len(index), dtype=bool), np.zeros(len(index), dtype=bool)
    has_next[a[dist <= size[a]]] = True
    has_prev[b[dist <= size[b]]] = True
    count = np.bincount(index, minlength=frames)
    alone = np.bincount(index[~(has_next | has_prev)], minlength=frames)
    no_next, no_prev = np.bincount(index[~has_next], minlength=frames), np.bincount(index[~has_prev], minlength=frames)
    lost, n = alone.copy(), count.copy()
    lost[1:] += no_next[:-1]  # the previous frame's boxes not in this one
    lost[:-1] += no_prev[1:]  # the next frame's boxes not in this one
    n[1:] += count[:-1]
    n[:-1] += count[1:]
    if frames < 2:
        return np.zeros(frames)
    return np.where(n > 0, lost / np.maximum(n, 1), 0.0)


def _shown(pred: pd.DataFrame, bands: dict[int, Band]) -> pd.DataFrame:
    pred = pred.copy()
    pred["band"] = assign_bands(pred, bands)
    return pred[pred["band"] != REJECT]


def _on_scored(pred: pd.DataFrame, order: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The boxes of `pred` on the scored frames `order` (ascending), by frame (stable), and each one's
    position in `order`."""
    frame = pred["frame"].to_numpy()
    at = np.minimum(np.searchsorted(order, frame), max(len(order) - 1, 0))
    on = (order[at] == frame) if len(order) else np.zeros(len(frame), dtype=bool)
    by = np.argsort(at[on], kind="stable")
    return pred[on].iloc[by], at[on][by]


def _score_clip(clip: str, pred: pd.DataFrame, order: np.ndarray, prev: pd.DataFrame | None, prev_scored,
                bands: dict[int, Band]) -> dict | None:  # fmt: skip
    """The queue rows (columns) of one clip's frames with a review-band box."""
    pred, index = _on_scored(pred, order)
    review = (pred["band"] == REVIEW).to_numpy()
    n_review = np.bincount(index[review], minlength=len(order))
    rows = np.nonzero(n_review)[0]
    if not len(rows):
        return None
    cls = pred["cls"].to_numpy()
    best = np.zeros(len(order))
    np.maximum.at(best, index[review], _box_uncertainty(cls[review], pred["conf"].to_numpy()[review], bands))
    temporal = _temporal(index, cls, pred[["cx", "cy", "w", "h"]].to_numpy(np.float64), len(order))
    disagree = np.zeros(len(rows))
    if prev is not None:
        xyxy, (prev_boxes, prev_index) = _xyxy(pred), _on_scored(prev, order)
        prev_xyxy, prev_cls = _xyxy(prev_boxes), prev_boxes["cls"].to_numpy()
        bounds, prev_bounds = np.searchsorted(index, rows), np.searchsorted(prev_index, rows)
        ends, prev_ends = np.searchsorted(index, rows, "right"), np.searchsorted(prev_index, rows, "right")
        for k, frame in enumerate(order[rows]):
            if int(frame) in prev_scored:
                mine, theirs = slice(bounds[k], ends[k]), slice(prev_bounds[k], prev_ends[k])
                disagree[k] = _disagreement(xyxy[mine], cls[mine], prev_xyxy[theirs], prev_cls[theirs])
    frames = order[rows].astype(np.int64)
    return {
        "item": [layout.frame_item(clip, f) for f in frames],
        "clip": [clip] * len(rows),
        "frame": frames,
        "uncertainty": best[rows],
        "disagreement": disagree,
        "temporal": temporal[rows],
        "n_boxes": np.bincount(index, minlength=len(order))[rows].astype(np.int64),
        "n_review": n_review[rows].astype(np.int64),
    }


def score_frames(
    pred_dir: Path | str,
    bands: dict[int, Band],
    prev_dir: Path | str | None = None,
    filtered: pd.DataFrame | None = None,
    clips: list[str] | None = None,
) -> pd.DataFrame:
    """Every frame with a review-band box, with its frame-by-frame components (QUEUE_COLUMNS less priority
    and load, which `prioritise` adds over the whole round).

    `filtered`: the round's filtered boxes (`filter`'s boxes.parquet, with its `band` column), whose
    bands may come from the temporal rule too (an isolated confident box demoted to review); without
    them bands are decided by confidence here. `clips`: only these clips' files (names). Clip by clip
    (`score_clip`; `join_scores` joins them)."""
    rows_of = filtered.groupby("clip", sort=False).indices if filtered is not None else {}  # positions, no copy
    parts = []
    for path in prediction_files(pred_dir, clips):
        mine = filtered.iloc[rows_of.get(path.stem, [])] if filtered is not None else None
        parts.append(score_clip(path, bands, prev_dir, mine))
    return join_scores(parts)


def score_clip(
    path: Path, bands: dict[int, Band], prev_dir: Path | str | None = None, filtered: pd.DataFrame | None = None
) -> dict | None:
    """`score_frames` of one clip's prediction file `path` (`filtered`: that clip's filtered boxes), as
    columns; None when no frame has a review-band box. Each clip's frames in one pass (no loop over frames
    but for the disagreement with the last round)."""
    if filtered is not None:
        pred = filtered[filtered["band"] != REJECT]
    else:
        pred = _shown(pd.read_parquet(path), bands)
    prev_path = Path(prev_dir) / path.name if prev_dir is not None else None
    prev, prev_scored = None, set()
    if prev_path is not None and prev_path.exists():
        prev = _shown(pd.read_parquet(prev_path), bands)
        prev_scored = set(scored_frames(prev_path))
    return _score_clip(path.stem, pred, np.asarray(scored_frames(path), dtype=np.int64), prev, prev_scored, bands)


def join_scores(parts: list[dict | None]) -> pd.DataFrame:
    """`score_clip`'s columns of clips, in their order, as `score_frames`' table."""
    columns = [c for c in QUEUE_COLUMNS if c not in ("priority", "load")]
    parts = [part for part in parts if part is not None]
    if not parts:
        return pd.DataFrame([], columns=columns)
    joined = {c: [x for part in parts for x in part[c]] if c in ("item", "clip") else
              np.concatenate([part[c] for part in parts]) for c in columns}  # fmt: skip
    return pd.DataFrame(joined, columns=columns)


def prioritise(frames: pd.DataFrame, cfg: QueueConfig) -> pd.DataFrame:
    """Load, priority (weighted mean of the components) and the budgeted review order: by priority, highest
    first, at most `per_clip_max` frames of a clip; or as `cfg.order` says (its comment in QueueConfig).

    Load is what makes a frame worth an expert's minute: a frame with many review-band boxes holds many of
    the model's mistakes (on a 640-iteration round 0 of the twin, the simulated expert's corrections per frame
    correlate 0.9 with it, against 0.5 for uncertainty). A percentile of the round's review-band frames, so one crowded
    frame does not squash the others. The cap keeps the budget from going to one crowded clip's near
    duplicates (docs/review.md has the measurements)."""
    frames = frames.copy()
    frames["load"] = frames["n_review"].rank(method="max", pct=True) if len(frames) else 0.0
    total = float(sum(cfg.weights.get(c, 0.0) for c in COMPONENTS))
    frames["priority"] = (
        sum(frames[c] * float(cfg.weights.get(c, 0.0)) for c in COMPONENTS) / total if total > 0 else 0.0
    )
    cap = int(cfg.per_clip_max) or None
    budget = int(cfg.max_items) or len(frames)
    if cfg.order == "random":  # the same draw for the same table and seed
        frames = frames.sort_values(["clip", "frame"], kind="stable")
        frames = frames.iloc[np.random.default_rng(int(cfg.order_seed)).permutation(len(frames))]
    else:
        key = "priority" if cfg.order == "priority" else "uncertainty"
        frames = frames.sort_values([key, "clip", "frame"], ascending=[False, True, True], kind="stable")
    rank_in_clip = frames.groupby("clip", sort=False).cumcount().to_numpy()
    picked = list(frames.index[(rank_in_clip < cap) if cap else np.ones(len(frames), bool)][:budget])
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
