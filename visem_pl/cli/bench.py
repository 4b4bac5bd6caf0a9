"""`visem-pl bench ...`: benchmark scripts of `benchmarks/` behind the one command line."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import typer

REPO = Path(__file__).resolve().parents[2]

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (scripts in benchmarks/, not timed tests).")


@bench_app.command("infer")
def infer(
    repeat: int = typer.Option(3, help="interleaved repetitions; the best of each is kept"),
    frames: int = typer.Option(150, help="frames per synthetic clip"),
    timed_clips: int = typer.Option(2, help="clips in each timed throughput run"),
    out: Path = typer.Option(REPO / "metrics" / "bench_infer.json", help="JSON results"),
) -> None:
    """Naive Ultralytics loop vs our inference stage vs the backend's forward limit (benchmarks/bench_infer.py)."""
    script = REPO / "benchmarks" / "bench_infer.py"
    if not script.exists():
        raise typer.BadParameter(f"{script} is missing (benchmarks live in a source checkout)")
    sys.argv = [
        str(script),
        "--repeat",
        str(repeat),
        "--frames",
        str(frames),
        "--timed-clips",
        str(timed_clips),
        "--out",
        str(out),
    ]
    runpy.run_path(str(script), run_name="__main__")
