"""`visem-pl bench ssl --json`: the arms' contract on a tiny project (no fitness level is asserted: a
one-epoch model scores about 0), and a second run resumes without training anything again."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
from helpers.project import BIN, REPO, TINY, left, write_params


def _run(tmp_path, *extra):
    return subprocess.run(
        [str(BIN / "visem-pl"), "bench", "ssl", "--json", "--seeds", "2", "--patience", "1", "--max-chunks", "3"]
        + ["--params", str(tmp_path / "params.yaml"), "--workdir", str(tmp_path / "work"), *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=left(900),
    )


def test_bench_ssl_arms_and_resume(tmp_path):
    # trusted_share 0.25 stated: the ablation row that sets it is params.yaml's own and is left out.
    params = {**TINY, "train": {**TINY["train"], "model": str(REPO / "models" / "yolov8n.yaml"), "trusted_share": 0.25}}
    write_params(tmp_path, params)
    proc = _run(tmp_path, "--ablation", "--ceiling")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)  # stdout is the JSON alone
    arms, budget = result["arms"], result["budget"]
    assert all(len(arms[a]["fitness"]) == 2 for a in "ABC")
    for seed, chunks in enumerate(budget["A_chunks_per_seed"]):
        best = max(range(len(chunks)), key=chunks.__getitem__)
        # A is the best chunk, B the one after it (trained because patience >= 1), never past max_chunks.
        assert arms["A"]["fitness"][seed] == max(chunks) and arms["B"]["fitness"][seed] == chunks[best + 1]
        assert arms["A"]["iterations"][seed] == (best + 1) * budget["chunk_iterations"] and len(chunks) <= 3
    # One chunk: TINY's 1 epoch x 16 crops at batch 8.
    assert budget["chunk_images"] == 16 and budget["chunk_iterations"] == 2 and budget["E_images"] == 16
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    best_ab = max(mean(arms["A"]["fitness"]), mean(arms["B"]["fitness"]))
    assert abs(result["gain"] - (mean(arms["C"]["fitness"]) - best_ab)) < 1e-9
    # The ceiling L: A's training on every frame of the training videos labelled (TINY keeps 3 a video), scored
    # on the same validation frames.
    frames = {b: pd.read_csv(tmp_path / "work" / b / "data/prepared/frames.csv") for b in ("base", "base-every-frame")}
    scarce, every = ((f["split"] == "train").sum() for f in frames.values())
    assert arms["L"]["frames"] == every > scarce and len(arms["L"]["fitness"]) == 2
    val = [f[f["split"] == "val"].reset_index(drop=True) for f in frames.values()]
    assert len(val[0]) and val[0].equals(val[1])
    assert all(i > 0 and i % budget["chunk_iterations"] == 0 for i in arms["L"]["iterations"])
    assert abs(result["headroom"] - (mean(arms["L"]["fitness"]) - best_ab)) < 1e-9
    taught = result["pseudo"]["per_seed"]
    assert all(0 <= t["precision"] <= 1 and 0 < t["recall"] <= 1 and t["truth"] > 0 for t in taught)
    assert set(result["ablation"]) >= {"loop (params.yaml)", "confidence only (no temporal rule)"}
    assert result["ablation"]["loop (params.yaml)"]["fitness"] == arms["C"]["fitness"]
    # B of a row whose round recipe differs from the chunks' is trained with it: the lower fine-tune rate, the
    # averaged weights, four chunks in one call (TINY's 1 epoch x4). A row that says what params.yaml says is
    # the loop row itself: not trained again.
    assert result["ablation"]["loop (params.yaml)"]["B"] == arms["B"]["fitness"]
    assert "trusted_share 0.25" not in result["ablation"] and "sperm pseudo-labels only" in result["ablation"]
    assert "row 'trusted_share 0.25' is params.yaml's own setting: left out" in proc.stderr
    (labelled,) = (tmp_path / "work/seed-0").glob("labelled-*")  # A's chunks, keyed by their recipe
    own_b = sorted(labelled.glob("B-*/train.json"))
    assert sorted((json.loads(p.read_text())["config"]["epochs"], json.loads(p.read_text())["config"]["average_share"])
                  for p in own_b) == [(1, 0.0), (1, 0.25), (4, 0.0)]  # fmt: skip
    # The calibrated row ran the filter's calibration on the tiny project's validation video (52).
    arms_run = [json.loads(p.read_text()) for p in sorted((tmp_path / "work/seed-0").glob("C-*/result.json"))]
    assert len(arms_run) == len(result["ablation"])
    arm = next(a for a in arms_run if a["calibration"] is not None)
    assert arm["calibration"]["videos"] == [52] and set(arm["calibration"]) >= {"sperm", "cluster"}
    weights = sorted((tmp_path / "work").rglob("weights.pt"))
    stamps = {p: p.stat().st_mtime_ns for p in weights}

    again = _run(tmp_path, "--ablation", "--ceiling")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout) == result
    assert "(labelled only, from" not in again.stderr and "filter, review, merge" not in again.stderr, again.stderr[
        -2000:
    ]
    assert {p: p.stat().st_mtime_ns for p in weights} == stamps, "a finished chunk or arm was trained again"


def test_bench_ssl_keys_its_caches_by_what_they_were_built_with(tmp_path):
    """Another chunk recipe trains its own arm A (never reuses chunks trained with another); a workdir built
    from other data sections is refused with a clear error, nothing trained."""
    params = {**TINY, "train": {**TINY["train"], "model": str(REPO / "models" / "yolov8n.yaml")}}
    write_params(tmp_path, params)
    first = _run(tmp_path, "--seeds", "1")  # the last --seeds counts
    assert first.returncode == 0, first.stderr[-3000:]
    write_params(tmp_path, {**params, "train": {**params["train"], "average_share": 0.5}})
    second = _run(tmp_path, "--seeds", "1")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "A chunk 0 (labelled only, from scratch)" in second.stderr  # A trained again, with the new recipe
    folders = sorted((tmp_path / "work/seed-0").glob("labelled-*"))
    recipes = {json.loads((f / "chunk-00/train.json").read_text())["config"]["average_share"] for f in folders}
    assert len(folders) == 2 and recipes == {0.0, 0.5}
    assert len(list((tmp_path / "work/seed-0").glob("round-0-*"))) == 2  # A's predictions, one folder per A
    write_params(tmp_path, {**params, "prepare": {**params["prepare"], "max_frames_per_video": 2}})
    third = _run(tmp_path, "--seeds", "1")
    assert third.returncode != 0 and "built from other synth, split, prepare sections" in third.stderr
    assert "A chunk" not in third.stderr
