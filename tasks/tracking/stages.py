"""The DVC stages track@N and motility@N, each one function of a workspace and a round."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset.labels import read_ftid_tracks
from visem_pl.tasks.dataset.layout import CLASS_NAMES
from visem_pl.tasks.tracking.link import TrackConfig
from visem_pl.tasks.workspace.io import atomic_path, remove_other_clips, write_json
from visem_pl.tasks.workspace.paths import Workspace
from visem_pl.tasks.workspace.progress import progress as report

log = logging.getLogger(__name__)
CLUSTER = CLASS_NAMES.index("cluster")


def track_config(ws: Workspace) -> TrackConfig:
    return ws.section("track", TrackConfig)


def resolve_track_config(ws: Workspace, n: int) -> tuple[TrackConfig, dict]:
    """The tracking settings of round n, with `method: auto` decided: every method links the round's
    labelled validation videos (predicted by `infer`) and the best IDF1 against their labels_ftid
    track ids wins (cached per prediction files and settings). Which tracker suits depends on the
    detector: IoU trackers need confident, well-placed boxes, centre linking copes with weak ones.
    Returns the settings and what the trial measured ({} when the method was named)."""
    from dataclasses import replace

    from visem_pl.tasks.tracking.link import AUTO, METHODS, fill_gaps, link, settings
    from visem_pl.tasks.tracking.score import score
    from visem_pl.tasks.workspace.io import file_sha256

    cfg = track_config(ws)
    if cfg.method != AUTO:
        return cfg, {}
    videos = _validation_predicted(ws, n)
    if not videos:
        return replace(cfg, method=METHODS[0]), {"chosen": METHODS[0], "why": "no validation video predicted"}
    # The key needs only the prediction files: a hit (every mapped Prefect track task) reads no labels.
    digest = hashlib.sha256(json.dumps([[file_sha256(src) for _, src, _ in videos], settings(cfg)]).encode())
    cache = ws.track_trials / f"{digest.hexdigest()[:16]}.json"
    if cache.exists():
        trial = json.loads(cache.read_text())
    else:
        inputs = [(_labelled_boxes(clip, src, video), read_ftid_tracks(video)) for clip, src, video in videos]
        scores = {}
        for method in METHODS:
            pairs = []
            for (boxes, (width, height, stride)), labels in inputs:
                tracks = link(boxes, width, height, stride, replace(cfg, method=method))
                pairs.append((labels, fill_gaps(tracks, stride, cfg.max_gap)))
            scores[method] = {k: v for k, v in score(pairs, stride).items() if k in ("hota", "mota", "idf1")}
        chosen = max(METHODS, key=lambda m: scores[m]["idf1"])  # ties: the first in METHODS
        trial = {"chosen": chosen, "videos": [int(c.video_id) for c, _, _ in videos], "scores": scores}
        write_json(cache, trial)
    log.info("tracking method for round %d: %s (IDF1 on validation videos %s)", n, trial["chosen"],
             {m: s["idf1"] for m, s in trial["scores"].items()})  # fmt: skip
    return replace(cfg, method=trial["chosen"]), trial


def _validation_predicted(ws: Workspace, n: int) -> list:
    """[(clip, prediction file, annotated video)] of round n's validation videos that `infer` ran."""
    paths = ws.round(n)
    videos = {str(v.id): v for v in ws.validation_videos()}
    out = []
    for clip in ws.validation_clips():
        src = paths.validation_predictions / f"{clip.name}.parquet"
        if src.exists():
            out.append((clip, src, videos[clip.name]))
    return out


def _labelled_range(frames: pd.DataFrame, video) -> pd.DataFrame:
    """Rows of `frames` up to the video's last extracted image: past it there are no labels to score
    against."""
    return frames[frames["frame"] <= max(video.frames(), default=-1)].reset_index(drop=True)


def _labelled_boxes(clip, src, video):
    """A validation video's predicted boxes in its labelled range, and its (width, height, stride)."""
    from visem_pl.tasks.inference.clips import prediction_meta
    from visem_pl.tasks.tracking.clips import read_boxes, video_props

    width, height, _ = video_props(clip)
    stride = int(prediction_meta(src)["params"]["stride"])
    return _labelled_range(read_boxes(src), video), (width, height, stride)


