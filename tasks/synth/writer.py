"""File output: label lines, per-frame files, videos, and the atomic output folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from visem_pl.tasks.dataset import layout


def fmt(v: float) -> str:
    """Short exact-looking decimals like the real labels (0.27578125, 0.4125)."""
    return f"{v:.8g}"


def label_lines(boxes: np.ndarray, classes: np.ndarray, track_ids: list[str]) -> tuple[str, str]:
    """(labels/ text, labels_ftid/ text) for one frame; same boxes, same order."""
    plain, ftid = [], []
    for (cx, cy, w, h), c, tid in zip(boxes, classes, track_ids):
        body = f"{int(c)} {fmt(cx)} {fmt(cy)} {fmt(w)} {fmt(h)}"
        plain.append(body)
        ftid.append(f"{tid} {body}")
    return "\n".join(plain) + "\n", "\n".join(ftid) + "\n"


def pixel_boxes(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Normalised (cx, cy, w, h) of boxes on whole-pixel corners, clipped to the image.

    Annotation tools store integer corners, which is why real values are short decimals.
    """
    W, H = layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT
    x1 = np.clip(np.rint(cx - w / 2), 0, W)
    x2 = np.clip(np.rint(cx + w / 2), 0, W)
    y1 = np.clip(np.rint(cy - h / 2), 0, H)
    y2 = np.clip(np.rint(cy + h / 2), 0, H)
    return np.stack([(x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H], axis=1)


class VideoSink:
    """mp4 (and optionally per-frame jpgs) of the same frames."""

    def __init__(self, mp4: Path, fps: float, image_dir: Path | None, stem: str, quality: int):
        mp4.parent.mkdir(parents=True, exist_ok=True)
        self.writer = cv2.VideoWriter(
            str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps, (layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT)
        )
        if not self.writer.isOpened():
            raise RuntimeError(f"cannot open an mp4v writer for {mp4}")
        self.image_dir, self.stem, self.params = image_dir, stem, [cv2.IMWRITE_JPEG_QUALITY, quality]
        if image_dir is not None:
            image_dir.mkdir(parents=True, exist_ok=True)

    def write(self, t: int, frame: np.ndarray) -> None:
        self.writer.write(frame)
        if self.image_dir is not None:
            ok = cv2.imwrite(str(self.image_dir / layout.image_name(self.stem, t)), frame, self.params)
            if not ok:
                raise RuntimeError(f"cannot write frame {t} of {self.stem}")

    def close(self) -> None:
        self.writer.release()


@contextmanager
def atomic_dir(out_dir: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary sibling folder that becomes `out_dir` only if the body succeeds."""
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; pass overwrite=True to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.synth-tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        if out_dir.is_dir():
            shutil.rmtree(out_dir)
        else:
            out_dir.unlink()
    os.replace(tmp, out_dir)
