"""The Prefect tasks of a round: thin wrappers over the `tasks/` functions and the `dvc.yaml` stages.

Every task returns small JSON-able values (paths, counts, messages), never arrays or models.
Results are persisted and cached per flow run (inputs + source + run id): a round resumed after
its review wait runs its flow function again, and every task that had finished returns its
recorded result instead of running again.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import task
from prefect.cache_policies import INPUTS, RUN_ID, TASK_SOURCE

from visem_pl.flows import versioning
from visem_pl.flows.review_wait import read_answer
from visem_pl.tasks.campaign.rounds import ensure_round
from visem_pl.tasks.review import handoff
from visem_pl.tasks.workspace.errors import Refused
from visem_pl.tasks.workspace.paths import Workspace

RECORDED = dict(persist_result=True, cache_policy=INPUTS + TASK_SOURCE + RUN_ID)


@task(name="declare-round", task_run_name="declare round {n}", **RECORDED)
def declare_round(workspace: str, params_file: str, n: int) -> bool:
    """Add round n to params.yaml's `rounds` and `pseudo_rounds` (comments kept), as a user would."""
    return ensure_round(Workspace(Path(workspace), params_file).params_path, n)


@task(name="dvc-stage", task_run_name="dvc repro {stage}", **RECORDED)
def dvc_stage(workspace: str, stage: str, n: int) -> str:
    """Run one `dvc.yaml` stage (and whatever upstream changed): DVC records it in dvc.lock and its
    cache exactly as a `dvc repro` would. Returns the last lines DVC printed."""
    out = versioning.repro(workspace, stage)
    return "\n".join(out.strip().splitlines()[-5:])


@task(name="prepare-inference-backend", task_run_name="choose round {n}'s inference backend", **RECORDED)
def prepare_backend(workspace: str, params_file: str, n: int) -> dict:
    """Export the round's model and settle how it runs on this machine (a short timed trial of the
    candidates where params say auto, cached), once, before clips are mapped over workers."""
    from visem_pl.tasks.inference.stages import choose_round_backend
    from visem_pl.tasks.workspace import offline

    offline.quiet_ultralytics()
    return choose_round_backend(Workspace(Path(workspace), params_file), n).record()


@task(
    name="pseudo-label-clip",
    task_run_name="pseudo-label {clip_name}",
    retries=2,
    retry_delay_seconds=5,
    tags=["visem-infer"],
    **RECORDED,
)
def infer_clip(
    weights: str, clip: dict, clip_name: str, out_dir: str, cfg: dict, cache_dir: str, choice: dict,
    on_bad_clip: str = "fail",
) -> dict:  # fmt: skip
    """Pseudo-label one clip into `<out_dir>/<clip>.parquet` with the round's chosen backend (skipped
    when already done for this model, backend and parameters); retried on failure, e.g. a worker
    lost mid-clip. A clip that cannot be decoded, with `on_bad_clip: skip`, is reported in the
    result's `bad_clips` instead of failing the round."""
    from visem_pl.tasks.dataset.reader import Clip
    from visem_pl.tasks.inference.clips import InferConfig, infer_clips
    from visem_pl.tasks.inference.tuning import Choice
    from visem_pl.tasks.workspace import offline

    offline.configure()
    stats = infer_clips(
        weights,
        [Clip(**{**clip, "path": Path(clip["path"])})],
        out_dir,
        InferConfig(**cfg),
        progress=False,
        cache_dir=cache_dir,
        choice=Choice.from_record(choice),
        on_bad_clip=on_bad_clip,
    )
    return {"clip": clip_name, "pid": os.getpid(), **stats}


@task(
    name="track-clip",
    task_run_name="track {clip_name}",
    retries=1,
    retry_delay_seconds=5,
    tags=["visem-track"],
    **RECORDED,
)
def track_clip(workspace: str, params_file: str, n: int, clip: dict, clip_name: str) -> dict:
    """Link one clip's pseudo-labelled boxes into tracks (`data/rounds/round-N/tracks/<clip>.parquet`),
    skipped when current for its predictions and the tracking settings."""
    from visem_pl.tasks.dataset.reader import Clip
    from visem_pl.tasks.tracking import clips
    from visem_pl.tasks.tracking.stages import resolve_track_config

    ws = Workspace(Path(workspace), params_file)
    paths = ws.round(n)
    cfg = resolve_track_config(ws, n)[0]  # `auto`: decided once on the validation videos, then cached
    return clips.track_clip(Clip(**{**clip, "path": Path(clip["path"])}), paths.predictions, paths.tracks, cfg)


@task(name="export-review-queue", task_run_name="export round {n}'s review queue", **RECORDED)
def export_review_queue(workspace: str, n: int) -> dict:
    """Hand the round's review queue to the experts: Label Studio tasks with the model's boxes as
    predictions and the frame images, in review/round-N/exports/<batch>/ (as `visem-pl review export`).
    Items already exported and not answered are exported again in the new batch."""
    ws = Workspace(Path(workspace))
    result = handoff.export(ws, n, "labelstudio")
    status = handoff.status(ws, n)
    return {**result, "queued": status["items"], "left": status["left"]}


@task(name="import-review", task_run_name="import review of round {n} (answer {attempt})", **RECORDED)
def import_review(workspace: str, n: int, answer: dict, attempt: int) -> dict:
    """Import the experts' answers all or nothing (as `visem-pl review import`, or `review pull` for a
    Label Studio project); returns {ok, problems, left}: what was wrong, or what is still unanswered."""
    ws = Workspace(Path(workspace))
    reviewer, target, problems = read_answer(answer, workspace)
    if problems:
        return {"ok": False, "problems": problems}
    try:
        if isinstance(target, Path):
            result = handoff.import_file(ws, n, target, reviewer)
        else:
            from visem_pl.tasks.review.exchange.live import LiveError, batch_of_project, server_from_env

            batch = batch_of_project(ws.round(n).review_folder, target)
            if batch is None:
                return {
                    "ok": False,
                    "problems": [
                        f"Label Studio project {target} holds no batch of round {n}'s "
                        f"queue (push it with `visem-pl review push --round {n}`)"
                    ],
                }
            try:
                server = server_from_env()
            except LiveError as exc:
                return {"ok": False, "problems": [str(exc)]}
            result = handoff.pull(ws, n, server, reviewer, batch=batch)
    except Refused as exc:
        return {"ok": False, "problems": exc.lines[-20:]}
    except ValueError as exc:
        return {"ok": False, "problems": [str(exc)]}
    status = handoff.status(ws, n)
    return {"ok": True, "problems": [], "result": result, "left": status["left"], "items": status["items"]}


@task(name="version-round", task_run_name="version round {n}", **RECORDED)
def version_round(workspace: str, n: int, message: str, push: bool, commit: bool) -> dict:
    """Push the round's data and model to the DVC remote; commit dvc.lock & co. and tag round-N."""
    return versioning.version_round(workspace, n, message, push=push, commit=commit)
