"""Faults while a round pseudo-labels its clips, against the real Prefect server, in a real tiny DVC project.

Round 0's model is trained by `dvc repro` first; the flows then run in processes of their own, as a user
starts them. The faults are injected in those processes only (the code a child runs before the flow
patches one function, as tests/test_infer_resume.py does): the product code runs unchanged.

- Retries: one clip's `pseudo-label-clip` task raises on its first two attempts; the inference subflow the
  round runs (`pseudo-label-clips`, mapping the clips as the round does) still ends Completed, the clip's
  file is the one a clean run writes, and the Prefect API shows that task run with 3 attempts, the others 1.
- A round killed mid-inference (SIGKILL to its whole process group, the second clip's file written but not
  yet in place) and started again: the new run takes over the workspace lock the killed run left (that
  run stays Running on the server: nothing is left to end it), predicts only the clips not finished,
  leaves the finished one untouched, and completes with the outputs of a clean run. A lock whose flow run
  is suspended for review (its process gone until the review resumes it) is still not taken.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers.prefect import FlowProcess, paused_run
from helpers.project import BIN, HOLD_SECOND_WRITE, left, make_workspace, run
from helpers.project import TINY as BASE

TINY = {**BASE, "orchestrate": {"task_runner": "threads", "infer_concurrency": 1, "review_timeout_hours": 1}}
PRED = Path("data/rounds/round-0/predictions")

# `pseudo-label-clips` for round 0 as the round runs it (its task runner from params.yaml `orchestrate:`),
# into the folder argv[2]. With FAULT_CLIP set, that clip's inference raises while the counter file
# FAULT_COUNTER says fewer than 2 failures happened.
CLIPS_CHILD = r"""
import json, os, sys
from pathlib import Path

if os.environ.get("FAULT_CLIP"):
    import visem_pl.tasks.inference.clips as clips

    real, counter = clips.infer_clips, Path(os.environ["FAULT_COUNTER"])

    def flaky(weights, clip_list, *args, **kwargs):
        if [c.name for c in clip_list] == [os.environ["FAULT_CLIP"]]:
            failed = int(counter.read_text()) if counter.exists() else 0
            if failed < 2:
                counter.write_text(str(failed + 1))
                raise RuntimeError(f"injected fault {failed + 1} of 2 in {os.environ['FAULT_CLIP']}")
        return real(weights, clip_list, *args, **kwargs)

    clips.infer_clips = flaky  # the task imports it from the module when it runs

from visem_pl.flows.inference import pseudo_label_clips
from visem_pl.flows.round import options
from visem_pl.flows.runners import make_task_runner

opts = options(sys.argv[1], "params.yaml", None, None, None, False, False)
flow = pseudo_label_clips.with_options(task_runner=make_task_runner(opts.orchestrate))
state = flow(sys.argv[1], 0, out_dir=sys.argv[2], return_state=True)
print(json.dumps({"type": state.type.value, "message": state.message, "flow_run": str(state.state_details.flow_run_id),
                  "totals": state.result() if state.is_completed() else None}))
"""

# `pseudo-label-round` round 0 as flow run argv[2] (no git commit, no push). With HELD_MARKER set, the
# second clip file it writes stops between its hidden temporary file and the rename into place, says so
# in HELD_MARKER and waits there for the kill.
ROUND_CHILD = (
    HOLD_SECOND_WRITE
    + """
import json, sys
from visem_pl.flows.round import pseudo_label_round

