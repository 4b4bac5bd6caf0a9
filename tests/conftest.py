"""Shared fixtures: a small valid VISEM-Tracking tree (real layout, real counts) and a CLI runner."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import layout
from tasks.replica import build_replica

REPO = Path(__file__).resolve().parent.parent

SMALL_VIDEOS = (11, 23)
SMALL_FRAMES = 20
SMALL_CLIPS = ("11_30_60.mp4", "25_0_30.mp4")


class Tree:
    """A built dataset: its zip root and the summary `validate` must report for it."""

    def __init__(self, root: Path, expected: dict):
        self.root = root.resolve()
        self.expected = expected

    @property
    def train(self) -> Path:
        return self.root / layout.TRAIN_DIR / layout.VIDEOS_DIR

    def video_dir(self, vid: int) -> Path:
        return self.train / str(vid)

    def image(self, vid: int, frame: int) -> Path:
        return self.video_dir(vid) / "images" / layout.image_name(vid, frame)

    def label(self, vid: int, frame: int) -> Path:
        return self.video_dir(vid) / "labels" / layout.label_name(vid, frame)

    def ftid(self, vid: int, frame: int) -> Path:
        return self.video_dir(vid) / "labels_ftid" / layout.ftid_name(vid, frame)

    def mp4(self, vid: int) -> Path:
        return self.video_dir(vid) / f"{vid}.mp4"

    def clip(self, name: str) -> Path:
        vid = int(name.split("_")[0])
        folder = layout.CLIPS_REST_DIR if vid in layout.ANNOTATED_IDS else layout.CLIPS_OTHER_DIR
        return self.root / folder / folder / name

    def csv(self, name: str) -> Path:
        return self.root / name


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
    return Tree(root, {k: (dict(v) if isinstance(v, dict) else v)
                       for k, v in small_tree_pristine.expected.items()})


@pytest.fixture(scope="session")
def gap_tree(tmp_path_factory) -> Tree:
    """Video 23's first 1,110 frames: both real empty-frame runs (823-972, 1084-1107) included."""
    root = tmp_path_factory.mktemp("gap") / "visem"
    expected = build_replica(root, (23,), max_frames=1110)
    return Tree(root, expected)


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 for every file, and 'dir' for every folder under `root`."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture
def run_cli(tmp_path_factory):
    """Run `python -m tasks.cli ARGS...` as a real subprocess; returns (rc, stdout, stderr).

    The working directory is a fresh empty folder outside every dataset tree.
    """
    def run(*args: str | os.PathLike, timeout: float = 120) -> tuple[int, str, str]:
        cwd = tmp_path_factory.mktemp("cwd")
        # Keep the netguard entry the suite put on PYTHONPATH: subprocesses run offline too.
        path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env = dict(os.environ, PYTHONPATH=path, PYTHONIOENCODING="utf-8")
        proc = subprocess.run([sys.executable, "-m", "tasks.cli", *map(str, args)], cwd=cwd, env=env,
                              capture_output=True, text=True, encoding="utf-8", timeout=timeout)
        return proc.returncode, proc.stdout, proc.stderr

    return run


# --- one real Prefect server for the whole session -------------------------------------------------

class PrefectServer:
    def __init__(self, url: str, home: Path):
        self.url, self.home = url, home

    @property
    def env(self) -> dict:
        """What a client process needs: this server, and results kept under this session's home."""
        return {"PREFECT_API_URL": self.url, "PREFECT_HOME": str(self.home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

    def get(self, path: str):
        import httpx

        r = httpx.get(f"{self.url}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def input(self, run_id: str, key: str):
        """A flow run input's value (stored as JSON text)."""
        import httpx
        import json

        r = httpx.get(f"{self.url}/flow_runs/{run_id}/input/{key}", timeout=30)
        r.raise_for_status()
        return json.loads(r.text)

    def post(self, path: str, body: dict):
        import httpx

        r = httpx.post(f"{self.url}{path}", json=body, timeout=30)
        return r


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """`prefect server start` on loopback (SQLite, no UI), started once and shared by every test."""
    from project import free_port, wait_healthy
    from tasks.offline import OFFLINE_ENV

    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = open(home / "server.log", "w")
    env = {**os.environ, **OFFLINE_ENV, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port), "--no-ui", "--analytics-off"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"{url}/health", proc, home / "server.log", 180, "prefect server")
    except AssertionError:
        log.close()
        raise
    yield PrefectServer(url, home)
    from project import stop_group

    stop_group(proc)
    log.close()
