"""`visem-pl review ...`: the expert review queue of each round (answer, status, export, import, push, pull,
simulate, submit). Each command calls one function of `visem_pl.tasks.review`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from visem_pl.cli.common import PARAMS_OPT, ROUND_OPT, bad_input, fail, workspace
from visem_pl.tasks.workspace.errors import Refused
from visem_pl.tasks.workspace.paths import Workspace

review_app = typer.Typer(
    no_args_is_help=True,
    help="The expert review queue: status, export, import, push, pull (live Label Studio), answer.",
)

STORE_OPT = typer.Option(None, "--store", help="The queue folder (default: review/round-N).")


@review_app.command()
def answer(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Answer round N's review queue (the DVC stage): experts' answers from review/round-N once that queue
    exists, else the simulated expert on synthetic data."""
    from visem_pl.tasks.review.stages import ReviewPending, review_stage

    with bad_input(ReviewPending, ValueError):
        stats = review_stage(workspace(params), round_n)
    typer.echo(json.dumps(stats))


@review_app.command()
def status(
    round_n: int = ROUND_OPT,
    store: Optional[Path] = STORE_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Counts per state (pending, exported, reviewed, merged), per clip, and what is left."""
    from visem_pl.tasks.review import handoff
    from visem_pl.tasks.review.queue import STATES

    with bad_input(Refused):
        data = handoff.status(Workspace(), round_n, store)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Review queue of round {round_n} ({data['queue']})")
    table.add_column("clip")
    for s in STATES:
        table.add_column(s, justify="right")
    for clip, counts in data["clips"].items():
        table.add_row(clip, *(str(counts[s]) for s in STATES))
    table.add_row("all", *(str(data["states"][s]) for s in STATES), style="bold")
    console = Console()
    console.print(table)
    console.print(
        f"{data['left']} of {data['items']} items left to review"
        + (f"; reviewers: {escape(', '.join(data['reviewers']))}" if data["reviewers"] else "")
    )
    if data["per_reviewer"]:
        who = Table(title="Items per reviewer (answered: frames they annotated; taken: reviewed with their answer)")
        who.add_column("reviewer")
        who.add_column("answered", justify="right")
        who.add_column("taken", justify="right")
        for name, counts in data["per_reviewer"].items():
            who.add_row(escape(name), str(counts["answered"]), str(counts["taken"]))
        console.print(who)
    agreement = data["agreement"]
    if agreement["items"]:
        console.print(
            f"agreement: {agreement['items']} item(s) answered by several reviewers, mean F1 "
            f"{agreement['mean_f1']:.3f} (boxes matched by class and IoU >= 0.5)"
        )
        for pair in agreement["pairs"]:
            console.print(
                f"  {escape(' vs '.join(pair['annotators']))}: {pair['items']} item(s), mean F1 {pair['mean_f1']:.3f}"
            )
    for item, why in data["requeued"].items():
        console.print(f"back in the queue: {item}: {why}", markup=False, highlight=False)
    if "warning" in data:
        console.print(f"warning: {data['warning']}", markup=False, highlight=False)


@review_app.command("export")
def export_cmd(
    round_n: int = ROUND_OPT,
    fmt: str = typer.Option(..., "--format", "-f", help="labelstudio or cvat."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Write the batch folder here (default: the queue folder's exports/)."
    ),
    store: Optional[Path] = STORE_OPT,
    params: Path = PARAMS_OPT,
) -> None:
    """Export every item not reviewed yet (frame images + Label Studio tasks or CVAT zips)."""
    from visem_pl.tasks.review import handoff

    with bad_input(ValueError):
        result = handoff.export(workspace(params), round_n, fmt, out=out, store=store)
    if result["batch"] is None:
        typer.echo("nothing to export: every item of the queue is reviewed")
    typer.echo(json.dumps(result))


@review_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The experts' file."),
    round_n: int = ROUND_OPT,
    reviewer: str = typer.Option(
        ...,
        "--reviewer",
        help="Who imports; recorded per item unless the file names its annotators (a Label Studio export with "
        "annotator details).",
    ),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", help="labelstudio (.json) or cvat (.zip); default from the file name."
    ),
    replace: bool = typer.Option(False, "--replace", help="Overwrite answers already imported."),
    store: Optional[Path] = STORE_OPT,
    params: Path = PARAMS_OPT,
) -> None:
    """Check an expert's file against the queue and import it all or nothing (problems: exit 2, nothing changed).
    A task several experts annotated is taken as params.yaml review.multiple_annotations says."""
    from visem_pl.tasks.review import handoff

    with bad_input(ValueError):
        result = handoff.import_file(workspace(params), round_n, file, reviewer, fmt=fmt, replace=replace, store=store)
    if result["unchanged"]:
        typer.echo(f"{file}: already imported as {result['file']}; nothing to do")
    typer.echo(json.dumps(result))


# --- live Label Studio ------------------------------------------------------------------------------


def _live_server():
    from visem_pl.tasks.review.exchange.live import LiveError, server_from_env

    with bad_input(LiveError):
        return server_from_env()


@review_app.command("push")
def push_cmd(
    round_n: int = ROUND_OPT,
    document_root: Optional[Path] = typer.Option(
        None,
        "--document-root",
        envvar="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT",
        show_envvar=True,
        help="The Label Studio server's local-files document root (default: the queue folder).",
    ),
    title: Optional[str] = typer.Option(None, "--title", help="Project title (default: round and batch)."),
    store: Optional[Path] = STORE_OPT,
    params: Path = PARAMS_OPT,
) -> None:
    """Create a Label Studio project (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY) holding every item not reviewed yet."""
    from visem_pl.tasks.review import handoff

    server = _live_server()
    with bad_input(Refused):
        result = handoff.push(workspace(params), round_n, server, document_root=document_root, title=title, store=store)
    if result["batch"] is None:
        typer.echo("nothing to push: every item of the queue is reviewed")
    typer.echo(json.dumps(result))


@review_app.command("pull")
def pull_cmd(
    round_n: int = ROUND_OPT,
    reviewer: Optional[str] = typer.Option(
        None,
        "--reviewer",
        help="Who pulls (default: the API key's Label Studio user); each item records the Label Studio users "
        "who annotated it.",
    ),
    batch: Optional[str] = typer.Option(None, "--batch", help="The pushed batch (default: the latest)."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite answers already imported."),
    store: Optional[Path] = STORE_OPT,
    params: Path = PARAMS_OPT,
) -> None:
    """Fetch the Label Studio project's annotations and import them all or nothing (problems: exit 2, nothing
    changed). A task several experts annotated is taken as params.yaml review.multiple_annotations says."""
    from visem_pl.tasks.review import handoff

    server = _live_server()
    with bad_input(Refused):
        result = handoff.pull(workspace(params), round_n, server, reviewer, batch=batch, replace=replace, store=store)
    if result["unchanged"]:
        typer.echo(
            f"project {result['project']}: its annotations are already imported as {result['file']}; nothing to do"
        )
    typer.echo(json.dumps(result))


# --- the Prefect review wait and the simulated expert ----------------------------------------------


@review_app.command("simulate")
def simulate_cmd(
    round_n: int = ROUND_OPT,
    out: Path = typer.Option(..., "--out", help="Label Studio JSON export to write."),
    batch: Optional[str] = typer.Option(None, "--batch", help="Export batch to answer (default: the latest)."),
    store: Optional[Path] = STORE_OPT,
    params: Path = PARAMS_OPT,
) -> None:
    """Synthetic data: the simulated expert answers an exported Label Studio batch from the truth."""
    from visem_pl.tasks.review import handoff

    with bad_input(Refused):
        result = handoff.simulate(workspace(params), round_n, out, batch=batch, store=store)
    typer.echo(json.dumps(result))


@review_app.command("submit")
def submit_cmd(
    flow_run: str = typer.Option(
        ..., "--flow-run", help="The waiting flow run's id (Prefect UI, `prefect flow-run ls --state Suspended`)."
    ),
    export: Optional[Path] = typer.Option(None, "--export", help="The reviewed export: Label Studio JSON or CVAT zip."),
    project: Optional[int] = typer.Option(
        None, "--label-studio-project", min=1, help="Or: the Label Studio project to pull (its number)."
    ),
    reviewer: str = typer.Option(..., "--reviewer", help="Who reviewed."),
    decision: str = typer.Option("import", "--decision", help="import (finish the round) or stop."),
    notes: str = typer.Option("", "--notes", help="Kept in the flow run's log."),
) -> None:
    """Answer a round waiting for review in Prefect: check the export against its queue, then resume the run
    (Prefect has no CLI to resume). A refused answer leaves the run waiting (exit 2)."""
    from uuid import UUID

    from visem_pl.flows.review_wait import ReviewInput, SubmitError, resume_with, waiting_review
    from visem_pl.tasks.review import handoff

    try:
        run_id = UUID(flow_run)
    except ValueError:
        fail([f"--flow-run: not a flow run id: {flow_run!r}"])
    if decision not in ("import", "stop"):
        fail([f"--decision must be import or stop, got {decision!r}"])
    with bad_input(Refused):
        reviewer = handoff.require_reviewer(reviewer)
    if decision == "import" and (export is None) == (project is None):
        fail(["give --export FILE or --label-studio-project ID (one of them)"])
    with bad_input(SubmitError):
        _, n, context = waiting_review(run_id)
    if decision == "import" and export is not None:
        export = export.resolve()
        ws = Workspace(Path(context.get("workspace") or "."))
        problems = handoff.check_file(ws, n, export, store=Path(context["store"]) if context.get("store") else None)
        if problems:
            fail([f"{export}: refused, flow run {run_id} keeps waiting ({len(problems)} problem(s)):"] + problems[:50])
    # The form's one answer field: the export's absolute path, or the project's number (digits only).
    given = str(export) if export is not None else str(project) if project is not None else ""
    answer = ReviewInput(reviewer=reviewer, answer=given, decision=decision, notes=notes)
    try:
        resume_with(run_id, answer)
    except Exception as exc:  # noqa: BLE001 - Prefect's reasons (not paused, timed out, invalid input) end here
        fail([f"flow run {run_id}: not resumed: {exc}"])
    typer.echo(json.dumps({"flow_run": str(run_id), "round": n, "resumed": True, "decision": decision}))
