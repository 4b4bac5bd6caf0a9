"""The temporal rule of `filter`: a box's band also depends on the track it sits on.

A cell seen on many scored frames, confidently on some, is very likely a cell on each of them,
even where the detector was unsure; a confident box seen on one frame only is often flicker. With
the round's tracks (`track@N`), a track is confirmed when it has at least `min_track_frames`
detected scored frames, at least `min_accepted` of them accept-band boxes, and a mean detector
confidence over them of at least `min_track_conf` (a persistent object the detector is only half
sure of, frame after frame, is mostly something nobody labels: a defocused cell, debris):
- promoted: a review- or reject-band box on a confirmed track with conf >= `floor` is accepted;
- demoted: an accepted box on no confirmed track (isolated, or on a weak one) goes to review;
- interpolated: where a confirmed track missed a scored frame (a gap of up to `track.max_gap`),
  its interpolated box is accepted (conf NaN: no detector score).
Every box keeps how its band was decided in `provenance` (confidence, promoted, demoted,
interpolated) and its confidence-only band in `band_conf`.

Whether each action helps depends on the model: on the demo's weak round 0, promoted boxes are as
precise as confident ones, on a strong round 0 they are mostly defocused cells nobody labels. So
with `check` on, `filter` first runs the rule on the labelled validation videos (inferred and
tracked like the clips) and keeps an action only where it pays there (`check_actions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from visem_pl.tasks.pseudo.bands import ACCEPT, REJECT, REVIEW

CONFIDENCE, PROMOTED, DEMOTED, INTERPOLATED = "confidence", "promoted", "demoted", "interpolated"


@dataclass(frozen=True)
class Temporal:
    enabled: bool = True
    min_track_frames: int = 3  # detected scored frames that confirm a track
    min_accepted: int = 1  # ... of which at least this many confident enough to be accepted alone
    min_track_conf: float = 0.0  # ... and their mean confidence at least this (0: any)
    floor: float = 0.1  # review- or reject-band boxes on a confirmed track at or above it are accepted
    promote: bool = True  # low boxes on a confirmed track are accepted (down to `floor`)
    demote_isolated: bool = True  # accepted boxes on no confirmed track go to review
    interpolate: bool = True  # a confirmed track's interpolated boxes become pseudo-labels
    check: bool = True  # keep each action only where the labelled validation videos say it pays
    precision_margin: float = 0.05  # ... boxes it accepts at most this much less precise than confident ones
    min_boxes: int = 20  # fewer validation boxes than this for an action: it stays as configured


def tracks_file(tracks_dir: Path | str, clip: str) -> Path:
    """A clip's tracks file; a missing one is an error."""
    path = Path(tracks_dir) / f"{clip}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no tracks for clip {clip} (run `visem-pl track` first, or set "
                                "filter.temporal.enabled: false)")  # fmt: skip
    return path


def read_tracks(tracks_dir: Path | str, clips: list[str]) -> pd.DataFrame:
    """Every clip's tracks (columns of tasks.tracking.link plus clip); a missing file is an error."""
    frames = [pd.read_parquet(tracks_file(tracks_dir, clip)).assign(clip=clip) for clip in clips]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def apply_temporal(pred: pd.DataFrame, tracks: pd.DataFrame, cfg: Temporal) -> pd.DataFrame:
    """`pred` (clip, box, frame, cls, cx..h, conf, band) with the rule applied; adds band_conf,
    provenance, track (-1: on none) and the interpolated rows (box -1). `frame` is int64 (the tracks'),
    whether or not a clip has interpolated rows: `filter` writes clip by clip, each in the same types."""
    pred = pred.assign(
        frame=pred["frame"].astype(np.int64), band_conf=pred["band"], provenance=CONFIDENCE, track=np.int64(-1)
    )
    confirmed = pd.DataFrame({"clip": pd.Series(dtype=object), "track": pd.Series(dtype=np.int64)})
    detected = tracks[tracks["source"] == "detected"] if not tracks.empty else tracks
    if not detected.empty:
        on = pred[["clip", "box"]].merge(detected[["clip", "box", "track"]], on=["clip", "box"], how="left")
        pred["track"] = on["track"].fillna(-1).astype(np.int64).to_numpy()
        linked = pred[pred["track"] >= 0]
        per = linked.assign(accepted=linked["band"] == ACCEPT).groupby(["clip", "track"])
        counts = per.agg(length=("box", "size"), accepted=("accepted", "sum"), conf=("conf", "mean")).reset_index()
        ok = (counts["length"] >= cfg.min_track_frames) & (counts["accepted"] >= cfg.min_accepted)
        ok &= counts["conf"].to_numpy(np.float32) >= np.float32(cfg.min_track_conf)
        confirmed = counts[ok][["clip", "track"]]
    is_confirmed = pd.MultiIndex.from_frame(pred[["clip", "track"]]).isin(
        pd.MultiIndex.from_frame(confirmed[["clip", "track"]])
    )

    conf = pred["conf"].to_numpy(np.float32)
    if cfg.promote:
        promote = is_confirmed & pred["band"].isin([REVIEW, REJECT]).to_numpy() & (conf >= np.float32(cfg.floor))
        pred.loc[promote, ["band", "provenance"]] = [ACCEPT, PROMOTED]
    if cfg.demote_isolated:
        demote = ~is_confirmed & (pred["band"] == ACCEPT).to_numpy()
        pred.loc[demote, ["band", "provenance"]] = [REVIEW, DEMOTED]
    if cfg.interpolate and not tracks.empty:
        filled = tracks[tracks["source"] == "interpolated"]
        filled = filled.merge(confirmed, on=["clip", "track"])
        if not filled.empty:
            added = filled[["clip", "frame", "cls", "cx", "cy", "w", "h", "conf", "track"]].assign(
                box=np.int64(-1), band=ACCEPT, band_conf=REJECT, provenance=INTERPOLATED
            )
            added = added.astype({c: pred[c].dtype for c in ("cls", "cx", "cy", "w", "h", "conf") if c in pred})
            pred = pd.concat([pred, added[pred.columns]], ignore_index=True)
    return pred.sort_values(["clip", "frame", "box"], kind="stable").reset_index(drop=True)


