"""YOLO label files, the one place they are written and read: `class cx cy w h` per line, normalised.

Every label the loop writes (pseudo-labels, reviewed answers, training crops, exports) goes through
`yolo_text`, and every label it reads back through `read_yolo_labels`, so all agree on the format.
(The synthetic twin writes the real dataset's own style, short decimals; see `tasks.synth.writer`.)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

Box = tuple[int, float, float, float, float]  # class, cx, cy, w, h (normalised)


def yolo_text(boxes: Iterable) -> str:
    """Label file text of `boxes`: rows of (class, cx, cy, w, h); an empty text means no object."""
    return "".join(f"{int(c)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in boxes)


def read_yolo_labels(path: str | Path | None) -> np.ndarray:
    """(N, 5) array of class, cx, cy, w, h (normalised); empty for no file."""
    if not path:
        return np.zeros((0, 5))
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return np.zeros((0, 5))
    if not text.strip():  # a frame an expert cleared: no objects
        return np.zeros((0, 5))
    return np.array([line.split() for line in text.splitlines() if line.strip()], dtype=np.float64).reshape(-1, 5)
