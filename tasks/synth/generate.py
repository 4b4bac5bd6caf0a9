"""Plan the jobs, run them (in parallel), and write the dataset-level files."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.workspace.progress import progress as report

from .clinical import motility_percentages, write_clinical
from .config import SynthConfig
from .ids import rng_for
from .job import OTHER, REST, VIDEO, Job, run_job
from .reference import REAL_SECONDS, real_fps, real_length
from .writer import atomic_dir

# Dirichlet prior of participant PR/NP/IM shares: wide, immotile-heavy on average, as in
# a fertility cohort (real participant 11: 11/17/72).
SHARE_PRIOR = (2.2, 1.0, 2.6)


def participant_shares(seed: int, vid: int) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng_for(seed, "shares", vid).dirichlet(SHARE_PRIOR))


def plan(cfg: SynthConfig, root: Path) -> list[Job]:
    common = dict(
        seed=cfg.seed,
        scale=cfg.scale,
        um_per_px=cfg.um_per_px,
        jpeg_quality=cfg.jpeg_quality,
        root=str(root),
        reference=str(cfg.reference_counts) if cfg.reference_counts else None,
    )
    jobs = []
    for vid in cfg.videos:
        shares = participant_shares(cfg.seed, vid)
        fps = real_fps(vid)
        n = cfg.frames_per_video or real_length(vid)
        jobs.append(Job(VIDEO, vid, str(vid), n, fps, shares, vid, 1.0, 0, **common))
        for k in range(cfg.rest_clips_per_video):
            rng = rng_for(cfg.seed, "rest", vid, k)
            start = REAL_SECONDS * (k + 1)
            stem = layout.clip_name(vid, start, start + REAL_SECONDS)[:-4]
            jobs.append(
                Job(
                    REST,
                    vid,
                    stem,
                    cfg.frames_per_clip,
                    fps,
                    shares,
                    vid,
                    float(rng.lognormal(0.0, 0.15)),
                    int(rng.integers(real_length(vid))),
                    **common,
                )
            )
    rng = rng_for(cfg.seed, "others")
    others = sorted(int(v) for v in rng.choice(layout.OTHER_IDS, cfg.other_videos, replace=False))
    for vid in others:
        prng = rng_for(cfg.seed, "other-participant", vid)
        fps = round(float(prng.uniform(45.0, 50.0)), 2)
        shares = participant_shares(cfg.seed, vid)
        donor = int(prng.choice(layout.ANNOTATED_IDS))  # concentration like a real video's
        level = float(prng.lognormal(0.0, 0.35))
        for k in range(cfg.clips_per_other_video):
            start = REAL_SECONDS * k
            stem = layout.clip_name(vid, start, start + REAL_SECONDS)[:-4]
            offset = int(rng_for(cfg.seed, "other-clip", vid, k).integers(real_length(donor)))
            jobs.append(Job(OTHER, vid, stem, cfg.frames_per_clip, fps, shares, donor, level, offset, **common))
    return jobs


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # the pool is the parallelism; avoid oversubscribing the cores


def _run_all(jobs: list[Job], workers: int, progress: bool) -> list[dict]:
    results: list[dict | None] = [None] * len(jobs)
    # Longest jobs first so that two workers finish together.
    order = sorted(range(len(jobs)), key=lambda i: (-jobs[i].n_frames, i))
    with report("synth", len(jobs), "videos and clips", enabled=progress) as bar:
        if workers == 1 or len(jobs) <= 1:
            for i in order:
                results[i] = run_job(jobs[i])
                bar.advance()
        else:
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
                futures = {pool.submit(run_job, jobs[i]): i for i in order}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.advance()
    return results  # type: ignore[return-value]


def _summary(cfg: SynthConfig, results: list[dict]) -> dict:
    videos = [r for r in results if r["kind"] == VIDEO]
    images = sum(r["n_frames"] for r in videos)
    label_files = sum(len(r["count_rows"]) for r in videos)
    return {
        "videos": len(videos),
        "images": images,
        "label_files": label_files,
        "frames_without_labels": images - label_files,
        "boxes": {name: sum(r["boxes"][k] for r in videos) for k, name in enumerate(layout.CLASS_NAMES)},
        "tracks": {name: len({t for r in videos for t in r["tracks"][k]}) for k, name in enumerate(layout.CLASS_NAMES)},
        "clips": {
            "annotated_rest": sum(r["kind"] == REST for r in results),
            "other": sum(r["kind"] == OTHER for r in results),
        },
        "participants": len(cfg.videos),
    }


def _write_dataset_files(root: Path, cfg: SynthConfig, results: list[dict]) -> dict:
    truth = root / layout.TRUTH_DIR
    truth.mkdir(exist_ok=True)

    with open(root / layout.COUNTS_CSV, "w", encoding="utf-8", newline="") as f:
        f.write(", ".join(layout.COUNTS_HEADER) + "\n")
        w = csv.writer(f, lineterminator="\n")
        for r in sorted((r for r in results if r["kind"] == VIDEO), key=lambda r: r["vid"]):
            w.writerows(r["count_rows"])

    participants, motility_rows = [], []
    field_ml = (
        (layout.IMAGE_WIDTH * cfg.um_per_px) * (layout.IMAGE_HEIGHT * cfg.um_per_px) * cfg.chamber_depth_um * 1e-12
    )
    for vid in sorted(cfg.videos):
        mine = [r for r in results if r["vid"] == vid and r["kind"] in (VIDEO, REST)]
        tally = {m: sum(r["sperm_motility"][m] for r in mine) for m in mine[0]["sperm_motility"]}
        shares = participant_shares(cfg.seed, vid)
        pct = motility_percentages(tally, shares)
        video = next(r for r in mine if r["kind"] == VIDEO)
        participants.append({"vid": vid, "pct": pct, "concentration": video["mean_sperm_in_field"] / field_ml / 1e6})
        motility_rows.append(
            {
                "video_id": vid,
                **{f"n_{m}": v for m, v in tally.items()},
                "progressive_pct": pct[0],
                "non_progressive_pct": pct[1],
                "immotile_pct": pct[2],
                "drawn_progressive": shares[0],
                "drawn_non_progressive": shares[1],
                "drawn_immotile": shares[2],
            }
        )
    write_clinical(root, cfg.seed, participants)

    cells = pd.DataFrame([c for r in results for c in r["cells"]])
    cells.to_csv(truth / "cells.csv", index=False, float_format="%.6g")
    pd.DataFrame(motility_rows).to_csv(truth / "motility.csv", index=False, float_format="%.6g")
    sources = pd.DataFrame(
        [
            {
                "source": r["stem"],
                "kind": r["kind"],
                "video_id": r["vid"],
                "n_frames": r["n_frames"],
                "fps": r["fps"],
                "um_per_px": cfg.um_per_px,
                "donor_id": r["donor"],
                "level": r["level"],
                "offset": r["offset"],
                "drift_x_px_per_frame": r["drift_px_per_frame"][0],
                "drift_y_px_per_frame": r["drift_px_per_frame"][1],
                "boxes": sum(r["boxes"]),
                "tracks": sum(len(t) for t in r["tracks"]),
            }
            for r in results
        ]
    )
    sources.to_csv(truth / "sources.csv", index=False, float_format="%.6g")

    labelled = cells[cells["track_id"] != ""]["track_id"]
    if labelled.duplicated().any():
        raise RuntimeError("track id collision; change the seed")

    summary = _summary(cfg, results)
    (truth / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    config = {
        k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
        for k, v in cfg.__dict__.items()
        if k != "workers"
    }  # output never depends on it
    (truth / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return summary


def synthesize(out_dir: Path, cfg: SynthConfig = SynthConfig(), progress: bool = True, overwrite: bool = False) -> dict:
    """Write a synthetic twin of VISEM-Tracking to `out_dir`; return the validator summary.

    The folder appears only when complete (built in a temporary sibling and renamed);
    a non-empty `out_dir` is refused unless `overwrite`.
    """
    with atomic_dir(Path(out_dir), overwrite) as root:
        jobs = plan(cfg, root)
        results = _run_all(jobs, cfg.workers, progress)
        return _write_dataset_files(root, cfg, results)
