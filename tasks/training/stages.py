"""The DVC stages prepare, train@N and evaluate@N, each one function of a workspace.

`visem-pl prepare|train|evaluate` call these; `dvc.yaml` runs those commands.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from visem_pl.tasks.workspace.io import write_csv, write_json
from visem_pl.tasks.workspace.paths import Workspace


def prepare_stage(ws: Workspace, out: Path | None = None) -> dict:
    """Choose the labelled training and validation frames (params.yaml `split`, `prepare`)."""
    from visem_pl.tasks.training.prepare import PrepareConfig, prepare

    cfg = ws.section("prepare", PrepareConfig)
    split = ws.params().get("split") or {}
    return prepare(
        ws.data_root(),
        out if out is not None else ws.prepared,
        cfg,
        val_ids=tuple(split.get("val_ids") or ()),
        train_ids=split.get("train_ids"),
    )


def train_stage(ws: Workspace, n: int) -> dict:
    """Train round n: from `train.model` for round 0 (or with `restart_each_round`), else from round n-1's weights."""
    from visem_pl.tasks.training.train import TrainConfig, fine_tune, from_model, train

    cfg = ws.section("train", TrainConfig, drop=("restart_each_round",))
    restart = bool((ws.params().get("train") or {}).get("restart_each_round", False))
    paths = ws.round(n)
    frames = pd.read_csv(paths.training_frames())
    if n == 0:
        frames = frames[frames["split"] == "train"]
    init = None if restart or paths.init_weights() is None else str(paths.init_weights())
    return train(frames, paths.model_dir, from_model(cfg) if init is None else fine_tune(cfg), init=init)


def evaluate_stage(ws: Workspace, n: int) -> dict:
    """Score round n's model on the validation frames; writes metrics/rounds/round-N/eval.json and the
    precision-recall curve of each class, pr_curve.csv."""
    from visem_pl.tasks.training.evaluate import EvalConfig, evaluate

    cfg = ws.section("evaluate", EvalConfig)
    paths = ws.round(n)
    frames = pd.read_csv(ws.prepared / "frames.csv")
    result = evaluate(paths.weights, frames[frames["split"] == "val"], cfg, curves=True)
    # The curves go to their own small CSV (`dvc plots`, the HTML report); eval.json keeps the numbers.
    write_csv(paths.pr_curve, pd.DataFrame(result.pop("pr_curve")))
    result["computed_from"] = ws.computed_from(n)
    write_json(paths.metrics / "eval.json", result)
    return result


def control_stage(ws: Workspace, n: int) -> dict:
    """The fair control for round n+1: round n's weights trained with round n+1's recipe and budget on the
    labelled frames only (no pseudo-labels, no reviews), scored like the rounds. Round n+1 beating it is
    what shows that the pseudo-labels paid, not the extra training; writes metrics/rounds/round-N/control.json."""
    import shutil

    from visem_pl.tasks.training.evaluate import EvalConfig, evaluate
    from visem_pl.tasks.training.train import TrainConfig, fine_tune, train

    cfg = ws.section("train", TrainConfig, drop=("restart_each_round",))
    paths = ws.round(n)
    if not paths.weights.exists():
        raise FileNotFoundError(f"{paths.weights}: round {n} has no trained model yet (visem-pl train --round {n})")
    frames = pd.read_csv(ws.prepared / "frames.csv")
    scratch = ws.root / ".cache" / f"control-{n}"
    try:
        info = train(frames[frames["split"] == "train"], scratch, fine_tune(cfg), init=str(paths.weights))
        result = evaluate(scratch / "weights.pt", frames[frames["split"] == "val"], ws.section("evaluate", EvalConfig))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["control_of_round"] = n + 1
    result["iterations"] = info["iterations"]
    result["computed_from"] = ws.computed_from(n)  # round n's weights, the control's start
    write_json(paths.metrics / "control.json", result)
    return result
