"""Pseudo-label every unlabelled clip: decode with OpenCV, detect, one columnar file per clip.

A clip whose file exists for the same model, backend and parameters is skipped, and each file
is written atomically, so a run killed at any point finishes on rerun without redoing the
clips it had finished, and gives the same outputs.

The pipeline (`tasks/inference/backends.py`): a decoding thread reads every `stride`-th frame, letterboxes it
once (Ultralytics' own LetterBox, so the model sees what `predict` would feed it) and hands
uint8 batches to a bounded queue; the main thread keeps up to one batch per inference slot in
flight on the backend (OpenVINO on CPU, PyTorch elsewhere) and runs NMS on the finished batch
while the next computes. Memory is bounded by the queue, not by the clip's length.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from visem_pl.tasks.dataset.reader import Clip
from visem_pl.tasks.dataset.validate import ON_BAD_CLIP
from visem_pl.tasks.workspace import offline
from visem_pl.tasks.workspace.io import atomic_path, file_sha256
from visem_pl.tasks.workspace.progress import progress as report

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("clip", pa.string()),
        ("frame", pa.int32()),
        ("cls", pa.int8()),
        ("cx", pa.float32()),
        ("cy", pa.float32()),
        ("w", pa.float32()),
        ("h", pa.float32()),
        ("conf", pa.float32()),
    ]
)
META_KEY = b"visem_pl"


@dataclass(frozen=True)
class InferConfig:
    stride: int = 1  # every n-th frame of each clip
    imgsz: int = 640
    conf: float = 0.05  # below the lowest review band: nothing useful is dropped
    iou: float = 0.7
    batch: int | str = "auto"  # frames per forward pass; auto = measured (tuning.py)
    max_det: int = 300
    device: str = "auto"
    backend: str = "auto"  # auto = measured | openvino | torch | onnxruntime
    precision: str = "auto"  # auto = measured | f32 | bf16 | int8 | int8-bf16 (OpenVINO) | fp32 | fp16
    window_s: float = 0.0  # > 0: only each clip's first seconds (the motility window, set by `motility.window_s`)


# Recorded through the chosen configuration's label rather than among "params".
BACKEND_KEYS = ("backend", "precision", "batch")


def clip_output(out_dir: Path, clip: Clip) -> Path:
    return out_dir / f"{clip.name}.parquet"


def fingerprint(model_sha: str, cfg: InferConfig, clip: Clip, backend: str) -> dict:
    """What a finished clip's file records; `backend` is the chosen configuration's label (e.g.
    "openvino/2026.4.1/bf16/b8/throughput"), so that another backend, precision or batch size, or
    another OpenVINO release, redoes the clips. `clip_file` identifies the recording, so a clip of another
    dataset that has the same name is redone too."""
    from visem_pl.tasks.dataset.identity import file_id

    params = {k: v for k, v in asdict(cfg).items() if k not in BACKEND_KEYS}
    if not cfg.window_s:  # whole clips, recorded as before the window existed
        params.pop("window_s")
    return {"model_sha256": model_sha, "params": params, "backend": backend, "clip": clip.name,
            "clip_file": file_id(clip.path)}  # fmt: skip


def is_done(path: Path, expected: dict) -> bool:
    """True when `path` holds a finished result for exactly this model and these parameters."""
    if not path.exists():
        return False
    try:
        meta = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError):
        return False
    try:
        found = json.loads(meta.get(META_KEY, b"{}"))
    except json.JSONDecodeError:
        return False
    return {k: found.get(k) for k in expected} == expected


class ClipError(ValueError):
    """A clip that cannot be opened or stops decoding before its end: a problem of that clip alone."""


# Decoding may end this many frames before the count the container reports (an MP4's edit list or a
# dropped last frame) without the clip being cut off; a truncated download stops far earlier.
END_SLACK_FRAMES, END_SLACK_SHARE = 2, 0.01


def frames_at(path: Path, frames):
    """Yield (index, BGR frame) for the given frame indices of a video in order, decoding once up to the
    last one (the others are decoded but not converted); ValueError naming the frames past its end."""
    wanted = set(int(f) for f in frames)
    if wanted:
        for index, frame in iter_frames(Path(path), 1, only=wanted):
            wanted.discard(index)
            yield index, frame
        if wanted:
            raise ValueError(f"{path}:0: frames {sorted(wanted)[:5]} are past the clip's end")


def iter_frames(
    path: Path,
    stride: int,
    into: Callable[[], np.ndarray | None] | None = None,
    threads: int = 0,
    only: set[int] | None = None,
    window_s: float = 0.0,
):
    """Yield (frame index, BGR frame) for every `stride`-th frame, decoding sequentially.

    `into`: called before each frame is read, it may hand out an array the frame is decoded into
    (a slot of the batch being filled: no copy when batching). `threads`: FFmpeg's decoding threads;
    0 = its default (one per core). On a CPU run every core is already busy with the forward pass,
    and one thread decodes a frame for 0.80 ms of CPU time instead of 0.87-0.97 (frame threading's
    hand-offs; 2 cores, 640x480 MPEG-4). `only`: of those, just these indices, and decoding stops
    after the last one (a few chosen frames of a clip: grab() alone on the others costs 0.6 of read()).
    `window_s` > 0: only the frames of the clip's first `window_s` seconds (its container's frame rate).
    """
    cap = cv2.VideoCapture(str(path), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, threads] if threads else [])
    if not cap.isOpened():
        raise ClipError(f"{path}:0: cannot be opened as a video (truncated or not an mp4)")
    last = max(only) if only else None
    if window_s > 0:
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not fps > 0:
            cap.release()
            raise ClipError(f"{path}:0: its container states no frame rate, so a window of seconds has no frames")
        end = int(round(window_s * fps)) - 1
        last = end if last is None else min(last, end)
    try:
        reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        index = 0
        while last is None or index <= last:
            if index % stride == 0 and (only is None or index in only):
                ok, frame = cap.read(into()) if into is not None else cap.read()
                if not ok:
                    break
                yield index, frame
            elif not cap.grab():  # skipped frames are demuxed but never converted
                break
            index += 1
        else:
            return  # stopped after the last frame asked for: the clip's end is not this call's business
        if reported > 0 and index < reported - max(END_SLACK_FRAMES, END_SLACK_SHARE * reported):
            raise ClipError(f"{path}:0: decoding stopped at frame {index} of the {reported} its container reports")
    finally:
        cap.release()


def _table(clip: Clip, boxes: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> pa.Table:
    """One clip's boxes: (frame index, xywhn float32 [n,4], cls [n], conf [n]) per scored frame."""
    cols: dict[str, list] = {name: [] for name in SCHEMA.names}
    for index, xywhn, cls, conf in boxes:
        n = len(xywhn)
        cols["clip"] += [clip.name] * n
        cols["frame"] += [index] * n
        cols["cls"] += cls.astype(np.int8).tolist()
        for k, name in enumerate(("cx", "cy", "w", "h")):
            cols[name] += xywhn[:, k].tolist()
        cols["conf"] += conf.tolist()
    return pa.table(cols, schema=SCHEMA)


