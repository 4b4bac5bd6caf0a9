"""Is round 1's gain from the pseudo-labels, or only from more training?

Trains the control: round 0's weights trained again for exactly round 1's iterations, with
round 1's configuration, on the labelled frames only (no pseudo-labels, no reviews), and
scores it like the rounds. Run after `dvc repro` (or `make demo`) in the project folder:

    .venv/bin/python benchmarks/control_round.py

Prints round 0, round 1 and the control side by side as JSON and writes
metrics/control_round.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from visem_pl.tasks.training.evaluate import EvalConfig, evaluate
from visem_pl.tasks.training.train import TrainConfig, fine_tune, train
from visem_pl.tasks.workspace.io import write_json
from visem_pl.tasks.workspace.paths import Workspace

OUT = Path("metrics/control_round.json")


def main() -> None:
    ws = Workspace()
    cfg = ws.section("train", TrainConfig, drop=("restart_each_round",))
    eval_cfg = ws.section("evaluate", EvalConfig)
    frames = pd.read_csv(ws.prepared / "frames.csv")
    control_dir = Path(".cache/control-round-1")
    info = train(frames[frames["split"] == "train"], control_dir, fine_tune(cfg), init=str(ws.round(0).weights))
    control = evaluate(control_dir / "weights.pt", frames[frames["split"] == "val"], eval_cfg)
    rows = {}
    for name, path in (
        ("round 0", ws.round(0).metrics / "eval.json"),
        ("round 1", ws.round(1).metrics / "eval.json"),
    ):
        rows[name] = json.loads(path.read_text())["overall"]
    rows["control: round 0 + same iterations, labelled only"] = control["overall"]
    keys = ("mAP50", "mAP50-95", "fitness", "precision", "recall")
    table = {name: {k: round(v[k], 4) for k in keys} for name, v in rows.items()}
    table["control_iterations"] = info["iterations"]
    write_json(OUT, table)
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
