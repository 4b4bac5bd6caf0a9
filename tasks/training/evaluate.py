"""Score a round's model on the fixed validation videos, on whole 640x480 frames.

Reports precision, recall, mAP@0.5, mAP@0.5:0.95 and the paper's fitness
(0.1 x mAP@0.5 + 0.9 x mAP@0.5:0.95), overall and per class.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.labels import read_yolo_labels
from visem_pl.tasks.training.metrics import Accumulator, xywhn_to_xyxy
from visem_pl.tasks.workspace import offline


@dataclass(frozen=True)
class EvalConfig:
    imgsz: int = 640
    conf: float = 0.001  # low, so the whole precision-recall curve is scored
    iou: float = 0.7  # NMS IoU
    batch: int = 8
    max_det: int = 300
    device: str = "auto"


def predict_images(weights: Path | str, images: list[str], cfg: EvalConfig):
    """Yield (image, xyxy, cls, conf) for each image, in order."""
    offline.quiet_ultralytics()
    from ultralytics import YOLO

    from visem_pl.tasks.workspace.device import pick_device

    model = YOLO(str(weights))
    for start in range(0, len(images), cfg.batch):
        chunk = images[start : start + cfg.batch]
        results = model.predict(
            chunk,
            imgsz=cfg.imgsz,
            conf=cfg.conf,
            iou=cfg.iou,
            max_det=cfg.max_det,
            device=pick_device(cfg.device),
            verbose=False,
        )
        for image, res in zip(chunk, results):
            boxes = res.boxes
            yield (
                image,
                boxes.xyxy.cpu().numpy().astype(np.float64),
                boxes.cls.cpu().numpy().astype(np.int64),
                boxes.conf.cpu().numpy().astype(np.float64),
            )


def evaluate(weights: Path | str, frames: pd.DataFrame, cfg: EvalConfig, curves: bool = False) -> dict:
    """Metrics of `weights` on the rows of `frames` (columns image, label); with `curves`, also each
    class's precision-recall curve ("pr_curve", `Accumulator.summary`)."""
    acc = Accumulator(layout.CLASS_NAMES)
    labels = dict(zip(frames["image"], frames["label"].fillna("")))
    started = time.time()
    for image, xyxy, cls, conf in predict_images(weights, list(frames["image"]), cfg):
        gt = read_yolo_labels(labels[image])
        acc.add(xyxy, cls, conf, xywhn_to_xyxy(gt[:, 1:], layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT), gt[:, 0])
    result = acc.summary(curves=curves)
    seconds = time.time() - started
    result["frames"] = int(len(frames))
    result["frames_per_second"] = round(len(frames) / max(seconds, 1e-9), 2)
    return result
