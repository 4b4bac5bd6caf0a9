"""Build the next round's training set: labelled frames + accepted pseudo-labels + reviewed labels.

Frames of the unlabelled clips are decoded once and written as JPEGs beside their labels, so
the next round trains from plain files. A reviewed frame replaces its pseudo-labels (the expert
saw the whole frame). Every box keeps its provenance (label source and round) in `manifest.csv`.

A pseudo-labelled frame is only partly labelled: the doubtful boxes (review and reject bands)
may be cells. Ultralytics has no ignore regions, so those boxes are painted out of the frame
(inpainted from their surroundings) rather than taught as background.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.labels import read_yolo_labels
from visem_pl.tasks.dataset.reader import Clip
from visem_pl.tasks.inference.clips import iter_frames
from visem_pl.tasks.workspace.io import atomic_path, write_json
from visem_pl.tasks.workspace.paths import portable

LABELLED, PSEUDO, REVIEWED = "labelled", "pseudo", "reviewed"


def _stems(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.txt"))} if folder.is_dir() else {}


# Doubtful boxes are painted out a little larger than the box: a head's halo spills over it.
MASK_GROW = 1.3


def mask_boxes(frame, boxes: pd.DataFrame):
    """The frame with `boxes` (normalised cx, cy, w, h) inpainted from their surroundings."""
    if boxes.empty:
        return frame
    h, w = frame.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    for b in boxes.itertuples():
        bw, bh = b.w * w * MASK_GROW, b.h * h * MASK_GROW
        x0, y0 = int(max(0, b.cx * w - bw / 2)), int(max(0, b.cy * h - bh / 2))
        x1, y1 = int(min(w, b.cx * w + bw / 2 + 1)), int(min(h, b.cy * h + bh / 2 + 1))
        mask[y0:y1, x0:x1] = 255
    return cv2.inpaint(frame, mask, 3, cv2.INPAINT_TELEA)


def merge_round(
    round_n: int,
    labelled: pd.DataFrame,
    pseudo_labels: Path,
    reviewed: list[tuple[int, Path]],
    clips: list[Clip],
    out_dir: Path | str,
    doubtful: pd.DataFrame | None = None,
    provenance: dict | None = None,
) -> dict:
    """Write `images/`, `labels/`, `frames.csv` (image, label, source, round) and `manifest.csv`
    (one row per box with its source and round) under `out_dir`.

    `reviewed` is [(round, labels folder)] for every round reviewed so far; later rounds win.
    `doubtful` (columns clip, frame, cx, cy, w, h) are painted out of pseudo-labelled frames.
    `provenance`: {(clip, frame): how each pseudo-label of the frame was accepted, in label order}
    (confidence, promoted, interpolated: tasks/pseudo/temporal.py), the manifest's `rule`.
    """
    provenance = provenance or {}
    doubtful_by_frame = (
        {k: g for k, g in doubtful.groupby(["clip", "frame"])} if doubtful is not None and not doubtful.empty else {}
    )
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    chosen: dict[str, tuple[str, int, Path]] = {s: (PSEUDO, round_n, p) for s, p in _stems(pseudo_labels).items()}
    for rnd, folder in sorted(reviewed):
        chosen.update({s: (REVIEWED, rnd, p) for s, p in _stems(folder).items()})
    by_clip: dict[str, set[int]] = {}
    for stem in chosen:
        clip, frame = layout.split_item(stem)
        by_clip.setdefault(clip, set()).add(frame)
    known = {c.name: c for c in clips}
    missing = sorted(set(by_clip) - set(known))
    if missing:
        raise ValueError(f"labels name clip(s) {missing[:3]} that are not in the dataset")

    frames, boxes = [], []
    for row in labelled.itertuples():
        label = row.label if isinstance(row.label, str) else ""
        frames.append({"image": row.image, "label": label, "source": LABELLED, "round": -1})
        for b in read_yolo_labels(label):
            boxes.append(
                {
                    "image": row.image,
                    "source": LABELLED,
                    "round": -1,
                    "rule": "",
                    "cls": int(b[0]),
                    "cx": b[1],
                    "cy": b[2],
                    "w": b[3],
                    "h": b[4],
                }
            )
    for clip_name in sorted(by_clip):
        wanted = by_clip[clip_name]
        for index, frame in iter_frames(known[clip_name].path, 1):
            if index not in wanted:
                continue
            stem = layout.frame_item(clip_name, index)
            source, rnd, label_src = chosen[stem]
            image = out / "images" / f"{stem}.jpg"
            label = out / "labels" / f"{stem}.txt"
            if source == PSEUDO and (clip_name, index) in doubtful_by_frame:
                frame = mask_boxes(frame, doubtful_by_frame[(clip_name, index)])
            ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise ValueError(f"{known[clip_name].path}:0: frame {index} cannot be encoded")
            with atomic_path(image) as tmp:
                tmp.write_bytes(jpg.tobytes())
            parsed = read_yolo_labels(label_src)
            with atomic_path(label) as tmp:
                tmp.write_text(label_src.read_text())
            frames.append({"image": portable(image), "label": portable(label), "source": source, "round": rnd})
            rules = provenance.get((clip_name, index), []) if source == PSEUDO else []
            for i, b in enumerate(parsed):
                boxes.append(
                    {
                        "image": portable(image),
                        "source": source,
                        "round": rnd,
                        "rule": rules[i] if len(rules) == len(parsed) else ("confidence" if source == PSEUDO else ""),
                        "cls": int(b[0]),
                        "cx": b[1],
                        "cy": b[2],
                        "w": b[3],
                        "h": b[4],
                    }
                )
            wanted.discard(index)
            if not wanted:
                break
        if wanted:
            raise ValueError(f"{known[clip_name].path}:0: frames {sorted(wanted)[:5]} are past the clip's end")
    frames_df = pd.DataFrame(frames, columns=["image", "label", "source", "round"])
    boxes_df = pd.DataFrame(boxes, columns=["image", "source", "round", "rule", "cls", "cx", "cy", "w", "h"])
    with atomic_path(out / "frames.csv") as tmp:
        frames_df.to_csv(tmp, index=False)
    with atomic_path(out / "manifest.csv") as tmp:
        boxes_df.to_csv(tmp, index=False, float_format="%.6f")
    stats = {
        "frames": {s: int((frames_df.source == s).sum()) for s in (LABELLED, PSEUDO, REVIEWED)},
        "boxes": {
            s: {n: int(((boxes_df.source == s) & (boxes_df.cls == k)).sum()) for k, n in enumerate(layout.CLASS_NAMES)}
            for s in (LABELLED, PSEUDO, REVIEWED)
        },
    }
    write_json(out / "stats.json", stats)
    return stats