ACTIONS = {PROMOTED: "promote", DEMOTED: "demote_isolated", INTERPOLATED: "interpolate"}


def check_actions(boxes: pd.DataFrame, truth: pd.DataFrame, cfg: Temporal) -> tuple[Temporal, dict]:
    """Which actions of the rule pay on labelled frames: `boxes` is `apply_temporal`'s output (all
    actions on) for the scored frames of the labelled validation videos, `truth` their labelled boxes
    (clip, frame, class, cx, cy, w, h). The precision (IoU >= 0.5, class-aware) of the boxes each
    action accepts is compared with that of the boxes confidence alone accepts: promoting and
    interpolating stay on when at most `precision_margin` below it; demoting stays on when the boxes
    it demotes are less precise than it. Returns the config to use and what was measured."""
    from dataclasses import replace

    accepted = true_positives(boxes[boxes["band"] == ACCEPT], truth)
    by_conf = true_positives(boxes[boxes["band_conf"] == ACCEPT], truth)
    base = by_conf["tp"].mean() if len(by_conf) else float("nan")
    report = {"confidence": {"boxes": int(len(by_conf)), "precision": _round(base)}}
    changes = {}
    for provenance, field in ACTIONS.items():
        sel = by_conf if provenance == DEMOTED else accepted
        sel = sel[sel["provenance"] == provenance]
        precision = sel["tp"].mean() if len(sel) else float("nan")
        entry = {"boxes": int(len(sel)), "precision": _round(precision), "configured": getattr(cfg, field)}
        if getattr(cfg, field) and len(sel) >= cfg.min_boxes and not np.isnan(base):
            pays = precision < base if provenance == DEMOTED else precision >= base - cfg.precision_margin
            changes[field] = bool(pays)
        entry["used"] = changes.get(field, getattr(cfg, field))
        report[provenance] = entry
    return replace(cfg, **changes), report


def _round(v: float):
    return None if v is None or np.isnan(v) else round(float(v), 4)


def true_positives(boxes: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """`boxes` with `tp`: matched to a labelled box of its frame (IoU >= 0.5, same class, most
    confident first; interpolated boxes, which have no score, last); rows by (clip, frame). All frames
    in one pass (`metrics.match_groups`)."""
    from visem_pl.tasks.dataset.layout import IMAGE_HEIGHT, IMAGE_WIDTH
    from visem_pl.tasks.training.metrics import match_groups, xywhn_to_xyxy

    if boxes.empty:
        return boxes.assign(tp=pd.Series(dtype=bool))
    boxes = boxes.sort_values(["clip", "frame"], kind="stable").reset_index(drop=True)
    codes, _ = pd.factorize(pd.concat([boxes["clip"], truth["clip"]], ignore_index=True).astype(str))
    span = int(max(boxes["frame"].max(), truth["frame"].max() if len(truth) else 0)) + 1
    key = codes.astype(np.int64) * span
    cols = ["cx", "cy", "w", "h"]
    tp = match_groups(
        key[: len(boxes)] + boxes["frame"].to_numpy(np.int64),
        xywhn_to_xyxy(boxes[cols].to_numpy(), IMAGE_WIDTH, IMAGE_HEIGHT),
        boxes["cls"].to_numpy(),
        boxes["conf"].fillna(0.0).to_numpy(),
        key[len(boxes) :] + truth["frame"].to_numpy(np.int64),
        xywhn_to_xyxy(truth[cols].to_numpy(), IMAGE_WIDTH, IMAGE_HEIGHT),
        truth["class"].to_numpy(),
    )
    return boxes.assign(tp=tp)
