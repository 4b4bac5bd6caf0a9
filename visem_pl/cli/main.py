"""`visem-pl`: the one command line that users and `dvc.yaml` stages drive.

Each stage command calls the stage's function in `visem_pl.tasks` (named in `dvc.yaml`); imports
are lazy so `visem-pl --help` answers at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from visem_pl.cli.bench import bench_app
from visem_pl.cli.common import PARAMS_OPT, ROUND_OPT, bad_input, fail, workspace
from visem_pl.cli.review import review_app
from visem_pl.tasks.workspace import offline
from visem_pl.tasks.workspace.paths import Workspace

offline.configure()

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Semi-supervised pseudo-labelling for VISEM-Tracking sperm videos."
)
app.add_typer(review_app, name="review")
app.add_typer(bench_app, name="bench")


@app.callback()
def _logging() -> None:
    """The project's own log lines (e.g. the inference trial's numbers) on stderr, one plain line each."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("visem_pl")
    if not root.handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO)


@app.command()
def validate(
    root: Path = typer.Argument(..., help="Zip root, VISEM_Tracking_Train_v4/ or Train/."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    deep: bool = typer.Option(False, help="Decode every frame instead of checking JPEG structure."),
    max_problems: int = typer.Option(200, help="Report at most this many problems."),
    metrics: Optional[Path] = typer.Option(None, help="Also write the summary to this JSON file."),
    on_bad_clip: Optional[str] = typer.Option(
        None,
        help="skip (default): an unreadable unlabelled clip is reported and left out; "
        "fail: it is an error like any other problem. Default: --params' data.on_bad_clip, else skip.",
    ),
    params: Optional[Path] = typer.Option(None, help="params.yaml whose data.on_bad_clip sets the default."),
) -> None:
    """Check every label line, frame, video and CSV; print a summary or every problem (exit 2)."""
    from visem_pl.tasks.dataset.reader import DatasetNotFound
    from visem_pl.tasks.dataset.validate import ON_BAD_CLIP
    from visem_pl.tasks.dataset.validate import validate as run

    if on_bad_clip is None:
        with bad_input():
            on_bad_clip = workspace(params).on_bad_clip() if params else "skip"
    elif on_bad_clip not in ON_BAD_CLIP:
        fail([f"--on-bad-clip: must be one of {', '.join(ON_BAD_CLIP)}, not {on_bad_clip!r}"])
    with bad_input(DatasetNotFound):
        report = run(root, deep=deep, max_problems=max_problems, on_bad_clip=on_bad_clip)
    if not report.ok:
        fail([str(p) for p in report.problems], report.truncated)
    for p in report.bad_clips:
        typer.echo(f"warning: {p}: clip left out of every round (on_bad_clip: skip)", err=True)
    if metrics:
        from visem_pl.tasks.workspace.io import write_json

        write_json(metrics, report.summary)
    if as_json:
        typer.echo(json.dumps(report.summary, indent=2))
    else:
        _print_summary(report.summary)


def _print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="VISEM-Tracking dataset", show_header=True)
    table.add_column("item")
    table.add_column("value", justify="right")
    for key in ("videos", "images", "label_files", "frames_without_labels", "participants"):
        table.add_row(key, f"{summary[key]:,}")
    for key in ("boxes", "tracks", "clips"):
        for sub, value in summary[key].items():
            table.add_row(f"{key}.{sub}", f"{value:,}")
    Console().print(table)


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Folder to create (the zip-root layout goes inside)."),
    params: Optional[Path] = typer.Option(None, help="params.yaml whose 'synth' section sets the defaults."),
    seed: Optional[int] = typer.Option(None),
    frames_per_video: Optional[int] = typer.Option(None, help="0 = the real length of each video."),
    scale: Optional[float] = typer.Option(None, help="Multiplies the real per-frame concentrations."),
    overwrite: bool = typer.Option(False, help="Replace an existing non-empty OUT."),
    as_json: bool = typer.Option(False, "--json", help="Print the generator's counts as JSON."),
) -> None:
    """Write a synthetic dataset in the exact real layout, with ground truth in OUT/_truth/."""
    from visem_pl.tasks.synth import synthesize
    from visem_pl.tasks.synth.config import synth_config

    overrides = {
        k: v for k, v in dict(seed=seed, frames_per_video=frames_per_video, scale=scale).items() if v is not None
    }
    with bad_input(ValueError, FileExistsError):
        section = workspace(params).params().get("synth", {}) if params else {}
        cfg = synth_config({**section, **overrides})
        counts = synthesize(out, cfg, overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps(counts, indent=2))
    else:
        _print_summary(counts)


