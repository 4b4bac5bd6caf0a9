"""`visem-pl bench review --json`: the arms' contract on a tiny project (no fitness level is asserted: a
one-epoch model scores about 0): the three orders reviewed the same budget from the same round 0, their
expert's work adds up, and a second run resumes without training anything again."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
from helpers.project import BIN, REPO, TINY, left, write_params


def _run(tmp_path):
    return subprocess.run(
        [str(BIN / "visem-pl"), "bench", "review", "--json", "--seeds", "2", "--patience", "1", "--max-chunks", "2"]
        + ["--params", str(tmp_path / "params.yaml"), "--workdir", str(tmp_path / "work")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=left(900),
    )


def test_bench_review_arms_and_resume(tmp_path):
    params = {**TINY, "train": {**TINY["train"], "model": str(REPO / "models" / "yolov8n.yaml")}}
    params["review"] = {**params.get("review", {}), "max_items": 3}
    write_params(tmp_path, params)
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)  # stdout is the JSON alone
    arms = result["arms"]
    assert set(arms) == {"priority", "uncertainty", "random"} and result["budget_frames"] == 3
    for seed in range(2):
        queues = {}
        for arm, v in arms.items():
            assert len(v["fitness"]) == 2 and v["frames"][seed] == 3
            work = sum(v[f"{k}_per_frame"][seed] for k in ("fixed", "deleted", "added"))
            assert abs(v["corrections_per_frame"][seed] - work) < 1e-9
            [folder] = (tmp_path / f"work/seed-{seed}").glob(f"C-{arm}-*")
            queue = pd.read_csv(folder / "data/rounds/round-0/pseudo/queue.csv")
            review = json.loads((folder / "data/rounds/round-0/reviewed/stats.json").read_text())
            assert review["items"] == len(queue) == 3
            assert v["kept_per_frame"][seed] == review["kept"] / 3
            queues[arm] = queue
        # The same review band, three orders: the uncertainty arm took the most uncertain frames.
        band = queues["uncertainty"]["uncertainty"].min()
        assert queues["priority"]["uncertainty"].min() <= band and queues["random"]["uncertainty"].min() <= band
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    diff = mean(arms["priority"]["fitness"]) - mean(arms["random"]["fitness"])
    assert abs(result["priority_minus_random"] - diff) < 1e-9
    weights = sorted((tmp_path / "work").rglob("weights.pt"))
    stamps = {p: p.stat().st_mtime_ns for p in weights}

    again = _run(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout) == result
    assert "(labelled only, from" not in again.stderr and "filter, review, merge" not in again.stderr
    assert {p: p.stat().st_mtime_ns for p in weights} == stamps, "a finished chunk or arm was trained again"
