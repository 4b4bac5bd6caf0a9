"""Generate one annotated video or one unlabelled clip (runs inside a worker process)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout

from . import motion as mo
from .ids import rng_for, track_id
from .population import DISTRACTOR, Population
from .reference import load_counts, sample_targets
from .render import FP, Canvas, Illumination, draw_debris, sample_debris, tail_points
from .writer import VideoSink, label_lines, pixel_boxes

VIDEO, REST, OTHER = "video", "rest", "other"


@dataclass(frozen=True)
class Job:
    kind: str  # VIDEO (annotated, labelled) | REST | OTHER (unlabelled clips)
    vid: int
    stem: str  # "11" for a video, "11_30_60" for a clip
    n_frames: int
    fps: float
    shares: tuple[float, float, float]  # participant PR/NP/IM probabilities
    donor: int  # annotated id whose real counts drive the population
    level: float  # multiplier on the donor counts (1 for annotated videos)
    offset: int  # circular shift into the donor timeline (0 for annotated videos)
    seed: int
    scale: float
    um_per_px: float
    jpeg_quality: int
    root: str
    reference: str | None


def _targets(job: Job) -> tuple[np.ndarray, np.ndarray]:
    ref = Path(job.reference) if job.reference else None
    counts, has = load_counts(ref)[job.donor]
    return sample_targets(counts, has, job.n_frames, job.scale * job.level, job.offset)


def _paths(job: Job) -> tuple[Path, Path | None, Path]:
    root = Path(job.root)
    if job.kind == VIDEO:
        vdir = root / layout.TRAIN_DIR / layout.VIDEOS_DIR / str(job.vid)
        return vdir / f"{job.vid}.mp4", vdir / "images", root / layout.TRUTH_DIR / "videos"
    sub = layout.CLIPS_REST_DIR if job.kind == REST else layout.CLIPS_OTHER_DIR
    return root / sub / sub / f"{job.stem}.mp4", None, root / layout.TRUTH_DIR / "clips"


def _truth_boxes(cells, tids) -> pd.DataFrame:
    parts = []
    for c in cells:
        if c.idx not in tids:
            continue
        i = np.flatnonzero(c.label[: c.end - c.t0])
        box = pixel_boxes(c.motion.x[i], c.motion.y[i], np.full(len(i), c.box_w), np.full(len(i), c.box_h))
        parts.append(
            pd.DataFrame(
                {
                    "frame": i + c.t0,
                    "order": c.idx,
                    "track_id": tids[c.idx],
                    "class": c.cls,
                    "cx": box[:, 0],
                    "cy": box[:, 1],
                    "w": box[:, 2],
                    "h": box[:, 3],
                    "motility": c.motility,
                }
            )
        )
    cols = ["frame", "order", "track_id", "class", "cx", "cy", "w", "h", "motility"]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    df = df.sort_values(["frame", "order"], kind="stable").drop(columns="order").reset_index(drop=True)
    return df.astype(
        {"frame": "int64", "class": "int64", "cx": "float64", "cy": "float64", "w": "float64", "h": "float64"}
    )


def _cell_records(job: Job, cells, tids) -> list[dict]:
    rows = []
    for c in cells:
        life = c.end - c.t0
        lab = np.flatnonzero(c.label[:life])
        rec = {
            "source": job.stem,
            "kind": job.kind,
            "video_id": job.vid,
            "track_id": tids.get(c.idx, ""),
            "class": c.cls if c.cls != DISTRACTOR else -1,
            "class_name": layout.CLASS_NAMES[c.cls] if c.cls != DISTRACTOR else "defocused_sperm",
            "motility": c.motility,
            "labelled": bool(len(lab)),
            "born": c.born,
            "first_frame": int(lab[0] + c.t0) if len(lab) else -1,
            "last_frame": int(lab[-1] + c.t0) if len(lab) else -1,
            "n_boxes": int(len(lab)),
            "box_w_px": c.box_w,
            "box_h_px": c.box_h,
            "focus": int(c.focus),
            "fps": job.fps,
            "um_per_px": job.um_per_px,
        }
        p = c.motion.params
        for k in ("model", "vap_um_s", "bcf_hz", "alh_um", "turn_rad_s", "radius_um"):
            rec[k] = p.get(k, np.nan)
        if len(lab) >= 2:
            span = slice(lab[0], lab[-1] + 1)
            rec.update(mo.measured_kinematics(c.motion.x[span], c.motion.y[span], job.fps, job.um_per_px))
        else:
            rec.update({"vcl_um_s": np.nan, "vsl_um_s": np.nan, "lin": np.nan})
        rows.append(rec)
    return rows


def _render(job: Job, cells, rng, sink: VideoSink) -> None:
    illum = Illumination(rng, job.fps)
    debris = sample_debris(rng, int(rng.integers(10, 45)))
    drift = _drift(job)
    draw_at: list[list] = [[] for _ in range(job.n_frames)]
    for c in cells:
        life = c.end - c.t0
        vis = np.flatnonzero((c.layer[:life] > 0) & (c.alpha[:life] > 0))
        if not len(vis):
            continue
        m = c.motion
        if c.members is None:
            cx = np.rint(m.x[:life] * FP).astype(np.int64)
            cy = np.rint(m.y[:life] * FP).astype(np.int64)
            ang = np.degrees(m.heading[:life])
            tails = tail_points(m.x[:life], m.y[:life], m.heading[:life], m.phase[:life], c.look, m.beating)
            geo = (cx, cy, ang, tails)
        else:
            geo = None
        for i in vis:
            draw_at[c.t0 + i].append((c, i, geo))
    canvas = Canvas()
    for t in range(job.n_frames):
        canvas.clear()
        draw_debris(canvas, debris, drift[0] * t, drift[1] * t)
        for c, i, geo in draw_at[t]:
            layer, alpha = int(c.layer[i]), float(c.alpha[i])
            if geo is not None:
                cx, cy, ang, tails = geo
                canvas.sperm(layer, int(cx[i]), int(cy[i]), float(ang[i]), tails[i], c.look, alpha)
            else:
                _draw_cluster(canvas, c, i, layer, alpha)
        sink.write(t, illum.finish(canvas.compose(illum.background(t))))


def _draw_cluster(canvas, c, i, layer, alpha) -> None:
    x0, y0, rot = c.motion.x[i], c.motion.y[i], c.motion.heading[i] - c.motion.heading[0]
    cr, sr = np.cos(rot), np.sin(rot)
    for dx, dy, hd, ph0, dph, look in c.members:
        x, y = x0 + cr * dx - sr * dy, y0 + sr * dx + cr * dy
        h = hd + rot
        tail = tail_points(x, y, h, ph0 + dph * i, look, dph > 0)
        canvas.sperm(layer, int(round(x * FP)), int(round(y * FP)), float(np.degrees(h)), tail, look, alpha)


def _drift(job: Job) -> np.ndarray:
    """Slow bulk flow of the preparation (px/frame), shared by cells and debris."""
    rng = rng_for(job.seed, "drift", job.kind, job.stem)
    speed = rng.uniform(0.0, 2.0) / job.um_per_px / job.fps
    ang = rng.uniform(0, 2 * np.pi)
    return np.array([speed * np.cos(ang), speed * np.sin(ang)])


def run_job(job: Job) -> dict:
    targets, labelled = _targets(job)
    rng = rng_for(job.seed, "population", job.kind, job.stem)
    n_distractors = int(rng.poisson(1.0 + 0.08 * targets.sum(axis=1).mean()))
    pop = Population(rng, job.n_frames, job.fps, job.um_per_px, job.shares, _drift(job), n_distractors)
    cells = pop.run(targets, labelled)
    labelled_cells = [c for c in cells if c.cls != DISTRACTOR and c.label[: c.end - c.t0].any()]
    tids = {c.idx: track_id(job.seed, f"{job.kind}:{job.stem}", k) for k, c in enumerate(labelled_cells)}
    truth = _truth_boxes(cells, tids)

    mp4, image_dir, truth_dir = _paths(job)
    sink = VideoSink(mp4, job.fps, image_dir, str(job.vid), job.jpeg_quality)
    try:
        _render(job, cells, rng_for(job.seed, "render", job.kind, job.stem), sink)
    finally:
        sink.close()

    truth_dir.mkdir(parents=True, exist_ok=True)
    truth.to_parquet(truth_dir / f"{job.stem}.parquet", index=False)

    count_rows = []
    if job.kind == VIDEO:
        count_rows = _write_labels(job, mp4.parent, truth)

    tally = {m: 0 for m in mo.MOTILITIES}
    for c in labelled_cells:
        if c.cls == 0:
            tally[c.motility] += 1
    per_class = truth.groupby("class")
    return {
        "kind": job.kind,
        "vid": job.vid,
        "stem": job.stem,
        "n_frames": job.n_frames,
        "fps": job.fps,
        "count_rows": count_rows,
        "boxes": [int((truth["class"] == k).sum()) for k in range(3)],
        "tracks": [
            sorted(per_class.get_group(k)["track_id"].unique()) if k in per_class.groups else [] for k in range(3)
        ],
        "sperm_motility": tally,
        "mean_sperm_in_field": float((truth["class"] == 0).sum() / job.n_frames),
        "cells": _cell_records(job, cells, tids),
        "donor": job.donor,
        "level": job.level,
        "offset": job.offset,
        "drift_px_per_frame": _drift(job).tolist(),
    }


def _write_labels(job: Job, vdir: Path, truth: pd.DataFrame) -> list[tuple]:
    """labels/, labels_ftid/ and <id>.txt; returns the counts CSV rows of this video."""
    (vdir / "labels").mkdir(exist_ok=True)
    (vdir / "labels_ftid").mkdir(exist_ok=True)
    rows, listed = [], []
    for frame, g in truth.groupby("frame", sort=True):
        frame = int(frame)
        plain, ftid = label_lines(g[["cx", "cy", "w", "h"]].to_numpy(), g["class"].to_numpy(), g["track_id"].tolist())
        name = layout.label_name(job.vid, frame)
        (vdir / "labels" / name).write_text(plain, encoding="utf-8")
        (vdir / "labels_ftid" / layout.ftid_name(job.vid, frame)).write_text(ftid, encoding="utf-8")
        listed.append(f"labels/{name}")
        cls = g["class"].to_numpy()
        rows.append((layout.frame_item(job.vid, frame), *(int((cls == k).sum()) for k in range(3))))
    (vdir / f"{job.vid}.txt").write_text("".join(p + "\n" for p in listed), encoding="utf-8")
    return rows
