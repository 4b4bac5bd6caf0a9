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
    timed_clips: int = typer.Option(4, help="clips in each timed throughput run"),
    weights: Path = typer.Option(None, help="default: models/round-0/weights.pt of the current folder"),
    device: str = typer.Option("auto", help="auto (first GPU, else CPU) | cpu | 0"),
    limit_seconds: float = typer.Option(1.0, help="timed seconds per limit configuration"),
    extras: bool = typer.Option(True, help="agreement, stride vs recall, validation speed, peak memory"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON result (only) on stdout"),
    out: Path = typer.Option(None, help="also write the JSON result to this file"),
) -> None:
    """Naive Ultralytics loop vs our inference stage vs the fastest forward pass of any supported
    configuration on this machine (benchmarks/bench_infer.py)."""
    script = REPO / "benchmarks" / "bench_infer.py"
    if not script.exists():
        raise typer.BadParameter(f"{script} is missing (benchmarks live in a source checkout)")
    argv = [str(script), "--repeat", str(repeat), "--frames", str(frames), "--timed-clips", str(timed_clips)]
    argv += ["--device", device, "--limit-seconds", str(limit_seconds)] + (
        ["--weights", str(weights)] if weights else []
    )
    argv += [] if extras else ["--no-extras"]
    argv += (["--json"] if json_out else []) + (["--out", str(out)] if out else [])
    sys.argv = argv
    runpy.run_path(str(script), run_name="__main__")


@bench_app.command("track")
def track(
    clips: int = typer.Option(4, help="synthetic clips scored"),
    frames: int = typer.Option(300, help="frames per synthetic clip"),
    repeat: int = typer.Option(3, help="timed runs per speed measurement; the best is kept"),
    long_frames: int = typer.Option(1470, help="frames of the timed clip (a real one: 1,470)"),
    weights: Path = typer.Option(None, help="default: models/round-0/weights.pt of the current folder"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON result (only) on stdout"),
    out: Path = typer.Option(None, help="also write the JSON result to this file"),
) -> None:
    """Every tracking method on the synthetic truth (truth boxes, and end to end on round-0's detections),
    and its speed on a real-size clip (benchmarks/bench_track.py)."""
    script = REPO / "benchmarks" / "bench_track.py"
    if not script.exists():
        raise typer.BadParameter(f"{script} is missing (benchmarks live in a source checkout)")
    argv = [str(script), "--clips", str(clips), "--frames", str(frames), "--repeat", str(repeat)]
    argv += ["--long-frames", str(long_frames)]
    argv += (["--weights", str(weights)] if weights else []) + (["--json"] if json_out else [])
    argv += ["--out", str(out)] if out else []
    sys.argv = argv
    runpy.run_path(str(script), run_name="__main__")


@bench_app.command("ssl")
def ssl(
    seeds: int = typer.Option(3, help="seeds per arm (crop sampling and training order)"),
    patience: int = typer.Option(2, help="chunks without a fitness gain that end arm A"),
    max_chunks: int = typer.Option(12, help="arm A's chunks at most"),
    ablation: bool = typer.Option(False, help="also the ablation rows (arm C with one setting changed)"),
    ceiling: bool = typer.Option(False, help="also arm L: A's training with every training-video frame labelled"),
    rows: list[str] = typer.Option(None, help="only the ablation rows whose names contain this (repeatable)"),
    workdir: Path = typer.Option(None, help="where arms are trained and resumed (default .cache/bench-ssl)"),
    params: Path = typer.Option(None, help="params.yaml (default: the project's)"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON result (only) on stdout"),
    out: Path = typer.Option(None, help="also write the JSON result to this file"),
) -> None:
    """Labelled only to convergence (A), + one round's budget on the labels (B) or on the loop's merged
    set (C), over seeds: does pseudo-labelling pay (benchmarks/bench_ssl.py)."""
    script = REPO / "benchmarks" / "bench_ssl.py"
    if not script.exists():
        raise typer.BadParameter(f"{script} is missing (benchmarks live in a source checkout)")
    argv = [str(script), "--seeds", str(seeds), "--patience", str(patience), "--max-chunks", str(max_chunks)]
    argv += (["--ablation"] if ablation else []) + (["--workdir", str(workdir)] if workdir else [])
    argv += (["--ceiling"] if ceiling else []) + (["--rows", *rows] if rows else [])
    argv += (["--params", str(params)] if params else []) + (["--json"] if json_out else [])
    argv += ["--out", str(out)] if out else []
    sys.argv = argv
    runpy.run_path(str(script), run_name="__main__")


@bench_app.command("review")
def review(
    seeds: int = typer.Option(3, help="seeds (round 0's training, the random draw)"),
    patience: int = typer.Option(2, help="chunks without a fitness gain that end round 0's training"),
    max_chunks: int = typer.Option(4, help="round 0's chunks at most (4: the demo's round 0)"),
    workdir: Path = typer.Option(None, help="where arms are trained and resumed (default .cache/bench-review)"),
    params: Path = typer.Option(None, help="params.yaml (default: the project's)"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON result (only) on stdout"),
    out: Path = typer.Option(None, help="also write the JSON result to this file"),
) -> None:
    """Round 1 after the expert reviews the prioritised queue, the highest-uncertainty frames or random
    review-band frames, same budget: is the queue's order worth the expert's time (benchmarks/bench_review.py)."""
    script = REPO / "benchmarks" / "bench_review.py"
    if not script.exists():
        raise typer.BadParameter(f"{script} is missing (benchmarks live in a source checkout)")
    argv = [str(script), "--seeds", str(seeds), "--patience", str(patience), "--max-chunks", str(max_chunks)]
    argv += (["--workdir", str(workdir)] if workdir else []) + (["--params", str(params)] if params else [])
    argv += (["--json"] if json_out else []) + (["--out", str(out)] if out else [])
    sys.argv = argv
    runpy.run_path(str(script), run_name="__main__")


@bench_app.command("scale")
def scale(
    clips: list[int] = typer.Option([50, 150, 502], help="round sizes in clips (repeatable)"),
    frames: int = typer.Option(1470, help="frames of each clip and video (1,470: a real 30 s clip)"),
    seed: int = typer.Option(0, help="the drawn detections' seed"),
    workdir: Path = typer.Option(None, help="where the workspaces are built (default .cache/bench-scale)"),
    params: Path = typer.Option(None, help="params.yaml (default: the project's)"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON result (only) on stdout"),
    out: Path = typer.Option(None, help="also write the JSON result to this file"),
) -> None:
    """Every post-inference stage of a real-size round (N clips, detections drawn from the truth, no
    detector): seconds, peak memory and DVC-tracked bytes per stage (benchmarks/bench_scale.py)."""
    script = REPO / "benchmarks" / "bench_scale.py"
    if not script.exists():
        raise typer.BadParameter(f"{script} is missing (benchmarks live in a source checkout)")
    argv = [str(script), "--clips", *map(str, clips), "--frames", str(frames), "--seed", str(seed)]
    argv += (["--workdir", str(workdir)] if workdir else []) + (["--params", str(params)] if params else [])
    argv += (["--json"] if json_out else []) + (["--out", str(out)] if out else [])
    sys.argv = argv
    runpy.run_path(str(script), run_name="__main__")
