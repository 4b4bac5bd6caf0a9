"""The real per-frame object counts that drive synthetic concentrations."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.counts import REFERENCE_COUNTS, per_frame, read_counts

REAL_SECONDS = 30


def real_length(video_id: int) -> int:
    """Frames of the real annotated 30 s clip (1470, except 35/52: 1440, 82: 1500)."""
    return layout.REAL_FRAMES[video_id]


def real_fps(video_id: int) -> float:
    return real_length(video_id) / REAL_SECONDS


@lru_cache(maxsize=4)
def load_counts(path: Path | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per annotated id: (counts (n_real, 3) int, has_label (n_real,) bool).

    Frames absent from the CSV had no label file in the real data; their counts are 0.
    """
    table = read_counts(path or REFERENCE_COUNTS)
    return {vid: per_frame(table, vid, real_length(vid)) for vid in layout.ANNOTATED_IDS}


def sample_targets(
    counts: np.ndarray, has: np.ndarray, n: int, scale: float, offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Targets for n synthetic frames covering the whole real timeline.

    Synthetic frame t takes real frame floor(t * n_real / n) (shifted circularly by
    `offset` for clips), so short videos still see every regime, including empty runs.
    A real labelled frame keeps at least one object so that it keeps its label file.
    """
    n_real = len(counts)
    idx = (np.arange(n) * n_real // n + offset) % n_real
    target = np.floor(counts[idx] * scale + 0.5).astype(np.int64)
    labelled = has[idx].copy()
    target[~labelled] = 0
    empty = labelled & (target.sum(axis=1) == 0)
    if empty.any():
        target[empty, np.argmax(counts[idx][empty], axis=1)] = 1
    return target, labelled
