"""Detection metrics: precision, recall, AP at IoU 0.5 and 0.5:0.95, and the paper's fitness.

Boxes are (N, 4) arrays of x0, y0, x1, y1 in pixels. Matching is COCO-style: predictions in
descending confidence, each takes the unmatched truth box of its class with the highest
IoU at or above the threshold. AP is the area under the precision envelope sampled at 101
recall points (COCO; Ultralytics samples the same points but drops to 0 at the last one, so
it reports 0.995 for a perfect detector where this gives 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def fitness(map50: float, map50_95: float) -> float:
    """The VISEM-Tracking paper's model fitness: 0.1 x mAP@0.5 + 0.9 x mAP@0.5:0.95."""
    return 0.1 * map50 + 0.9 * map50_95


def xywhn_to_xyxy(xywhn: np.ndarray, width: int, height: int) -> np.ndarray:
    xywhn = np.asarray(xywhn, dtype=np.float64).reshape(-1, 4)
    cx, cy, w, h = xywhn.T
    return np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU matrix."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_frame(
    pred_boxes, pred_cls, pred_conf, gt_boxes, gt_cls, thresholds: np.ndarray = IOU_THRESHOLDS
) -> np.ndarray:
    """(n_pred, n_thresholds) bool: is each prediction a true positive at each IoU threshold."""
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    pred_cls, gt_cls = np.asarray(pred_cls).reshape(-1), np.asarray(gt_cls).reshape(-1)
    tp = np.zeros((len(pred_boxes), len(thresholds)), dtype=bool)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return tp
    iou = box_iou(pred_boxes, gt_boxes)
    iou[pred_cls[:, None] != gt_cls[None, :]] = 0.0
    order = np.argsort(-np.asarray(pred_conf), kind="stable")
    for t, thr in enumerate(thresholds):
        taken = np.zeros(len(gt_boxes), dtype=bool)
        for i in order:
            cand = np.where(~taken & (iou[i] >= thr), iou[i], -1.0)
            j = int(cand.argmax())
            if cand[j] >= 0:
                taken[j] = True
                tp[i, t] = True
    return tp


def match_boxes(pred, gt, iou: float = 0.5) -> np.ndarray:
    """Which boxes of one frame are true positives at `iou`: `pred` with cls, cx, cy, w, h, conf (NaN
    conf, an interpolated box, is matched last) and `gt` with class, cx, cy, w, h, both normalised."""
    from visem_pl.tasks.dataset.layout import IMAGE_HEIGHT, IMAGE_WIDTH

    cols = ["cx", "cy", "w", "h"]
    return match_frame(
        xywhn_to_xyxy(pred[cols].to_numpy(), IMAGE_WIDTH, IMAGE_HEIGHT),
        pred["cls"].to_numpy(),
        pred["conf"].fillna(0.0).to_numpy(),
        xywhn_to_xyxy(gt[cols].to_numpy(), IMAGE_WIDTH, IMAGE_HEIGHT),
        gt["class"].to_numpy(),
        thresholds=np.array([iou]),
    )[:, 0]


def _pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of a[i] with b[i] (both (k, 4) xyxy): `box_iou`'s arithmetic, element for element."""
    lt = np.maximum(a[:, :2], b[:, :2])
    wh = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - lt, 0, None)
    inter = wh[:, 0] * wh[:, 1]
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def key_pairs(a_key, b_key) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) with a_key[i] == b_key[j] (integer keys, e.g. frames), by sorting: no loop over keys.
    Pairs come grouped by i in a's key order, each i's j in b's order."""
    a_key, b_key = np.asarray(a_key).reshape(-1), np.asarray(b_key).reshape(-1)
    ao, bo = np.argsort(a_key, kind="stable"), np.argsort(b_key, kind="stable")
    bk = b_key[bo]
    start = np.searchsorted(bk, a_key[ao], "left")
    count = np.searchsorted(bk, a_key[ao], "right") - start
    # pair k of the a box at sorted position p: the b box at sorted position start[p] + k
    ai = np.repeat(ao, count)
    bi = bo[np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count - start, count)]
    return ai, bi


