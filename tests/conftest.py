"""Shared fixtures: a small valid VISEM-Tracking tree (real layout, real counts) and a CLI runner."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.browser import require_browser
from helpers.label_studio import START_TIMEOUT_S, LabelStudioServer, label_studio_bin, server_env
from helpers.pipeline import copy_project, two_rounds
from helpers.prefect import start_prefect
from helpers.project import TINY, make_workspace, start_clock, start_server, stop_group
from helpers.review import make_queue_round, make_queue_synth
from helpers.trees import SMALL_CLIPS, SMALL_FRAMES, SMALL_VIDEOS, Tree

from visem_pl.tasks.dataset.replica import build_replica

REPO = Path(__file__).resolve().parent.parent


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Start the test's clock before its fixtures: every wait in helpers ends before pytest-timeout fires."""
    marker = item.get_closest_marker("timeout")
    timeout = item.config.getoption("timeout", None)  # pytest-timeout's --timeout, else its ini value
    if timeout is None:
        timeout = item.config.getini("timeout")
    if marker and marker.args:
        timeout = marker.args[0]
    start_clock(float(timeout) if timeout else None)


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
    """`prefect server start` on loopback (SQLite, with its web UI), started once and shared by every test."""
    proc, server = start_prefect(tmp_path_factory.mktemp("prefect-home"))
    try:
        yield server
    finally:
        server.close()
        stop_group(proc)


# --- one Label Studio server for the whole session ------------------------------------------------


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory):
    exe = label_studio_bin()
    guard = str(REPO / "tests" / "netguard")
    assert guard in os.environ.get("PYTHONPATH", "").split(os.pathsep), "netguard must be on the server's PYTHONPATH"
    base = tmp_path_factory.mktemp("label-studio")
    root = base / "files"
    root.mkdir()
    (base / "home").mkdir()
    token = secrets.token_hex(20)
    log = base / "server.log"
    t0 = time.monotonic()

    def start(port: int) -> subprocess.Popen:
        with open(log, "wb") as out:
            return subprocess.Popen(
                [str(exe), "start", "--internal-host", "127.0.0.1", "--port", str(port), "--no-browser"],
                cwd=base, env=server_env(base, root, token), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    try:
        proc, port = start_server(start, "/health", log, START_TIMEOUT_S, "label-studio")
    except AssertionError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield LabelStudioServer(f"http://127.0.0.1:{port}", token, root, log, time.monotonic() - t0)
    finally:
        stop_group(proc)


# --- one round's predictions, queue and twin for the review-queue tests ----------------------------


@pytest.fixture(scope="session")
def queue_synth(tmp_path_factory) -> Path:
    """A small synthetic twin (videos 11 and 52, one clip each) the review-queue tests share."""
    return make_queue_synth(tmp_path_factory.mktemp("queue_synth") / "twin")


@pytest.fixture(scope="session")
def queue_round(queue_synth, tmp_path_factory) -> Path:
    """Round 0's predictions (from the truth), pseudo-labels and queue of `queue_synth` (see helpers.review)."""
    return make_queue_round(queue_synth, tmp_path_factory.mktemp("queue_round"))


# --- the two-round project of the pipeline tests (test_pipeline_dvc.py, test_round_report.py) -------------


@pytest.fixture(scope="session")
def pipeline_workspace(tmp_path_factory) -> Path:
    """A fresh git repository holding the project's files with the tiny configuration, as a user's clone would."""
    return make_workspace(tmp_path_factory.mktemp("pipeline") / "project", TINY)


@pytest.fixture(scope="session")
def pipeline_rounds(pipeline_workspace, tmp_path_factory) -> dict:
    """Round 0 reproduced and tagged, round 1 added, reproduced and tagged; what each `dvc repro` printed; and
    under "round0", a copy of the project as round 0 left it (see `round0_project`)."""
    copy = tmp_path_factory.mktemp("round0") / "project"
    return {**two_rounds(pipeline_workspace, round0_copy=copy), "round0": copy}


@pytest.fixture(scope="session")
def round0_project(pipeline_rounds):
    """`copy(dst)`: a project of its own at dst, round 0 reproduced by `dvc repro`, committed and tagged
    `round-0` (the tiny configuration), copied from the pipeline tests' round 0 rather than reproduced again."""
    return lambda dst: copy_project(pipeline_rounds["round0"], dst)


# --- a real headless browser (Debian's chromium) for the HTML page's tests -------------------------


@pytest.fixture(scope="session")
def browser() -> Path:
    """Chromium's executable (helpers.browser.render opens pages in it).

    Skips with the reason when there is none and `make browser` could not install it (not root); under
    CI (CI=true), which installs it, a missing browser fails instead.
    """
    return require_browser()
