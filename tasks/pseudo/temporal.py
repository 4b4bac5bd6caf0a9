"""The temporal rule of `filter`: a box's band also depends on the track it sits on.

A cell seen on many scored frames, confidently on some, is very likely a cell on each of them,
even where the detector was unsure; a confident box seen on one frame only is often flicker. With
the round's tracks (`track@N`), a track is long when it has at least `min_track_frames` detected
scored frames, and confirmed when it is long, at least `min_accepted` of its boxes are accept-band
boxes and the detector's mean confidence over them is at least `min_track_conf`; a long track that
is not confirmed, mostly one under that mean, is weak (a persistent object the detector is only half
sure of, frame after frame, is mostly something nobody labels: a defocused cell, debris):
- promoted: a review- or reject-band box on a confirmed track with conf >= `floor` is accepted, if
  its class is the track's (the class of most of the track's accepted boxes);
- demoted: an accepted box on no long track (isolated in time: flicker, or a cell seen once) goes
  to review;
- demoted_weak: an accepted box on a weak track goes to review;
- demoted_still: an accepted box on a still, unsure track goes to review. A long track is still when
  its head moves less than `still_speed_px` a video frame (median over its detected scored frames) and
  unsure when its mean confidence is under `still_track_conf`: what stays put is a cell, but also a
  speck of debris drifting with the preparation or dust on the optics, and what swims is nearly always
  a cell, so a still object must be seen more surely. Such a track is not confirmed either (nothing
  promoted or interpolated on it);
- interpolated: where a confirmed track missed a scored frame (a gap of up to `track.max_gap`),
  its interpolated box is accepted (conf NaN: no detector score);
- demoted_overlap: last, an accepted box that repeats a more confident accepted box of its frame
  (IoU above `overlap_iou`, any class: tasks/pseudo/overlap.py) goes to review. Not a matter of
  time, but decided and checked with the rest.
Every box keeps how its band was decided in `provenance` (confidence, promoted, demoted,
demoted_weak, demoted_still, interpolated, demoted_overlap) and its confidence-only band in `band_conf`.

Whether each action helps depends on the model and on the class: on the demo's round 0, isolated
sperm boxes are mostly right (demoting them costs more recall than it buys precision) and isolated
cluster boxes mostly wrong. So with `check` on, `filter` first runs the rule on the labelled
validation videos (inferred and tracked like the clips) and keeps an action, class by class, only
where it raises that class's F1 there without lowering its precision (`check_actions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from visem_pl.tasks.pseudo.bands import ACCEPT, REJECT, REVIEW

CONFIDENCE, PROMOTED, DEMOTED, INTERPOLATED = "confidence", "promoted", "demoted", "interpolated"
DEMOTED_WEAK, DEMOTED_OVERLAP, DEMOTED_STILL = "demoted_weak", "demoted_overlap", "demoted_still"


@dataclass(frozen=True)
class Temporal:
    enabled: bool = True
    min_track_frames: int = 3  # detected scored frames that make a track long
    min_accepted: int = 1  # a long track is confirmed with at least this many boxes confident enough alone
    min_track_conf: float = 0.0  # ... and their mean confidence at least this (0: any); under it: weak
    floor: float = 0.1  # review- or reject-band boxes on a confirmed track at or above it are accepted
    promote: bool = True  # low boxes on a confirmed track are accepted (down to `floor`)
    demote_isolated: bool = True  # accepted boxes on no long track go to review
    demote_weak: bool = True  # accepted boxes on a weak track go to review
    interpolate: bool = True  # a confirmed track's interpolated boxes become pseudo-labels
    demote_still: bool = True  # accepted boxes on a still track under `still_track_conf` go to review
    still_speed_px: float = 0.15  # still: the head moves less than this a video frame (median over the track)
    still_track_conf: float = 0.55  # ... and its mean confidence is under this: unsure (debris, dust, defocus)
    demote_overlap: bool = True  # accepted boxes repeating a more confident accepted one go to review
    overlap_iou: float = 0.3  # ... where they overlap it at IoU above this
    check: bool = True  # keep each action, per class, only where the labelled validation videos say it pays
    precision_margin: float = 0.05  # ... boxes it accepts at most this much less precise than confident ones
    evidence: float = 0.95  # ... decided where the frames are this sure (one-sided); else all classes', else off
    beta: float = 1.0  # ... paying means raising F-beta: < 1 weighs precision more (a wrong pseudo-label teaches)
    by_class: tuple = ()  # (class, action field, on) the check decided; the fields above for other classes

    def __post_init__(self):
        if not 0.5 <= float(self.evidence) < 1:
            raise ValueError(f"filter.temporal.evidence must be in [0.5, 1), got {self.evidence}")
        if not 0 < float(self.overlap_iou) < 1:
            raise ValueError(f"filter.temporal.overlap_iou must be in (0, 1), got {self.overlap_iou}")
        if not 0 < float(self.beta) <= 4:
            raise ValueError(f"filter.temporal.beta must be in (0, 4], got {self.beta}")
        if not float(self.still_speed_px) >= 0:
            raise ValueError(f"filter.temporal.still_speed_px must be >= 0, got {self.still_speed_px}")
        if not 0 <= float(self.still_track_conf) <= 1:
            raise ValueError(f"filter.temporal.still_track_conf must be in [0, 1], got {self.still_track_conf}")

    def on(self, field: str, cls: np.ndarray) -> np.ndarray:
        """Per box of class `cls`: is the action `field` (promote, demote_isolated, ...) on for it."""
        decided = {c: on for c, f, on in self.by_class if f == field}
        default = bool(getattr(self, field))
        if not decided:
            return np.full(len(cls), default)
        return pd.Series(cls).map(decided).fillna(default).to_numpy(bool)


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
    empty = pd.DataFrame({"clip": pd.Series(dtype=object), "track": pd.Series(dtype=np.int64)})
    confirmed, long, still, agrees = empty, empty, empty, np.zeros(len(pred), bool)
    detected = tracks[tracks["source"] == "detected"] if not tracks.empty else tracks
    if not detected.empty:
        on = pred[["clip", "box"]].merge(detected[["clip", "box", "track"]], on=["clip", "box"], how="left")
        pred["track"] = on["track"].fillna(-1).astype(np.int64).to_numpy()
        linked = pred[pred["track"] >= 0]
        per = linked.assign(accepted=linked["band"] == ACCEPT).groupby(["clip", "track"])
        counts = per.agg(length=("box", "size"), accepted=("accepted", "sum"), conf=("conf", "mean")).reset_index()
        counts = counts.merge(track_speeds(linked), on=["clip", "track"], how="left")
        is_long = counts["length"] >= cfg.min_track_frames
        ok = is_long & (counts["accepted"] >= cfg.min_accepted)
        ok &= counts["conf"].to_numpy(np.float32) >= np.float32(cfg.min_track_conf)
        unsure = counts["conf"].to_numpy(np.float32) < np.float32(cfg.still_track_conf)
        is_still = is_long & (counts["speed"] < cfg.still_speed_px) & unsure
        confirmed, long = counts[ok][["clip", "track"]], counts[is_long][["clip", "track"]]
        still = counts[is_still][["clip", "track"]]
        # A track is one object: its class is the one most of its accepted boxes have
        votes = linked[linked["band"] == ACCEPT].groupby(["clip", "track", "cls"]).size().rename("n").reset_index()
        votes = votes.sort_values(["n", "cls"], ascending=[False, True], kind="stable")
        track_cls = votes.drop_duplicates(["clip", "track"]).set_index(["clip", "track"])["cls"]
        same = pred[["clip", "track"]].merge(track_cls.reset_index(), on=["clip", "track"], how="left")["cls"]
        agrees = same.to_numpy() == pred["cls"].to_numpy()
    keys = pd.MultiIndex.from_frame(pred[["clip", "track"]])
    is_confirmed = keys.isin(pd.MultiIndex.from_frame(confirmed))
    is_long = keys.isin(pd.MultiIndex.from_frame(long))
    conf, cls = pred["conf"].to_numpy(np.float32), pred["cls"].to_numpy()
    weak_track = is_long & ~is_confirmed
    # A still, unsure track is not confirmed for the classes whose still demotion is on
    is_still = keys.isin(pd.MultiIndex.from_frame(still)) & cfg.on("demote_still", cls)
    is_confirmed &= ~is_still

    accepted = (pred["band"] == ACCEPT).to_numpy()
    promote = is_confirmed & agrees & pred["band"].isin([REVIEW, REJECT]).to_numpy() & (conf >= np.float32(cfg.floor))
    pred.loc[promote & cfg.on("promote", cls), ["band", "provenance"]] = [ACCEPT, PROMOTED]
    pred.loc[accepted & ~is_long & cfg.on("demote_isolated", cls), ["band", "provenance"]] = [REVIEW, DEMOTED]
    weak = accepted & weak_track
    pred.loc[weak & cfg.on("demote_weak", cls), ["band", "provenance"]] = [REVIEW, DEMOTED_WEAK]
    still_left = accepted & is_still & (pred["band"] == ACCEPT).to_numpy()  # weak demotion may have taken them
    pred.loc[still_left, ["band", "provenance"]] = [REVIEW, DEMOTED_STILL]
    if not tracks.empty:
        filled = tracks[tracks["source"] == "interpolated"]
        filled = filled.merge(confirmed, on=["clip", "track"])
        filled = filled[cfg.on("interpolate", filled["cls"].to_numpy())]
        held = pd.MultiIndex.from_frame(filled[["clip", "track"]]).isin(pd.MultiIndex.from_frame(still))
        filled = filled[~(held & cfg.on("demote_still", filled["cls"].to_numpy()))]
        if not filled.empty:
            added = filled[["clip", "frame", "cls", "cx", "cy", "w", "h", "conf", "track"]].assign(
                box=np.int64(-1), band=ACCEPT, band_conf=REJECT, provenance=INTERPOLATED
            )
            added = added.astype({c: pred[c].dtype for c in ("cls", "cx", "cy", "w", "h", "conf") if c in pred})
            pred = pd.concat([pred, added[pred.columns]], ignore_index=True)
    accepted = (pred["band"] == ACCEPT).to_numpy()
    if accepted.sum() > 1:
        from visem_pl.tasks.pseudo.overlap import repeated

        over = np.zeros(len(pred), bool)
        over[accepted] = repeated(pred[accepted], cfg.overlap_iou)
        over &= cfg.on("demote_overlap", pred["cls"].to_numpy())
        pred.loc[over, ["band", "provenance"]] = [REVIEW, DEMOTED_OVERLAP]
    return pred.sort_values(["clip", "frame", "box"], kind="stable").reset_index(drop=True)


ACTIONS = {
    PROMOTED: "promote",
    DEMOTED: "demote_isolated",
    DEMOTED_WEAK: "demote_weak",
    INTERPOLATED: "interpolate",
    DEMOTED_STILL: "demote_still",
    DEMOTED_OVERLAP: "demote_overlap",
}
DEMOTING = (DEMOTED, DEMOTED_WEAK, DEMOTED_STILL, DEMOTED_OVERLAP)


def track_speeds(linked: pd.DataFrame) -> pd.DataFrame:
    """Per track (clip, track): `speed`, the median distance its box centre moves a video frame between
    consecutive detected boxes, in pixels (NaN for a track of one box)."""
    from visem_pl.tasks.dataset.layout import IMAGE_HEIGHT, IMAGE_WIDTH

    rows = linked.sort_values(["clip", "track", "frame"], kind="stable")
    same = (rows["clip"].to_numpy()[1:] == rows["clip"].to_numpy()[:-1]) & (np.diff(rows["track"].to_numpy()) == 0)
    dx = np.diff(rows["cx"].to_numpy(np.float64)) * IMAGE_WIDTH
    dy = np.diff(rows["cy"].to_numpy(np.float64)) * IMAGE_HEIGHT
    gap = np.diff(rows["frame"].to_numpy(np.int64)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(same & (gap > 0), np.hypot(dx, dy) / gap, np.nan)
    steps = rows.iloc[1:][["clip", "track"]].assign(speed=step)
    out = steps.dropna().groupby(["clip", "track"], as_index=False)["speed"].median()
    if out.empty:  # the key columns' types still, for the caller's merge
        return pd.DataFrame({"clip": pd.Series(dtype=object), "track": pd.Series(dtype=np.int64), "speed": []})
    return out


def check_actions(boxes: pd.DataFrame, truth: pd.DataFrame, cfg: Temporal) -> tuple[Temporal, dict]:
    """Which actions of the rule pay on labelled frames, class by class: `boxes` is `apply_temporal`'s
    output (all actions on) for the scored frames of the labelled validation videos, `truth` their
    labelled boxes on those frames (clip, frame, class, cx, cy, w, h).

    Per class, P and F-beta of what confidence alone accepts (IoU >= 0.5, class-aware), and the
    precision p of the boxes each action moves. With TP right boxes of A accepted and T labelled,
    F = (1 + b^2) TP / (A + b^2 T); accepting a set of boxes raises it exactly when p > bar and demoting
    one exactly when p < bar, bar = F / (1 + b^2) = TP / (A + b^2 T) (F1 / 2 at b = 1; demoting then
    always raises precision: bar < P). So an accepting action (promote, interpolate) pays where
    p > bar and p >= P - `precision_margin`, a demoting one where p < bar. `beta` < 1 raises the bar:
    a wrong pseudo-label teaches a false cell while a demoted right one is only painted out, so a
    pseudo-labelling round may rather weigh precision. The frames decide only where they are
    conclusive: p's one-sided Clopper-Pearson bound at `evidence` lies beyond the bar (a handful of
    boxes proves nothing, a hundred at p = 0.52 against a bar of 0.45 neither). Where a class's own boxes are not
    conclusive, all classes' together decide (the rare classes rarely have enough labelled boxes),
    unless the class's own boxes lean the other way (classes differ: isolated sperm boxes are mostly
    right, isolated cluster boxes mostly wrong); otherwise the action is not used. An action off in
    params.yaml stays off.
    Returns the config to use (`by_class`) and what was measured: all classes at the top, each class
    under `classes`."""
    from dataclasses import replace

    from visem_pl.tasks.dataset.layout import CLASS_NAMES

    accepted = true_positives(boxes[boxes["band"] == ACCEPT], truth)
    by_conf = true_positives(boxes[boxes["band_conf"] == ACCEPT], truth)

    def measure(cls: int | None) -> dict:
        def mine(t: pd.DataFrame, col: str = "cls") -> pd.DataFrame:
            return t if cls is None else t[t[col] == cls]

        conf, n_truth = mine(by_conf), len(mine(truth, "class"))
        tp, b2 = int(conf["tp"].sum()), float(cfg.beta) ** 2
        base = tp / len(conf) if len(conf) else float("nan")
        f1 = 2 * tp / (len(conf) + n_truth) if len(conf) + n_truth else float("nan")
        out = {"confidence": {"boxes": int(len(conf)), "truth": n_truth, "precision": _round(base), "f1": _round(f1)}}
        bar_f = tp / (len(conf) + b2 * n_truth) if len(conf) + n_truth else float("nan")  # F1 / 2 at beta 1
        if b2 != 1.0:
            out["confidence"]["f_beta"] = _round((1 + b2) * bar_f)
        for provenance in ACTIONS:
            sel = mine(by_conf if provenance in DEMOTING else accepted)
            sel = sel[sel["provenance"] == provenance]
            right = int(sel["tp"].sum())
            entry = {"boxes": int(len(sel)), "precision": _round(right / len(sel) if len(sel) else float("nan"))}
            if len(sel) and not np.isnan(bar_f):
                low, high = _bounds(right, len(sel), cfg.evidence)
                bar = bar_f if provenance in DEMOTING else max(bar_f, base - cfg.precision_margin)
                if provenance in DEMOTING:  # pays below the bar
                    entry["leans"], sure_yes, sure_no = right / len(sel) < bar, high < bar, low > bar
                else:  # pays above it
                    entry["leans"], sure_yes, sure_no = right / len(sel) > bar, low > bar, high < bar
                if sure_yes or sure_no:
                    entry["pays"] = bool(sure_yes)
                entry["leans"] = bool(entry["leans"])
            out[provenance] = entry
        return out

    report = measure(None) | {"beta": float(cfg.beta)}
    for provenance, field in ACTIONS.items():
        entry = report[provenance]
        entry |= {"configured": getattr(cfg, field), "used": getattr(cfg, field) and entry.get("pays", False)}
    decided, report["classes"] = [], {}
    for k, name in enumerate(CLASS_NAMES):
        mine = measure(k)
        for provenance, field in ACTIONS.items():
            entry, pooled = mine[provenance], report[provenance]
            if "pays" in entry:
                entry["decided_by"], pays = "class", entry["pays"]
            elif pooled.get("pays") is not None and entry.get("leans", pooled["pays"]) == pooled["pays"]:
                entry["decided_by"], pays = "all classes", pooled["pays"]
            else:  # nothing sure, or the class's own boxes lean against what all classes say
                entry["decided_by"], pays = "inconclusive", False
            entry["used"] = bool(getattr(cfg, field) and pays)
            decided.append((k, field, entry["used"]))
        report["classes"][name] = mine
    return replace(cfg, by_class=tuple(decided)), report


def _bounds(right: int, n: int, level: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds of a precision of `right` out of `n` at `level`."""
    from scipy.stats import beta

    low = float(beta.ppf(1 - level, right, n - right + 1)) if right > 0 else 0.0
    high = float(beta.ppf(level, right + 1, n - right)) if right < n else 1.0
    return low, high


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
