"""The human-in-the-loop review wait: a round stops for its experts and goes on with their answers.

A deployment run suspends (`suspend_flow_run`: the worker is freed while experts take days; on
resume the flow function runs again and every finished task returns its recorded result); a run
started in a Python process pauses (`pause_flow_run`: the process waits). Either way the run waits
for a `ReviewInput` (reviewer, one answer: an export's path or a Label Studio project's number,
decision, notes), given in the Prefect UI's Resume form or by `visem-pl review submit --flow-run ID`;
the flow logs one line saying so. An answer that cannot be imported (no reviewer, no answer, missing
file, invalid export, items left) is refused with the reason in the next wait's description, and the
run keeps waiting.

Each wait has the pause key `review-round-<N>-<attempt>`; beside it the flow stores the round's
context (round, workspace, review folder) as the flow run input `visem-review-context-<N>`, which
`review submit` reads to check an export against the right queue before it resumes the run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from prefect.input import RunInput
from pydantic import Field, model_validator

PAUSE_KEY = re.compile(r"^review-round-(\d+)-(\d+)$")
PROJECT_NUMBER = re.compile(r"[0-9]+")

# Plain text: the UI's v1 renders a field's description as markdown, its v2 as it is.
ANSWER_HELP = (
    "Needed to import (not to stop): the absolute path of the reviewed export (Label Studio JSON or CVAT zip) "
    "on the machine running the round, e.g. /home/ann/exports/round-1.json, or the number of the Label Studio "
    "project the queue was pushed to with visem-pl review push, e.g. 12. An answer of digits only is read as "
    "a project number, anything else as a path."
)


class ReviewInput(RunInput):
    """What an expert (or a coordinator) gives back to a round waiting for review: the Prefect UI's Resume
    form, in this order. Every field is a plain `str` (or a choice): an optional type (`str | None`) is
    drawn by the UI as a type toggle ("Property is type None") that tells a biologist nothing."""

    # No default: the JSON schema lists it as required, so the UI marks it (its other fields say "Optional")
    # and the server refuses an answer without it. A blank name gets through and is refused by the flow
    # (read_answer), as an answer stored by the earlier form with no name is.
    reviewer: str = Field(title="Reviewer", description="Your name: it is recorded with every frame you reviewed.")
    answer: str = Field("", title="Answer", description=ANSWER_HELP)
    decision: Literal["import", "stop"] = Field(
        "import",
        title="Decision",
        description="import: take these answers and finish the round; stop: end the round here, nothing "
        "merged (no answer needed).",
    )
    notes: str = Field(
        "", title="Notes", description="Anything the coordinator should know (kept in the flow run's log)."
    )

    @model_validator(mode="before")
    @classmethod
    def _earlier_form(cls, data: Any) -> Any:
        """An answer given to the earlier form (export_path / label_studio_project), as a run suspended before
        this form existed has stored it: on resume the flow reads it with this class."""
        if isinstance(data, dict) and ({"export_path", "label_studio_project"} & data.keys()):
            data = dict(data)
            given = [data.pop(k, None) for k in ("export_path", "label_studio_project")]
            data.setdefault("answer", next((str(v) for v in given if v not in (None, "")), ""))
            data.setdefault("reviewer", "")  # the earlier form had a default; an empty one is refused later
        return data


def parse_answer(text: str | None) -> int | Path | None:
    """What the form's answer names: None when it is empty, a Label Studio project number when it is
    digits only, otherwise the export's path. Quotes around a path copied from a file manager are dropped.
    An absolute path starts with `/`, so it is never taken for a number."""
    value = (text or "").strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1].strip()
    if not value:
        return None
    return int(value) if PROJECT_NUMBER.fullmatch(value) else Path(value)


def read_answer(answer: Mapping, workspace: str | None = None) -> tuple[str, int | Path | None, list[str]]:
    """(reviewer, Label Studio project number or export path, problems) of an `import` answer. The problems
    are what can be told before any export is read (no reviewer, no answer, a path that is not absolute or
    not a file); they are shown at the top of the next form."""
    reviewer = str(answer.get("reviewer") or "").strip()
    target = parse_answer(answer.get("answer"))
    problems = []
    if not reviewer:
        problems.append("Reviewer is empty: give your name (it is recorded with every frame you reviewed).")
    if target is None:
        problems.append(
            "Answer is empty: give the reviewed export's absolute path, or the number of the Label Studio "
            "project the queue was pushed to (the decision `stop` needs no answer)."
        )
    elif isinstance(target, Path) and not target.is_absolute():
        where = f" (the round runs in {workspace})" if workspace else ""
        problems.append(f"{target}: give the export's absolute path on the machine running the round{where}")
    elif isinstance(target, Path) and not target.is_file():
        problems.append(f"{target}: {'a folder, not an export file' if target.is_dir() else 'no such file'}")
    return reviewer, target, problems


def pause_key(n: int, attempt: int) -> str:
    return f"review-round-{n}-{attempt}"


def context_key(n: int) -> str:
    return f"visem-review-context-{n}"


def waiting_line(n: int, left: int, flow_run_id: str) -> str:
    """The one log line a round writes when it stops for its experts: what waits and how to answer."""
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    page = f" ({ui.rstrip('/')}/runs/flow-run/{flow_run_id})" if ui else ""
    frames = "1 frame" if left == 1 else f"{left} frames"
    return (
        f"Round {n} waits for {frames} to be reviewed: answer in the Prefect UI's Resume form{page} or run "
        f"`visem-pl review submit --flow-run {flow_run_id} --export FILE --reviewer NAME`"
    )


def wait_for_review(
    n: int, attempt: int, export: dict, context: dict, reason: list[str] | None, timeout_s: int
) -> ReviewInput:
    """Ask the experts for round n's review and wait for their answer: the form's description says what
    waits and why the last answer was not taken (`reason`), one log line says how to answer; then the run
    suspends (deployment runs) or pauses (other runs) until a ReviewInput arrives.

    `export` holds the queue's counts (`queued`, `left`), `context` the round's folders and flow run id."""
    from prefect import get_run_logger
    from prefect.context import FlowRunContext
    from prefect.flow_runs import pause_flow_run, suspend_flow_run
    from prefect.input import create_flow_run_input, keyset_from_base_key, read_flow_run_input

    run = FlowRunContext.get().flow_run
    if read_flow_run_input(context_key(n), flow_run_id=run.id) is None:
        create_flow_run_input(context_key(n), context, flow_run_id=run.id)
    key, suspend = pause_key(n, attempt), run.deployment_id is not None
    # A resumed deployment run runs its flow again from the top, and each earlier wait returns its stored
    # answer at once (keys as Prefect names them: "<state>-<pause key>-response"): only a wait that has
    # no answer yet is announced, so the log says once per wait that the round waits.
    answered = keyset_from_base_key(f"{'suspended' if suspend else 'paused'}-{key}")["response"]
    if read_flow_run_input(answered, flow_run_id=run.id) is None:
        get_run_logger().info(waiting_line(n, export["left"], str(run.id)))
    form = ReviewInput.with_initial_data(description=describe_wait(n, export, context, reason))
    if suspend:
        return suspend_flow_run(wait_for_input=form, key=key, timeout=timeout_s)
    return pause_flow_run(wait_for_input=form, key=key, timeout=timeout_s)


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
        "absolute path (or the Label Studio project's number) as the Answer below, or run:",
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
