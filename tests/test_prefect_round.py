"""A round driven by Prefect, against a real Prefect server on loopback, in a real DVC + git project.

Round 0 is reproduced with `dvc repro`; `visem-pl serve` serves the deployments; round 1 is started
with `prefect deployment run`, trains, pseudo-labels every clip and stops for its review. While it
waits: a second round on the same workspace is refused, bad answers are refused (by
`visem-pl review submit`, and by the flow itself for an answer given like the UI's form) and the
run keeps waiting. The simulated expert's Label Studio export, submitted with `visem-pl review
submit`, finishes the round: merged, versioned (git tag round-1), `dvc status` clean, nothing that
had finished before the wait done again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from helpers.label_studio import INITIAL_USER
from helpers.prefect import FlowProcess, paused_run
from helpers.project import BIN, env, left, run, stop_group, write_params
from helpers.project import TINY as BASE

TINY = {
    **BASE,
    "orchestrate": {"task_runner": "threads", "infer_concurrency": 2, "review_timeout_hours": 1},
    "campaign": {"max_rounds": 2, "min_fitness_gain": 0.0, "min_new_accepted": 1},
}
DEPLOYMENT = "pseudo-label-round/visem-pl"


ENDED = ("FAILED", "CRASHED", "CANCELLED", "COMPLETED")  # a flow run's final state types


def wait_for(server, run_id: str, done, what: str, timeout: float = 600) -> dict:
    deadline = time.time() + left(timeout)
    while True:
        fr = server.get(f"/flow_runs/{run_id}")
        if done(fr):
            return fr
        if fr["state"]["type"] in ENDED and not done(fr):
            raise AssertionError(
                f"flow run ended {fr['state']['name']} while waiting for {what}: "
                f"{fr['state'].get('message')}\n{logs(server, run_id)}"
            )
        if time.time() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}; state {fr['state']['name']}\n{logs(server, run_id)}\n"
                f"{where_it_is(server, run_id)}"
            )
        time.sleep(1)


# The log of the module's `visem-pl serve`, which runs the deployments' flow runs in processes of its own.
SERVE_LOG: list[Path] = []


def where_it_is(server, run_id: str) -> str:
    """What a run that did not get somewhere in time is doing: its task runs and child flow runs with their
    states (and the children's own task runs), then the tail of the `visem-pl serve` log, where the flow-run
    processes write (the run's own logs hold only the parent flow's lines)."""
    lines = []
    children = server.post("/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}}).json()
    for child in [None, *children]:
        if child is not None:
            lines.append(f"child flow {child['name']}: {child['state']['name']} {child['state'].get('message') or ''}")
        fid = run_id if child is None else child["id"]
        tasks = server.post(
            "/task_runs/filter", {"flow_runs": {"id": {"any_": [fid]}}, "sort": "EXPECTED_START_TIME_ASC"}
        )
        for t in tasks.json():
            lines.append(f"  task {t['name']}: {t['state']['name'] if t['state'] else None}")
    for log in SERVE_LOG:
        lines.append(f"{log} (tail):\n{log.read_text()[-8000:]}")
    return "\n".join(lines)


def cancel_unfinished(server, run_id: str, timeout: float = 120) -> None:
    """After a failed test: cancel its deployment run if still going and wait for it to end, so the workspace
    is free again (a cancelled run's lock is stale) and the next test does not fail for this one."""
    if server.get(f"/flow_runs/{run_id}")["state"]["type"] in ENDED:
        return
    server.post(f"/flow_runs/{run_id}/set_state", {"state": {"type": "CANCELLING"}, "force": True})
    try:
        deadline = time.time() + left(timeout)
    except AssertionError:  # the test's time is up: the cancel is asked for, no wait
        return
    while time.time() < deadline:
        if server.get(f"/flow_runs/{run_id}")["state"]["type"] in ENDED:
            return
        time.sleep(1)


def logs(server, run_id: str) -> str:
    rows = server.post(
        "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
    ).json()
    return "\n".join(r["message"][:500] for r in rows)[-6000:]


def logs_with(server, run_id: str, text: str, timeout: float = 60) -> str:
    """The run's logs once they hold `text` (the worker ships logs in batches, later on a busy machine),
    or as they are after `timeout` seconds."""
    deadline = time.time() + left(timeout)
    while text not in (found := logs(server, run_id)) and time.time() < deadline:
        time.sleep(1)
    return found


def waiting_key(fr: dict) -> str | None:
    s = fr["state"]
    return s["state_details"].get("pause_key") if s["type"] == "PAUSED" else None


def start_run(ws: Path, server, *params: str) -> str:
    args = [str(BIN / "prefect"), "deployment", "run", DEPLOYMENT]
    for p in params:
        args += ["--param", p]
    out = run(args, ws, extra_env=server.env).stdout
    return re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)


def submit(ws: Path, server, run_id: str, *args: str) -> subprocess.CompletedProcess:
    return run(
        [str(BIN / "visem-pl"), "review", "submit", "--flow-run", run_id, *args], ws, check=False, extra_env=server.env
    )


def with_orchestration(ws: Path) -> Path:
    """A round-0 project (the pipeline tests' tiny one) given this module's orchestrate and campaign sections,
    committed: no stage reads them, so round 0 stays up to date."""
    write_params(ws, TINY)
    run(["git", "commit", "-qam", "orchestrate and campaign settings"], ws)
    return ws


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_server, round0_project):
    """Round 0 by `dvc repro`, committed and tagged; `visem-pl serve` running in the project."""
    ws = with_orchestration(round0_project(tmp_path_factory.mktemp("prefect") / "project"))
    with open(ws.parent / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [str(BIN / "visem-pl"), "serve"],
            cwd=ws,
            env=env(**prefect_server.env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    SERVE_LOG[:] = [ws.parent / "serve.log"]
    try:
        deadline = time.time() + left(120)
        while True:
            try:
                prefect_server.get(f"/deployments/name/{DEPLOYMENT}")
                break
            except Exception:  # noqa: BLE001 - not registered yet
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(
                        f"visem-pl serve did not start:\n{(ws.parent / 'serve.log').read_text()[-4000:]}"
                    ) from None
                time.sleep(1)
        yield ws
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def waiting(project, prefect_server):
    """Round 1 triggered and waiting for its review; what it looked like when it first waited."""
    run_id = start_run(project, prefect_server, "round=1")
    fr = wait_for(prefect_server, run_id, lambda f: waiting_key(f) == "review-round-1-1", "the review wait")
    preds = sorted((project / "data/rounds/round-1/predictions").glob("*.parquet"))
    stamps = {p.name: p.stat().st_mtime_ns for p in preds + [project / "models/round-1/weights.pt"]}
    return {"id": run_id, "flow_run": fr, "stamps": stamps}


def test_bad_parameters_are_refused(project, prefect_server):
    proc = run(
        [str(BIN / "prefect"), "deployment", "run", DEPLOYMENT, "--param", "round=-1"],
        project,
        check=False,
        extra_env=prefect_server.env,
    )
    assert proc.returncode != 0
    assert "Validation failed for field 'round'" in proc.stdout and "less than the minimum of 0" in proc.stdout
    proc = run(
        [str(BIN / "prefect"), "deployment", "run", DEPLOYMENT, "--param", "round=1", "--param", "task_runner=spark"],
        project,
        check=False,
        extra_env=prefect_server.env,
    )
    assert proc.returncode != 0 and "task_runner" in proc.stdout and "spark" in proc.stdout


def test_round_waits_with_a_typed_review_form(waiting, prefect_server, project):
    fr = waiting["flow_run"]
    assert fr["state"]["name"] == "Suspended"  # a deployment run frees its worker while experts work
    keyset = fr["state"]["state_details"]["run_input_keyset"]
    schema = prefect_server.input(waiting["id"], keyset["schema"])
    props = schema["properties"]
    # One plain text box per answer, in the form's order; only the reviewer is required (a stop needs no answer).
    assert list(props) == ["reviewer", "answer", "decision", "notes"]
    assert schema["required"] == ["reviewer"]
    assert all(props[k]["type"] == "string" and "anyOf" not in props[k] for k in props)
    assert props["decision"]["enum"] == ["import", "stop"]
    assert all(props[k].get("description") for k in props)
    assert "absolute path of the reviewed export" in props["answer"]["description"]
    assert "digits only is read as a project number" in props["answer"]["description"]
    description = prefect_server.input(waiting["id"], keyset["description"])
    state = json.loads((project / "review/round-1/state.json").read_text())
    batch = state["exports"][-1]["batch"]
    assert f"Round 1: {len(state['items'])} of {len(state['items'])} frames wait for review" in description
    assert str(project / "review/round-1/exports" / batch / "tasks.json") in description
    assert f"visem-pl review submit --flow-run {waiting['id']}" in description
    # One log line says what waits and how to answer.
    line = (
        f"Round 1 waits for {len(state['items'])} frames to be reviewed: answer in the Prefect UI's Resume form "
        f"({prefect_server.url.removesuffix('/api')}/runs/flow-run/{waiting['id']}) or run "
        f"`visem-pl review submit --flow-run {waiting['id']} --export FILE --reviewer NAME`"
    )
    assert line in logs_with(prefect_server, waiting["id"], line)
    # Every clip pseudo-labelled by the mapped tasks, one per clip.
    assert len(waiting["stamps"]) - 1 == len(list((project / "data/synthetic").rglob("*_*_*.mp4")))


def test_second_round_on_the_workspace_is_refused(waiting, prefect_server, project):
    other = start_run(project, prefect_server, "round=1")
    fr = wait_for(prefect_server, other, lambda f: f["state"]["type"] == "FAILED", "the refusal", timeout=180)
    text = logs_with(prefect_server, other, "already running in this workspace")
    assert "already running in this workspace" in text and waiting["id"] in text
    assert waiting_key(prefect_server.get(f"/flow_runs/{waiting['id']}")) == "review-round-1-1"
    assert fr["state"]["type"] == "FAILED"


def test_bad_answers_are_refused_and_the_round_keeps_waiting(waiting, prefect_server, project, tmp_path):
    rid = waiting["id"]
    proc = submit(project, prefect_server, rid, "--export", str(tmp_path / "missing.json"), "--reviewer", "ann")
    assert proc.returncode == 2 and "no such file" in proc.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": 1, "data": {"item": "99_30_60_frame_0"}, "annotations": []}]))
    proc = submit(project, prefect_server, rid, "--export", str(bad), "--reviewer", "ann")
    assert proc.returncode == 2 and "refused, flow run" in proc.stderr and "99_30_60_frame_0" in proc.stderr
    assert waiting_key(prefect_server.get(f"/flow_runs/{rid}")) == "review-round-1-1"
    # An answer through the UI's form is checked by the flow: refused with the reason, and it waits again.
    r = prefect_server.post(
        f"/flow_runs/{rid}/resume", {"run_input": {"reviewer": "ui", "answer": str(tmp_path / "nowhere.json")}}
    )
    assert r.status_code == 201 and r.json()["status"] == "ACCEPT", r.text
    fr = wait_for(prefect_server, rid, lambda f: waiting_key(f) == "review-round-1-2", "the second wait")
    keyset = fr["state"]["state_details"]["run_input_keyset"]
    description = prefect_server.input(rid, keyset["description"])
    assert "not taken" in description and "nowhere.json: no such file" in description


@pytest.fixture(scope="module")
def finished(waiting, prefect_server, project, tmp_path_factory):
    # The refusal test leaves the run at its second wait; make sure it is there either way.
    rid = waiting["id"]
    fr = prefect_server.get(f"/flow_runs/{rid}")
    assert fr["state"]["type"] == "PAUSED"
    answer = tmp_path_factory.mktemp("expert") / "expert-export.json"
    sim = run([str(BIN / "visem-pl"), "review", "simulate", "--round", "1", "--out", str(answer)], project)
    proc = submit(
        project,
        prefect_server,
        rid,
        "--export",
        str(answer),
        "--reviewer",
        "dr-expert",
        "--notes",
        "checked every frame",
    )
    assert proc.returncode == 0, proc.stderr
    fr = wait_for(prefect_server, rid, lambda f: f["state"]["type"] == "COMPLETED", "the round to finish")
    return {"flow_run": fr, "simulated": json.loads(sim.stdout)}


def test_resumed_round_finishes_with_dvc_clean(finished, project):
    status = run(["dvc", "status"], project).stdout
    assert "up to date" in status
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    for stage in ("train@1", "evaluate@1", "infer@1", "track@1", "motility@1", "filter@1", "review@1", "merge@1",
                  "quality@1", "control@1", "report"):  # fmt: skip
        assert stage in lock, stage
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["pseudo_rounds"] == [0, 1] and [r["round"] for r in params["rounds"]] == [0, 1]
    assert "orchestrate:" in (project / "params.yaml").read_text()
    tags = run(["git", "tag"], project).stdout.split()
    assert "round-1" in tags
    assert (
        run(["git", "status", "--porcelain", "--", "dvc.lock", "params.yaml", "metrics", "review"], project).stdout
        == ""
    )
    assert not (project / ".visem-pl/round.lock").exists()
    # `dvc repro` now agrees: nothing to do.
    assert "Data and pipelines are up to date" in run(["dvc", "repro"], project).stdout


def test_expert_answers_reach_the_merged_set(finished, project):
    state = json.loads((project / "review/round-1/state.json").read_text())
    items = state["items"]
    assert items and all(v["state"] == "reviewed" and v["reviewer"] == "dr-expert" for v in items.values())
    assert finished["simulated"]["items"] == len(items)
    labels = project / "data/rounds/round-1/reviewed/labels"
    assert sorted(p.stem for p in labels.glob("*.txt")) == sorted(items)
    stats = json.loads((project / "data/rounds/round-1/reviewed/stats.json").read_text())
    assert stats["reviewers"] == ["dr-expert"]
    merged = (project / "data/rounds/round-1/merged/frames.csv").read_text()
    assert all(item in merged for item in items)


def test_each_wait_is_announced_once(finished, waiting, prefect_server):
    """The run waited twice (the refused answer, then the expert's); each resume runs the flow again from the
    top, where the earlier waits return their stored answers without saying again that the round waits."""
    messages, offset, of_run = [], 0, {"flow_run_id": {"any_": [waiting["id"]]}}
    while True:  # every line, page by page (the server gives at most 200 at a time)
        rows = prefect_server.post(
            "/logs/filter", {"logs": of_run, "sort": "TIMESTAMP_ASC", "limit": 200, "offset": offset}
        ).json()
        messages += [r["message"] for r in rows]
        offset += len(rows)
        if len(rows) < 200:
            break
    assert sum(m.startswith("Round 1 waits for ") for m in messages) == 2


def test_nothing_finished_before_the_wait_ran_again(finished, waiting, project):
    preds = sorted((project / "data/rounds/round-1/predictions").glob("*.parquet"))
    now = {p.name: p.stat().st_mtime_ns for p in preds + [project / "models/round-1/weights.pt"]}
    assert now == waiting["stamps"]


def test_round_artifacts(finished, prefect_server, waiting, project):
    arts = prefect_server.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [waiting["id"]]}}}).json()
    by_type = {}
    for a in arts:
        by_type.setdefault(a["type"], []).append(a)
    report = next(a for a in by_type["markdown"] if a["key"] == "round-1-report")
    assert "# Round 1" in report["data"]
    # It links the HTML round report the round wrote, and leads with the headline numbers.
    page = project / "reports" / "round-report.html"
    assert page.resolve().as_uri() in report["data"] and page.stat().st_size > 10_000
    assert "Round 1: validation fitness" in report["data"] and "labels-only control" in report["data"]
    assert '<h2 id="round-1">' in page.read_text()
    table = next(a for a in by_type["table"] if a["key"] == "pseudo-label-rounds")
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert [r["round"] for r in rows] == [0, 1]
    for r in rows:  # the table shows what evaluate wrote for each round
        overall = json.loads((project / f"metrics/rounds/round-{r['round']}/eval.json").read_text())["overall"]
        assert r["fitness"] == overall["fitness"] and r["mAP50"] == overall["mAP50"]
    # The clips' progress bar of this round: the pseudo-label-clips subflow of this flow run, at 100 %.
    subflows = prefect_server.post(
        "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [waiting["id"]]}}}
    ).json()
    ids = [f["id"] for f in subflows]
    progress = prefect_server.post(
        "/artifacts/filter", {"artifacts": {"type": {"any_": ["progress"]}, "flow_run_id": {"any_": ids}}}
    ).json()
    assert ids and progress and all(a["data"] == 100.0 for a in progress), (ids, progress)
    assert all(a["description"] == "Round 1: clips pseudo-labelled" for a in progress)


