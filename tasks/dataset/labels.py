"""YOLO label files, the one place they are written and read: `class cx cy w h` per line, normalised.

Every label the loop writes (pseudo-labels, reviewed answers, training crops, exports) goes through
`yolo_text`, and every label it reads back through `read_yolo_labels`, so all agree on the format.
(The synthetic twin writes the real dataset's own style, short decimals; see `tasks.synth.writer`.)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

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


FTID_COLUMNS = ["frame", "track_id", "class", "cx", "cy", "w", "h"]


def read_ftid_tracks(video) -> pd.DataFrame:
    """Every box of an annotated video's `labels_ftid/` files with its track id (a LabelBox string):
    frame, track_id, class, cx, cy, w, h. A frame without a file has no object (the dataset's rule).
    A malformed line raises ValueError naming its file and line."""
    from visem_pl.tasks.dataset import layout
    from visem_pl.tasks.dataset.reader import index_files

    rows = []
    for frame, (_, name) in sorted(index_files(video.ftid_dir, layout.FTID_NAME_RE).items()):
        path = video.ftid_dir / name
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 6:
                    raise ValueError(f"{len(fields)} fields, expected 6 (track_id class cx cy w h)")
                cls, box = int(fields[1]), [float(v) for v in fields[2:]]
                if not all(np.isfinite(box)) or not all(0.0 <= v <= 1.0 for v in box):
                    raise ValueError("coordinates must be finite and normalised to [0, 1]")
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: '{line.strip()}': {exc}") from None
            rows.append((frame, fields[0], cls, *box))
    return pd.DataFrame(rows, columns=FTID_COLUMNS)
