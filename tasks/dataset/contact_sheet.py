"""A contact sheet: a few frames with their boxes drawn, so a person can judge the data at a glance."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.reader import locate
from visem_pl.tasks.workspace.io import atomic_path

ZOOM = 2  # the last tile repeats a frame's centre at 2x so heads and tails can be seen


def _draw(frame: np.ndarray, label_file: Path) -> tuple[np.ndarray, int]:
    """The frame with its boxes drawn, and how many boxes there were."""
    out = frame.copy()
    n = 0
    h, w = out.shape[:2]
    for line in label_file.read_text().splitlines():
        fields = line.split()
        if len(fields) != 5:
            continue
        cls = int(fields[0])
        cx, cy, bw, bh = (float(v) for v in fields[1:])
        x0, y0 = int(round((cx - bw / 2) * w)), int(round((cy - bh / 2) * h))
        x1, y1 = int(round((cx + bw / 2) * w)), int(round((cy + bh / 2) * h))
        cv2.rectangle(out, (x0, y0), (x1, y1), layout.CLASS_COLOURS_BGR[cls], 1, cv2.LINE_8)
        n += 1
    return out, n


def _caption(img: np.ndarray, text: str) -> None:
    cv2.rectangle(img, (0, 0), (img.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(img, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def render_contact_sheet(root: Path | str, out: Path | str, n_frames: int = 6, seed: int = 0, columns: int = 3) -> Path:
    """Pick labelled frames across videos (seeded), draw their boxes, tile them into one PNG."""
    ds = locate(root)
    rng = np.random.default_rng(seed)
    candidates = [(v, f) for v in ds.videos.values() for f in v.labelled_frames()]
    if not candidates:
        raise ValueError(f"{root}: no labelled frames to show")
    picks = [
        candidates[i] for i in sorted(rng.choice(len(candidates), size=min(n_frames, len(candidates)), replace=False))
    ]
    tiles = []
    for video, frame in picks:
        img = cv2.imread(str(video.image_path(frame)))
        if img is None:
            raise ValueError(f"{video.image_path(frame)}:0: cannot be decoded as an image")
        tile, n = _draw(img, video.label_path(frame))
        _caption(tile, f"video {video.id}  frame {frame}  {n} boxes")
        tiles.append(tile)
    # A zoomed centre crop of the first pick shows what a single cell looks like.
    first = tiles[0]
    h, w = first.shape[:2]
    crop = first[h // 4 : h // 4 + h // ZOOM, w // 4 : w // 4 + w // ZOOM]
    zoom = cv2.resize(crop, (w, h), interpolation=cv2.INTER_NEAREST)
    _caption(zoom, f"video {picks[0][0].id} frame {picks[0][1]}, centre at {ZOOM}x")
    tiles.append(zoom)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(first))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    sheet = np.vstack(rows)
    ok, png = cv2.imencode(".png", sheet)
    if not ok:
        raise ValueError(f"{out}: cannot encode PNG")
    with atomic_path(out) as tmp:
        tmp.write_bytes(png.tobytes())
    return Path(out)