@app.command("contact-sheet")
def contact_sheet(
    root: Path = typer.Argument(..., help="Dataset root (any level the reader accepts)."),
    out: Path = typer.Argument(..., help="PNG to write."),
    frames: int = typer.Option(6, help="How many frames to show."),
    seed: int = typer.Option(0, help="Which frames: a seeded pick across videos."),
) -> None:
    """Render frames with their boxes (sperm red, cluster green, pinhead blue) to one PNG."""
    from visem_pl.tasks.dataset.contact_sheet import render_contact_sheet

    typer.echo(str(render_contact_sheet(root, out, n_frames=frames, seed=seed)))


@app.command()
def replica(
    out: Path = typer.Argument(..., help="Folder to write the label-only replica into."),
    videos: Optional[str] = typer.Option(None, help="Comma-separated video ids (default: all 20)."),
) -> None:
    """Rebuild the real label files' counts from sperm_counts_per_frame.csv (for checks and benchmarks)."""
    from visem_pl.tasks.dataset import layout
    from visem_pl.tasks.dataset.replica import build_replica

    ids = tuple(int(v) for v in videos.split(",")) if videos else layout.ANNOTATED_IDS
    typer.echo(json.dumps(build_replica(out, ids), indent=2))


@app.command()
def prepare(
    params: Path = PARAMS_OPT, out: Optional[Path] = typer.Option(None, help="Default: data/prepared.")
) -> None:
    """Choose the labelled training and validation frames (split and frame stride from params.yaml)."""
    from visem_pl.tasks.training.stages import prepare_stage

    with bad_input(ValueError):
        counts = prepare_stage(workspace(params), out)
    typer.echo(json.dumps(counts))


