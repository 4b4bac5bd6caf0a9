"""Pseudo-label a round's unlabelled clips, one Prefect task per clip, on the configured task runner."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from visem_pl.flows.steps import infer_clip, prepare_backend, track_clip
from visem_pl.tasks.inference.stages import infer_config
from visem_pl.tasks.tracking.stages import resolve_track_config
from visem_pl.tasks.workspace.paths import Workspace


@flow(name="pseudo-label-clips", log_prints=False)
def pseudo_label_clips(workspace: str, n: int, params_file: str = "params.yaml", out_dir: str | None = None) -> dict:
    """Run round n's model over every unlabelled clip, mapped per clip (never per frame) over the task
    runner's workers, and link each clip's boxes into tracks once its inference is done; a clip
    already done for this model and these parameters is skipped, a failed clip is retried. A progress
    artifact follows the clips as they finish."""
    ws = Workspace(Path(workspace), params_file)
    cfg = asdict(infer_config(ws))
    paths = ws.round(n)
    weights = str(paths.weights)
    out = out_dir or str(paths.predictions)
    cache_dir = str(ws.exports_cache)
    # Small dicts with absolute paths: what crosses to the workers (never frames or models).
    clips = [{**asdict(c), "path": str(c.path.resolve())} for c in ws.clips()]
    logger = get_run_logger()
    choice = prepare_backend(workspace, params_file, n) if clips else None
    logger.info("round %d: %d clips on %s", n, len(clips), choice and choice["label"])
    progress = create_progress_artifact(progress=0.0, description=f"Round {n}: clips pseudo-labelled")
    futures = infer_clip.map(
        unmapped(weights),
        clips,
        [Path(c["path"]).stem for c in clips],
        unmapped(out),
        unmapped(cfg),
        unmapped(cache_dir),
        unmapped(choice),
        unmapped(ws.on_bad_clip()),
    )
    totals = {"clips": len(clips), "predicted": 0, "skipped": 0, "boxes": 0, "workers": [], "bad_clips": {}}
    for done, future in enumerate(as_completed(futures), start=1):
        stats = future.result()
        for key in ("predicted", "skipped", "boxes"):
            totals[key] += stats[key]
        totals["bad_clips"].update(stats.get("bad_clips", {}))
        if stats["pid"] not in totals["workers"]:
            totals["workers"].append(stats["pid"])  # which processes ran clips (threads: this one)
        update_progress_artifact(progress, progress=100.0 * done / max(1, len(clips)))
    if not clips:
        update_progress_artifact(progress, progress=100.0)
    if out_dir is None:  # tracks are written beside the round's own predictions only
        # The labelled validation videos first: tracking is scored on them and `track.method: auto`
        # chooses its method there.
        val = [{**asdict(c), "path": str(c.path.resolve())} for c in ws.validation_clips()] if choice else []
        val_out = str(paths.validation_predictions)
        for future in infer_clip.map(unmapped(weights), val, [Path(c["path"]).stem for c in val], unmapped(val_out),
                                     unmapped(cfg), unmapped(cache_dir), unmapped(choice)):  # fmt: skip
            future.result()
        resolve_track_config(ws, n)  # `track.method: auto`: one trial here, read from its cache by every task
        if totals["bad_clips"]:
            logger.warning("round %d: %d clip(s) left out (on_bad_clip: skip): %s", n, len(totals["bad_clips"]),
                           "; ".join(totals["bad_clips"].values()))  # fmt: skip
        linked = [c for c in clips if Path(c["path"]).stem not in totals["bad_clips"]]
        tracked = track_clip.map(unmapped(workspace), unmapped(params_file), unmapped(n), linked,
                                 [Path(c["path"]).stem for c in linked])  # fmt: skip
        totals["tracks"] = sum(t.result().get("tracks", 0) for t in tracked)
    return totals
