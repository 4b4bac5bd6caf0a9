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
from tasks.cli_common import PARAMS_OPT, ROUND_OPT, data_root, fail, stage_config

offline.configure()

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Semi-supervised pseudo-labelling for VISEM-Tracking sperm videos.")


@app.command()
def validate(
    root: Path = typer.Argument(..., help="Zip root, VISEM_Tracking_Train_v4/ or Train/."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    deep: bool = typer.Option(False, help="Decode every frame instead of checking JPEG structure."),
    max_problems: int = typer.Option(200, help="Report at most this many problems."),
    metrics: Optional[Path] = typer.Option(None, help="Also write the summary to this JSON file."),
) -> None:
    """Check every label line, frame, video and CSV; print a summary or every problem (exit 2)."""
    from tasks.dataset import DatasetNotFound
    from tasks.validate import validate as run

    try:
        report = run(root, deep=deep, max_problems=max_problems)
    except DatasetNotFound as exc:
        fail([f"{exc}"])
    if not report.ok:
        fail([str(p) for p in report.problems], report.truncated)
    if metrics:
        from tasks.io import write_json

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
    from tasks.params import load_params, synth_config

    section = load_params(params).get("synth", {}) if params else {}
    overrides = {k: v for k, v in dict(seed=seed, frames_per_video=frames_per_video, scale=scale).items()
                 if v is not None}
    from tasks.synth import synthesize

    try:
        cfg = synth_config({**section, **overrides})
        counts = synthesize(out, cfg, progress=sys.stderr.isatty(), overwrite=overwrite)
    except (ValueError, FileExistsError) as exc:
        fail([str(exc)])
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


@app.command()
def prepare(params: Path = PARAMS_OPT, out: Path = typer.Option(Path("data/prepared"))) -> None:
    """Choose the labelled training and validation frames (split and frame stride from params.yaml)."""
    from tasks.params import load_params
    from tasks.prepare import PrepareConfig, prepare as run

    cfg = stage_config(params, "prepare", PrepareConfig)
    split = load_params(params).get("split") or {}
    try:
        counts = run(data_root(params), out, cfg, val_ids=tuple(split.get("val_ids") or ()),
                     train_ids=split.get("train_ids"))
    except ValueError as exc:
        fail([str(exc)])
    typer.echo(json.dumps(counts))


@app.command()
def train(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Train round N: from the model .yaml/weights for round 0, from round N-1's weights after."""
    import pandas as pd

    from tasks.params import load_params
    from tasks.rounds import RoundPaths
    from tasks.train import TrainConfig, train as run

    cfg = stage_config(params, "train", TrainConfig, drop=("restart_each_round",))
    restart = bool((load_params(params).get("train") or {}).get("restart_each_round", False))
    paths = RoundPaths(round_n)
    frames = pd.read_csv(paths.training_frames())
    if round_n == 0:
        frames = frames[frames["split"] == "train"]
    init = None if restart or paths.init_weights() is None else str(paths.init_weights())
    info = run(frames, paths.model_dir, cfg, init=init)
    typer.echo(json.dumps(info))


@app.command()
def evaluate(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Score round N's model on the validation videos (metrics/rounds/round-N/eval.json)."""
    import pandas as pd

    from tasks.evaluate import EvalConfig, evaluate as run
    from tasks.io import write_json
    from tasks.rounds import PREPARED, RoundPaths

    cfg = stage_config(params, "evaluate", EvalConfig)
    paths = RoundPaths(round_n)
    frames = pd.read_csv(PREPARED / "frames.csv")
    result = run(paths.weights, frames[frames["split"] == "val"], cfg)
    write_json(paths.metrics / "eval.json", result)
    typer.echo(json.dumps(result["overall"]))


@app.command()
def infer(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Pseudo-label every unlabelled clip with round N's model (resumable, one file per clip)."""
    from tasks.dataset import locate
    from tasks.infer import InferConfig, infer_clips
    from tasks.rounds import RoundPaths

    cfg = stage_config(params, "infer", InferConfig)
    paths = RoundPaths(round_n)
    clips = locate(data_root(params)).clips()
    stats = infer_clips(paths.weights, clips, paths.predictions, cfg, progress=sys.stderr.isatty())
    typer.echo(json.dumps(stats))


@app.command("filter")
def filter_cmd(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Split round N's boxes into accept / review / reject bands per class; build the review queue."""
    from tasks.filter import filter_round, parse_bands
    from tasks.params import load_params
    from tasks.rounds import RoundPaths

    try:
        bands = parse_bands((load_params(params).get("filter") or {}).get("bands") or {})
    except (ValueError, KeyError, TypeError) as exc:
        fail([f"{params}: {exc}"])
    from tasks.io import write_json

    from tasks.queue import QueueConfig, build_queue, init_review_folder, write_queue
    from tasks.review import REVIEW_KEYS

    qcfg = stage_config(params, "review", QueueConfig, drop=REVIEW_KEYS)
    paths = RoundPaths(round_n)
    stats = filter_round(paths.predictions, paths.pseudo, bands)
    # Disagreement with the previous round's model: its predictions, when that round was pseudo-labelled.
    prev = RoundPaths(round_n - 1).predictions if round_n > 0 else None
    queue = build_queue(paths.predictions, bands, qcfg, prev_dir=prev if prev is not None and prev.is_dir() else None)
    write_queue(queue, paths.queue_csv)
    init_review_folder(paths.review_folder, round_n)
    stats["queue_items"] = len(queue)
    write_json(paths.metrics / "pseudo.json", stats)
    typer.echo(json.dumps(stats))


@app.command()
def merge(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Build round N+1's training set: labelled + accepted pseudo-labels + reviewed labels."""
    import pandas as pd

    from tasks.dataset import locate
    from tasks.merge import merge_round
    from tasks.rounds import PREPARED, RoundPaths

    paths = RoundPaths(round_n)
    labelled = pd.read_csv(PREPARED / "frames.csv")
    labelled = labelled[labelled["split"] == "train"]
    reviewed = [(k, RoundPaths(k).reviewed / "labels") for k in range(round_n + 1)]
    clips = locate(data_root(params)).clips()
    boxes = pd.read_parquet(paths.pseudo / "boxes.parquet")
    doubtful = boxes[boxes["band"] != "accept"]
    try:
        stats = merge_round(round_n, labelled, paths.pseudo / "labels", reviewed, clips, paths.merged,
                            doubtful=doubtful)
    except ValueError as exc:
        fail([str(exc)])
    typer.echo(json.dumps(stats))


@app.command()
def quality(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Precision and recall of round N's pseudo-labels per class and band (synthetic truth only)."""
    import pandas as pd

    from tasks.io import write_json
    from tasks.quality import pseudo_label_quality
    from tasks.rounds import RoundPaths
    from tasks.truth import truth_for

    paths = RoundPaths(round_n)
    truth = truth_for(data_root(params))
    if truth is None:
        result = {"truth": False}
    else:
        boxes = pd.read_parquet(paths.pseudo / "boxes.parquet")
        result = {"truth": True, **pseudo_label_quality(boxes, paths.predictions, truth)}
    write_json(paths.metrics / "quality.json", result)
    typer.echo(json.dumps(result.get("accept", result)))


@app.command()
def report(as_json: bool = typer.Option(False, "--json"),
           out: Optional[Path] = typer.Option(None, help="Also write the report JSON here (a DVC metric).")) -> None:
    """Per round: mAP@0.5, mAP@0.5:0.95, fitness, accepted boxes, review items, pseudo-label quality."""
    from tasks.io import write_json
    from tasks.report import collect, render

    data = collect()
    if out:
        write_json(out, data)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        render(data)


@app.command()
def serve(name: str = typer.Option("visem-pl", help="Deployment name: 'pseudo-label-round/NAME'."),
          limit: int = typer.Option(2, min=1, help="Flow runs at once (a round locks its workspace).")) -> None:
    """Serve the Prefect deployments pseudo-label-round and pseudo-label-campaign from this folder."""
    from flows.serve import NoServer, serve as run

    try:
        run(name, limit)
    except NoServer as exc:
        fail([str(exc)])


from tasks.cli_bench import bench_app  # noqa: E402
from tasks.cli_review import review_app  # noqa: E402

app.add_typer(review_app, name="review")
app.add_typer(bench_app, name="bench")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
