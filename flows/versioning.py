"""A round's steps as DVC stages, and its versioning: `dvc repro`, `dvc status`, `dvc push`, git.

Every step of a Prefect round runs as its `dvc.yaml` stage (`dvc repro <stage>`), so a round
run from Prefect is recorded in `dvc.lock` and the DVC cache exactly as `dvc repro` records it,
and `dvc status` agrees with what Prefect reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from visem_pl.tasks.workspace.offline import OFFLINE_ENV
from visem_pl.tasks.workspace.paths import Workspace


class StepFailed(RuntimeError):
    """A DVC stage or git command failed; the message carries its output's tail."""


def tool_env() -> dict:
    # The stages call `visem-pl`: the interpreter's own bin folder first, as in an activated venv.
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, **OFFLINE_ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def dvc_bin() -> str:
    """`dvc` beside this interpreter (the project's venv), else from PATH."""
    candidate = Path(sys.executable).parent / "dvc"
    return str(candidate) if candidate.exists() else "dvc"


def run(cmd: list[str], root: Path | str, what: str | None = None) -> str:
    """Run a command in the workspace; StepFailed with the output's tail when it fails."""
    # UTF-8 whatever the locale: stages print progress bars and names outside ASCII.
    proc = subprocess.run(
        cmd, cwd=root, env=tool_env(), capture_output=True, text=True, encoding="utf-8", errors="replace"
    )
    if proc.returncode != 0:
        tail = (proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]).strip()
        raise StepFailed(f"{what or ' '.join(cmd)} failed (exit {proc.returncode}) in {root}:\n{tail}")
    return proc.stdout


def repro(root: Path | str, stage: str) -> str:
    """`dvc repro <stage>`: the stage (and anything upstream that changed) as `dvc.yaml` declares it."""
    return run([dvc_bin(), "repro", stage], root, what=f"dvc repro {stage}")


def dvc_status_clean(root: Path | str) -> tuple[bool, str]:
    out = run([dvc_bin(), "status", "--json"], root)
    data = json.loads(out or "{}")
    return not data, out


def is_git_repo(root: Path | str) -> bool:
    return (
        subprocess.run(
            ["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True
        ).returncode
        == 0
    )


def version_round(
    root: Path | str, n: int, message: str, push: bool = True, commit: bool = True, tag: bool = True
) -> dict:
    """Record round n: `dvc push` to the default remote (when one is set), then a git commit of what
    DVC tracks in git (dvc.lock, params.yaml, metrics, the review folder, DVC's .gitignore files)
    and the tag `round-n` (left alone when it exists already)."""
    root = Path(root)
    result = {"pushed": False, "commit": None, "tag": None}
    remote = subprocess.run([dvc_bin(), "remote", "default"], cwd=root, env=tool_env(), capture_output=True, text=True)
    if push and remote.returncode == 0 and remote.stdout.strip():
        run([dvc_bin(), "push"], root, what="dvc push")
        result["pushed"] = remote.stdout.strip()
    if not commit or not is_git_repo(root):
        return result
    ws = Workspace(root)
    tracked = (ws.root / "dvc.lock", ws.params_path, ws.metrics, ws.review)
    paths = [str(p.relative_to(ws.root)) for p in tracked if p.exists()]
    ignores = run(
        ["git", "ls-files", "-m", "-o", "--exclude-standard", "--", "*.gitignore", ".gitignore"], root
    ).split()
    run(["git", "add", "--", *paths, *ignores], root)
    if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root).returncode != 0:
        run(["git", "commit", "-q", "-m", message], root)
    result["commit"] = run(["git", "rev-parse", "HEAD"], root).strip()
    name = f"round-{n}"
    exists = (
        subprocess.run(
            ["git", "rev-parse", "-q", "--verify", f"refs/tags/{name}"], cwd=root, capture_output=True
        ).returncode
        == 0
    )
    if tag and not exists:
        run(["git", "tag", name], root)
        result["tag"] = name
    return result
