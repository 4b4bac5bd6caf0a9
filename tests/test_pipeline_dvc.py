"""The whole round loop through real `dvc repro` in a real git repository.

A copy of the project is committed into a temporary repository with a tiny configuration
(three videos, one epoch, small image sizes). Round 0 is reproduced, committed and tagged;
round 1 is added and reproduced without redoing round 0; a third repro does nothing; round 0's
model is restored bit for bit from a tag; `dvc metrics diff` compares the two rounds; and the
default local remote pushes and pulls.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers.imports import covered, stage_code
from helpers.pipeline import digest, lock_outs, sha256
from helpers.project import TINY, run, write_params

from visem_pl.tasks.dataset.identity import file_id
from visem_pl.tasks.inference.clips import prediction_meta

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def workspace(pipeline_workspace) -> Path:
    """A fresh git repository holding the project's files, as a user's clone would (conftest.py)."""
    return pipeline_workspace


@pytest.fixture(scope="module")
def rounds(pipeline_rounds) -> dict:
    """Round 0 reproduced and tagged, round 1 added, reproduced and tagged (helpers.pipeline.two_rounds)."""
    return pipeline_rounds


def test_round0_runs_every_stage_in_order(rounds, workspace):
    log = rounds["repro0"]
    stages = [
        "synthesize",
        "validate",
        "prepare",
        "train@0",
        "infer@0",
        "track@0",
        "motility@0",
        "filter@0",
        "review@0",
        "merge@0",
        "evaluate@0",
        "control@0",
        "quality@0",
        "report",
    ]
    for stage in stages:
        assert f"Running stage '{stage}'" in log
    assert (
        log.index("'train@0'")
        < log.index("'infer@0'")
        < log.index("'track@0'")
        < log.index("'filter@0'")
        < log.index("'review@0'")
        < log.index("'merge@0'")
    )
    summary = json.loads((workspace / "metrics/dataset.json").read_text())
    assert summary["videos"] == 3 and summary["images"] == 36
    assert summary["clips"] == {"annotated_rest": 3, "other": 1}


def test_round1_reuses_round0_and_trains_from_its_weights(rounds, workspace):
    log = rounds["repro1"]
    assert "Running stage 'train@1'" in log and "Running stage 'evaluate@1'" in log
    for stage in ("synthesize", "train@0", "infer@0", "merge@0"):
        assert f"Running stage '{stage}'" not in log
    info = json.loads((workspace / "models/round-1/train.json").read_text())
    assert info["source"] == "models/round-0/weights.pt"
    merged = json.loads((workspace / "data/rounds/round-0/merged/stats.json").read_text())
    assert info["frames"] == sum(merged["frames"].values())
    assert merged["frames"]["labelled"] == 6 and merged["frames"]["reviewed"] == 3
    # merge.frames_per_clip 2 of each clip's 3 scored frames: the bound held, reviewed frames beyond it.
    frames = pd.read_csv(workspace / "data/rounds/round-0/merged/frames.csv")
    per_clip = frames[frames["source"] == "pseudo"]["image"].map(lambda p: Path(p).stem.split("_frame_")[0])
    assert 0 < merged["frames"]["pseudo"] < merged["pseudo_frames_available"] and per_clip.value_counts().max() <= 2
    assert rounds["weights1"] != rounds["weights0"]
    # Round 0 (from the model .yaml) trains round0_epochs, round 1 (from round 0) epochs; the control
    # (round 0 + round 1's budget on the labels alone) trains exactly as long, and the report shows both.
    first = json.loads((workspace / "models/round-0/train.json").read_text())
    assert first["iterations"] == 2 * info["iterations"] and info["config"]["lr0"] == info["config"]["finetune_lr0"]
    control = json.loads((workspace / "metrics/rounds/round-0/control.json").read_text())
    assert control["control_of_round"] == 1 and control["iterations"] == info["iterations"]
    report = json.loads((workspace / "metrics/report.json").read_text())
    assert report["rounds"]["1"]["control_fitness"] == control["overall"]["fitness"]
    assert report["rounds"]["0"]["control_fitness"] is None


def test_second_repro_does_nothing(rounds, workspace):
    assert "Running stage" not in rounds["repro2"]
    status = run(["dvc", "status"], workspace).stdout
    assert "up to date" in status


def test_every_round_output_is_dvc_tracked(rounds, workspace):
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())["stages"]
    outs = {o["path"] for stage in lock.values() for o in stage.get("outs", [])}
    for path in (
        "models/round-0",
        "models/round-1",
        "data/rounds/round-0/pseudo",
        "data/rounds/round-0/reviewed",
        "data/rounds/round-0/merged",
        "data/rounds/round-0/predictions",
        "data/rounds/round-0/tracks",
        "data/rounds/round-0/validation/predictions",
        "data/rounds/round-0/validation/tracks",
        "data/rounds/round-0/motility.csv",
        "data/rounds/round-0/motility/predictions",
        "data/rounds/round-0/motility/tracks",
    ):
        assert path in outs
    # Motility's window (each whole clip here) was run at every frame, linked and measured.
    window = sorted((workspace / "data/rounds/round-0/motility/tracks").glob("*.parquet"))
    assert window and {p.name for p in window} == {p.name for p in (workspace / "data/rounds/round-0/tracks").glob("*")}
    assert json.loads((workspace / "metrics/rounds/round-0/motility.json").read_text())["window_s"] == 0
    # The validation video (52) was run and tracked like the clips and scored on its labelled track ids.
    track = json.loads((workspace / "metrics/rounds/round-0/track.json").read_text())
    assert track["validation"]["videos"] == [52] and "idf1" in track["validation"]["tracking_label_boxes"]
    assert (workspace / "data/rounds/round-0/validation/tracks/52.parquet").exists()
    # ...and the filter ran the temporal rule on it first, to keep only the actions that pay there.
    check = json.loads((workspace / "metrics/rounds/round-0/pseudo.json").read_text())["temporal_check"]
    assert check["videos"] == [52] and {"promoted", "demoted", "demoted_still", "interpolated"} <= set(check)
    manifest = (workspace / "data/rounds/round-0/merged/manifest.csv").read_text().splitlines()
    assert manifest[0] == "image,source,round,rule,cls,cx,cy,w,h"
    # The temporal rule ran on the round's tracks (an untrained model's boxes repeat frame to frame, so
    # its tracks hold one band each and nothing moves: the rule itself is tested in test_filter.py).
    boxes = pd.read_parquet(workspace / "data/rounds/round-0/pseudo/boxes.parquet")
    assert (boxes["track"] >= 0).any()
    demotions = {"demoted", "demoted_weak", "demoted_still", "demoted_overlap"}
    assert set(boxes["provenance"]) <= {"confidence", "promoted"} | demotions
    rules = {line.split(",")[3] for line in manifest[1:] if line.split(",")[1] == "pseudo"}
    assert rules and rules <= {"confidence", "promoted", "interpolated", "relabelled_by_review"}, rules
    # merge@0 judged the tracks through the reviewed frames and recorded it (merge.json, a DVC metric):
    # what it took away is what separates the accepted boxes it teaches from filter's.
    record = json.loads((workspace / "metrics/rounds/round-0/merge.json").read_text())
    verdicts, after = record["track_verdicts"], record["accept_after_review"]["all"]
    quality = json.loads((workspace / "metrics/rounds/round-0/quality.json").read_text())["accept"]["all"]
    assert verdicts["enabled"] and after["boxes"] == quality["boxes"] - verdicts["accepted_rejected"], (record, quality)
    assert after["truth"] == quality["truth"] and verdicts["tracks_confirmed"] + verdicts["tracks_rejected"] > 0


def test_metrics_diff_compares_rounds(rounds, workspace):
    diff = json.loads(run(["dvc", "metrics", "diff", "round-0", "round-1", "--json"], workspace).stdout)
    report = diff["metrics/report.json"]
    assert report["latest.round"] == {"old": 0, "new": 1, "diff": 1}


def test_round0_restored_bit_for_bit(rounds, workspace):
    """Every output of round 0 (twin, prepared frames, model, predictions, pseudo-labels, review, merged
    set) deleted and restored from the tag: byte for byte what round 0 wrote."""
    ws = workspace
    try:
        run(["git", "checkout", "-q", "round-0"], ws)
        assert lock_outs(ws) == sorted(rounds["outs0"])
        for path in rounds["outs0"]:
            shutil.rmtree(ws / path) if (ws / path).is_dir() else (ws / path).unlink()
        run(["dvc", "checkout"], ws)
        for path, want in rounds["outs0"].items():
            assert digest(ws / path) == want, path
        assert sha256(ws / "models/round-0/weights.pt") == rounds["weights0"]
        report = json.loads((ws / "metrics/report.json").read_text())
        assert list(report["rounds"]) == ["0"] and report["latest"]["round"] == 0
    finally:
        run(["git", "checkout", "-q", "round-1"], ws)
        run(["dvc", "checkout"], ws)
    assert sha256(ws / "models/round-1/weights.pt") == rounds["weights1"]


def test_local_remote_push_and_pull(rounds, workspace):
    ws = workspace
    run(["dvc", "push"], ws)
    assert (ws / "dvc-remote").is_dir()
    shutil.rmtree(ws / ".dvc" / "cache")
    shutil.rmtree(ws / "models" / "round-0")
    run(["dvc", "pull"], ws)
    assert sha256(ws / "models/round-0/weights.pt") == rounds["weights0"]


def test_editing_any_module_a_stage_runs_makes_it_stale(rounds, workspace):
    """dvc.yaml's code deps are complete: with every module that some stage imports edited (one comment
    line each), `dvc status` reports each stage changed through a dep holding each of its modules."""
    ws = workspace
    needed = stage_code(ws, ws / "dvc.yaml")
    touched = sorted(set().union(*needed.values()))
    original = {f: (ws / f).read_bytes() for f in touched}
    try:
        for f in touched:
            (ws / f).write_bytes(original[f] + b"\n# edited by the test\n")
        status = json.loads(run(["dvc", "status", "--json"], ws).stdout)
    finally:
        for f, data in original.items():
            (ws / f).write_bytes(data)
    instances = {name: name.split("@")[0] for name in yaml.safe_load((ws / "dvc.lock").read_text())["stages"]}
    assert set(instances.values()) == set(needed)
    for name, stage in instances.items():
        changed = [
            path for entry in status.get(name, []) if isinstance(entry, dict) for path in entry.get("changed deps", {})
        ]
        missing = sorted(f for f in needed[stage] if not covered(f, changed))
        assert not missing, f"{name}: editing {missing} does not make it stale (changed deps: {changed})"
    assert "up to date" in run(["dvc", "status"], ws).stdout


def _clips_of(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.parquet")}


def test_another_dataset_never_mixes_with_the_last_and_real_data_waits_for_review(round0_project, tmp_path):
    """A workspace that ran round 0 on the synthetic twin (and handed its queue to experts) is pointed
    at another dataset with no _truth/ (a lab's real unzip: other clips, some with the same names):
    every round output then holds the new dataset's clips only, the shared names predicted anew; the old
    experts' store is refused; the report marks the figures the new data did not recompute yet as stale;
    the new queue exports; and `dvc repro` stops at review@0 (after evaluate@0) saying what is left,
    while quality@0 says there is no truth instead of guessing."""
    ws = round0_project(tmp_path / "project")
    old_clips = _clips_of(ws / "data/rounds/round-0/predictions")
    run(["visem-pl", "review", "export", "--round", "0", "--format", "labelstudio"], ws)  # the twin's experts

    # The other dataset: another seed, more clips per video (shared names: <id>_30_60), another "other" id.
    other = {**TINY["synth"], "seed": 1, "rest_clips_per_video": 2}
    write_params(ws, {**TINY, "synth": other})
    run(["visem-pl", "synth", "data/real", "--params", "params.yaml"], ws)
    shutil.rmtree(ws / "data/real/_truth")
    write_params(ws, {**TINY, "data": {"root": "data/real"}})  # data.on_bad_clip absent: skip, the default
    new_clips = {p.stem for p in (ws / "data/real").rglob("*.mp4") if "_" in p.stem}
    shared = old_clips & new_clips
    assert shared and old_clips - new_clips and new_clips - old_clips, (old_clips, new_clips)

    proc = run(["dvc", "repro", "review@0"], ws, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "review/round-0: this review queue was made for another dataset" in log, log[-3000:]
    rounds = ws / "data/rounds/round-0"
    for sub in ("predictions", "tracks"):
        assert _clips_of(rounds / sub) == new_clips, sub
    assert _clips_of(rounds / "validation/predictions") == {"52"}
    mp4s = {p.stem: p for p in (ws / "data/real").rglob("*.mp4")}
    for clip in shared:  # predicted anew from the new recording, not kept because the name is the same
        assert prediction_meta(rounds / "predictions" / f"{clip}.parquet")["clip_file"] == file_id(mp4s[clip])
    boxes = pd.read_parquet(rounds / "pseudo/boxes.parquet")
    assert set(boxes["clip"]) <= new_clips and len(boxes)
    queue = pd.read_csv(rounds / "pseudo/queue.csv")
    assert len(queue) and set(queue["clip"]) <= new_clips

    # Computed on the new data: fitness (evaluate@0 runs before the review wait), accepted, IDF1. Left from
    # the twin: quality@0 and motility@0, which review@0 does not need (the tiny clips' motility has no
    # value to mark: motility.json has n 0 there).
    report = json.loads(run(["visem-pl", "report", "--json"], ws).stdout)["rounds"]["0"]
    assert report["motility_mae_pp"] is None
    assert set(report["stale"]) == {"accepted_precision", "accepted_recall"}, report["stale"]
    assert all("data.root names another dataset now" in why for why in report["stale"].values())
    table = run(["visem-pl", "report"], ws).stdout
    (header,) = [[c.strip() for c in line.split("┃")] for line in table.splitlines() if "┃ round" in line]
    (row,) = [[c.strip() for c in line.split("│")] for line in table.splitlines() if line.startswith("│")]
    assert row[1] == "0" and {h for h, c in zip(header, row) if c.endswith("*")} == {"acc. P", "acc. R"}, row
    assert "* round 0, quality.json: the round's weights changed since and data.root names another dataset now" in (
        " ".join(table.split())
    )

    old_status = json.loads(run(["visem-pl", "review", "status", "--round", "0", "--json"], ws).stdout)
    assert "this review queue was made for another dataset" in old_status["warning"], old_status
    shutil.move(ws / "review/round-0", ws / "review-round-0.old")
    run(["visem-pl", "review", "export", "--round", "0", "--format", "labelstudio"], ws)
    (batch,) = (ws / "review/round-0/exports").iterdir()
    tasks = json.loads((batch / "tasks.json").read_text())
    items = {Path(t["data"]["image"]).stem for t in tasks}
    assert items == set(queue["item"])

    proc = run(["dvc", "repro"], ws, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    queued = len(queue)
    fitness = json.loads((ws / "metrics/rounds/round-0/eval.json").read_text())["overall"]["fitness"]
    assert f"round 0 (its model: validation fitness {fitness:.3f}) is waiting for {queued} of {queued} items" in log, (
        log[-3000:]
    )
    assert "visem-pl review export --round 0" in log and "visem-pl review import --round 0" in log
    status = json.loads(run(["visem-pl", "review", "status", "--round", "0", "--json"], ws).stdout)
    assert status["states"]["exported"] == queued and status["queue"] == "review/round-0", status
    assert "warning" not in status
    run(["dvc", "repro", "quality@0"], ws)
    quality = json.loads((ws / "metrics/rounds/round-0/quality.json").read_text())
    assert set(quality.pop("computed_from")) == {"weights_sha256", "dataset"}
    assert quality == {"truth": False}
    report = json.loads(run(["visem-pl", "report", "--json"], ws).stdout)["rounds"]["0"]
    assert report["stale"] == {} and report["accepted_precision"] is None, report