def iou_pairs(pred_key, pred_boxes, pred_cls, gt_key, gt_boxes, gt_cls, iou: float = 0.5) -> tuple:
    """Every prediction-truth pair on the same frame (`*_key`: any integer per box), of the same class,
    at IoU >= `iou` (> 0): (prediction index, truth index, IoU) arrays. Boxes are xyxy. Frames are
    joined by sorting, not looped over."""
    pred_key, gt_key = np.asarray(pred_key).reshape(-1), np.asarray(gt_key).reshape(-1)
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    pred_cls, gt_cls = np.asarray(pred_cls).reshape(-1), np.asarray(gt_cls).reshape(-1)
    pi, gi = key_pairs(pred_key, gt_key)
    same = pred_cls[pi] == gt_cls[gi]
    pi, gi = pi[same], gi[same]
    value = _pair_iou(pred_boxes[pi], gt_boxes[gi])
    hit = value >= iou
    return pi[hit], gi[hit], value[hit]


def greedy_matches(pairs: tuple, pred_key, pred_conf, n_pred: int, n_gt: int) -> np.ndarray:
    """Which predictions `match_frame` (at the threshold `pairs` were found at, `iou_pairs`) makes true
    positives, frame by frame: in descending confidence (ties: index order), each takes the untaken
    truth box with the highest IoU (ties: the lowest index). Where no prediction has two pairs and no
    truth box two, every pair is taken whatever the order; the frames with a conflict are walked."""
    pi, gi, value = pairs
    pred_key = np.asarray(pred_key).reshape(-1)
    tp = np.zeros(n_pred, dtype=bool)
    if len(pi) == 0:
        return tp
    crowded = (np.bincount(pi, minlength=n_pred) > 1)[pi] | (np.bincount(gi, minlength=n_gt) > 1)[gi]
    conflict = np.isin(pred_key[pi], np.unique(pred_key[pi[crowded]]))
    tp[pi[~conflict]] = True
    if conflict.any():
        pi, gi, value = pi[conflict], gi[conflict], value[conflict]
        conf = np.asarray(pred_conf).reshape(-1)[pi]
        order = np.lexsort((gi, -value, pi, -conf, pred_key[pi]))
        taken, done = set(), set()
        for p, g in zip(pi[order].tolist(), gi[order].tolist()):
            if p not in done and g not in taken:
                taken.add(g)
                done.add(p)
        tp[list(done)] = True
    return tp


def match_groups(pred_key, pred_boxes, pred_cls, pred_conf, gt_key, gt_boxes, gt_cls, iou: float = 0.5) -> np.ndarray:
    """`match_frame` at one IoU threshold (> 0) on many frames at once (`*_key`: which frame each box is
    on; boxes xyxy): per prediction, whether it is a true positive, exactly as frame by frame."""
    pairs = iou_pairs(pred_key, pred_boxes, pred_cls, gt_key, gt_boxes, gt_cls, iou)
    return greedy_matches(pairs, pred_key, pred_conf, len(np.asarray(pred_key).reshape(-1)), len(gt_key))


RECALL_POINTS = np.arange(101) / 100  # exactly k/100, so a recall of 7/10 meets the point 0.7


