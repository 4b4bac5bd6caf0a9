"""`pseudo-label-round`: one round of the loop, driven by Prefect, recorded by DVC.

train -> evaluate -> pseudo-label every clip (mapped per clip) -> filter + review queue ->
export the queue to the experts -> wait for their review -> import -> merge -> quality -> control -> report
-> version (dvc push, git commit, tag round-N).

Each step runs as its `dvc.yaml` stage (`dvc repro <stage>`), the same `visem-pl` command
`dvc repro` runs, so after the flow `dvc status` is clean and `dvc.lock` holds the round exactly
as a `dvc repro` would have. Inference is the exception in how it runs, not in what it records:
the clips are mapped over the task runner first, and the `infer@N` stage then finds every clip
done and only records them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

from prefect import flow, get_run_logger
from prefect.states import Cancelled
from pydantic import Field

from visem_pl.flows import versioning
from visem_pl.flows.inference import pseudo_label_clips
from visem_pl.flows.review_wait import wait_for_review
from visem_pl.flows.runners import OrchestrateConfig, make_task_runner
from visem_pl.flows.steps import (
    declare_round,
    dvc_stage,
    export_review_queue,
    import_review,
    version_round,
)
from visem_pl.tasks.campaign import lock
from visem_pl.tasks.inference.stages import pending_clips
from visem_pl.tasks.workspace.paths import Workspace


@dataclass(frozen=True)
class RoundOptions:
    workspace: Path
    params_file: str
    orchestrate: OrchestrateConfig
    commit: bool
    push: bool


def options(
    workspace: str,
    params_file: str,
    task_runner: str | None,
    dask_address: str | None,
    review_timeout_hours: float | None,
    commit: bool,
    push: bool,
) -> RoundOptions:
    """Check the workspace and params.yaml before anything runs; ValueError names what is wrong."""
    from visem_pl.tasks.workspace.params import build, load_params

    ws = Path(workspace).resolve()
    if not (ws / "dvc.yaml").is_file():
        raise ValueError(f"workspace {ws}: no dvc.yaml here; run from (or pass) the project folder")
    params = load_params(ws / params_file)
    section = dict(params.get("orchestrate") or {})
    for key, value in (
        ("task_runner", task_runner),
        ("address", dask_address),
        ("review_timeout_hours", review_timeout_hours),
    ):
        if value is not None:
            section[key] = value
    cfg = build(OrchestrateConfig, section, f"{ws / params_file} orchestrate")
    return RoundOptions(ws, params_file, cfg, commit, push)


def _holder_stale(holder: dict) -> bool:
    """A lock is stale when its flow run has ended (or is unknown to this server) or its process died.

    A flow run whose process was killed (SIGKILL, out of memory, the machine rebooted) stays Running on
    the server for ever: nothing is left to end it. So a Running holder whose process is gone from this
    host is stale too. A suspended round (Paused, its process gone until the review resumes it) is not."""
    from uuid import UUID

    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    run_id = holder.get("flow_run")
    if not run_id:
        return not lock.pid_alive(holder)
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
    except (ObjectNotFound, ValueError):
        return True
    if run.state is None or run.state.is_final():
        return True
    return run.state.is_running() and not lock.pid_alive(holder)


class _Held:
    """The workspace lock for one flow run, kept across a suspension (the round is still running)."""

    def __init__(self, ws: Path, n: int, flow_name: str):
        from prefect.runtime import flow_run

        self.ws, self.id = ws, f"flow run {flow_run.id}"
        self.holder = {
            "holder": self.id,
            "flow_run": str(flow_run.id),
            "flow": flow_name,
            "round": n,
            "run_name": flow_run.name,
        }

    def __enter__(self):
        lock.acquire_lock(self.ws, self.holder, is_stale=_holder_stale)
        return self

    def __exit__(self, exc_type, exc, tb):
        from prefect.exceptions import Pause

        if exc_type is not None and issubclass(exc_type, Pause):
            return False  # suspended for review: the round still owns the workspace
        lock.release_lock(self.ws, self.id)
        return False


def run_round(n: int, opts: RoundOptions) -> dict:
    """The body of one round (inside a flow run holding the workspace lock)."""
    from prefect.runtime import flow_run

    logger = get_run_logger()
    ws = str(opts.workspace)
    declare_round(ws, opts.params_file, n)
    for stage in (f"train@{n}", f"evaluate@{n}"):
        dvc_stage(ws, stage, n)
    # After a resume the flow runs again from the top: clips already done are not mapped again.
    if pending_clips(Workspace(opts.workspace, opts.params_file), n):
        clips = pseudo_label_clips.with_options(task_runner=make_task_runner(opts.orchestrate))(ws, n, opts.params_file)
        logger.info("round %d inference: %s", n, clips)
    else:
        clips = {"done": "every clip already pseudo-labelled by this model"}
    for stage in (f"infer@{n}", f"track@{n}", f"motility@{n}", f"filter@{n}"):
        dvc_stage(ws, stage, n)

    review = review_round(n, opts)
    if review.get("stopped"):
        return review
    # control@N: round N's weights trained the next round's budget on the labels alone, the bar round N+1 must clear.
    for stage in (f"review@{n}", f"merge@{n}", f"quality@{n}", f"control@{n}", "report"):
        dvc_stage(ws, stage, n)
    from visem_pl.flows.artifacts import publish_round

    row = publish_round(opts.workspace, n)
    version = version_round(
        ws, n, f"round {n} (Prefect flow run {flow_run.name}, {flow_run.id})", opts.push, opts.commit
    )
    clean, status = versioning.dvc_status_clean(ws)
    if not clean:
        raise versioning.StepFailed(f"round {n} finished but `dvc status` is not clean:\n{status}")
    return {"round": n, "metrics": row, "review": review, "clips": clips, "version": version}


def review_round(n: int, opts: RoundOptions) -> dict:
    """Export the queue, wait for the experts, import their answers; wait again until all are in."""
    from prefect.runtime import flow_run

    logger = get_run_logger()
    ws = opts.workspace
    export = export_review_queue(str(ws), n)
    if export["queued"] == 0 or export["left"] == 0:
        logger.info("round %d: nothing to review (%d items queued, %d left)", n, export["queued"], export["left"])
        return {"items": export["queued"], "imports": []}
    folder = Path(export["dir"])
    folder = folder if folder.is_absolute() else ws / folder
    context = {
        "round": n,
        "workspace": str(ws),
        "store": str(Workspace(ws, opts.params_file).round(n).review_folder),
        "flow_run": str(flow_run.id),
        "tasks_json": str(folder / "tasks.json"),
        "images": str(folder / "images"),
        "labelling_config": str(folder / "labelling_config.xml"),
    }
    timeout = int(opts.orchestrate.review_timeout_hours * 3600)
    imports, reason, attempt = [], None, 1
    while True:
        answer = wait_for_review(n, attempt, export, context, reason, timeout)
        logger.info(
            "round %d review answer %d from %r: %s%s",
            n,
            attempt,
            answer.reviewer,
            answer.decision,
            f" ({answer.notes})" if answer.notes else "",
        )
        if answer.decision == "stop":
            return {
                "stopped": True,
                "by": answer.reviewer,
                "notes": answer.notes,
                "state": Cancelled(
                    message=f"round {n} stopped at review by {answer.reviewer or 'someone'}"
                    f"{': ' + answer.notes if answer.notes else ''}"
                ),
            }
        verdict = import_review(str(ws), n, answer.model_dump(mode="json"), attempt)
        attempt += 1
        if not verdict["ok"]:
            reason = verdict["problems"]
            logger.warning("round %d: answer refused, still waiting: %s", n, "; ".join(reason[:5]))
            continue
        imports.append({"reviewer": answer.reviewer, **verdict["result"]})
        if verdict["left"] == 0:
            return {"items": verdict["items"], "imports": imports}
        export = {**export, "left": verdict["left"]}
        reason = [
            f"imported {verdict['result'].get('imported', 0)} answers; {verdict['left']} of "
            f"{verdict['items']} frames still have none"
        ]


Round = Annotated[
    int,
    Field(
        ge=0,
        description="Round number: 0 trains on the labelled frames only; round N trains on round N-1's merged set.",
    ),
]
Runner = Optional[Literal["threads", "dask", "ray"]]


@flow(name="pseudo-label-round", log_prints=True)
def pseudo_label_round(
    round: Round,
    workspace: str = ".",
    params_file: str = "params.yaml",
    task_runner: Runner = None,
    dask_address: str | None = None,
    review_timeout_hours: Annotated[float | None, Field(gt=0)] = None,
    commit: bool = True,
    push: bool = True,
):
    """One pseudo-labelling round: train, evaluate, pseudo-label every clip, filter, hand the doubtful
    frames to the experts and wait for their review, merge, and version the round (DVC + git tag).

    task_runner / dask_address / review_timeout_hours default to params.yaml `orchestrate:`;
    commit=false leaves git alone, push=false skips `dvc push`."""
    opts = options(workspace, params_file, task_runner, dask_address, review_timeout_hours, commit, push)
    with _Held(opts.workspace, round, "pseudo-label-round"):
        result = run_round(round, opts)
    return result.pop("state") if result.get("stopped") else result
