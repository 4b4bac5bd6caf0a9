"""Random full-resolution crops of labelled frames: the training input that lets a detector
learn from a few hundred iterations on a CPU.

Downscaling a 640x480 frame to 320 px halves a 23 px sperm head to 11 px, and from-scratch
YOLO then learns nothing in a demo's budget. Cutting crops at full resolution keeps heads at
their real size, gives many different views per labelled frame, and the trained model still
runs on whole frames at inference (YOLO is fully convolutional).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from visem_pl.tasks.dataset.labels import read_yolo_labels, yolo_text

# A box cut by the crop border is kept when at least this share of it is inside the crop.
MIN_VISIBLE = 0.6


def crop_labels(labels: np.ndarray, img_w: int, img_h: int, x0: int, y0: int, size: int) -> np.ndarray:
    """Boxes of a frame re-expressed in a size x size crop at (x0, y0), clipped to it."""
    if len(labels) == 0:
        return np.zeros((0, 5))
    cls = labels[:, 0]
    cx, cy, w, h = labels[:, 1] * img_w, labels[:, 2] * img_h, labels[:, 3] * img_w, labels[:, 4] * img_h
    bx0, by0, bx1, by1 = cx - w / 2 - x0, cy - h / 2 - y0, cx + w / 2 - x0, cy + h / 2 - y0
    cx0, cy0 = np.clip(bx0, 0, size), np.clip(by0, 0, size)
    cx1, cy1 = np.clip(bx1, 0, size), np.clip(by1, 0, size)
    visible = (cx1 - cx0) * (cy1 - cy0) / np.maximum(w * h, 1e-9)
    keep = visible >= MIN_VISIBLE
    out = np.stack(
        [cls, (cx0 + cx1) / 2 / size, (cy0 + cy1) / 2 / size, (cx1 - cx0) / size, (cy1 - cy0) / size], axis=1
    )
    return out[keep]


def allocate(n: int, weights: np.ndarray) -> np.ndarray:
    """Split n into integer counts proportional to `weights`.

    Rounding the running total (not each count) keeps every prefix, hence every contiguous
    group of frames, within one crop of its exact share.
    """
    edges = np.floor(np.concatenate(([0.0], np.cumsum(n * weights / weights.sum()))) + 0.5).astype(np.int64)
    return np.diff(edges)


def cut_crops(
    frames: list[tuple[str, str]],
    out_dir: Path,
    n_crops: int,
    size: int,
    seed: int = 0,
    object_bias: float = 0.7,
    weights: list[float] | None = None,
) -> list[Path]:
    """Write `n_crops` crops (images/ and labels/) from (image, label) pairs; return the image paths.

    Crops are spread over the frames in proportion to `weights` (evenly by default); with
    probability `object_bias` a crop is centred near a random box, so rare classes
    (clusters, pinheads) are seen often enough.
    """
    if not frames:
        raise ValueError("no frames to cut training crops from")
    rng = np.random.default_rng(seed)
    img_dir, lbl_dir = out_dir / "images", out_dir / "labels"
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    per_frame = allocate(n_crops, np.asarray(weights if weights is not None else [1.0] * len(frames), float))
    paths: list[Path] = []
    k = 0
    for (image, label), count in zip(frames, per_frame):
        if count == 0:
            continue
        img = cv2.imread(str(image))
        if img is None:
            raise ValueError(f"{image}:0: cannot be decoded as an image")
        h, w = img.shape[:2]
        labels = read_yolo_labels(label)
        for _ in range(int(count)):
            if len(labels) and rng.random() < object_bias:
                # Rare classes first: pick a class present in the frame, then one of its boxes.
                classes = np.unique(labels[:, 0])
                c = rng.choice(classes)
                box = labels[rng.choice(np.flatnonzero(labels[:, 0] == c))]
                cx, cy = box[1] * w, box[2] * h
                x0 = int(np.clip(cx - rng.uniform(0.2, 0.8) * size, 0, w - size))
                y0 = int(np.clip(cy - rng.uniform(0.2, 0.8) * size, 0, h - size))
            else:
                x0, y0 = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
            crop = img[y0 : y0 + size, x0 : x0 + size]
            boxes = crop_labels(labels, w, h, x0, y0, size)
            name = f"crop_{k:06d}"
            cv2.imwrite(str(img_dir / f"{name}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
            (lbl_dir / f"{name}.txt").write_text(yolo_text(boxes))
            paths.append(img_dir / f"{name}.jpg")
            k += 1
    return paths
