"""Link one clip's boxes into tracks.

Input: a clip's boxes on its scored frames (every `stride`-th frame), columns frame, cls, cx, cy,
w, h, conf (normalised xywh, as `tasks/inference` writes them). Output: the same rows that joined a
track plus `track` (an int, unique within the clip) and `source` ("detected"), and, with
`fill_gaps`, "interpolated" rows on scored frames a track missed.

Methods (all kept libraries; `visem-pl bench track` compares them on the synthetic truth):
- trackpy: Crocker-Grier linking of box centres in pixels, with memory and, optionally, the
  nearest-velocity predictor. Centres, not overlap: a 23 px head moving 12 px between scored frames
  overlaps itself at IoU 0.3, and IoU association starts losing it.
- bytetrack: Ultralytics' BYTETracker (already a dependency), fed Ultralytics `Boxes`.
- sort, ocsort: Roboflow `trackers` (IoU association with a Kalman filter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

METHODS = ("trackpy", "bytetrack", "sort", "ocsort")
AUTO = "auto"  # the method with the best IDF1 on the round's labelled validation videos (tracking/stages.py)
COLUMNS = ["frame", "track", "cls", "cx", "cy", "w", "h", "conf", "source"]
# Carried through when the input has it: the box's row in its prediction file (-1: interpolated).
BOX_ID = "box"


@dataclass(frozen=True)
class TrackConfig:
    method: str = "trackpy"  # or auto: chosen per round on the labelled validation videos
    min_conf: float = 0.1  # boxes below are not linked: below the lowest review band, mostly noise
    max_speed_px: float = 6.0  # per video frame; the search radius is this x stride (trackpy)
    memory: int = 10  # scored frames a track may miss and still go on
    predictor: bool = False  # trackpy: search around the position the track's velocity predicts
    min_length: int = 3  # scored frames a track needs to be kept
    max_gap: int = 2  # fill_gaps: missed scored frames interpolated inside a track
    high_conf: float = 0.25  # bytetrack, ocsort: boxes that start tracks and are matched first
    # Processes the track stage links and scores clips in (0: one per core; 1: in this process). How the
    # work is run, not what it makes: left out of every fingerprint (`settings`), the outputs are the same.
    workers: int = 0

    def __post_init__(self):
        if self.method not in (*METHODS, AUTO):
            raise ValueError(f"track.method {self.method!r} is not one of {', '.join((*METHODS, AUTO))}")
        if self.workers < 0:
            raise ValueError(f"track.workers must be >= 0 (0: one per core), got {self.workers}")


def settings(cfg: TrackConfig) -> dict:
    """The settings that decide the tracks (what files and caches are keyed on): all but `workers`."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(cfg).items() if k != "workers"}


def empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "frame": pd.Series(dtype="int64"),
            "track": pd.Series(dtype="int64"),
            "cls": pd.Series(dtype="int64"),
            **{c: pd.Series(dtype="float64") for c in ("cx", "cy", "w", "h", "conf")},
            "source": pd.Series(dtype="str"),
        }
    )


def link(boxes: pd.DataFrame, width: int, height: int, stride: int, cfg: TrackConfig) -> pd.DataFrame:
    """Tracks of one clip (see the module docstring); boxes on no kept track are dropped."""
    if cfg.method not in METHODS:
        what = "must be resolved first (stages.resolve_track_config)" if cfg.method == AUTO else "is not one of"
        raise ValueError(f"tracking method {cfg.method!r} {what} {', '.join(METHODS)}")
    bad = boxes[["cx", "cy", "w", "h", "conf"]].isna().any(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} boxes with NaN coordinates or confidence (first at frame "
                         f"{int(boxes.loc[bad, 'frame'].iloc[0])})")  # fmt: skip
    boxes = boxes[boxes["conf"] >= cfg.min_conf].reset_index(drop=True)
    if boxes.empty:
        return empty()
    if boxes["frame"].mod(stride).ne(0).any():
        raise ValueError(f"boxes on frames that are not multiples of the stride {stride}")
    linked = {"trackpy": _trackpy, "bytetrack": _bytetrack, "sort": _roboflow, "ocsort": _roboflow}[cfg.method](
        boxes, width, height, stride, cfg
    )
    linked = linked[linked["track"] >= 0]
    length = linked.groupby("track")["frame"].transform("size")
    linked = linked[length >= cfg.min_length].copy()
    linked["track"] = pd.factorize(linked["track"], sort=True)[0].astype("int64")
    linked["source"] = "detected"
    cols = COLUMNS + ([BOX_ID] if BOX_ID in linked else [])
    return linked[cols].sort_values(["track", "frame"]).reset_index(drop=True)


