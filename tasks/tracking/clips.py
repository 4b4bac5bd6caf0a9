"""Track every clip of a round: one Parquet file of tracks per clip, resumable.

A clip's file records what it was made from (its prediction file's sha256, the tracking settings),
so a rerun skips the clips that are current and redoes those whose predictions or settings changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from visem_pl.tasks.dataset.reader import Clip
from visem_pl.tasks.inference.clips import prediction_meta
from visem_pl.tasks.tracking.link import TrackConfig, fill_gaps, link, settings
from visem_pl.tasks.workspace.io import atomic_path, file_sha256

META_KEY = b"visem_pl_tracks"


def video_props(clip: Clip) -> tuple[int, int, float]:
    """(width, height, frames per second) read from the clip's container, never from its name."""
    cap = cv2.VideoCapture(str(clip.path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{clip.path}:0: cannot be opened as a video")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if not fps > 0:
            raise ValueError(f"{clip.path}:0: the container states no frame rate")
        return int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), fps
    finally:
        cap.release()


def read_boxes(path: Path) -> pd.DataFrame:
    """A prediction file's boxes; `box` is each one's row in the file (how `filter` finds it again)."""
    df = pq.read_table(path).to_pandas()
    return df[["frame", "cls", "cx", "cy", "w", "h", "conf"]].assign(box=np.arange(len(df), dtype=np.int64))


def fingerprint(predictions: Path, cfg: TrackConfig) -> dict:
    return {"predictions_sha256": file_sha256(predictions), "config": settings(cfg)}


def is_current(out: Path, expected: dict) -> bool:
    if not out.exists():
        return False
    try:
        found = json.loads((pq.read_schema(out).metadata or {}).get(META_KEY, b"{}"))
    except Exception:  # noqa: BLE001 - a damaged file is simply redone
        return False
    return {k: found.get(k) for k in expected} == expected


def track_clip(clip: Clip, predictions_dir: Path, out_dir: Path, cfg: TrackConfig) -> dict:
    """Link one clip's predictions into tracks (`out_dir/<clip>.parquet`); skipped when current."""
    src = Path(predictions_dir) / f"{clip.name}.parquet"
    if not src.exists():
        raise FileNotFoundError(f"{src}: no predictions for clip {clip.name} (run `visem-pl infer` first)")
    out = Path(out_dir) / f"{clip.name}.parquet"
    expected = fingerprint(src, cfg)
    if is_current(out, expected):
        return {"clip": clip.name, "skipped": True}
    made = prediction_meta(src)
    stride = int(made["params"]["stride"])
    width, height, fps = video_props(clip)
    try:
        tracks = fill_gaps(link(read_boxes(src), width, height, stride, cfg), stride, cfg.max_gap)
    except ValueError as exc:
        raise ValueError(f"{src}: {exc}") from None
    meta = {**expected, "stride": stride, "width": width, "height": height, "fps": fps,
            "frames_scored": int(made["frames_scored"]), "tracks": int(tracks["track"].nunique())}  # fmt: skip
    _write(tracks.assign(clip=clip.name), meta, out)
    return {
        "clip": clip.name,
        "skipped": False,
        "tracks": meta["tracks"],
        "boxes": int((tracks["source"] == "detected").sum()),
        "interpolated": int((tracks["source"] == "interpolated").sum()),
    }


def _write(tracks: pd.DataFrame, meta: dict, out: Path) -> None:
    """`tracks` as Parquet at `out` (atomically), `meta` in its schema metadata (what `is_current` checks)."""
    table = pa.Table.from_pandas(tracks, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)


def read_tracks(path: Path) -> tuple[pd.DataFrame, dict]:
    """A clip's tracks and what its file records (stride, frame size, settings)."""
    return pq.read_table(path).to_pandas(), json.loads((pq.read_schema(path).metadata or {})[META_KEY])


def truth_box_tracks(truth: pd.DataFrame, truth_file: Path, meta: dict, cfg: TrackConfig, cache_dir: Path | None):
    """The tracker fed a clip's truth boxes (the "tracker alone" of the scores and of motility), at the
    stride and frame size of its round's tracks (`meta`: what their file records). Kept in
    `cache_dir/<clip>.parquet`, keyed like a tracks file (the truth file's sha256, the settings, stride,
    frame size and frames covered): `track` makes it once, `motility` reads it, and any change makes it
    again. `truth`: the clip's truth on the frames its tracks cover."""
    from visem_pl.tasks.tracking.score import truth_boxes

    stride, width, height = meta["stride"], meta["width"], meta["height"]
    out = None if cache_dir is None else Path(cache_dir) / f"{Path(truth_file).stem}.parquet"
    # frames_scored: a motility window of another length covers other frames of the same truth file
    expected = {"truth_sha256": file_sha256(truth_file), "config": settings(cfg), "stride": stride,
                "width": width, "height": height, "frames_scored": meta["frames_scored"]}  # fmt: skip
    if out is not None and is_current(out, expected):
        return pq.read_table(out).to_pandas()
    tracks = link(truth_boxes(truth, stride), width, height, stride, cfg)
    if out is not None:
        _write(tracks, expected, out)
    return tracks
