"""Atomic writes: a reader never sees half a file, an interrupted run leaves the old one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: Path | str):
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates 0600; the final file gets the usual mode (0666 less the umask).
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path | str):
    """Yield a hidden temporary folder beside `path`; rename it into place only if the block succeeds.

    For caches several processes may fill at once: if another one put `path` in place first, its
    folder is kept and this one dropped.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name[:40]}-", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.exists():  # not a concurrent run that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_texts(folder: Path | str, texts) -> int:
    """Many small files in `folder`, each atomically like `write_text` (`texts`: (file name, text) pairs),
    written in one hidden temporary folder beside it and renamed into place one by one: no temporary
    file and mode change per file. Other files in `folder` are left alone. Returns how many."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name[:40]}-", suffix=".tmp", dir=folder.parent))
    n = 0
    try:
        for name, text in texts:
            (tmp / name).write_text(text, encoding="utf-8")
            os.replace(tmp / name, folder / name)
            n += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return n


def write_json(path: Path | str, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(path: Path | str, table) -> None:
    """A pandas DataFrame as CSV without its index, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def file_sha256(path: Path | str) -> str:
    """Streamed, so multi-GB weights and exports are never read whole."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def remove_other_clips(folder: Path | str, clips) -> list[str]:
    """Delete the per-clip files (`<clip>.parquet`) in `folder` of clips not in `clips`, and say so.

    A round's per-clip outputs are kept between runs so finished clips are not redone; once the
    workspace points at another dataset, the old dataset's files would otherwise be read as this
    one's. Returns the names removed."""
    import logging

    folder = Path(folder)
    if not folder.is_dir():
        return []
    keep = {c.name for c in clips}
    removed = sorted(p.stem for p in folder.glob("*.parquet") if p.stem not in keep)
    for name in removed:
        (folder / f"{name}.parquet").unlink()
    if removed:
        logging.getLogger(__name__).warning(
            "%s: removed %d file(s) of clips that are not in the dataset now (e.g. %s)",
            folder, len(removed), ", ".join(removed[:3]),
        )  # fmt: skip
    return removed