def track_stage(ws: Workspace, n: int, progress: bool = True) -> dict:
    """Link every clip's predictions of round n into tracks (data/rounds/round-N/tracks/, resumable);
    where the dataset has truth, score them, and the tracker alone on the truth boxes (track.json; its
    tracks kept for `motility`, `truth_tracks_cache`). Each clip's linking and scoring is its own job,
    run in `track.workers` processes (tasks/tracking/pool.py). `progress`: how far it got, on stderr."""
    from visem_pl.tasks.dataset.truth import truth_for
    from visem_pl.tasks.inference.stages import left_out

    cfg, trial = resolve_track_config(ws, n)
    paths = ws.round(n)
    bad = left_out(ws, n)  # a clip inference left out (on_bad_clip: skip) has nothing to link
    clips = [c for c in ws.clips() if c.name not in bad]
    removed = remove_other_clips(paths.tracks, clips) + remove_other_clips(paths.validation_tracks,
                                                                           ws.validation_clips())  # fmt: skip
    truth = truth_for(ws.data_root())
    linked = _link_clips(clips, paths.predictions, paths.tracks, cfg, truth, truth_tracks_cache(ws, n), "track",
                         progress)  # fmt: skip
    stats = {
        "clips": linked.pop("clips"),
        "skipped": linked.pop("skipped"),
        "method": cfg.method,
        **({"bad_clips": bad} if bad else {}),
        **({"removed_other_dataset": removed} if removed else {}),
        **({"method_trial": trial} if trial else {}),
        **linked,
    }
    validation = validation_scores(ws, n, cfg)
    if validation:
        stats["validation"] = validation
    paths.motility_tracks.mkdir(parents=True, exist_ok=True)  # a DVC output, even when there is none
    if motility_config(ws).window_s is not None:
        stats["motility_window"] = window_tracks(ws, n, cfg, clips, truth, progress)
    stats["computed_from"] = ws.computed_from(n)
    write_json(paths.metrics / "track.json", stats)
    return stats


def window_tracks(ws: Workspace, n: int, cfg: TrackConfig, clips: list, truth, progress: bool) -> dict:
    """Link each clip's motility window (`infer` ran it at every frame: `motility.window_s`) into
    data/rounds/round-N/motility/tracks/ with the round's tracker, and score them where there is truth."""
    paths = ws.round(n)
    clips = [c for c in clips if (paths.motility_predictions / f"{c.name}.parquet").exists()]
    removed = remove_other_clips(paths.motility_tracks, clips)
    out = _link_clips(clips, paths.motility_predictions, paths.motility_tracks, cfg, truth,
                      truth_tracks_cache(ws, n, window=True), "track motility window", progress)  # fmt: skip
    return {**out, "removed_other_dataset": removed} if removed else out


def _link_clips(clips: list, pred_dir, out_dir, cfg: TrackConfig, truth, cache, what: str, progress: bool) -> dict:
    """Link each clip's predictions in `pred_dir` into `out_dir`, one job per clip in `track.workers`
    processes (`_track_and_score`), and pool the clips' scores where there is truth (`cache`: the
    tracker-alone tracks, `truth_tracks_cache`): {clips, skipped} and, scored, {stride, tracking,
    tracking_truth_boxes}. `what` names the progress bar."""
    from visem_pl.tasks.tracking.pool import map_clips
    from visem_pl.tasks.tracking.score import aggregate

    remove_other_clips(cache, clips if truth is not None else [])
    jobs = [(c, pred_dir, out_dir, cfg, truth and truth.folder, cache) for c in clips]
    with report(what, len(clips), enabled=progress) as bar:
        done = map_clips(_track_and_score, jobs, [c.name for c in clips], cfg.workers, bar)
    out = {"clips": len(clips), "skipped": sum(d["skipped"] for d, _ in done)}
    scored = sorted((d["clip"], s) for d, s in done if s is not None)  # pooled in clip-name order
    if scored:
        out.update({
            "stride": scored[0][1]["stride"],
            # interpolated boxes too: they are the tracker's output
            "tracking": aggregate([s["tracking"] for _, s in scored]),
            "tracking_truth_boxes": aggregate([s["truth_boxes"] for _, s in scored]),
        })  # fmt: skip
    return out


def truth_tracks_cache(ws: Workspace, n: int, window: bool = False):
    """Where round n keeps the tracker-alone tracks of each clip's truth boxes (`clips.truth_box_tracks`),
    of the whole clip or (`window`) of its motility window: a cache, not a DVC output (made again, the
    same, wherever it is missing or stale)."""
    return ws.root / ".cache" / "truth-box-tracks" / (f"round-{n}-motility-window" if window else f"round-{n}")


