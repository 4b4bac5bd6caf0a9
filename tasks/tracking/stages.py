"""The DVC stage track@N: one function of a workspace and a round."""

from __future__ import annotations

import logging

from visem_pl.tasks.tracking.link import TrackConfig
from visem_pl.tasks.workspace.io import write_json
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


def tracking_scores(ws: Workspace, n: int, cfg: TrackConfig) -> dict:
    """{tracking, tracking_truth_boxes}: HOTA/MOTA/IDF1 of the round's tracks and of the tracker fed
    the truth boxes at the same stride; {} where the dataset has no truth (real data)."""
    from visem_pl.tasks.dataset.truth import truth_for
    from visem_pl.tasks.tracking.clips import read_tracks
    from visem_pl.tasks.tracking.link import link
    from visem_pl.tasks.tracking.score import score

    truth = truth_for(ws.data_root())
    if truth is None:
        return {}
    ours, alone, stride = [], [], None
    for path in sorted(ws.round(n).tracks.glob("*.parquet")):
        tracks, meta = read_tracks(path)
        stride = meta["stride"]
        t = truth.clip(path.stem)
        ours.append((t, tracks))  # interpolated boxes too: they are the tracker's output
        boxes = t[t["frame"] % stride == 0].rename(columns={"class": "cls"}).assign(conf=1.0)
        alone.append((t, link(boxes, meta["width"], meta["height"], stride, cfg)))
    if not ours:
        return {}
    return {"stride": stride, "tracking": score(ours, stride), "tracking_truth_boxes": score(alone, stride)}