def _trackpy(boxes: pd.DataFrame, width: int, height: int, stride: int, cfg: TrackConfig) -> pd.DataFrame:
    import trackpy as tp

    tp.quiet()
    f = boxes.copy()
    f["x"], f["y"] = f["cx"] * width, f["cy"] * height
    f["t"] = f["frame"] // stride  # consecutive scored frames: trackpy's memory counts these
    linker = tp.predict.NearestVelocityPredict() if cfg.predictor else None
    kwargs = dict(pos_columns=["x", "y"], t_column="t", memory=cfg.memory, link_strategy=_subnet_assignment)
    search = cfg.max_speed_px * stride
    out = (linker.link_df if linker else tp.link_df)(f, search, **kwargs)
    return out.rename(columns={"particle": "track"}).drop(columns=["x", "y", "t"])


def _subnet_assignment(source_set, dest_set, search_range, **_):
    """trackpy's subnet step (`link_strategy`), solved as a linear assignment (scipy) instead of by search.

    The same optimum as trackpy's own recursive linker (least summed squared displacement, a source left
    unlinked costing `search_range` squared), found in polynomial time: the recursive search is exponential in
    a subnet's size, and a weak model's dense low-confidence boxes made one tiny clip's `track` run for
    over ten minutes (and a subnet of over 30 points raises SubnetOversizeException there).
    """
    from scipy.optimize import linear_sum_assignment

    sources = sorted(source_set, key=lambda p: p.uuid)  # sets: a fixed order keeps ties deterministic
    dests = sorted(dest_set, key=lambda p: p.uuid)
    col = {d: j for j, d in enumerate(dests)}
    n_s, n_d = len(sources), len(dests)
    cost = np.full((n_s, n_d + n_s), np.inf)
    cost[np.arange(n_s), n_d + np.arange(n_s)] = float(search_range) ** 2  # each source's own "no link"
    for i, s in enumerate(sources):
        for d, dist in s.forward_cands:
            if d is not None and d in col:
                cost[i, col[d]] = dist**2
    rows, cols = linear_sum_assignment(cost)
    spl, dpl, taken = [], [], set()
    for i, j in zip(rows, cols):
        spl.append(sources[i])
        dpl.append(dests[j] if j < n_d else None)
        taken.add(j)
    for j, d in enumerate(dests):
        if j not in taken:  # no source claimed it: a new track starts there
            spl.append(None)
            dpl.append(d)
    return spl, dpl


def _boxes_xyxy(g: pd.DataFrame, width: int, height: int) -> np.ndarray:
    cx, cy = g["cx"].to_numpy() * width, g["cy"].to_numpy() * height
    w, h = g["w"].to_numpy() * width, g["h"].to_numpy() * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(np.float32)


def _bytetrack(boxes: pd.DataFrame, width: int, height: int, stride: int, cfg: TrackConfig) -> pd.DataFrame:
    from types import SimpleNamespace

    from visem_pl.tasks.workspace import offline

    offline.quiet_ultralytics()  # before Ultralytics is imported: no online check, no settings file
    from ultralytics.engine.results import Boxes
    from ultralytics.trackers.byte_tracker import BYTETracker

    args = SimpleNamespace(
        track_high_thresh=cfg.high_conf,
        track_low_thresh=cfg.min_conf,
        new_track_thresh=cfg.high_conf,
        track_buffer=cfg.memory,
        match_thresh=0.8,
        fuse_score=True,
    )
    tracker = BYTETracker(args)
    track = np.full(len(boxes), -1, np.int64)
    data = np.concatenate([_boxes_xyxy(boxes, width, height), boxes[["conf", "cls"]].to_numpy(np.float32)], 1)
    for rows in _by_frame(boxes):
        out = tracker.update(Boxes(data[rows], orig_shape=(height, width)))
        if len(out):
            track[rows[out[:, -1].astype(int)]] = out[:, 4].astype(np.int64)
    return boxes.assign(track=track)


