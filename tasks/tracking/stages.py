"""The DVC stages track@N and motility@N, each one function of a workspace and a round."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from visem_pl.tasks.tracking.link import TrackConfig
from visem_pl.tasks.workspace.io import atomic_path, write_json
from visem_pl.tasks.workspace.paths import Workspace

log = logging.getLogger(__name__)


def track_config(ws: Workspace) -> TrackConfig:
    return ws.section("track", TrackConfig)


def track_stage(ws: Workspace, n: int) -> dict:
    """Link every clip's predictions of round n into tracks (data/rounds/round-N/tracks/, resumable);
    where the dataset has truth, score them, and the tracker alone on the truth boxes (track.json)."""
    from visem_pl.tasks.tracking.clips import track_clip

    cfg = track_config(ws)
    paths = ws.round(n)
    clips = ws.clips()
    done = []
    for i, clip in enumerate(clips, 1):
        done.append(track_clip(clip, paths.predictions, paths.tracks, cfg))
        log.info("tracked %d/%d clips (%s)", i, len(clips), clip.name)
    stats = {
        "clips": len(clips),
        "skipped": sum(d["skipped"] for d in done),
        "method": cfg.method,
        **tracking_scores(ws, n, cfg),
    }
    write_json(paths.metrics / "track.json", stats)
    return stats


def round_tracks(ws: Workspace, n: int) -> dict:
    """{clip: (tracks, what its file records)} for every track file of round n, read once."""
    from visem_pl.tasks.tracking.clips import read_tracks

    return {path.stem: read_tracks(path) for path in sorted(ws.round(n).tracks.glob("*.parquet"))}


def truth_box_tracks(ws: Workspace, cfg: TrackConfig, tracks: dict) -> dict:
    """{clip: (truth, tracks of the tracker fed the truth boxes at the clip's stride)} for the clips of
    `tracks` (`round_tracks`); {} where the dataset has no truth (real data)."""
    from visem_pl.tasks.dataset.truth import truth_for
    from visem_pl.tasks.tracking.link import link
    from visem_pl.tasks.tracking.score import truth_boxes

    truth = truth_for(ws.data_root())
    if truth is None:
        return {}
    out = {}
    for clip, (_, meta) in tracks.items():
        t = truth.clip(clip)
        out[clip] = (t, link(truth_boxes(t, meta["stride"]), meta["width"], meta["height"], meta["stride"], cfg))
    return out


def tracking_scores(ws: Workspace, n: int, cfg: TrackConfig) -> dict:
    """{stride, tracking, tracking_truth_boxes}: HOTA/MOTA/IDF1 of the round's tracks and of the tracker
    fed the truth boxes at the same stride; {} where the dataset has no truth (real data)."""
    from visem_pl.tasks.tracking.score import score

    tracks = round_tracks(ws, n)
    alone = truth_box_tracks(ws, cfg, tracks)
    if not alone:
        return {}
    stride = next(iter(tracks.values()))[1]["stride"]
    return {
        "stride": stride,
        # interpolated boxes too: they are the tracker's output
        "tracking": score([(t, tracks[clip][0]) for clip, (t, _) in alone.items()], stride),
        "tracking_truth_boxes": score(list(alone.values()), stride),
    }


def motility_config(ws: Workspace):
    from visem_pl.tasks.tracking.motility import MotilityConfig

    return ws.section("motility", MotilityConfig)


def _clip_shares(tracks, meta: dict, cfg) -> tuple:
    from visem_pl.tasks.tracking.motility import shares, track_kinematics

    per = track_kinematics(tracks, meta["width"], meta["height"], meta["fps"], meta["stride"], cfg)
    return per, shares(per)


def _pooled(per_tracks) -> dict:
    from visem_pl.tasks.tracking.motility import shares

    return shares(pd.concat(per_tracks, ignore_index=True)) if per_tracks else shares(pd.DataFrame({"class": []}))


def _mae(ours: list[dict], truth: list[dict]) -> dict:
    """Mean absolute error in percentage points per class over the pairs where both have a value."""
    out = {}
    for k in ("pr", "np", "im"):
        errs = [abs(a[k] - b[k]) for a, b in zip(ours, truth) if a.get(k) is not None and b.get(k) is not None]
        out[k] = round(float(np.mean(errs)), 2) if errs else None
    out["n"] = len([1 for a, b in zip(ours, truth) if a.get("pr") is not None and b.get("pr") is not None])
    return out


def motility_stage(ws: Workspace, n: int) -> dict:
    """CASA kinematics of every track of round n (data/rounds/round-N/motility.csv) and the PR / NP / IM
    shares per clip and per participant; compared with the simulated cells (synthetic truth), with the
    tracker fed the truth boxes, and with the lab's values (the semen analysis CSV) where they exist.
    Writes metrics/rounds/round-N/motility.json."""
    import json

    from visem_pl.tasks.dataset.clinical import motility as lab_motility
    from visem_pl.tasks.dataset.reader import locate
    from visem_pl.tasks.tracking.motility import CLASSES

    cfg = motility_config(ws)
    paths = ws.round(n)
    clips = {c.name: c for c in ws.clips()}
    round_files = round_tracks(ws, n)
    if not round_files:
        raise FileNotFoundError(f"{paths.tracks}: no tracks (run `visem-pl track --round {n}` first)")
    per_clip, per_tracks, by_participant = [], [], {}
    for clip, (tracks, meta) in round_files.items():
        if clip not in clips:
            raise ValueError(f"{paths.tracks / clip}.parquet: clip {clip} is not in the dataset {ws.data_root()}")
        per, share = _clip_shares(tracks, meta, cfg)
        participant = clips[clip].video_id
        detected = int((tracks["source"] == "detected").sum())
        per_clip.append({"clip": clip, "participant": participant, **share,
                         "cells_per_frame": round(detected / max(1, meta["frames_scored"]), 2)})  # fmt: skip
        per_tracks.append(per.assign(clip=clip, participant=participant))
        by_participant.setdefault(participant, []).append(per)
    participants = [{"participant": p, "clips": len(v), **_pooled(v)} for p, v in sorted(by_participant.items())]
    table = pd.concat(per_tracks, ignore_index=True)
    with atomic_path(paths.data / "motility.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.4g")

    result = {"um_per_px": cfg.um_per_px, "frame_step": cfg.frame_step, "clips": per_clip,
              "participants": participants}  # fmt: skip
    track_json = paths.metrics / "track.json"
    if track_json.exists():
        scores = json.loads(track_json.read_text())
        for key in ("tracking", "tracking_truth_boxes"):
            if key in scores:
                result[key] = {k: scores[key][k] for k in ("hota", "mota", "idf1")}
    # The simulated cells' own classes per clip (synthetic truth), and the tracker fed the truth boxes.
    alone = truth_box_tracks(ws, track_config(ws), round_files)
    if alone:
        truth_shares, boxes_shares = [], []
        for row in per_clip:
            (t, tr), meta = alone[row["clip"]], round_files[row["clip"]][1]
            cells = t.groupby("track_id")["motility"].first()
            truth_shares.append({k: 100.0 * float((cells == c).mean()) for k, c in zip(("pr", "np", "im"), CLASSES)})
            boxes_shares.append(_clip_shares(tr, meta, cfg)[1])
        result["mae_pp"] = _mae(per_clip, truth_shares)
        result["mae_pp_truth_boxes"] = _mae(boxes_shares, truth_shares)
    try:
        lab = lab_motility(locate(ws.data_root())).set_index("ID")
    except FileNotFoundError:
        lab = None
    if lab is not None:
        names = {"pr": "progressive", "np": "non_progressive", "im": "immotile"}
        labs = [{k: (float(lab.at[p["participant"], v]) if p["participant"] in lab.index else None)
                 for k, v in names.items()} for p in participants]  # fmt: skip
        labs = [{k: (None if v is None or np.isnan(v) else v) for k, v in row.items()} for row in labs]
        result["mae_pp_lab"] = _mae(participants, labs)
    write_json(paths.metrics / "motility.json", result)
    return result
