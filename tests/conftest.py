"""Shared fixtures: a small valid VISEM-Tracking tree (real layout, real counts) and a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.prefect import PrefectServer
from helpers.project import free_port, stop_group, wait_healthy
from helpers.review import make_queue_round, make_queue_synth
from helpers.trees import SMALL_CLIPS, SMALL_FRAMES, SMALL_VIDEOS, Tree

from visem_pl.tasks.dataset.replica import build_replica

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def small_tree_pristine(tmp_path_factory) -> Tree:
    """Videos 11 and 23 (first 20 frames), one clip per group, all CSVs. Never mutate it."""
    root = tmp_path_factory.mktemp("small") / "visem"
    expected = build_replica(root, SMALL_VIDEOS, max_frames=SMALL_FRAMES, clips=SMALL_CLIPS)
    return Tree(root, expected)


@pytest.fixture
def small_tree(small_tree_pristine, tmp_path) -> Tree:
    """A private copy of the small valid tree that a test may break."""
    root = tmp_path / "visem"
    shutil.copytree(small_tree_pristine.root, root)
    return Tree(root, {k: (dict(v) if isinstance(v, dict) else v) for k, v in small_tree_pristine.expected.items()})


@pytest.fixture(scope="session")
def gap_tree(tmp_path_factory) -> Tree:
    """Video 23's first 1,110 frames: both real empty-frame runs (823-972, 1084-1107) included."""
    root = tmp_path_factory.mktemp("gap") / "visem"
    expected = build_replica(root, (23,), max_frames=1110)
    return Tree(root, expected)


@pytest.fixture
def run_cli(tmp_path_factory):
    """Run `python -m visem_pl.cli.main ARGS...` as a real subprocess; returns (rc, stdout, stderr).

    The working directory is a fresh empty folder outside every dataset tree.
    """

    def run(*args: str | os.PathLike, timeout: float = 120) -> tuple[int, str, str]:
        cwd = tmp_path_factory.mktemp("cwd")
        # Keep the netguard entry the suite put on PYTHONPATH: subprocesses run offline too.
        path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env = dict(os.environ, PYTHONPATH=path, PYTHONIOENCODING="utf-8")
        proc = subprocess.run(
            [sys.executable, "-m", "visem_pl.cli.main", *map(str, args)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
        )
        return proc.returncode, proc.stdout, proc.stderr

    return run


# --- one real Prefect server for the whole session -------------------------------------------------


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """`prefect server start` on loopback (SQLite, no UI), started once and shared by every test."""
    from visem_pl.tasks.workspace.offline import OFFLINE_ENV

    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = open(home / "server.log", "w")
    env = {**os.environ, **OFFLINE_ENV, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ui",
            "--analytics-off",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_healthy(f"{url}/health", proc, home / "server.log", 180, "prefect server")
    except AssertionError:
        log.close()
        raise
    yield PrefectServer(url, home)
    stop_group(proc)
    log.close()


# --- one round's predictions, queue and twin for the review-queue tests ----------------------------


@pytest.fixture(scope="session")
def queue_synth(tmp_path_factory) -> Path:
    """A small synthetic twin (videos 11 and 52, one clip each) the review-queue tests share."""
    return make_queue_synth(tmp_path_factory.mktemp("queue_synth") / "twin")


@pytest.fixture(scope="session")
def queue_round(queue_synth, tmp_path_factory) -> Path:
    """Round 0's predictions (from the truth), pseudo-labels and queue of `queue_synth` (see helpers.review)."""
    return make_queue_round(queue_synth, tmp_path_factory.mktemp("queue_round"))
