"""The real per-frame counts file (`sperm_counts_per_frame.csv`), one row per label file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout

# Shipped copy of the real file (CC BY 4.0, VISEM-Tracking, sha256 d82aa0b9...e4e93df).
REFERENCE_COUNTS = Path(__file__).resolve().parents[2] / "data" / "reference" / layout.COUNTS_CSV


def read_counts(path: Path | str = REFERENCE_COUNTS) -> pd.DataFrame:
    """Columns video, frame, sperm, cluster, small_or_pinhead; sorted by video and frame."""
    df = pd.read_csv(path, skipinitialspace=True)
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in layout.COUNTS_HEADER if c not in df.columns]
    if missing:
        raise ValueError(f"{path}:1: missing column(s) {missing}")
    parts = df["frame_name"].str.extract(r"^(\d+)_frame_(\d+)$")
    bad = parts[0].isna()
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise ValueError(f"{path}:{line}: frame_name '{df['frame_name'][bad].iloc[0]}' is not <id>_frame_<n>")
    out = pd.DataFrame(
        {
            "video": parts[0].astype(int),
            "frame": parts[1].astype(int),
            "sperm": df["sperm_count"].astype(int),
            "cluster": df["cluster_count"].astype(int),
            "small_or_pinhead": df["small_or_pinhead_count"].astype(int),
        }
    )
    return out.sort_values(["video", "frame"], ignore_index=True)


def per_frame(counts: pd.DataFrame, video_id: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_frames, 3) counts per class for one video, and (n_frames,) whether the frame has a label file."""
    rows = counts[counts["video"] == video_id]
    mat = np.zeros((n_frames, 3), dtype=np.int64)
    has = np.zeros(n_frames, dtype=bool)
    frames = rows["frame"].to_numpy()
    keep = frames < n_frames
    mat[frames[keep]] = rows[["sperm", "cluster", "small_or_pinhead"]].to_numpy()[keep]
    has[frames[keep]] = True
    return mat, has


def per_frame_matrix(counts: pd.DataFrame, video_id: int, n_frames: int) -> np.ndarray:
    """(n_frames, 3) counts per class for one video; frames without a label file are all zero."""
    return per_frame(counts, video_id, n_frames)[0]
