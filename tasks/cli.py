"""`visem-pl`: the one command line that users, `dvc.yaml` stages and Prefect flows drive.

Each subcommand is a thin shell over a plain function in `tasks/`; imports are lazy so
`visem-pl --help` answers at once.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from tasks import offline

offline.configure()

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Semi-supervised pseudo-labelling for VISEM-Tracking sperm videos.")

EXIT_BAD_INPUT = 2


def _fail(lines: list[str], extra: int = 0) -> None:
    for line in lines:
        typer.echo(line, err=True)
    if extra:
        typer.echo(f"... and {extra} more problem(s) not shown", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def validate(
    root: Path = typer.Argument(..., help="Zip root, VISEM_Tracking_Train_v4/ or Train/."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    deep: bool = typer.Option(False, help="Decode every frame instead of checking JPEG structure."),
    max_problems: int = typer.Option(200, help="Report at most this many problems."),
) -> None:
    """Check every label line, frame, video and CSV; print a summary or every problem (exit 2)."""
    from tasks.dataset import DatasetNotFound
    from tasks.validate import validate as run

    try:
        report = run(root, deep=deep, max_problems=max_problems)
    except DatasetNotFound as exc:
        _fail([f"{exc}"])
    if not report.ok:
        _fail([str(p) for p in report.problems], report.truncated)
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
    from tasks.params import load_params, synth_config

    section = load_params(params).get("synth", {}) if params else {}
    overrides = {k: v for k, v in dict(seed=seed, frames_per_video=frames_per_video, scale=scale).items()
                 if v is not None}
    from tasks.synth import synthesize

    try:
        cfg = synth_config({**section, **overrides})
        counts = synthesize(out, cfg, progress=sys.stderr.isatty(), overwrite=overwrite)
    except (ValueError, FileExistsError) as exc:
        _fail([str(exc)])
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
    from tasks.contact_sheet import render_contact_sheet

    path = render_contact_sheet(root, out, n_frames=frames, seed=seed)
    typer.echo(str(path))


@app.command()
def replica(
    out: Path = typer.Argument(..., help="Folder to write the label-only replica into."),
    videos: Optional[str] = typer.Option(None, help="Comma-separated video ids (default: all 20)."),
) -> None:
    """Rebuild the real label files' counts from sperm_counts_per_frame.csv (for checks and benchmarks)."""
    from tasks import layout
    from tasks.replica import build_replica

    ids = tuple(int(v) for v in videos.split(",")) if videos else layout.ANNOTATED_IDS
    typer.echo(json.dumps(build_replica(out, ids), indent=2))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