def trial_frames(clips: list[Clip], cfg: InferConfig, stride: int = 32) -> list[np.ndarray]:
    """The first frames of the first clip, letterboxed as inference sees them: what a trial times."""
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.checks import check_imgsz

    from visem_pl.tasks.inference.tuning import TRIAL_FRAMES

    lb = LetterBox(check_imgsz(cfg.imgsz, stride=stride, min_dim=2), auto=True, stride=stride)
    frames = []
    for clip in clips:
        try:
            for _, frame in iter_frames(clip.path, cfg.stride):
                frames.append(lb(image=frame))
                if len(frames) == TRIAL_FRAMES:
                    return frames
        except ClipError:  # a bad clip is the pass's to record (infer_clips); any readable frame times as well
            continue
    if not frames:
        raise ValueError("no frames to time inference on: every clip is empty or unreadable")
    return frames


def choose_backend(
    weights: Path | str,
    clips: list[Clip],
    cfg: InferConfig,
    cache_dir: Path | str | None = None,
    model_sha: str | None = None,
    int8_frames=None,
):
    """The configuration these clips are run with (a `tuning.Choice`): measured where `cfg` says auto.

    `int8_frames` (an `int8.Frames`): the round's calibration and validation frames; without them
    INT8 is not a candidate.
    """
    from visem_pl.tasks.inference import int8, tuning
    from visem_pl.tasks.workspace.paths import Workspace

    offline.quiet_ultralytics()
    cache_dir = Path(cache_dir) if cache_dir is not None else Workspace(Path.cwd()).exports_cache
    model_sha = model_sha or file_sha256(weights)
    check = None
    if int8_frames is not None:

        def check():
            return int8.check(weights, model_sha, cache_dir, int8_frames, cfg.imgsz)

    return tuning.choose(
        weights,
        cfg,
        lambda: trial_frames(clips, cfg),
        cache_dir,
        model_sha=model_sha,
        int8_check=check,
        int8_key=int8_frames.digest() if int8_frames is not None else "",
    )


def pending(
    weights: Path | str,
    clips: list[Clip],
    out_dir: Path | str,
    cfg: InferConfig,
    model_sha: str | None = None,
    choice=None,
    cache_dir: Path | str | None = None,
) -> list[Clip]:
    """The clips whose output is missing or was made by another model, configuration or parameters."""
    if not clips:
        return []
    model_sha = model_sha or file_sha256(weights)
    if choice is None:
        choice = choose_backend(weights, clips, cfg, cache_dir, model_sha)
    return [
        c for c in clips if not is_done(clip_output(Path(out_dir), c), fingerprint(model_sha, cfg, c, choice.label))
    ]


