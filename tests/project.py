"""A user's project in a temporary git repository, and commands run in it as a user would."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tasks.offline import OFFLINE_ENV

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
          "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def env(**extra: str) -> dict:
    return {**os.environ, **OFFLINE_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **GIT_ID, **extra}


def run(cmd: list[str], cwd: Path, check: bool = True, extra_env: dict | None = None,
        timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env(**(extra_env or {})), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def write_params(ws: Path, params: dict) -> None:
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def make_workspace(ws: Path, params: dict) -> Path:
    """A fresh git repository holding the project's files (as a clone would) with `params`."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
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
