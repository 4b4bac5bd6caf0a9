"""Ground truth of the synthetic twin's unlabelled clips (`_truth/`, outside the real layout).

Only the simulated expert and the quality metrics read it; training never does. Real data
has no `_truth/`, and then both steps say so instead of guessing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.reader import locate

COLUMNS = ["frame", "track_id", "class", "cx", "cy", "w", "h", "motility"]


class TruthStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def clip(self, clip: str) -> pd.DataFrame:
        return _load(self.folder / "clips" / f"{clip}.parquet")

    def frame(self, clip: str, frame: int) -> pd.DataFrame:
        df = self.clip(clip)
        return df[df["frame"] == frame].reset_index(drop=True)


# A few clips: the stages go clip by clip, and a real-length clip's truth is about 10 MB in memory (64 of them
# made quality's and the review's memory grow with the round's clips).
@lru_cache(maxsize=8)
def _load(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no ground truth for this clip")
    return pd.read_parquet(path)


def truth_for(root: Path | str) -> TruthStore | None:
    """The truth store of a dataset, or None for real data."""
    folder = locate(root).top / layout.TRUTH_DIR
    return TruthStore(folder) if (folder / "clips").is_dir() else None
