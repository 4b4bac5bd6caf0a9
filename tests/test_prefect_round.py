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
from helpers.project import BIN, env, make_workspace, run, stop_group
from helpers.project import TINY as BASE

TINY = {
    **BASE,
    "orchestrate": {"task_runner": "threads", "infer_concurrency": 2, "review_timeout_hours": 1},
    "campaign": {"max_rounds": 2, "min_fitness_gain": 0.0, "min_new_accepted": 1},
}
DEPLOYMENT = "pseudo-label-round/visem-pl"


def wait_for(server, run_id: str, done, what: str, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while True:
        fr = server.get(f"/flow_runs/{run_id}")
        if done(fr):
            return fr
        if fr["state"]["type"] in ("FAILED", "CRASHED", "CANCELLED", "COMPLETED") and not done(fr):
            raise AssertionError(
                f"flow run ended {fr['state']['name']} while waiting for {what}: "
                f"{fr['state'].get('message')}\n{logs(server, run_id)}"
            )
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; state {fr['state']['name']}\n{logs(server, run_id)}")
        time.sleep(1)


def logs(server, run_id: str) -> str:
    rows = server.post(
        "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
    ).json()
    return "\n".join(r["message"][:500] for r in rows)[-6000:]


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


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_server):
    """Round 0 by `dvc repro`, committed and tagged; `visem-pl serve` running in the project."""
    ws = make_workspace(tmp_path_factory.mktemp("prefect") / "project", TINY)
    run(["dvc", "repro"], ws)
    run(["git", "add", "-A"], ws)
    run(["git", "commit", "-qm", "round 0"], ws)
    run(["git", "tag", "round-0"], ws)
    log = open(ws.parent / "serve.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "visem-pl"), "serve"],
        cwd=ws,
        env=env(**prefect_server.env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 120
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
    stop_group(proc)
    log.close()


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
    assert set(props) == {"reviewer", "export_path", "label_studio_project", "decision", "notes"}
    assert props["decision"]["enum"] == ["import", "stop"]
    assert all(props[k].get("description") for k in props)
    description = prefect_server.input(waiting["id"], keyset["description"])
    state = json.loads((project / "review/round-1/state.json").read_text())
    batch = state["exports"][-1]["batch"]
    assert f"Round 1: {len(state['items'])} of {len(state['items'])} frames wait for review" in description
    assert str(project / "review/round-1/exports" / batch / "tasks.json") in description
    assert f"visem-pl review submit --flow-run {waiting['id']}" in description
    # Every clip pseudo-labelled by the mapped tasks, one per clip.
    assert len(waiting["stamps"]) - 1 == len(list((project / "data/synthetic").rglob("*_*_*.mp4")))


def test_second_round_on_the_workspace_is_refused(waiting, prefect_server, project):
    other = start_run(project, prefect_server, "round=1")
    fr = wait_for(prefect_server, other, lambda f: f["state"]["type"] == "FAILED", "the refusal", timeout=180)
    text = logs(prefect_server, other)
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
        f"/flow_runs/{rid}/resume", {"run_input": {"reviewer": "ui", "export_path": str(tmp_path / "nowhere.json")}}
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
    for stage in ("train@1", "evaluate@1", "infer@1", "filter@1", "review@1", "merge@1", "quality@1", "report"):
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


def test_nothing_finished_before_the_wait_ran_again(finished, waiting, project):
    preds = sorted((project / "data/rounds/round-1/predictions").glob("*.parquet"))
    now = {p.name: p.stat().st_mtime_ns for p in preds + [project / "models/round-1/weights.pt"]}
    assert now == waiting["stamps"]


def test_round_artifacts(finished, prefect_server, waiting):
    arts = prefect_server.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [waiting["id"]]}}}).json()
    by_type = {}
    for a in arts:
        by_type.setdefault(a["type"], []).append(a)
    assert any(a["key"] == "round-1-report" and "# Round 1" in a["data"] for a in by_type["markdown"])
    table = next(a for a in by_type["table"] if a["key"] == "pseudo-label-rounds")
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert [r["round"] for r in rows] == [0, 1]
    assert all(isinstance(r["fitness"], float) for r in rows)
    progress = prefect_server.post("/artifacts/filter", {"artifacts": {"type": {"any_": ["progress"]}}}).json()
    assert any(a["data"] == 100.0 for a in progress)


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


def test_campaign_in_a_python_process_pauses_and_stops_by_its_rule(finished, project, prefect_server, tmp_path):
    """Not a deployment run: the review wait pauses in the process (pause_flow_run) instead of suspending."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["campaign"] = {"max_rounds": 3, "min_fitness_gain": -1.0, "min_new_accepted": 0}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "campaign: up to 3 rounds"], project)
    log = open(tmp_path / "campaign.log", "w")
    code = (
        "import json; from visem_pl.flows.campaign import pseudo_label_campaign; "
        "print(json.dumps(pseudo_label_campaign()))"
    )
    out = tmp_path / "campaign.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen(
            [str(BIN / "python"), "-c", code], cwd=project, env=env(**prefect_server.env), stdout=fh, stderr=log
        )
        deadline = time.time() + 600
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
            assert proc.poll() is None, (tmp_path / "campaign.log").read_text()[-4000:]
            assert time.time() < deadline, "the campaign never reached its review wait"
            time.sleep(1)
        fr = runs[0]
        assert fr["state"]["name"] == "Paused" and waiting_key(fr) == "review-round-2-1"
        answer = tmp_path / "round2.json"
        run([str(BIN / "visem-pl"), "review", "simulate", "--round", "2", "--out", str(answer)], project)
        proc_submit = submit(project, prefect_server, fr["id"], "--export", str(answer), "--reviewer", "dr-expert")
        assert proc_submit.returncode == 0, proc_submit.stderr
        assert proc.wait(600) == 0, (tmp_path / "campaign.log").read_text()[-4000:]
    log.close()
    result = json.loads(out.read_text().strip().splitlines()[-1])
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


def test_stop_decision_ends_the_round_with_nothing_merged(project, prefect_server):
    """Runs after the campaign (round 2 done): round 3 waits, the coordinator stops it."""
    rid = start_run(project, prefect_server, "round=3")
    wait_for(prefect_server, rid, lambda f: waiting_key(f) == "review-round-3-1", "round 3's review wait")
    proc = submit(
        project,
        prefect_server,
        rid,
        "--decision",
        "stop",
        "--reviewer",
        "coordinator",
        "--notes",
        "model drifted, retrain first",
    )
    assert proc.returncode == 0, proc.stderr
    fr = wait_for(prefect_server, rid, lambda f: f["state"]["type"] == "CANCELLED", "the stopped round")
    assert "stopped at review by coordinator: model drifted, retrain first" in fr["state"]["message"]
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert "filter@3" in lock and "review@3" not in lock and "merge@3" not in lock
    assert not (project / "data/rounds/round-3/merged").exists()
    assert not (project / ".visem-pl/round.lock").exists()
