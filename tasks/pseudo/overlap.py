"""One cell, one box: which accepted boxes repeat a more confident accepted box of their frame.

The detector's non-maximum suppression runs per class and only above `infer.iou` (0.7), so a cell can
leave two boxes: two of one class that overlap less than that, or one of each of two classes. Taught
as labels, the second box is a false one, and it is the most common kind after boxes on nothing: on
the demo's round 0 (640 iterations) 254 of the 1,435 wrong accepted boxes repeat a right one, and 116
more are a second, misplaced box on a cell (docs/TRACKING.md). A class-agnostic suppression among the
accepted boxes, most confident first, finds them: a box overlapping a kept one at IoU above `iou`
(0.3 in params.yaml, the bound at which merge already takes a doubtful box for an accepted one's cell,
`merge.SAME_CELL_IOU`: the demoted repeat is then never painted over the box it repeats).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def repeated(boxes: pd.DataFrame, iou: float) -> np.ndarray:
    """Per row of `boxes` (clip, frame, cx, cy, w, h normalised, conf; NaN for interpolated boxes):
    True where a more confident row of its (clip, frame), itself not repeated, overlaps it at IoU >
    `iou`, whatever the classes. Ties in confidence: the earlier row is the more confident; interpolated
    boxes (no score) come last. Pass only the boxes that compete (the accepted ones)."""
    import torch
    from torchvision.ops import batched_nms

    from visem_pl.tasks.dataset.layout import IMAGE_HEIGHT, IMAGE_WIDTH
    from visem_pl.tasks.training.metrics import xywhn_to_xyxy

    out = np.zeros(len(boxes), bool)
    if len(boxes) < 2:
        return out
    xyxy = xywhn_to_xyxy(boxes[["cx", "cy", "w", "h"]].to_numpy(), IMAGE_WIDTH, IMAGE_HEIGHT)
    group, _ = pd.factorize(pd.MultiIndex.from_arrays([boxes["clip"].astype(str), boxes["frame"]]))
    # Scores by rank: distinct, so the order (and the result) does not depend on how NMS breaks ties
    conf = boxes["conf"].fillna(-1.0).to_numpy(np.float64)
    order = np.lexsort((np.arange(len(boxes)), -conf))
    rank = np.empty(len(boxes), np.float64)
    rank[order] = np.arange(len(boxes), 0, -1)
    kept = batched_nms(torch.from_numpy(xyxy), torch.from_numpy(rank), torch.from_numpy(group), float(iou))
    out[:] = True
    out[kept.numpy()] = False
    return out
