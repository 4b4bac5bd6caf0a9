"""The Prefect tasks of a round: thin wrappers over `tasks/` functions and the `visem-pl` commands.

Every task returns small JSON-able values (paths, counts, messages), never arrays or models.
Results are persisted and cached per flow run (inputs + source + run id): a round resumed after
its review wait runs its flow function again, and every task that had finished returns its
recorded result instead of running again.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from prefect import task
from prefect.cache_policies import INPUTS, RUN_ID, TASK_SOURCE

from tasks import workspace as wsp

RECORDED = dict(persist_result=True, cache_policy=INPUTS + TASK_SOURCE + RUN_ID)


@task(name="declare-round", task_run_name="declare round {n}", **RECORDED)
def declare_round(workspace: str, params_file: str, n: int) -> bool:
    """Add round n to params.yaml's `rounds` and `pseudo_rounds` (comments kept), as a user would."""
    return wsp.ensure_round(Path(workspace) / params_file, n)


@task(name="dvc-stage", task_run_name="dvc repro {stage}", **RECORDED)
def dvc_stage(workspace: str, stage: str, n: int) -> str:
    """Run one `dvc.yaml` stage (and whatever upstream changed): DVC records it in dvc.lock and its
    cache exactly as a `dvc repro` would. Returns the last lines DVC printed."""
    out = wsp.repro(workspace, stage)
    return "\n".join(out.strip().splitlines()[-5:])


@task(name="prepare-inference-backend", task_run_name="export round {n}'s model", **RECORDED)
def prepare_backend(weights: str, cfg: dict, cache_dir: str, n: int) -> str:
    """Export the round's model once (cached by its sha256) before clips are mapped over workers."""
    from tasks import offline
    from tasks.backends import load_backend
    from tasks.infer import InferConfig

    offline.quiet_ultralytics()
    c = InferConfig(**cfg)
    return load_backend(weights, c.backend, c.device, precision=c.precision, cache_dir=cache_dir).label


@task(name="pseudo-label-clip", task_run_name="pseudo-label {clip_name}", retries=2, retry_delay_seconds=5,
      tags=["visem-infer"], **RECORDED)
def infer_clip(weights: str, clip: dict, clip_name: str, out_dir: str, cfg: dict, cache_dir: str) -> dict:
    """Pseudo-label one clip into `<out_dir>/<clip>.parquet` (skipped when already done for this
    model and these parameters); retried on failure, e.g. a worker lost mid-clip."""
    from tasks import offline
    from tasks.dataset import Clip
    from tasks.infer import InferConfig, infer_clips

    offline.configure()
    stats = infer_clips(weights, [Clip(**{**clip, "path": Path(clip["path"])})], out_dir, InferConfig(**cfg), progress=False,
                        cache_dir=cache_dir)
    return {"clip": clip_name, "pid": os.getpid(), **stats}


def visem_pl(workspace: str, args: list[str]) -> subprocess.CompletedProcess:
    """The same `visem-pl` command a user types, in the workspace."""
    return subprocess.run([wsp.tool_bin("visem-pl"), *args], cwd=workspace, env=wsp.tool_env(),
                          capture_output=True, text=True)


def review_status(workspace: str, n: int) -> dict:
    """`visem-pl review status --json`: items queued, left, per state and clip."""
    return json.loads(visem_pl(workspace, ["review", "status", "--round", str(n), "--json"]).stdout)


@task(name="export-review-queue", task_run_name="export round {n}'s review queue", **RECORDED)
def export_review_queue(workspace: str, n: int) -> dict:
    """Hand the round's review queue to the experts: Label Studio tasks with the model's boxes as
    predictions and the frame images, in review/round-N/exports/<batch>/ (`visem-pl review export`).
    Items already exported and not answered are exported again in the new batch."""
    proc = visem_pl(workspace, ["review", "export", "--round", str(n), "--format", "labelstudio"])
    if proc.returncode != 0:
        raise wsp.StepFailed(f"visem-pl review export --round {n} failed:\n{proc.stderr.strip()}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    status = review_status(workspace, n)
    return {**result, "queued": status["items"], "left": status["left"]}


@task(name="import-review", task_run_name="import review of round {n} (answer {attempt})", **RECORDED)
def import_review(workspace: str, n: int, answer: dict, attempt: int) -> dict:
    """Import the experts' answers all or nothing (`visem-pl review import`, or `review pull` for a
    Label Studio project); returns {ok, problems, left}: what was wrong, or what is still unanswered."""
    reviewer = (answer.get("reviewer") or "").strip()
    export, project = answer.get("export_path"), answer.get("label_studio_project")
    problems = []
    if not reviewer:
        problems.append("reviewer: name who reviewed")
    if bool(export) == (project is not None):
        problems.append("give either export_path (a Label Studio JSON export or CVAT zip) or label_studio_project")
    if problems:
        return {"ok": False, "problems": problems}
    if export:
        args = ["review", "import", str(export), "--round", str(n), "--reviewer", reviewer]
        if not Path(export).is_absolute():
            return {"ok": False, "problems": [f"{export}: give the export's absolute path (the round runs in {workspace})"]}
        if not Path(export).is_file():
            return {"ok": False, "problems": [f"{export}: no such file"]}
    else:
        batch = wsp.batch_of_project(Path(workspace) / "review" / f"round-{n}", int(project))
        if batch is None:
            return {"ok": False, "problems": [f"Label Studio project {project} holds no batch of round {n}'s queue "
                                              f"(push it with `visem-pl review push --round {n}`)"]}
        args = ["review", "pull", "--round", str(n), "--reviewer", reviewer, "--batch", batch]
    proc = visem_pl(workspace, args)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return {"ok": False, "problems": lines[-20:] or [f"exit {proc.returncode}"]}
    status = review_status(workspace, n)
    return {"ok": True, "problems": [], "result": json.loads(proc.stdout.strip().splitlines()[-1]),
            "left": status["left"], "items": status["items"]}


@task(name="version-round", task_run_name="version round {n}", **RECORDED)
def version_round(workspace: str, n: int, message: str, push: bool, commit: bool) -> dict:
    """Push the round's data and model to the DVC remote; commit dvc.lock & co. and tag round-N."""
    return wsp.version_round(workspace, n, message, push=push, commit=commit)
