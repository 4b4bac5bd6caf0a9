"""The human-in-the-loop review wait: a round stops for its experts and goes on with their answers.

A deployment run suspends (`suspend_flow_run`: the worker is freed while experts take days; on
resume the flow function runs again and every finished task returns its recorded result); a run
started in a Python process pauses (`pause_flow_run`: the process waits). Either way the run waits
for a `ReviewInput`, given in the Prefect UI's form or by `visem-pl review submit --flow-run ID`.
An answer that cannot be imported (missing file, invalid export, items left) is refused with the
reason in the next wait's description, and the run keeps waiting.

Each wait has the pause key `review-round-<N>-<attempt>`; beside it the flow stores the round's
context (round, workspace, review folder) as the flow run input `visem-review-context-<N>`, which
`review submit` reads to check an export against the right queue before it resumes the run.
"""

from __future__ import annotations

import re
from typing import Literal
from uuid import UUID

from prefect.input import RunInput
from pydantic import Field

PAUSE_KEY = re.compile(r"^review-round-(\d+)-(\d+)$")


class ReviewInput(RunInput):
    """What an expert (or a coordinator) gives back to a round waiting for review."""

    reviewer: str = Field("", description="Who reviewed (recorded per item in the review queue).")
    export_path: str | None = Field(
        None,
        description="Absolute path of the reviewed export on the machine running the round: a Label "
        "Studio JSON export or a CVAT zip (YOLO 1.1 / Ultralytics YOLO Detection 1.0).",
    )
    label_studio_project: int | None = Field(
        None,
        description="Or: the Label Studio project the queue was pushed to (`visem-pl review push`); "
        "its annotations are pulled with LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY.",
    )
    decision: Literal["import", "stop"] = Field(
        "import",
        description="import: take these answers and finish the round; stop: end the round here, nothing merged.",
    )
    notes: str = Field("", description="Anything the coordinator should know (kept in the flow run's log).")


def pause_key(n: int, attempt: int) -> str:
    return f"review-round-{n}-{attempt}"


def context_key(n: int) -> str:
    return f"visem-review-context-{n}"


def wait_for_review(n: int, attempt: int, description: str, timeout_s: int, context: dict) -> ReviewInput:
    """Suspend (deployment runs) or pause (other runs) until a ReviewInput arrives."""
    from prefect.context import FlowRunContext
    from prefect.flow_runs import pause_flow_run, suspend_flow_run
    from prefect.input import create_flow_run_input, read_flow_run_input

    run = FlowRunContext.get().flow_run
    if read_flow_run_input(context_key(n), flow_run_id=run.id) is None:
        create_flow_run_input(context_key(n), context, flow_run_id=run.id)
    form = ReviewInput.with_initial_data(description=description)
    if run.deployment_id is not None:
        return suspend_flow_run(wait_for_input=form, key=pause_key(n, attempt), timeout=timeout_s)
    return pause_flow_run(wait_for_input=form, key=pause_key(n, attempt), timeout=timeout_s)


def describe_wait(n: int, export: dict, context: dict, reason: list[str] | None) -> str:
    """The text the expert sees above the form: what waits, where, and how to answer."""
    lines = []
    if reason:
        lines += [
            "**The last answer was not taken** (the round keeps waiting):",
            "",
            *[f"- {r}" for r in reason[:20]],
            "",
        ]
    lines += [
        f"**Round {n}: {export['left']} of {export['queued']} frames wait for review.**",
        "",
        f"- Label Studio tasks (model boxes as predictions): `{context['tasks_json']}`",
        f"- Frame images: `{context['images']}`",
        f"- Labelling config: `{context['labelling_config']}`",
        f"- Review queue: `{context['store']}` (`visem-pl review status --round {n}`)",
        "",
        "Import the tasks into Label Studio (or export for CVAT with `visem-pl review export --round "
        f"{n} --format cvat`), correct every box, export the annotations (JSON), then give the export's "
        "absolute path below, or run in the workspace:",
        "",
        f"`visem-pl review submit --flow-run {context['flow_run']} --export FILE --reviewer NAME`",
    ]
    return "\n".join(lines)


# --- `visem-pl review submit` ------------------------------------------------------------------------


class SubmitError(ValueError):
    """The flow run is not waiting for a review, or the answer would be refused."""


def waiting_review(flow_run_id: UUID) -> tuple[object, int, dict]:
    """(flow run, round, context) of a flow run waiting for its review; SubmitError otherwise."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.input import read_flow_run_input

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            raise SubmitError(f"flow run {flow_run_id}: not found on {client.api_url}") from None
    state = run.state
    key = state.state_details.pause_key if state is not None else None
    match = PAUSE_KEY.match(key or "")
    if state is None or not state.is_paused() or not match:
        raise SubmitError(
            f"flow run {flow_run_id} ({run.name}) is not waiting for a review "
            f"(state: {state.name if state else 'none'})"
        )
    n = int(match.group(1))
    context = read_flow_run_input(context_key(n), flow_run_id=flow_run_id) or {}
    return run, n, context


def resume_with(flow_run_id: UUID, answer: ReviewInput) -> None:
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(flow_run_id, run_input=answer.model_dump(mode="json"))