def precision_envelope(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """The precision envelope at the 101 `RECALL_POINTS`: at r, the best precision reached at any
    recall >= r, and 0 past the highest recall reached (COCO). `recall` is non-decreasing
    (cumulative TP over ranked predictions). This is the precision-recall curve AP integrates."""
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    if len(recall) == 0:
        return np.zeros_like(RECALL_POINTS)
    envelope = np.flip(np.maximum.accumulate(np.flip(precision)))
    first = np.searchsorted(recall, RECALL_POINTS, side="left")  # first ranked point with recall >= r
    return np.where(first < len(recall), envelope[np.minimum(first, len(recall) - 1)], 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope sampled at 101 recall points r = 0, 0.01, ..., 1."""
    return float(np.trapezoid(precision_envelope(recall, precision), RECALL_POINTS))


@dataclass
class Accumulator:
    """Collects per-frame matches; `summary()` gives overall and per-class metrics."""

    class_names: tuple[str, ...]

    def __post_init__(self):
        self.tp: list[np.ndarray] = []
        self.conf: list[np.ndarray] = []
        self.cls: list[np.ndarray] = []
        self.n_gt = np.zeros(len(self.class_names), dtype=np.int64)

    def add(self, pred_boxes, pred_cls, pred_conf, gt_boxes, gt_cls) -> None:
        pred_cls = np.asarray(pred_cls, dtype=np.int64).reshape(-1)
        gt_cls = np.asarray(gt_cls, dtype=np.int64).reshape(-1)
        self.tp.append(match_frame(pred_boxes, pred_cls, pred_conf, gt_boxes, gt_cls))
        self.conf.append(np.asarray(pred_conf, dtype=np.float64).reshape(-1))
        self.cls.append(pred_cls)
        self.n_gt += np.bincount(gt_cls, minlength=len(self.class_names))[: len(self.class_names)]

    def summary(self, curves: bool = False) -> dict:
        """{"overall": ..., "per_class": {name: ...}}; with `curves`, also "pr_curve": each class's
        precision envelope at IoU 0.5 over `RECALL_POINTS` (what its mAP50 is the area of), {"recall": [...],
        name: [...]} for the classes with labelled boxes."""
        tp = np.concatenate(self.tp) if self.tp else np.zeros((0, len(IOU_THRESHOLDS)), bool)
        conf = np.concatenate(self.conf) if self.conf else np.zeros(0)
        cls = np.concatenate(self.cls) if self.cls else np.zeros(0, np.int64)
        order = np.argsort(-conf, kind="stable")
        tp, conf, cls = tp[order], conf[order], cls[order]
        per_class, present = {}, []
        grid = np.linspace(0, 1, 1000)
        f1_curves = []
        pr_curve = {"recall": RECALL_POINTS.tolist()}
        for c, name in enumerate(self.class_names):
            sel = cls == c
            n_gt = int(self.n_gt[c])
            ctp = np.cumsum(tp[sel], axis=0)
            cfp = np.cumsum(~tp[sel], axis=0)
            if n_gt == 0:
                per_class[name] = {
                    "instances": 0,
                    "predictions": int(sel.sum()),
                    "precision": None,
                    "recall": None,
                    "mAP50": None,
                    "mAP50-95": None,
                    "fitness": None,
                }
                continue
            present.append(c)
            recall = ctp / n_gt
            precision = ctp / np.maximum(ctp + cfp, 1)
            pr_curve[name] = precision_envelope(recall[:, 0], precision[:, 0]).round(6).tolist()
            aps = (
                [average_precision(recall[:, t], precision[:, t]) for t in range(len(IOU_THRESHOLDS))]
                if sel.any()
                else [0.0] * len(IOU_THRESHOLDS)
            )
            # Precision/recall as functions of the confidence threshold, for the max-F1 point.
            cconf = conf[sel]
            if sel.any():
                r_at = np.interp(-grid, -cconf, recall[:, 0], left=0)
                p_at = np.interp(-grid, -cconf, precision[:, 0], left=1)
            else:
                r_at, p_at = np.zeros_like(grid), np.zeros_like(grid)
            f1_curves.append((p_at, r_at))
            per_class[name] = {
                "instances": n_gt,
                "predictions": int(sel.sum()),
                "mAP50": aps[0],
                "mAP50-95": float(np.mean(aps)),
                "fitness": fitness(aps[0], float(np.mean(aps))),
                "_pr": (p_at, r_at),
            }
        if present:
            mean_p = np.mean([p for p, _ in f1_curves], axis=0)
            mean_r = np.mean([r for _, r in f1_curves], axis=0)
            f1 = 2 * mean_p * mean_r / np.maximum(mean_p + mean_r, 1e-16)
            best = int(f1.argmax())
            for c in present:
                entry = per_class[self.class_names[c]]
                p_at, r_at = entry.pop("_pr")
                entry["precision"], entry["recall"] = float(p_at[best]), float(r_at[best])
            overall = {
                "precision": float(mean_p[best]),
                "recall": float(mean_r[best]),
                "mAP50": float(np.mean([per_class[self.class_names[c]]["mAP50"] for c in present])),
                "mAP50-95": float(np.mean([per_class[self.class_names[c]]["mAP50-95"] for c in present])),
                "conf_at_max_f1": float(grid[best]),
            }
        else:
            overall = {"precision": 0.0, "recall": 0.0, "mAP50": 0.0, "mAP50-95": 0.0, "conf_at_max_f1": 0.0}
        overall["fitness"] = fitness(overall["mAP50"], overall["mAP50-95"])
        overall["instances"] = int(self.n_gt.sum())
        result = {"overall": overall, "per_class": per_class}
        if curves:
            result["pr_curve"] = pr_curve
        return result
