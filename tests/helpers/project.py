"""A user's project in a temporary git repository, and commands run in it as a user would."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from visem_pl.tasks.workspace.offline import OFFLINE_ENV

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# A project small enough for tests: three videos, one epoch, small image sizes.
TINY = {
    "data": {"root": "data/synthetic", "on_bad_clip": "skip"},
    "split": {"val_ids": [52], "train_ids": None},
    "synth": {
        "seed": 0,
        "videos": [11, 23, 52],
        "frames_per_video": 12,
        "rest_clips_per_video": 1,
        "other_videos": 1,
        "clips_per_other_video": 1,
        "frames_per_clip": 9,
        "workers": 1,
    },
    "prepare": {"train_stride": 1, "max_frames_per_video": 3, "val_stride": 3, "include_empty": True},
    "train": {
        "model": "models/yolov8n.yaml",
        "restart_each_round": False,
        "round0_epochs": 2,
        "epochs": 1,
        "batch": 8,
        "crop_size": 64,
        "crops": 16,
        "device": "cpu",
        "seed": 0,
        "workers": 0,
        "lr0": 0.001429,
        "warmup_epochs": 0.0,
        "val_crops": 8,
    },
    "evaluate": {"imgsz": 320, "conf": 0.001, "iou": 0.7, "batch": 4, "device": "cpu"},
    # f32: backend and streams are still settled by trial; INT8's quantization and its fitness check (about 12 s
    # a model here, and every round trains one) are tested in test_infer_tuning.py.
    "infer": {"stride": 3, "imgsz": 320, "conf": 0.001, "iou": 0.7, "batch": 4, "device": "cpu", "precision": "f32"},
    # An untrained model's confidences are tiny: bands (and the boxes tracks link) chosen so every band
    # gets boxes and the temporal rule has tracks to work with.
    "track": {"min_conf": 0.001, "method": "auto"},
    # Every track classified, however unsure; the window is each whole (9-frame) clip, run at every frame.
    "motility": {"um_per_px": 0.5, "min_track_conf": 0.0, "window_s": 0, "frame_step": 1, "immotile_vcl_um_s": 15.0},
    "filter": {
        "bands": {name: {"low": 0.001, "high": 0.002} for name in ("sperm", "cluster", "small_or_pinhead")},
        "temporal": {"enabled": True, "floor": 0.001},
    },
    "review": {"max_items": 3, "add_missed": 1.0, "fix_iou": 0.1, "seed": 0},
    "merge": {"frames_per_clip": 2},  # of a tiny clip's 3 scored frames: the bound bites
    "rounds": [{"round": 0, "data": "data/prepared", "init": "models/yolov8n.yaml"}],
    "pseudo_rounds": [0],
}

# Python code for a child process (fault injection in the child only: the product code runs unchanged): with
# HELD_MARKER set, its second atomic write of a prediction file stops between the hidden temporary file and
# the rename into place, writes that file's path to HELD_MARKER and waits there to be killed.
HOLD_SECOND_WRITE = r"""
import contextlib, os, time

if os.environ.get("HELD_MARKER"):
    import visem_pl.tasks.inference.clips as _clips

    _real, _calls = _clips.atomic_path, []

    @contextlib.contextmanager
    def _held(path):
        _calls.append(path)
        with _real(path) as tmp:
            yield tmp
            if len(_calls) == 2:
                # through the real atomic_path: the test polls for the marker and reads it at once, and a
                # plain write_text shows it an empty file for a moment (a CI run read "" there)
                with _real(os.environ["HELD_MARKER"]) as marker:
                    marker.write_text(str(tmp))
                time.sleep(600)

    _clips.atomic_path = _held
"""

GIT_ID = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def env(**extra: str) -> dict:
    return {**os.environ, **OFFLINE_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **GIT_ID, **extra}


# --- time: no wait outlives the test that waits ---------------------------------------------------

_deadline: list[float | None] = [None]
TEARDOWN_S = 60.0  # kept back from each test's timeout for its finalizers


def start_clock(timeout_s: float | None) -> None:
    """Called as each test starts (conftest): its waits end `TEARDOWN_S` before pytest-timeout's limit."""
    _deadline[0] = None if not timeout_s else time.monotonic() + float(timeout_s) - TEARDOWN_S


def left(limit: float) -> float:
    """`limit` seconds, cut to what is left of the running test's own time; AssertionError when none is."""
    if _deadline[0] is None:
        return limit
    rest = _deadline[0] - time.monotonic()
    if rest <= 0:
        raise AssertionError("the test's own time is up (pytest timeout less the teardown margin)")
    return min(limit, rest)


def stop_group(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """End a process started with start_new_session=True and everything it started (TERM, then KILL)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace_s)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of its group is left (children outlive a TERM'd parent)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run(
    cmd: list[str], cwd: Path, check: bool = True, extra_env: dict | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """Run a command as a user would; its whole process group ends with it, whatever happens to the test."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env(**(extra_env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=left(timeout))
    except subprocess.TimeoutExpired:
        stop_group(proc, grace_s=5)
        raise AssertionError(f"{' '.join(cmd)} did not finish within its time") from None
    finally:
        if proc.poll() is None:  # the test was interrupted (its timeout, Ctrl-C)
            stop_group(proc, grace_s=5)
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{out[-4000:]}\n{err[-4000:]}")
    return result


def write_params(ws: Path, params: dict) -> None:
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def make_workspace(ws: Path, params: dict) -> Path:
    """A fresh git repository holding the project's files (as a clone would) with `params`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if not src.is_file() or rel.startswith(("tests/", "dvc.lock", "metrics/", "review/")):
            continue
        dst = ws / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    write_params(ws, params)
    run(["git", "init", "-q"], ws)
    run(["git", "add", "-A"], ws)
    run(["git", "commit", "-qm", "project"], ws)
    return ws


def free_port() -> int:
    """A port free right now; another process may take it before our server binds (see start_server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(start, health_path: str, log: Path, timeout_s: float, what: str, tries: int = 3):
    """(process, port) of a server `start(port)` launched (in its own session) and answering on `health_path`.

    A server that exits before answering (its port taken between `free_port` and its bind) is retried on
    another port; one that does not answer in time is stopped. Nothing is left running on failure."""
    for attempt in range(1, tries + 1):
        port = free_port()
        proc = start(port)
        try:
            wait_healthy(f"http://127.0.0.1:{port}{health_path}", proc, log, timeout_s, what)
            return proc, port
        except AssertionError:
            exited_early = proc.poll() is not None
            stop_group(proc, grace_s=10)
            if not exited_early or attempt == tries or "in use" not in log.read_text(errors="replace"):
                raise
        except BaseException:
            stop_group(proc, grace_s=10)
            raise
    raise AssertionError(f"{what}: no free port after {tries} tries")


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout_s: float, what: str) -> float:
    """Seconds until `url` answers 200; AssertionError with the log's tail if `proc` exits or time runs out."""
    t0 = time.monotonic()
    timeout_s = left(timeout_s)
    while True:
        if proc.poll() is not None:
            raise AssertionError(
                f"{what} exited with {proc.returncode} before answering; its log ({log}):\n"
                f"{log.read_text(errors='replace')[-4000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(
                f"{what} did not answer {url} within {timeout_s:.0f} s; its log:\n"
                f"{log.read_text(errors='replace')[-4000:]}"
            )
        time.sleep(0.5)