def _by_frame(boxes: pd.DataFrame) -> list[np.ndarray]:
    """The rows (positions; `boxes` has a RangeIndex) of each frame, frames ascending, each frame's rows in
    their order: what groupby("frame") gives, without a DataFrame per frame."""
    order = np.argsort(boxes["frame"].to_numpy(), kind="stable")
    frame = boxes["frame"].to_numpy()[order]
    return np.split(order, np.flatnonzero(frame[1:] != frame[:-1]) + 1) if len(order) else []


def _roboflow(boxes: pd.DataFrame, width: int, height: int, stride: int, cfg: TrackConfig) -> pd.DataFrame:
    import supervision as sv
    import trackers

    if cfg.method == "sort":
        tracker = trackers.SORTTracker(lost_track_buffer=cfg.memory, track_activation_threshold=cfg.min_conf)
    else:
        tracker = trackers.OCSORTTracker(lost_track_buffer=cfg.memory, high_conf_det_threshold=cfg.high_conf)
    track = np.full(len(boxes), -1, np.int64)
    xyxy, conf, cls = (
        _boxes_xyxy(boxes, width, height),
        boxes["conf"].to_numpy(np.float32),
        boxes["cls"].to_numpy(np.int64),
    )
    for rows in _by_frame(boxes):
        det = sv.Detections(xyxy=xyxy[rows], confidence=conf[rows], class_id=cls[rows], data={"row": rows})
        out = tracker.update(det)
        if len(out):
            track[out.data["row"]] = out.tracker_id
    return boxes.assign(track=track)


def fill_gaps(tracks: pd.DataFrame, stride: int, max_gap: int) -> pd.DataFrame:
    """Interpolated boxes (source "interpolated", conf NaN: no detector score) on the scored frames a
    track missed, where the gap is at most `max_gap` scored frames. All gaps of all tracks at once."""
    if tracks.empty or max_gap <= 0:
        return tracks
    order = np.argsort(tracks["track"].to_numpy(), kind="stable")  # each track's rows in their order
    track, frame = tracks["track"].to_numpy()[order], tracks["frame"].to_numpy()[order]
    step = np.diff(frame)
    gap = np.flatnonzero((track[1:] == track[:-1]) & (step > stride) & (step <= stride * (max_gap + 1)))
    if not len(gap):
        return tracks
    count = (step[gap] - 1) // stride  # scored frames missed between row k and row k + 1
    k = np.repeat(gap, count)
    j = np.arange(len(k)) - np.repeat(np.cumsum(count) - count, count) + 1
    a, b = order[k], order[k + 1]  # the rows before and after each missed frame
    fa, fb = frame[k], frame[k + 1]
    missed = fa + j * stride
    t = (missed - fa) / (fb - fa)
    rows = {"frame": missed, "track": track[k], "cls": tracks["cls"].to_numpy()[a]}
    for c in ("cx", "cy", "w", "h"):
        v = tracks[c].to_numpy()
        rows[c] = v[a] + t * (v[b] - v[a])  # b - a in the column's own precision, as row by row
    rows.update(conf=np.nan, source="interpolated", **({BOX_ID: -1} if BOX_ID in tracks else {}))
    out = pd.concat([tracks, pd.DataFrame(rows)], ignore_index=True)
    ints = {c: "int64" for c in ("frame", "track", "cls", BOX_ID) if c in out}
    return out.astype(ints).sort_values(["track", "frame"]).reset_index(drop=True)
