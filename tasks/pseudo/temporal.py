"""The temporal rule of `filter`: a box's band also depends on the track it sits on.

A cell seen on many scored frames, confidently on some, is very likely a cell on each of them,
even where the detector was unsure; a confident box seen on one frame only is often flicker. With
the round's tracks (`track@N`), a track is confirmed when it has at least `min_track_frames`
detected scored frames, at least `min_accepted` of them accept-band boxes:
- promoted: a review- or reject-band box on a confirmed track with conf >= `floor` is accepted;
- demoted: an accepted box on no confirmed track goes to review;
- interpolated: where a confirmed track missed a scored frame (a gap of up to `track.max_gap`),
  its interpolated box is accepted (conf NaN: no detector score).
Every box keeps how its band was decided in `provenance` (confidence, promoted, demoted,
interpolated) and its confidence-only band in `band_conf`.
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
    floor: float = 0.1  # review- or reject-band boxes on a confirmed track at or above it are accepted
    demote_isolated: bool = True  # accepted boxes on no confirmed track go to review
    interpolate: bool = True  # a confirmed track's interpolated boxes become pseudo-labels


def read_tracks(tracks_dir: Path | str, clips: list[str]) -> pd.DataFrame:
    """Every clip's tracks (columns of tasks.tracking.link plus clip); a missing file is an error."""
    frames = []
    for clip in clips:
        path = Path(tracks_dir) / f"{clip}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no tracks for clip {clip} (run `visem-pl track` first, or set "
                                    "filter.temporal.enabled: false)")  # fmt: skip
        frames.append(pd.read_parquet(path).assign(clip=clip))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def apply_temporal(pred: pd.DataFrame, tracks: pd.DataFrame, cfg: Temporal) -> pd.DataFrame:
    """`pred` (clip, box, frame, cls, cx..h, conf, band) with the rule applied; adds band_conf,
    provenance, track (-1: on none) and the interpolated rows (box -1)."""
    pred = pred.assign(band_conf=pred["band"], provenance=CONFIDENCE, track=np.int64(-1))
    confirmed = pd.DataFrame({"clip": pd.Series(dtype=object), "track": pd.Series(dtype=np.int64)})
    detected = tracks[tracks["source"] == "detected"] if not tracks.empty else tracks
    if not detected.empty:
        on = pred[["clip", "box"]].merge(detected[["clip", "box", "track"]], on=["clip", "box"], how="left")
        pred["track"] = on["track"].fillna(-1).astype(np.int64).to_numpy()
        linked = pred[pred["track"] >= 0]
        per = linked.assign(accepted=linked["band"] == ACCEPT).groupby(["clip", "track"])
        counts = per.agg(length=("box", "size"), accepted=("accepted", "sum")).reset_index()
        ok = (counts["length"] >= cfg.min_track_frames) & (counts["accepted"] >= cfg.min_accepted)
        confirmed = counts[ok][["clip", "track"]]
    is_confirmed = pd.MultiIndex.from_frame(pred[["clip", "track"]]).isin(
        pd.MultiIndex.from_frame(confirmed[["clip", "track"]])
    )

    conf = pred["conf"].to_numpy(np.float32)
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
