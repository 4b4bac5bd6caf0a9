"""`visem-pl review ...`: the expert review queue of each round."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from tasks.cli_common import PARAMS_OPT, ROUND_OPT, stage_config, data_root, fail

review_app = typer.Typer(no_args_is_help=True, help="The expert review queue: answer, status, export, import.")


@review_app.command()
def answer(round_n: int = ROUND_OPT, params: Path = PARAMS_OPT) -> None:
    """Answer round N's review queue (the DVC stage): the simulated expert on synthetic data, experts' files on real data."""
    from tasks.review import ReviewConfig, ReviewPending, collect_review, simulate_review
    from tasks.rounds import RoundPaths
    from tasks.truth import truth_for

    cfg = stage_config(params, "review", ReviewConfig)
    paths = RoundPaths(round_n)
    truth = truth_for(data_root(params))
    try:
        if truth is not None:
            stats = simulate_review(paths.pseudo, paths.reviewed, truth, cfg)
        else:
            stats = collect_review(round_n, paths.pseudo, paths.reviewed)
    except ReviewPending as exc:
        fail([str(exc)])
    typer.echo(json.dumps(stats))


