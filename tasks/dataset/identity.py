"""What a dataset is, as a short id: so a round's outputs can say which dataset they were made from.

A workspace pointed at another dataset (another unzip, or the twin rebuilt with another seed) must
never show or reuse results of the old one as its own. Every file is identified by its size and the
sha256 of its first and last 64 KiB: an mp4's header and index (the `moov` box, at one end or the
other) differ between any two recordings, and reading 128 KiB of each of 522 videos costs well under
a second, where hashing them whole would read 33 GB.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from visem_pl.tasks.dataset.reader import Dataset

EDGE_BYTES = 64 * 1024


def file_id(path: Path | str) -> str:
    """`<size>:<sha256 of the first and last 64 KiB, 16 hex digits>`: one recording's identity."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            fh.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            h.update(fh.read(EDGE_BYTES))
    return f"{size}:{h.hexdigest()[:16]}"


def dataset_id(ds: Dataset) -> str:
    """16 hex digits naming the dataset: every annotated video's id and mp4, every clip's name and mp4.

    Label files are not read (29,196 of them on the real data): a corrected label changes the
    prepared frames, which DVC tracks, not the dataset these ids tell apart."""
    lines = [f"video {vid} {file_id(v.mp4) if v.mp4.exists() else '-'}" for vid, v in sorted(ds.videos.items())]
    lines += [f"clip {c.name} {file_id(c.path)}" for c in sorted(ds.clips(), key=lambda c: c.name)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
