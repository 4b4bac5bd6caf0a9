"""What a review changed in a frame: the model's boxes the expert was shown against the expert's answer.

Read back from the queue store, so it is the same for a simulated expert, Label Studio or CVAT answers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.training.metrics import box_iou, xywhn_to_xyxy

CHANGES = ("kept", "fixed", "deleted", "added")


def frame_changes(shown: pd.DataFrame, answer: pd.DataFrame, fix_iou: float = 0.1) -> dict[str, int]:
    """`shown`: the model's boxes (cls, cx, cy, w, h, conf), `answer`: the reviewed labels (cls, cx, cy, w, h).

    Each shown box, by confidence, takes the unused answer box it overlaps most: kept when that box has its
    class at IoU >= 0.5, fixed when it overlaps at IoU >= `fix_iou` (moved, resized or reclassed), deleted
    otherwise; answer boxes left over were added. The simulated expert decides with the same rule, so this
    reads back exactly what it did (tests/test_review_changes.py)."""
    w, h = layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT
    p_xy = xywhn_to_xyxy(shown[["cx", "cy", "w", "h"]].to_numpy(dtype=np.float64), w, h)
    a_xy = xywhn_to_xyxy(answer[["cx", "cy", "w", "h"]].to_numpy(dtype=np.float64), w, h)
    iou = box_iou(p_xy, a_xy)
    a_cls, p_cls = answer["cls"].to_numpy(), shown["cls"].to_numpy()
    used = np.zeros(len(answer), dtype=bool)
    out = dict.fromkeys(CHANGES, 0)
    for i in np.argsort(-shown["conf"].to_numpy(dtype=np.float64), kind="stable"):
        cand = np.where(used, -1.0, iou[i]) if len(answer) else np.zeros(0)
        j = int(cand.argmax()) if len(cand) else -1
        if j >= 0 and cand[j] >= 0.5 and a_cls[j] == p_cls[i]:
            used[j], out["kept"] = True, out["kept"] + 1
        elif j >= 0 and cand[j] >= fix_iou:
            used[j], out["fixed"] = True, out["fixed"] + 1
        else:
            out["deleted"] += 1
    out["added"] = int((~used).sum())
    return out


def review_summary(store, boxes, merged: set[str] = frozenset()) -> dict:
    """A queue store's items per state (`QueueStore.status`) and per reviewer, and what the reviews changed:
    {"states": {...}, "reviewers": {name: items}, "changes": {kept, fixed, deleted, added}, "frames": n}.
    `boxes`: the round's boxes with their bands, what the experts were shown: a DataFrame, or
    pseudo/boxes.parquet, of which only the reviewed frames are read (`exchange.boxes_by_item`)."""
    from visem_pl.tasks.dataset.labels import read_yolo_labels
    from visem_pl.tasks.review.exchange import boxes_by_item
    from visem_pl.tasks.review.queue import REVIEWED

    status = store.status(merged)
    items = store.state()["items"]
    reviewed = [item for item, entry in items.items() if entry["state"] == REVIEWED]
    reviewers: dict[str, int] = {}
    for item in reviewed:
        name = items[item]["reviewer"] or "(unnamed)"
        reviewers[name] = reviewers.get(name, 0) + 1
    shown = boxes_by_item(boxes, reviewed)
    empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in ("cls", "cx", "cy", "w", "h", "conf")})
    changes = dict.fromkeys(CHANGES, 0)
    for item in reviewed:
        answer = pd.DataFrame(read_yolo_labels(store.labels / f"{item}.txt"), columns=["cls", "cx", "cy", "w", "h"])
        for k, v in frame_changes(shown.get(item, empty), answer).items():
            changes[k] += v
    return {"states": status["states"], "reviewers": reviewers, "changes": changes, "frames": len(reviewed)}