state = pseudo_label_round.with_options(flow_run_name=sys.argv[2])(
    round=0, workspace=sys.argv[1], commit=False, push=False, return_state=True
)
result = state.result() if state.is_completed() else None
print(json.dumps({"type": state.type.value, "message": state.message, "clips": result and result["clips"]}))
"""
)


def run_clips(ws: Path, server, out: Path, folder: Path, **fault: str) -> dict:
    child = FlowProcess(ws, server, CLIPS_CHILD, folder, [str(ws), str(out)], **fault)
    try:
        return child.result()
    finally:
        child.stop()


def tables(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.glob("*.parquet"))}


def assert_same_outputs(got: dict[str, Path], want: dict[str, Path]) -> None:
    assert sorted(got) == sorted(want)
    for name, path in got.items():
        a, b = pq.read_table(path), pq.read_table(want[name])
        assert a.num_rows > 0 and a.equals(b), name
        assert a.schema.metadata == b.schema.metadata, name


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_server):
    """Round 0's model by `dvc repro` (and the dataset validated, so that a round ends with `dvc status`
    clean), and the clean run's predictions every test compares with."""
    base = tmp_path_factory.mktemp("prefect_faults")
    ws = make_workspace(base / "project", TINY)
    run(["dvc", "repro", "validate", "train@0"], ws)
    reference = base / "reference"
    clean = run_clips(ws, prefect_server, reference, base / "clean")
    assert clean["type"] == "COMPLETED", clean
    totals = clean["totals"]
    assert totals["predicted"] == totals["clips"] == len(tables(reference)) >= 3 and totals["skipped"] == 0
    return {"ws": ws, "base": base, "reference": tables(reference)}


def task_runs(server, flow_run_id: str) -> dict[str, dict]:
    rows = server.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}}).json()
    return {r["name"]: r for r in rows}


def state_names(server, task_run_id: str) -> list[str]:
    states = server.get(f"/task_run_states/?task_run_id={task_run_id}")
    return [s["name"] for s in sorted(states, key=lambda s: s["timestamp"])]


@pytest.mark.timeout(600)
def test_a_clip_that_fails_twice_is_retried_and_the_run_completes(project, prefect_server):
    ws, base, reference = project["ws"], project["base"], project["reference"]
    victim = sorted(reference)[1].removesuffix(".parquet")
    counter, out = base / "retry-failures", base / "retry"
    result = run_clips(ws, prefect_server, out, base / "retry-run", FAULT_CLIP=victim, FAULT_COUNTER=str(counter))

    assert result["type"] == "COMPLETED", result
    assert counter.read_text() == "2"  # the fault did fire twice
    totals = result["totals"]
    assert totals["predicted"] == totals["clips"] == len(reference) and totals["skipped"] == 0
    assert_same_outputs(tables(out), reference)

    runs = task_runs(prefect_server, result["flow_run"])
    clip_runs = {name.removeprefix("pseudo-label "): r for name, r in runs.items() if name.startswith("pseudo-label ")}
    assert sorted(clip_runs) == sorted(p.removesuffix(".parquet") for p in reference)
    for clip, r in clip_runs.items():
        names = state_names(prefect_server, r["id"])
        assert r["state_type"] == "COMPLETED" and names[-1] == "Completed", (clip, names)
        if clip == victim:  # two failed attempts, each awaiting its retry, then the third one succeeds
            assert r["run_count"] == 3, (clip, r["run_count"], names)
            assert names.count("AwaitingRetry") == 2 and names.count("Retrying") == 2, names
        else:
            assert r["run_count"] == 1 and "AwaitingRetry" not in names, (clip, r["run_count"], names)


def wait_for_file(path: Path, child: FlowProcess, what: str, timeout: float = 420) -> None:
    deadline = time.monotonic() + left(timeout)
    while not path.exists():
        assert child.alive(), f"the round ended before {what}:\n{child.log_tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{child.log_tail()}"
        time.sleep(0.2)