def test_dask_local_cluster_gives_the_single_process_outputs(finished, project, prefect_server, tmp_path):
    """Round 1's clips mapped over a real distributed.LocalCluster of 2 worker processes."""
    out = tmp_path / "dask"
    code = (
        "import json; from visem_pl.flows.inference import pseudo_label_clips; "
        "from visem_pl.flows.runners import OrchestrateConfig, make_task_runner; "
        "r = pseudo_label_clips.with_options(task_runner=make_task_runner(OrchestrateConfig("
        f"task_runner='dask', n_workers=2)))('{project}', 1, out_dir='{out}'); print(json.dumps(r))"
    )
    proc = run([str(BIN / "python"), "-c", code], project, extra_env=prefect_server.env)
    totals = json.loads(proc.stdout.strip().splitlines()[-1])
    single = sorted((project / "data/rounds/round-1/predictions").glob("*.parquet"))
    assert totals["predicted"] == len(single) and totals["skipped"] == 0
    assert len(totals["workers"]) == 2 and os.getpid() not in totals["workers"]
    for path in single:
        a, b = pq.read_table(path), pq.read_table(out / path.name)
        assert a.equals(b), path.name
        assert a.schema.metadata == b.schema.metadata


@pytest.fixture(scope="module")
def campaign(finished, project, prefect_server, tmp_path_factory):
    """A campaign (max_rounds 3) started in a Python process after round 1: it runs round 2, whose review
    wait pauses in the process; the simulated expert's answer resumes it. What it returned and logged."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["campaign"] = {"max_rounds": 3, "min_fitness_gain": -1.0, "min_new_accepted": 0}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "campaign: up to 3 rounds"], project)
    tmp = tmp_path_factory.mktemp("campaign")
    code = (
        "import json; from visem_pl.flows.campaign import pseudo_label_campaign; "
        "print(json.dumps(pseudo_label_campaign()))"
    )
    flows = FlowProcess(project, prefect_server, code, tmp)
    try:
        deadline = time.time() + left(600)
        while True:
            runs = prefect_server.post(
                "/flow_runs/filter",
                {
                    "flows": {"name": {"any_": ["pseudo-label-campaign"]}},
                    "flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}},
                },
            ).json()
            if runs:
                break
            assert flows.alive(), flows.log_tail()
            assert time.time() < deadline, "the campaign never reached its review wait"
            time.sleep(1)
        paused = runs[0]
        answer = tmp / "round2.json"
        run([str(BIN / "visem-pl"), "review", "simulate", "--round", "2", "--out", str(answer)], project)
        submitted = submit(project, prefect_server, paused["id"], "--export", str(answer), "--reviewer", "dr-expert")
        assert submitted.returncode == 0, submitted.stderr
        result = flows.result()
    finally:
        flows.stop()  # a failed test leaves no campaign waiting for an hour
    return {"paused": paused, "result": result}


def test_campaign_in_a_python_process_pauses_and_stops_by_its_rule(campaign, project):
    """Not a deployment run: the review wait pauses in the process (pause_flow_run) instead of suspending."""
    fr = campaign["paused"]
    assert fr["state"]["name"] == "Paused" and waiting_key(fr) == "review-round-2-1"
    result = campaign["result"]
    assert result["rounds"] == [2]
    assert "max_rounds = 3" in result["stopped_because"]
    assert "up to date" in run(["dvc", "status"], project).stdout
    assert "round-2" in run(["git", "tag"], project).stdout.split()
    report = json.loads((project / "metrics/report.json").read_text())
    assert sorted(report["rounds"]) == ["0", "1", "2"]


def test_prefect_yaml_deploys_to_a_process_pool(project, prefect_server):
    e, prefect = prefect_server.env, str(BIN / "prefect")
    # The pool through the API with the process worker's own template: `prefect work-pool create` may
    # ask Prefect's collection registry on GitHub (it falls back to a bundled copy offline).
    from prefect.workers.process import ProcessWorker

    r = prefect_server.post(
        "/work_pools/",
        {"name": "visem-pl", "type": "process", "base_job_template": ProcessWorker.get_default_base_job_template()},
    )
    assert r.status_code == 201, r.text
    run([prefect, "variable", "set", "visem_pl_workspace", str(project)], project, extra_env=e)
    out = run([prefect, "--no-prompt", "deploy", "--name", "round", "--name", "campaign"], project, extra_env=e)
    for name, entry in (
        ("pseudo-label-round/round", "flows/round.py:pseudo_label_round"),
        ("pseudo-label-campaign/campaign", "flows/campaign.py:pseudo_label_campaign"),
    ):
        d = prefect_server.get(f"/deployments/name/{name}")
        assert d["work_pool_name"] == "visem-pl" and d["entrypoint"] == entry, out.stdout
        step = d["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]
        assert step["directory"] == "{{ prefect.variables.visem_pl_workspace }}"
        assert d["parameters"] == {"workspace": ".", "params_file": "params.yaml"}
    schema = prefect_server.get("/deployments/name/pseudo-label-round/round")["parameter_openapi_schema"]
    assert "round" in schema["required"] and schema["properties"]["round"]["minimum"] == 0


def test_stop_decision_ends_the_round_with_nothing_merged(campaign, project, prefect_server):
    """Round 3 (after the campaign's round 2) waits; the coordinator stops it."""
    rid = start_run(project, prefect_server, "round=3")
    try:
        wait_for(prefect_server, rid, lambda f: waiting_key(f) == "review-round-3-1", "round 3's review wait")
        proc = submit(project, prefect_server, rid, "--decision", "stop", "--reviewer", "coordinator",
                      "--notes", "model drifted, retrain first")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        fr = wait_for(prefect_server, rid, lambda f: f["state"]["type"] == "CANCELLED", "the stopped round")
    finally:
        cancel_unfinished(prefect_server, rid)
    assert "stopped at review by coordinator: model drifted, retrain first" in fr["state"]["message"]
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert "filter@3" in lock and "review@3" not in lock and "merge@3" not in lock
    assert not (project / "data/rounds/round-3/merged").exists()
    assert not (project / ".visem-pl/round.lock").exists()


# A real flow run that takes the workspace lock and ends without releasing it (as when its process is
# killed after the run ended), then the same check a round makes when it finds a lock (_holder_stale).
LEFT_LOCK = r"""
import json, sys
from pathlib import Path
from prefect import flow, get_client
from prefect.runtime import flow_run
from prefect.states import Running
from visem_pl.flows.round import _holder_stale
from visem_pl.tasks.campaign import lock

ws = Path(sys.argv[1])

@flow(name="round-that-left-its-lock")
def leaves_lock():
    lock.acquire_lock(ws, {"holder": f"flow run {flow_run.id}", "flow_run": str(flow_run.id), "round": 1})
    return str(flow_run.id)

ended = leaves_lock()
left = lock.read_lock(ws)
out = {"ended": ended, "left_by": left["flow_run"]}
with get_client(sync_client=True) as client:
    out["state"] = client.read_flow_run(left["flow_run"]).state.type.value
    new = {"holder": "flow run B", "flow_run": "00000000-0000-0000-0000-00000000000b", "round": 2}
    lock.acquire_lock(ws, new, is_stale=_holder_stale)
    out["taken_over_by"] = lock.read_lock(ws)["holder"]
    lock.release_lock(ws, "flow run B")
    running = client.create_flow_run(leaves_lock, state=Running())
    lock.acquire_lock(ws, {"holder": f"flow run {running.id}", "flow_run": str(running.id), "round": 3})
    try:
        lock.acquire_lock(ws, {"holder": "flow run C", "round": 4}, is_stale=_holder_stale)
        out["busy"] = None
    except lock.WorkspaceBusy as exc:
        out["busy"] = str(exc)
    out["running"] = str(running.id)
print(json.dumps(out))
"""


def test_a_lock_left_by_an_ended_flow_run_is_taken_over(prefect_server, tmp_path):
    proc = run([str(BIN / "python"), "-c", LEFT_LOCK, str(tmp_path)], tmp_path, extra_env=prefect_server.env)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["left_by"] == out["ended"] and out["state"] == "COMPLETED"
    assert out["taken_over_by"] == "flow run B"
    # A lock whose flow run is still running is not stale: the workspace stays taken.
    assert out["busy"] and "round 3 is already running in this workspace" in out["busy"]
    assert out["running"] in out["busy"]


def round_in_process(ws: Path, server, name: str, folder: Path, extra_env: dict | None = None, **params):
    """`pseudo_label_round(**params)` as flow run `name` in a process of its own; it prints the final state."""
    code = (
        "import json; from visem_pl.flows.round import pseudo_label_round; "
        f"s = pseudo_label_round.with_options(flow_run_name={name!r})(**{params!r}, return_state=True); "
        "print(json.dumps({'type': s.type.value, 'message': s.message}))"
    )
    return FlowProcess(ws, server, code, folder, **(extra_env or {}))


def test_review_wait_times_out(campaign, project, prefect_server, tmp_path):
    """orchestrate.review_timeout_hours: nobody answers, the round fails, frees the workspace, merges nothing."""
    flows = round_in_process(project, prefect_server, "times-out", tmp_path, round=3, review_timeout_hours=0.003,
                             commit=False, push=False)  # fmt: skip
    try:
        final = flows.result()
    finally:
        flows.stop()
    assert final["type"] == "FAILED" and "never resumed" in final["message"], (final, flows.log_tail())
    fr = prefect_server.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": ["times-out"]}}}).json()[0]
    assert fr["state"]["type"] == "FAILED"
    assert "review@3" not in yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert not (project / "data/rounds/round-3/merged").exists()
    assert not (project / ".visem-pl/round.lock").exists()


def test_round_resumed_from_a_label_studio_project(prefect_server, ls_server, round0_project, tmp_path):
    """The experts work in Label Studio: the waiting round's queue is pushed to a project (`visem-pl review
    push`), annotated there, and `review submit --label-studio-project` resumes the round, which pulls the
    annotations itself and finishes."""
    from label_studio_sdk import LabelStudio

    ls = ls_server
    ws = with_orchestration(round0_project(ls.root / "prefect-ls-project"))  # under LS's local-files root
    ls_env = {"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.token,
              "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(ls.root)}  # fmt: skip
    flows = round_in_process(ws, prefect_server, "from-label-studio", tmp_path, extra_env=ls_env, round=1, push=False)
    try:
        fr = paused_run(prefect_server, "from-label-studio", flows, "review-round-1-1")
        pushed = json.loads(run([str(BIN / "visem-pl"), "review", "push", "--round", "1"], ws, extra_env=ls_env)
                            .stdout.strip().splitlines()[-1])  # fmt: skip
        expert = LabelStudio(base_url=ls.url, api_key=ls.token)
        tasks = list(expert.tasks.list(project=pushed["project"], fields="all"))
        assert len(tasks) == pushed["items"] > 0
        for task in tasks:  # the expert accepts the model's boxes as they are
            (pred,) = expert.predictions.list(task=task.id)
            expert.annotations.create(id=task.id, result=pred.result, was_cancelled=False, ground_truth=False)
        proc_submit = submit(ws, prefect_server, fr["id"], "--label-studio-project", str(pushed["project"]),
                             "--reviewer", "dr-ls")  # fmt: skip
        assert proc_submit.returncode == 0, proc_submit.stderr
        final = flows.result()
    finally:
        flows.stop()
    assert final["type"] == "COMPLETED", flows.log_tail()
    state = json.loads((ws / "review/round-1/state.json").read_text())
    items = state["items"]
    # Each frame records its Label Studio annotator (the key's user made the annotations); whoever submitted
    # the answer is recorded on the import.
    assert items and all(v["state"] == "reviewed" and v["reviewer"] == INITIAL_USER for v in items.values())
    (imported,) = state["imports"]
    assert imported["reviewer"] == "dr-ls"
    assert imported["batch"] == pushed["batch"] and imported["source"].startswith(
        f"labelstudio-project-{pushed['project']}-"
    )
    merged = (ws / "data/rounds/round-1/merged/frames.csv").read_text()
    assert all(item in merged for item in state["items"])
    assert "up to date" in run(["dvc", "status"], ws).stdout