def _track_and_score(job: tuple) -> tuple[dict, dict | None]:
    """One clip's job of `track_stage` (run in a worker process): link it (`clips.track_clip`) and, where
    there is truth, its HOTA / CLEAR / identity counts and those of the tracker fed its truth boxes."""
    from visem_pl.tasks.dataset.truth import TruthStore
    from visem_pl.tasks.tracking.clips import read_tracks, track_clip, truth_box_tracks
    from visem_pl.tasks.tracking.score import clip_metrics

    clip, predictions, out_dir, cfg, truth_folder, cache = job
    done = track_clip(clip, predictions, out_dir, cfg)
    if truth_folder is None:
        return done, None
    store = TruthStore(truth_folder)
    tracks, meta = read_tracks(out_dir / f"{clip.name}.parquet")
    truth = covered(store.clip(clip.name), meta)
    alone = truth_box_tracks(truth, store.folder / "clips" / f"{clip.name}.parquet", meta, cfg, cache)
    stride = meta["stride"]
    return done, {"stride": stride, "tracking": clip_metrics(truth, tracks, stride),
                  "truth_boxes": clip_metrics(truth, alone, stride)}  # fmt: skip


def covered(truth: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """A clip's truth on the frames its predictions covered (`meta`: its tracks file's record): the whole
    clip, or its motility window."""
    return truth[truth["frame"] < meta["frames_scored"] * meta["stride"]]


def validation_scores(ws: Workspace, n: int, cfg: TrackConfig) -> dict:
    """Track the labelled validation videos (run by `infer` like the clips) and score them against their
    `labels_ftid` track ids, end to end and with the tracker fed the labelled boxes: what a real dataset
    can say about tracking. {} where the round has no validation predictions."""
    from visem_pl.tasks.tracking.clips import read_tracks, track_clip
    from visem_pl.tasks.tracking.link import link
    from visem_pl.tasks.tracking.score import score, truth_boxes

    paths = ws.round(n)
    paths.validation_tracks.mkdir(parents=True, exist_ok=True)  # a DVC output, even when there is none
    videos = _validation_predicted(ws, n)
    if not videos:
        return {}
    ends, alone = [], []
    for clip, _, video in videos:
        track_clip(clip, paths.validation_predictions, paths.validation_tracks, cfg)
        tracks, meta = read_tracks(paths.validation_tracks / f"{clip.name}.parquet")
        labels = read_ftid_tracks(video)
        stride = meta["stride"]
        ends.append((labels, _labelled_range(tracks, video)))
        alone.append((labels, link(truth_boxes(labels, stride), meta["width"], meta["height"], stride, cfg)))
    return {
        "videos": [int(c.video_id) for c, _, _ in videos],
        "stride": stride,
        "tracking": score(ends, stride),
        "tracking_label_boxes": score(alone, stride),
    }


def motility_config(ws: Workspace):
    from visem_pl.tasks.tracking.motility import MotilityConfig

    return ws.section("motility", MotilityConfig)


def _clip_shares(tracks, meta: dict, cfg, id_col: str = "track", cls_col: str = "cls") -> tuple:
    """Kinematics of a clip's tracks and its PR / NP / IM shares, clusters left out: the WHO shares are
    of spermatozoa, and a cluster (an agglutinate) is not one (tracks: the class most of its boxes have)."""
    from visem_pl.tasks.tracking.motility import shares, track_kinematics

    if len(tracks):
        cls = tracks.groupby(id_col)[cls_col].agg(lambda c: c.mode().iloc[0])
        tracks = tracks[~tracks[id_col].isin(cls.index[cls == CLUSTER])]
    per = track_kinematics(tracks, meta["width"], meta["height"], meta["fps"], meta["stride"], cfg, id_col)
    return per, shares(per)


def _truth_share(cells: pd.Series) -> dict:
    """{pr, np, im} in percent of the simulated cells `cells` (their motility class); None if there is none."""
    from visem_pl.tasks.tracking.motility import CLASSES

    n = len(cells)
    return {k: (100.0 * float((cells == c).mean()) if n else None) for k, c in zip(("pr", "np", "im"), CLASSES)}


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


def _clip_motility(job: tuple) -> dict:
    """One clip's job of `motility_stage` (run in a worker process): the kinematics of its tracks and its
    shares; with truth, the simulated cells' shares and those of their true paths and of the tracker fed
    the truth boxes (made by `track`, read from `truth_tracks_cache`, made again where missing or stale)."""
    from visem_pl.tasks.dataset.truth import TruthStore
    from visem_pl.tasks.tracking.clips import read_tracks, truth_box_tracks
    from visem_pl.tasks.tracking.motility import shares

    path, cfg, made_with, truth_folder, cache = job
    tracks, meta = read_tracks(path)
    per, share = _clip_shares(tracks, meta, cfg)
    out = {"clip": path.stem, "per": per, "share": share, "frames_scored": meta["frames_scored"],
           "detected": int((tracks["source"] == "detected").sum())}  # fmt: skip
    if truth_folder is None:
        return out
    store = TruthStore(truth_folder)
    t = covered(store.clip(path.stem), meta)
    tr = truth_box_tracks(t, store.folder / "clips" / f"{path.stem}.parquet", meta, made_with, cache)
    true_paths = _clip_shares(t.rename(columns={"track_id": "cell"}), {**meta, "stride": 1}, cfg, "cell", "class")[0]
    seen = true_paths.dropna(subset=["class"])["cell"]
    cells = t.groupby("track_id")["motility"].first().loc[seen]
    return {**out, "truth": _truth_share(cells), "truth_paths": shares(true_paths),
            "truth_boxes": _clip_shares(tr, meta, cfg)[1]}  # fmt: skip


def motility_stage(ws: Workspace, n: int) -> dict:
    """CASA kinematics of every track of round n (data/rounds/round-N/motility.csv) and the PR / NP / IM
    shares per clip and per participant; compared with the simulated cells (synthetic truth), with the
    tracker fed the truth boxes, and with the lab's values (the semen analysis CSV) where they exist.
    Writes metrics/rounds/round-N/motility.json."""
    import pyarrow.parquet as pq

    from visem_pl.tasks.dataset.clinical import motility as lab_motility
    from visem_pl.tasks.dataset.reader import locate
    from visem_pl.tasks.dataset.truth import truth_for
    from visem_pl.tasks.tracking.clips import META_KEY
    from visem_pl.tasks.tracking.pool import map_clips

    cfg = motility_config(ws)
    paths = ws.round(n)
    clips = {c.name: c for c in ws.clips()}
    window = cfg.window_s is not None
    folder = paths.motility_tracks if window else paths.tracks
    files = [folder / f"{c}.parquet" for c in sorted(clips)]
    files = [f for f in files if f.exists()]
    if not files:
        raise FileNotFoundError(f"{folder}: no tracks (run `visem-pl infer --round {n}` and `track` first)")
    # The tracker alone with the settings the round's tracks were made with (`auto` resolved), as recorded.
    made_with = TrackConfig(**json.loads(pq.read_schema(files[0]).metadata[META_KEY])["config"])
    truth = truth_for(ws.data_root())
    jobs = [(f, cfg, made_with, truth and truth.folder, truth_tracks_cache(ws, n, window)) for f in files]
    done = map_clips(_clip_motility, jobs, [f.stem for f in files], cfg.workers)
    per_clip, per_tracks, by_participant = [], [], {}
    for d in done:
        clip, per = d["clip"], d["per"]
        participant = clips[clip].video_id
        per_clip.append({"clip": clip, "participant": participant, **d["share"],
                         "cells_per_frame": round(d["detected"] / max(1, d["frames_scored"]), 2)})  # fmt: skip
        per_tracks.append(per.assign(clip=clip, participant=participant))
        by_participant.setdefault(participant, []).append(per)
    participants = [{"participant": p, "clips": len(v), **_pooled(v)} for p, v in sorted(by_participant.items())]
    table = pd.concat(per_tracks, ignore_index=True)
    with atomic_path(paths.data / "motility.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.4g")

    result = {"um_per_px": cfg.um_per_px, "frame_step": cfg.frame_step, "window_s": cfg.window_s,
              "clips": per_clip, "participants": participants}  # fmt: skip
    track_json = paths.metrics / "track.json"
    if track_json.exists():
        scores = json.loads(track_json.read_text())
        validation = scores.get("validation") or {}
        # Tracking scored on the clips' synthetic truth where it exists, else on the labelled
        # validation videos (real data); both where both exist.
        pick = {"tracking": scores.get("tracking") or validation.get("tracking"),
                "tracking_truth_boxes": scores.get("tracking_truth_boxes") or validation.get("tracking_label_boxes"),
                "tracking_validation": validation.get("tracking"),
                "tracking_validation_label_boxes": validation.get("tracking_label_boxes")}  # fmt: skip
        for key, value in pick.items():
            if value:
                result[key] = {k: value[k] for k in ("hota", "mota", "idf1")}
        if "tracking" in result:
            result["tracking_scored_on"] = "synthetic truth" if scores.get("tracking") else "validation labels"
    # Synthetic truth: the simulated cells' own classes, counted over the cells a perfect tracker could
    # classify (seen for at least min_track_s: a cell crossing the field faster has no measurable path),
    # against three estimates that add one source of error each: the classifier on the true paths, the
    # tracker fed the truth boxes (`_clip_motility`), and the round's own tracks.
    if truth is not None:
        result["mae_pp"] = _mae(per_clip, [d["truth"] for d in done])
        result["mae_pp_truth_boxes"] = _mae([d["truth_boxes"] for d in done], [d["truth"] for d in done])
        result["mae_pp_truth_paths"] = _mae([d["truth_paths"] for d in done], [d["truth"] for d in done])
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
    result["computed_from"] = ws.computed_from(n)
    write_json(paths.metrics / "motility.json", result)
    return result