def infer_clips(
    weights: Path | str,
    clips: list[Clip],
    out_dir: Path | str,
    cfg: InferConfig,
    progress: bool = True,
    cache_dir: Path | str | None = None,
    choice=None,
    backend=None,
    on_bad_clip: str = "fail",
    description: str = "infer",
) -> dict:
    """Predictions for every clip into `out_dir/<clip>.parquet`; returns counts of done/skipped.

    `cache_dir` holds exported models and trial results (default `.cache/exports` under the
    working directory); `choice` (a `tuning.Choice`) is the configuration to run, measured here
    when not given; `backend`, that configuration already loaded (else it is loaded here).
    `on_bad_clip`: `skip` records a clip that cannot be opened or stops decoding partway in the
    result's `bad_clips` ({clip: reason}, present only then; no output for it) and goes on; `fail` raises ClipError.
    `progress` shows how far it got on stderr as `description` (tasks/workspace/progress.py).
    """
    if on_bad_clip not in ON_BAD_CLIP:
        raise ValueError(f"on_bad_clip must be one of {', '.join(ON_BAD_CLIP)}, not {on_bad_clip!r}")
    offline.quiet_ultralytics()
    from visem_pl.tasks.inference.backends import predict_sources

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A run killed mid-write leaves its hidden temporary file; it must not become an output. Only
    # these clips' own: other clips may be written right now by a parallel task (Prefect map).
    for clip in clips:
        for stale in out_dir.glob(f".{clip_output(out_dir, clip).name}.*.tmp"):
            stale.unlink(missing_ok=True)
    model_sha = file_sha256(weights)
    if choice is None and clips:
        choice = choose_backend(weights, clips, cfg, cache_dir, model_sha)
    todo = pending(weights, clips, out_dir, cfg, model_sha, choice)
    stats = {"clips": len(clips), "skipped": len(clips) - len(todo), "predicted": 0, "boxes": 0}
    if not todo:
        return stats
    if backend is None:
        backend = choice.load(weights, model_sha, cache_dir)
    cfg = replace(cfg, batch=choice.config.batch)  # the measured batch size, where it was auto
    threads = 1 if choice.config.device == "cpu" else 0  # see iter_frames
    sources = [
        (clip, (lambda into=None, c=clip: iter_frames(c.path, cfg.stride, into, threads, window_s=cfg.window_s)))
        for clip in todo
    ]
    with report(description, len(clips), completed=stats["skipped"], enabled=progress) as bar:
        skip_errors = (ClipError,) if on_bad_clip == "skip" else ()
        for clip, boxes in predict_sources(backend, sources, cfg, skip_errors=skip_errors):
            if isinstance(boxes, ClipError):
                # No output: an earlier one was another recording's (the fingerprint changed) or partial.
                clip_output(out_dir, clip).unlink(missing_ok=True)
                stats.setdefault("bad_clips", {})[clip.name] = str(boxes)  # present only then
                log.warning("%s: left out of the round (on_bad_clip: skip)", boxes)
                bar.advance()
                continue
            table = _table(clip, boxes)
            meta = {
                **fingerprint(model_sha, cfg, clip, backend.label),
                "boxes": table.num_rows,
                "frames_scored": len(boxes),
            }
            table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
            with atomic_path(clip_output(out_dir, clip)) as tmp:
                pq.write_table(table, tmp)
            stats["predicted"] += 1
            stats["boxes"] += table.num_rows
            bar.advance()
    return stats


def prediction_meta(path: Path) -> dict:
    """What a clip's prediction file records (fingerprint, params with the stride, frames_scored)."""
    meta = (pq.read_schema(path).metadata or {}).get(META_KEY)
    if meta is None:
        raise ValueError(f"{path}:0: no inference metadata (not written by `visem-pl infer`)")
    return json.loads(meta)


def scored_frames(path: Path) -> list[int]:
    """Frame indices a clip's prediction file covers (frames without boxes included)."""
    meta = prediction_meta(path)
    return list(range(0, meta["frames_scored"] * meta["params"]["stride"], meta["params"]["stride"]))


def prediction_files(out_dir: Path | str, clips: list[str] | None = None) -> list[Path]:
    """The clips' prediction files in `out_dir`, by name; `clips` (names): only theirs, the dataset's
    (a folder may still hold another dataset's files), else every file there."""
    out_dir = Path(out_dir)
    if clips is None:
        return sorted(out_dir.glob("*.parquet"))
    return [p for p in (out_dir / f"{name}.parquet" for name in sorted(clips)) if p.exists()]


def read_predictions(out_dir: Path | str, clips: list[str] | None = None) -> pd.DataFrame:  # noqa: F821
    """The clips' predictions (`prediction_files`) as one table (columns of SCHEMA)."""
    import pandas as pd

    files = prediction_files(out_dir, clips)
    if not files:
        return pd.DataFrame({name: pd.Series(dtype=t.to_pandas_dtype()) for name, t in zip(SCHEMA.names, SCHEMA.types)})
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
