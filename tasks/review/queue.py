"""The review queue file (`queue.csv`: one row per frame, in review order) and the review folder's README."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from visem_pl.tasks.workspace.io import write_text

PENDING, EXPORTED, REVIEWED, MERGED = "pending", "exported", "reviewed", "merged"
STATES = (PENDING, EXPORTED, REVIEWED, MERGED)
# `load` (how many review-band boxes the frame holds, as a percentile of the round's review-band frames)
# is computed over the whole round (`priority.prioritise`), the others frame by frame.
COMPONENTS = ("uncertainty", "disagreement", "temporal", "load")
QUEUE_COLUMNS = ["item", "clip", "frame", "priority", *COMPONENTS, "n_boxes", "n_review"]
QUEUE_FILE = "queue.csv"


def write_queue(queue: pd.DataFrame, path: Path | str) -> None:
    write_text(path, queue[QUEUE_COLUMNS].to_csv(index=False, float_format="%.6f", lineterminator="\n"))


def read_queue(path: Path | str) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"item": str, "clip": str})


def queue_status(queue: pd.DataFrame) -> dict:
    """Status of a queue no one has started on: every item pending."""
    per_clip = {
        c: {**{k: 0 for k in STATES}, PENDING: int(n)} for c, n in queue.groupby("clip", sort=False).size().items()
    }
    return {
        "items": len(queue),
        "states": {**{k: 0 for k in STATES}, PENDING: len(queue)},
        "clips": per_clip,
        "left": len(queue),
        "reviewers": [],
    }


REVIEW_README = """\
Review folder of round {n} (see docs/review.md).

Experts' answers for round {n}'s review queue live here, written only by visem-pl:

  visem-pl review status --round {n}
  visem-pl review export --round {n} --format labelstudio   (or cvat)
  visem-pl review import --round {n} FILE --reviewer NAME

queue.csv, state.json, imports/ and labels/ are small text files: commit them with git.
The DVC stage review@{n} copies labels/ into data/rounds/round-{n}/reviewed/ once every item is
reviewed, and waits (saying what is left) until then.
"""


def init_review_folder(folder: Path | str, round_n: int) -> None:
    """Create the round's review folder with its README (the review stage's dependency)."""
    path = Path(folder) / "README.txt"
    text = REVIEW_README.format(n=round_n)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)
