"""`visem-pl review ...`: the expert review queue of each round (status, export, import, push, pull, answer)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from tasks.cli_common import PARAMS_OPT, ROUND_OPT, stage_config, data_root, fail

review_app = typer.Typer(no_args_is_help=True, help="The expert review queue: status, export, import, push, pull (live Label Studio), answer.")

STORE_OPT = typer.Option(None, "--store", help="The queue folder (default: review/round-N).")


def _store(round_n: int, store: Optional[Path]):
    from tasks.queue import QueueStore
    from tasks.rounds import RoundPaths

    return QueueStore(store if store is not None else RoundPaths(round_n).review_folder)


def _answering_store(round_n: int, store: Optional[Path], reviewer: str, first: str):
    """The queue store answers go into, and the reviewer's name; exit 2 when either is missing."""
    st = _store(round_n, store)
    if not st.exists():
        fail([f"{st.root}: no review queue here; {first} first (`visem-pl review {first} --round {round_n} ...`)"])
    if not reviewer.strip():
        fail(["--reviewer must name someone"])
    return st, reviewer.strip()


@review_app.command()
def answer(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Answer round N's review queue (the DVC stage): experts' answers from review/round-N once that queue exists, else the simulated expert on synthetic data."""
    from tasks.dataset import locate
    from tasks.review import ReviewConfig, ReviewPending, collect_review, simulate_review
    from tasks.queue import QueueConfig, QueueStore
    from tasks.rounds import RoundPaths
    from tasks.truth import truth_for

    cfg = stage_config(params, "review", ReviewConfig, drop=tuple(f for f in QueueConfig.__dataclass_fields__))
    paths = RoundPaths(round_n)
    root = data_root(params)
    truth = truth_for(root)
    try:
        # Experts' answers rule once their queue exists (a Prefect round's review wait, or a
        # `review export`), also on synthetic data; otherwise the simulated expert answers there.
        if truth is not None and not QueueStore(paths.review_folder).exists():
            stats = simulate_review(round_n, paths.pseudo, paths.reviewed, truth, locate(root).clips(), cfg)
        else:
            stats = collect_review(round_n, paths.pseudo, paths.reviewed, paths.review_folder.parent)
    except (ReviewPending, ValueError) as exc:
        fail([str(exc)])
    typer.echo(json.dumps(stats))


@review_app.command()
def status(round_n: int = ROUND_OPT, store: Optional[Path] = STORE_OPT,
           as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Counts per state (pending, exported, reviewed, merged), per clip, and what is left."""
    from tasks.queue import QueueStore, merged_items, queue_status, read_queue
    from tasks.rounds import RoundPaths

    paths = RoundPaths(round_n)
    candidates = [store] if store is not None else [paths.review_folder, paths.reviewed / "queue"]
    found = next((QueueStore(c) for c in candidates if QueueStore(c).exists()), None)
    if found is not None:
        where, data = str(found.root), found.status(merged_items(paths.merged / "frames.csv"))
    elif store is None and paths.queue_csv.exists():
        where, data = str(paths.queue_csv), queue_status(read_queue(paths.queue_csv))
    else:
        fail([f"round {round_n}: no review queue yet (looked for {', '.join(map(str, candidates))} and "
              f"{paths.queue_csv}); run `dvc repro filter@{round_n}` first"])
    data = {"round": round_n, "queue": where, **data}
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from tasks.queue import STATES

    table = Table(title=f"Review queue of round {round_n} ({where})")
    table.add_column("clip")
    for s in STATES:
        table.add_column(s, justify="right")
    for clip, counts in data["clips"].items():
        table.add_row(clip, *(str(counts[s]) for s in STATES))
    table.add_row("all", *(str(data["states"][s]) for s in STATES), style="bold")
    console = Console()
    console.print(table)
    console.print(f"{data['left']} of {data['items']} items left to review"
                  + (f"; reviewers: {', '.join(data['reviewers'])}" if data["reviewers"] else ""))


def _init_store(round_n: int, store: Optional[Path]):
    from tasks.queue import read_queue
    from tasks.rounds import RoundPaths

    paths = RoundPaths(round_n)
    st = _store(round_n, store)
    if not st.exists():
        if not paths.queue_csv.exists():
            fail([f"{paths.queue_csv}: no review queue for round {round_n}; run `dvc repro filter@{round_n}` first"])
        try:
            st.init(read_queue(paths.queue_csv), round_n)
        except ValueError as exc:
            fail([str(exc)])
    return st, paths


@review_app.command("export")
def export_cmd(round_n: int = ROUND_OPT,
               fmt: str = typer.Option(..., "--format", "-f", help="labelstudio or cvat."),
               out: Optional[Path] = typer.Option(None, "--out", help="Write the batch folder here "
                                                  "(default: the queue folder's exports/)."),
               store: Optional[Path] = STORE_OPT, params: Path = PARAMS_OPT) -> None:
    """Export every item not reviewed yet (frame images + Label Studio tasks or CVAT zips)."""
    import pandas as pd

    from tasks.dataset import locate
    from tasks.exchange import FORMATS, export_queue

    if fmt not in FORMATS:
        fail([f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'"])
    st, paths = _init_store(round_n, store)
    boxes = pd.read_parquet(paths.pseudo / "boxes.parquet")
    try:
        result = export_queue(st, fmt, boxes, locate(data_root(params)).clips(), round_n, out=out)
    except ValueError as exc:
        fail([str(exc)])
    if result["batch"] is None:
        typer.echo("nothing to export: every item of the queue is reviewed")
    typer.echo(json.dumps(result))


@review_app.command("import")
def import_cmd(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The experts' file."),
               round_n: int = ROUND_OPT,
               reviewer: str = typer.Option(..., "--reviewer", help="Who reviewed (recorded per item)."),
               fmt: Optional[str] = typer.Option(None, "--format", "-f", help="labelstudio (.json) or cvat (.zip); "
                                                 "default from the file name."),
               replace: bool = typer.Option(False, "--replace", help="Overwrite answers already imported."),
               store: Optional[Path] = STORE_OPT) -> None:
    """Check an expert's file against the queue and import it all or nothing (problems: exit 2, nothing changed)."""
    from tasks.exchange import import_answers
    from tasks.queue import ImportRefused

    st, reviewer = _answering_store(round_n, store, reviewer, "export")
    try:
        result = import_answers(st, file, reviewer, fmt=fmt, replace=replace)
    except ImportRefused as exc:
        fail([f"{file}: refused, nothing imported ({len(exc.problems)} problem(s)):"] + exc.problems)
    except ValueError as exc:
        fail([str(exc)])
    if result["unchanged"]:
        typer.echo(f"{file}: already imported as {result['file']}; nothing to do")
    typer.echo(json.dumps(result))


# --- live Label Studio ------------------------------------------------------------------------------

def _live_server():
    from tasks.exchange.ls_live import LiveError, server_from_env

    try:
        return server_from_env()
    except LiveError as exc:
        fail([str(exc)])


@review_app.command("push")
def push_cmd(round_n: int = ROUND_OPT,
             document_root: Optional[Path] = typer.Option(
                 None, "--document-root", envvar="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", show_envvar=True,
                 help="The Label Studio server's local-files document root (default: the queue folder)."),
             title: Optional[str] = typer.Option(None, "--title", help="Project title (default: round and batch)."),
             store: Optional[Path] = STORE_OPT, params: Path = PARAMS_OPT) -> None:
    """Create a Label Studio project (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY) holding every item not reviewed yet."""
    import pandas as pd

    from tasks.dataset import locate
    from tasks.exchange.ls_live import LiveError, push

    server = _live_server()
    st, paths = _init_store(round_n, store)
    try:
        boxes = pd.read_parquet(paths.pseudo / "boxes.parquet")
        result = push(st, round_n, boxes, locate(data_root(params)).clips(), server,
                      document_root=document_root, title=title)
    except (LiveError, ValueError, OSError) as exc:
        fail([server.redact(exc)])
    if result["batch"] is None:
        typer.echo("nothing to push: every item of the queue is reviewed")
    typer.echo(json.dumps(result))


@review_app.command("pull")
def pull_cmd(round_n: int = ROUND_OPT,
             reviewer: str = typer.Option(..., "--reviewer", help="Who reviewed (recorded per item)."),
             batch: Optional[str] = typer.Option(None, "--batch", help="The pushed batch (default: the latest)."),
             replace: bool = typer.Option(False, "--replace", help="Overwrite answers already imported."),
             store: Optional[Path] = STORE_OPT) -> None:
    """Fetch the Label Studio project's annotations and import them all or nothing (problems: exit 2, nothing changed)."""
    from tasks.exchange.ls_live import LiveError, pull
    from tasks.queue import ImportRefused

    server = _live_server()
    st, reviewer = _answering_store(round_n, store, reviewer, "push")
    try:
        result = pull(st, server, reviewer, batch=batch, replace=replace)
    except ImportRefused as exc:
        fail([server.redact(f"Label Studio project of {st.root}: refused, nothing imported "
                            f"({len(exc.problems)} problem(s)):")] + [server.redact(p) for p in exc.problems])
    except (LiveError, ValueError, OSError) as exc:
        fail([server.redact(exc)])
    if result["unchanged"]:
        typer.echo(f"project {result['project']}: its annotations are already imported as {result['file']}; nothing to do")
    typer.echo(json.dumps(result))


# --- the Prefect review wait and the simulated expert ----------------------------------------------

@review_app.command("simulate")
def simulate_cmd(round_n: int = ROUND_OPT,
                 out: Path = typer.Option(..., "--out", help="Label Studio JSON export to write."),
                 batch: str | None = typer.Option(None, "--batch", help="Export batch to answer (default: the latest)."),
                 store: Path | None = STORE_OPT, params: Path = PARAMS_OPT) -> None:
    """Synthetic data: the simulated expert answers an exported Label Studio batch from the truth."""
    from tasks.io import write_json
    from tasks.queue import QueueConfig
    from tasks.review import ReviewConfig, simulated_export
    from tasks.truth import truth_for

    truth = truth_for(data_root(params))
    if truth is None:
        fail([f"{data_root(params)}: no synthetic truth here; the simulated expert answers synthetic data only"])
    cfg = stage_config(params, "review", ReviewConfig, drop=tuple(f for f in QueueConfig.__dataclass_fields__))
    st = _store(round_n, store)
    exports = [e for e in st.state()["exports"] if e["format"] == "labelstudio"] if st.exists() else []
    if batch is not None:
        exports = [e for e in exports if e["batch"] == batch]
    if not exports:
        fail([f"{st.root}: no Label Studio export{' ' + batch if batch else ''} to answer; "
              f"`visem-pl review export --round {round_n} --format labelstudio` first"])
    tasks_json = st.exports / exports[-1]["batch"] / "tasks.json"
    export, _ = simulated_export(json.loads(tasks_json.read_text(encoding="utf-8")), truth, cfg)
    write_json(out, export)
    typer.echo(json.dumps({"batch": exports[-1]["batch"], "items": len(export), "out": str(out)}))


@review_app.command("submit")
def submit_cmd(flow_run: str = typer.Option(..., "--flow-run", help="The waiting flow run's id (Prefect UI, "
                                            "`prefect flow-run ls --state Suspended`)."),
               export: Path | None = typer.Option(None, "--export", help="The reviewed export: Label Studio "
                                                     "JSON or CVAT zip."),
               project: int | None = typer.Option(None, "--label-studio-project",
                                                     help="Or: the Label Studio project to pull."),
               reviewer: str = typer.Option(..., "--reviewer", help="Who reviewed."),
               decision: str = typer.Option("import", "--decision", help="import (finish the round) or stop."),
               notes: str = typer.Option("", "--notes", help="Kept in the flow run's log.")) -> None:
    """Answer a round waiting for review in Prefect: check the export against its queue, then resume the run
    (Prefect has no CLI to resume). A refused answer leaves the run waiting (exit 2)."""
    from uuid import UUID

    from flows.review_wait import ReviewInput, SubmitError, resume_with, waiting_review
    from tasks.exchange import check_answers
    from tasks.queue import QueueStore

    try:
        run_id = UUID(flow_run)
    except ValueError:
        fail([f"--flow-run: not a flow run id: {flow_run!r}"])
    if decision not in ("import", "stop"):
        fail([f"--decision must be import or stop, got {decision!r}"])
    if not reviewer.strip():
        fail(["--reviewer must name someone"])
    if decision == "import" and (export is None) == (project is None):
        fail(["give --export FILE or --label-studio-project ID (one of them)"])
    try:
        run, n, context = waiting_review(run_id)
    except SubmitError as exc:
        fail([str(exc)])
    if decision == "import" and export is not None:
        export = export.resolve()
        store = QueueStore(context.get("store") or Path("review") / f"round-{n}")
        problems = check_answers(store, export)
        if problems:
            fail([f"{export}: refused, flow run {run_id} keeps waiting ({len(problems)} problem(s)):"] + problems[:50])
    answer = ReviewInput(reviewer=reviewer.strip(), export_path=str(export) if export else None,
                         label_studio_project=project, decision=decision, notes=notes)
    try:
        resume_with(run_id, answer)
    except Exception as exc:  # noqa: BLE001 - Prefect's reasons (not paused, timed out, invalid input) end here
        fail([f"flow run {run_id}: not resumed: {exc}"])
    typer.echo(json.dumps({"flow_run": str(run_id), "round": n, "resumed": True, "decision": decision}))