@pytest.mark.timeout(900)
def test_a_round_killed_mid_inference_restarts_without_redoing_finished_clips(project, prefect_server):
    ws, base, reference = project["ws"], project["base"], project["reference"]
    pred = ws / PRED
    marker = base / "held.marker"
    killed = FlowProcess(ws, prefect_server, ROUND_CHILD, base / "killed", [str(ws), "killed-mid-inference"],
                         HELD_MARKER=str(marker))  # fmt: skip
    try:
        wait_for_file(marker, killed, "its second clip")
        held_tmp = Path(marker.read_text())
        assert held_tmp.exists() and held_tmp.parent == pred.resolve()
        finished = tables(pred)
        assert 1 <= len(finished) < len(reference), sorted(finished)
        assert killed.kill() == -signal.SIGKILL
    finally:
        killed.stop()
    # Nothing is left to end the killed run: the server still has it Running, holding the workspace.
    (fr,) = prefect_server.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": ["killed-mid-inference"]}}}).json()
    assert fr["state"]["type"] == "RUNNING"
    assert json.loads((ws / ".visem-pl/round.lock").read_text())["flow_run"] == fr["id"]
    assert tables(pred) == finished and held_tmp.exists()  # the second clip's half-done file, hidden
    before = {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in finished.items()}

    again = FlowProcess(ws, prefect_server, ROUND_CHILD, base / "again", [str(ws), "started-again"])
    try:
        waiting = paused_run(prefect_server, "started-again", again, "review-round-0-1")
        answer = base / "expert.json"
        run([str(BIN / "visem-pl"), "review", "simulate", "--round", "0", "--out", str(answer)], ws)
        run([str(BIN / "visem-pl"), "review", "submit", "--flow-run", waiting["id"], "--export", str(answer),
             "--reviewer", "dr-expert"], ws, extra_env=prefect_server.env)  # fmt: skip
        final = again.result()
    finally:
        again.stop()
    assert final["type"] == "COMPLETED", (final, again.log_tail())
    clips = final["clips"]
    assert clips["clips"] == len(reference) and clips["skipped"] == len(finished), clips
    assert clips["predicted"] == len(reference) - len(finished), clips

    after = tables(pred)
    for name, (ino, mtime) in before.items():
        st = after[name].stat()
        assert (st.st_ino, st.st_mtime_ns) == (ino, mtime), f"{name} was predicted again"
    assert_same_outputs(after, reference)
    assert not [p.name for p in pred.iterdir() if p.name not in after]  # no temporary file left
    assert not (ws / ".visem-pl/round.lock").exists()
    assert "up to date" in run(["dvc", "status"], ws).stdout


# Locks as a round leaves them when its process is gone (its pid is one that has ended) while its flow
# run is Running (killed) or Suspended (waiting for review); then the check the next round makes.
LOCK_CHILD = r"""
import json, subprocess, sys
from pathlib import Path
from prefect import flow, get_client
from prefect.states import Running, Suspended
from visem_pl.flows.round import _holder_stale
from visem_pl.tasks.campaign import lock

ws = Path(sys.argv[1])
gone = subprocess.Popen(["true"])
gone.wait()

@flow(name="round-whose-process-is-gone")
def holder():
    pass

out = {}
with get_client(sync_client=True) as client:
    for name, state in (("running", Running()), ("suspended", Suspended(timeout_seconds=3600))):
        run = client.create_flow_run(holder, state=Running())
        client.set_flow_run_state(run.id, state, force=True)
        mine = lock.acquire_lock(ws, {"holder": f"flow run {run.id}", "flow_run": str(run.id), "round": 1})
        lock.lock_path(ws).write_text(json.dumps({**mine, "pid": gone.pid}))
        try:
            lock.acquire_lock(ws, {"holder": "next round", "round": 2}, is_stale=_holder_stale)
            out[name] = {"state": client.read_flow_run(run.id).state.type.value, "taken_over": True}
            lock.release_lock(ws, "next round")
        except lock.WorkspaceBusy as exc:
            out[name] = {"state": client.read_flow_run(run.id).state.type.value, "taken_over": False,
                         "busy": str(exc)}
            lock.lock_path(ws).unlink()
print(json.dumps(out))
"""


def test_a_lock_is_taken_from_a_running_flow_run_whose_process_is_gone_not_from_a_suspended_one(
    prefect_server, tmp_path
):
    proc = run([str(BIN / "python"), "-c", LOCK_CHILD, str(tmp_path)], tmp_path, extra_env=prefect_server.env)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["running"] == {"state": "RUNNING", "taken_over": True}, out
    assert out["suspended"]["state"] == "PAUSED" and not out["suspended"]["taken_over"], out
    assert "round 1 is already running in this workspace" in out["suspended"]["busy"]
