"""The plain rules under the Prefect flows: declaring rounds, the workspace lock, the campaign's stop
rule and the task-runner settings (no server needed)."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from visem_pl.flows.runners import OrchestrateConfig, make_task_runner
from visem_pl.tasks.campaign import lock
from visem_pl.tasks.campaign.rounds import ensure_round
from visem_pl.tasks.campaign.stop import CampaignConfig, stop_reason

PARAMS = """\
# the project's params
train:
  model: models/yolov8n.yaml # from scratch
rounds:
  - {round: 0, data: data/prepared, init: models/yolov8n.yaml}
pseudo_rounds: [0]   # rounds pseudo-labelled
"""


def test_ensure_round_appends_and_keeps_comments(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text(PARAMS)
    assert ensure_round(p, 1) is True
    text = p.read_text()
    assert "# the project's params" in text and "# from scratch" in text and "# rounds pseudo-labelled" in text
    data = yaml.safe_load(text)
    assert data["rounds"][1] == {"round": 1, "data": "data/rounds/round-0/merged", "init": "models/round-0"}
    assert data["pseudo_rounds"] == [0, 1]
    assert ensure_round(p, 1) is False  # already declared: the file is left alone
    assert p.read_text() == text


def test_ensure_round_refuses_gaps(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text(PARAMS)
    with pytest.raises(ValueError, match="round 3 needs round 2 first"):
        ensure_round(p, 3)
    p.write_text(PARAMS.replace("pseudo_rounds: [0]", "pseudo_rounds: []"))
    with pytest.raises(ValueError, match="round 0 is not pseudo-labelled"):
        ensure_round(p, 1)
    assert ensure_round(p, 0) is True
    assert yaml.safe_load(p.read_text())["pseudo_rounds"] == [0]


def test_lock_refuses_a_second_round_and_is_reentrant(tmp_path):
    a = {"holder": "flow run A", "flow_run": "A", "round": 1}
    lock.acquire_lock(tmp_path, a)
    lock.acquire_lock(tmp_path, a)  # the same run resumed after its review wait
    with pytest.raises(lock.WorkspaceBusy, match=r"round 1 is already running in this workspace \(flow run A"):
        lock.acquire_lock(tmp_path, {"holder": "flow run B", "flow_run": "B", "round": 2})
    assert lock.release_lock(tmp_path, "flow run B") is False
    assert lock.read_lock(tmp_path)["holder"] == "flow run A"
    assert lock.release_lock(tmp_path, "flow run A") is True
    assert lock.read_lock(tmp_path) is None


def test_stale_lock_is_taken_over(tmp_path):
    lock.acquire_lock(tmp_path, {"holder": "flow run A", "flow_run": "A", "round": 1})
    got = lock.acquire_lock(tmp_path, {"holder": "flow run B", "round": 2}, is_stale=lambda h: h["flow_run"] == "A")
    assert got["holder"] == "flow run B" and lock.read_lock(tmp_path)["round"] == 2
    # A holder without a flow run on this host whose process is gone is stale too.
    data = json.loads(lock.lock_path(tmp_path).read_text())
    assert lock.pid_alive(data) is True
    data["pid"] = 2**22 + 12345
    assert lock.pid_alive(data) is False
    assert os.getpid() == lock.read_lock(tmp_path)["pid"]


ROWS = [
    {"round": 0, "fitness": 0.10, "accepted_boxes": 100},
    {"round": 1, "fitness": 0.20, "accepted_boxes": 180},
    {"round": 2, "fitness": 0.201, "accepted_boxes": 250},
]


def test_stop_rule():
    cfg = CampaignConfig(max_rounds=5, min_fitness_gain=0.005, min_new_accepted=10)
    assert stop_reason(ROWS[:1], cfg) is None
    assert stop_reason(ROWS[:2], cfg) is None
    assert "fitness gained +0.0010 in round 2" in stop_reason(ROWS, cfg)
    assert "max_rounds = 2" in stop_reason(ROWS[:2], CampaignConfig(max_rounds=2))
    few = [ROWS[0], {"round": 1, "fitness": 0.3, "accepted_boxes": 105}]
    assert "accepted 5 new pseudo-label boxes" in stop_reason(few, cfg)
    with pytest.raises(ValueError, match="max_rounds"):
        CampaignConfig(max_rounds=0)


def test_orchestrate_settings():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    runner = make_task_runner(OrchestrateConfig(infer_concurrency=3))
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 3
    dask = make_task_runner(OrchestrateConfig(task_runner="dask", address="tcp://10.0.0.5:8786"))
    assert isinstance(dask, DaskTaskRunner) and dask.address == "tcp://10.0.0.5:8786"
    local = make_task_runner(OrchestrateConfig(task_runner="dask", n_workers=2))
    assert local.cluster_kwargs["n_workers"] == 2 and local.cluster_kwargs["threads_per_worker"] == 1
    for bad, match in (
        ({"task_runner": "spark"}, "task_runner must be one of"),
        ({"n_workers": 0}, "n_workers must be an integer >= 1"),
        ({"address": "10.0.0.5"}, "cluster address"),
        ({"review_timeout_hours": 0}, "review_timeout_hours must be > 0"),
    ):
        with pytest.raises(ValueError, match=match):
            OrchestrateConfig(**bad)


def test_serve_without_a_server_says_how_to_start_one(tmp_path):
    import subprocess

    from helpers.project import BIN, env

    e = env(PREFECT_HOME=str(tmp_path / "home"))
    e.pop("PREFECT_API_URL", None)
    proc = subprocess.run(
        [str(BIN / "visem-pl"), "serve"], cwd=tmp_path, env=e, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "PREFECT_API_URL is not set: start `prefect server start`" in proc.stderr


def test_label_studio_project_maps_to_its_pushed_batch(tmp_path):
    from visem_pl.tasks.review.exchange.live import PROJECT_FILE, batch_of_project

    for batch, project in (("20240501T100000Z-labelstudio", 7), ("20240502T100000Z-labelstudio", 9)):
        folder = tmp_path / "exports" / batch
        folder.mkdir(parents=True)
        (folder / PROJECT_FILE).write_text(json.dumps({"project": project, "batch": batch}))
    (tmp_path / "exports" / "20240503T100000Z-cvat").mkdir()
    assert batch_of_project(tmp_path, 9) == "20240502T100000Z-labelstudio"
    assert batch_of_project(tmp_path, 7) == "20240501T100000Z-labelstudio"
    assert batch_of_project(tmp_path, 8) is None