@app.command()
def train(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Train round N: from the model .yaml/weights for round 0, from round N-1's weights after."""
    from visem_pl.tasks.training.stages import train_stage

    with bad_input():
        info = train_stage(workspace(params), round_n)
    typer.echo(json.dumps(info))


@app.command()
def evaluate(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Score round N's model on the validation videos (metrics/rounds/round-N/eval.json)."""
    from visem_pl.tasks.training.stages import evaluate_stage

    with bad_input():
        result = evaluate_stage(workspace(params), round_n)
    typer.echo(json.dumps(result["overall"]))


@app.command()
def control(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Round N's weights + round N+1's budget on the labelled frames only: the control round N+1 must beat
    for its pseudo-labels to have paid (metrics/rounds/round-N/control.json)."""
    from visem_pl.tasks.training.stages import control_stage

    with bad_input(FileNotFoundError):
        result = control_stage(workspace(params), round_n)
    typer.echo(json.dumps(result["overall"]))


@app.command()
def infer(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Pseudo-label every unlabelled clip with round N's model (resumable, one file per clip)."""
    from visem_pl.tasks.inference.clips import ClipError
    from visem_pl.tasks.inference.stages import infer_stage

    with bad_input():
        try:
            stats = infer_stage(workspace(params), round_n)
        except ClipError as exc:  # data.on_bad_clip: fail, or a labelled validation video (always strict)
            fail([str(exc), "a clip that cannot be decoded stops the round where data.on_bad_clip is fail "
                  "(skip leaves it out); a labelled validation video always does"])  # fmt: skip
    typer.echo(json.dumps(stats))


@app.command()
def track(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Link round N's boxes into tracks, one file per clip (resumable); scored against truth where it exists."""
    from visem_pl.tasks.tracking.stages import track_stage

    with bad_input(ValueError, FileNotFoundError):  # a damaged prediction or label file, named with its line
        stats = track_stage(workspace(params), round_n)
    typer.echo(json.dumps(stats))


@app.command()
def motility(
    round_n: int = ROUND_OPT,
    params: Path = PARAMS_OPT,
    json_out: bool = typer.Option(False, "--json", help="print the JSON result (only) on stdout"),
) -> None:
    """CASA motility of round N's tracks: PR / NP / IM per clip and participant, and its error against
    the synthetic truth and the lab's values where they exist (metrics/rounds/round-N/motility.json)."""
    from visem_pl.tasks.tracking.stages import motility_stage

    with bad_input(ValueError, FileNotFoundError):
        result = motility_stage(workspace(params), round_n)
    if json_out:
        typer.echo(json.dumps(result))
        return
    typer.echo(motility_table(result))


def motility_table(result: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{v:.1f}"

    lines = ["| clip | participant | tracks | PR % | NP % | IM % | cells/frame |", "|---|---|---|---|---|---|---|"]
    for c in result["clips"]:
        lines.append(f"| {c['clip']} | {c['participant']} | {c['tracks']} | {pct(c['pr'])} | {pct(c['np'])} | "
                     f"{pct(c['im'])} | {c['cells_per_frame']} |")  # fmt: skip
    lines += ["", "| participant | clips | tracks | PR % | NP % | IM % |", "|---|---|---|---|---|---|"]
    for p in result["participants"]:
        lines.append(f"| {p['participant']} | {p['clips']} | {p['tracks']} | {pct(p['pr'])} | {pct(p['np'])} | "
                     f"{pct(p['im'])} |")  # fmt: skip
    lines.append("")
    for key, what in (("mae_pp", "vs the simulated cells, round's tracks"),
                      ("mae_pp_truth_boxes", "vs the simulated cells, tracker fed the truth boxes"),
                      ("mae_pp_truth_paths", "vs the simulated cells, classes of their true paths"),
                      ("mae_pp_lab", "vs the lab's values per participant")):  # fmt: skip
        if key in result:
            m = result[key]
            lines.append(f"MAE {what}: PR {pct(m['pr'])} / NP {pct(m['np'])} / IM {pct(m['im'])} pp (n={m['n']})")
    if "tracking_scored_on" in result:
        lines.append(f"tracking scored on the {result['tracking_scored_on']}:")
    for key in ("tracking", "tracking_truth_boxes", "tracking_validation", "tracking_validation_label_boxes"):
        if key in result:
            lines.append(f"{key}: " + ", ".join(f"{k.upper()} {v}" for k, v in result[key].items()))
    return "\n".join(lines)


@app.command("filter")
def filter_cmd(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Split round N's boxes into accept / review / reject bands per class; build the review queue."""
    from visem_pl.tasks.pseudo.stages import filter_stage

    with bad_input():
        stats = filter_stage(workspace(params), round_n)
    typer.echo(json.dumps(stats))


@app.command()
def merge(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Build round N+1's training set: labelled + accepted pseudo-labels + reviewed labels, each reviewed
    frame's answer carried along the tracks through it (merge.track_verdicts)."""
    from visem_pl.tasks.pseudo.stages import merge_stage

    with bad_input(ValueError):
        stats = merge_stage(workspace(params), round_n)
    typer.echo(json.dumps(stats))


@app.command()
def quality(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Precision and recall of round N's pseudo-labels per class and band (synthetic truth only)."""
    from visem_pl.tasks.pseudo.stages import quality_stage

    with bad_input():
        result = quality_stage(workspace(params), round_n)
    typer.echo(json.dumps(result.get("accept", result)))


@app.command()
def report(
    as_json: bool = typer.Option(False, "--json"),
    out: Optional[Path] = typer.Option(None, help="Also write the report JSON here (a DVC metric)."),
    plot: Optional[Path] = typer.Option(
        None, help="Also write fitness and mAP per class by round here (CSV, DVC plot)."
    ),
    html_path: Optional[Path] = typer.Option(
        None, "--html", help="Also write the round report as one offline HTML page here (figures, review, frames)."
    ),
) -> None:
    """Per round: mAP@0.5, mAP@0.5:0.95, fitness, accepted boxes, review items, pseudo-label quality,
    tracking IDF1 and motility error; with --html, the same and the curves, bands, review and frames as a page."""
    from visem_pl.tasks.report import report_stage

    data = report_stage(Workspace(), out, plot)
    if html_path is not None:
        from visem_pl.tasks.reporting.page import write_report

        written = write_report(Workspace(), html_path)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _print_table(data)
    if html_path is not None:  # last, where a reader looks; stderr, so that with --json stdout is the JSON alone
        size = f"{written['bytes'] / 1e6:.1f} MB, {written['images']} figures"
        typer.echo(f"HTML round report: {html_path.resolve()} ({size}; opens offline)", err=True)


def _print_table(data: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from visem_pl.tasks.report import CAPTION, COLUMNS, notes, rows

    table = Table(title="Pseudo-labelling rounds", caption=CAPTION)
    for _, title in COLUMNS:
        table.add_column(title, justify="right", no_wrap=True, min_width=len(title))
    for cells in rows(data):
        table.add_row(*cells)
    # Never narrower than the table: piped or in `make demo`, rich would assume 80 columns and cut titles.
    console = Console(width=max(Console().width, 110))
    console.print(table)
    for note in notes(data):
        console.print(note, markup=False, highlight=False)


@app.command()
def serve(
    name: str = typer.Option("visem-pl", help="Deployment name: 'pseudo-label-round/NAME'."),
    limit: int = typer.Option(2, min=1, help="Flow runs at once (a round locks its workspace)."),
) -> None:
    """Serve the Prefect deployments pseudo-label-round and pseudo-label-campaign from this folder."""
    from visem_pl.flows.serve import NoServer
    from visem_pl.flows.serve import serve as run

    with bad_input(NoServer):
        run(name, limit)


if __name__ == "__main__":  # pragma: no cover
    app()
