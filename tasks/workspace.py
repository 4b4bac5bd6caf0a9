"""One project folder as a round runs in it: its round lock, its declared rounds, DVC and git.

Prefect flows drive a round through these functions: every step runs as the `dvc.yaml` stage
(`dvc repro <stage>`), so a round run from Prefect is recorded in `dvc.lock` and the DVC cache
exactly as `dvc repro` records it, and `dvc status` agrees with what Prefect reports.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from tasks.io import atomic_path, write_json
from tasks.offline import OFFLINE_ENV

LOCK = Path(".visem-pl") / "round.lock"


class WorkspaceBusy(RuntimeError):
    """Another round holds this workspace."""


class StepFailed(RuntimeError):
    """A DVC stage or git command failed; the message carries its output's tail."""


# --- the round lock ----------------------------------------------------------------------------

def read_lock(root: Path | str) -> dict | None:
    path = Path(root) / LOCK
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        return {"holder": "unreadable", "path": str(path)}


def pid_alive(holder: dict) -> bool:
    """Whether the holding process still runs (only knowable on the same host)."""
    if holder.get("host") != socket.gethostname() or not holder.get("pid"):
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(root: Path | str, holder: dict, is_stale: Callable[[dict], bool] = lambda h: False) -> dict:
    """Take the workspace for one round (re-entrant for the same `holder["holder"]`, e.g. a flow run
    resumed after its review wait). A lock whose holder `is_stale` (ended, crashed) is taken over.
    Raises WorkspaceBusy naming who holds it and how to free it."""
    path = Path(root) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = {**holder, "host": socket.gethostname(), "pid": os.getpid(),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            current = read_lock(root)
            if current is None:
                continue  # released between our two calls
            if current.get("holder") == holder["holder"]:
                write_json(path, {**mine, "since": current.get("since", mine["since"])})
                return mine
            if is_stale(current):
                path.unlink(missing_ok=True)
                continue
            raise WorkspaceBusy(
                f"{Path(root).resolve()}: round {current.get('round', '?')} is already running in this workspace "
                f"({current.get('holder')}, since {current.get('since', '?')}, pid {current.get('pid', '?')} on "
                f"{current.get('host', '?')}); two rounds at once would overwrite each other's data. Wait for it to "
                f"finish, or cancel it; a lock left by a crashed run is released automatically ({path})")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(mine, fh)
        return mine


def release_lock(root: Path | str, holder_id: str) -> bool:
    """Release the lock if `holder_id` holds it; True when released."""
    current = read_lock(root)
    if current is not None and current.get("holder") == holder_id:
        (Path(root) / LOCK).unlink(missing_ok=True)
        return True
    return False


# --- rounds declared in params.yaml -----------------------------------------------------------------

def round_entry(n: int) -> dict:
    if n == 0:
        return {"round": 0, "data": "data/prepared", "init": None}
    return {"round": n, "data": f"data/rounds/round-{n - 1}/merged", "init": f"models/round-{n - 1}"}


def declared_rounds(params: dict) -> tuple[list[int], list[int]]:
    """(rounds trained, rounds pseudo-labelled) as params.yaml declares them."""
    rounds = [int(r["round"]) for r in params.get("rounds") or []]
    return rounds, [int(r) for r in params.get("pseudo_rounds") or []]


def ensure_round(params_path: Path | str, n: int) -> bool:
    """Declare round `n` (train/evaluate and the pseudo-labelling stages) in params.yaml, keeping
    its comments; True when the file changed. Round n needs rounds 0..n-1 declared before it."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    path = Path(params_path)
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    # The project's style: "  - item" lists and an explicit null.
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    data = yaml.load(path.read_text(encoding="utf-8"))
    rounds = data.get("rounds")
    pseudo = data.get("pseudo_rounds")
    if rounds is None or pseudo is None:
        raise ValueError(f"{path}: needs `rounds` and `pseudo_rounds` lists (see the project's params.yaml)")
    have = [int(r["round"]) for r in rounds]
    if have != list(range(len(have))):
        raise ValueError(f"{path}: `rounds` must list rounds 0, 1, 2, ... in order (dvc.yaml names stages "
                         f"train@<index>); found {have}")
    if n > len(have):
        raise ValueError(f"{path}: round {n} needs round {n - 1} first (declared rounds: {have or 'none'})")
    pseudo_have = [int(r) for r in pseudo]
    if n > 0 and (n - 1) not in pseudo_have:
        raise ValueError(f"{path}: round {n} trains on round {n - 1}'s merged set, but round {n - 1} is not "
                         f"pseudo-labelled (pseudo_rounds: {pseudo_have}); run round {n - 1} first")
    changed = False
    if n == len(have):
        entry = CommentedMap(round_entry(n))
        if n == 0:
            entry["init"] = (data.get("train") or {}).get("model", "models/yolov8n.yaml")
        entry.fa.set_flow_style()
        rounds.append(entry)
        changed = True
    if n not in pseudo_have:
        pseudo.append(n)
        if isinstance(pseudo, CommentedSeq):
            pseudo.fa.set_flow_style()
        changed = True
    if changed:
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            yaml.dump(data, fh)
    return changed


# --- DVC and git ------------------------------------------------------------------------------------

def tool_env() -> dict:
    # The stages call `visem-pl`: the interpreter's own bin folder first, as in an activated venv.
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, **OFFLINE_ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def tool_bin(name: str) -> str:
    """`dvc` or `visem-pl` beside this interpreter (the project's venv), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def run(cmd: list[str], root: Path | str, what: str | None = None) -> str:
    """Run a command in the workspace; StepFailed with the output's tail when it fails."""
    proc = subprocess.run(cmd, cwd=root, env=tool_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]).strip()
        raise StepFailed(f"{what or ' '.join(cmd)} failed (exit {proc.returncode}) in {root}:\n{tail}")
    return proc.stdout


def dvc_bin() -> str:
    return tool_bin("dvc")


def repro(root: Path | str, stage: str) -> str:
    """`dvc repro <stage>`: the stage (and anything upstream that changed) as `dvc.yaml` declares it."""
    return run([dvc_bin(), "repro", stage], root, what=f"dvc repro {stage}")


def dvc_status_clean(root: Path | str) -> tuple[bool, str]:
    out = run([dvc_bin(), "status", "--json"], root)
    data = json.loads(out or "{}")
    return not data, out


def is_git_repo(root: Path | str) -> bool:
    return subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True,
                          text=True).returncode == 0


def version_round(root: Path | str, n: int, message: str, push: bool = True, commit: bool = True,
                  tag: bool = True) -> dict:
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
    paths = [p for p in ("dvc.lock", "params.yaml", "metrics", "review") if (root / p).exists()]
    ignores = run(["git", "ls-files", "-m", "-o", "--exclude-standard", "--", "*.gitignore", ".gitignore"],
                  root).split()
    run(["git", "add", "--", *paths, *ignores], root)
    if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root).returncode != 0:
        run(["git", "commit", "-q", "-m", message], root)
    result["commit"] = run(["git", "rev-parse", "HEAD"], root).strip()
    name = f"round-{n}"
    exists = subprocess.run(["git", "rev-parse", "-q", "--verify", f"refs/tags/{name}"], cwd=root,
                            capture_output=True).returncode == 0
    if tag and not exists:
        run(["git", "tag", name], root)
        result["tag"] = name
    return result


def batch_of_project(store_root: Path | str, project: int) -> str | None:
    """The export batch of a review queue that was pushed to Label Studio project `project`."""
    for info in sorted(Path(store_root).glob("exports/*/labelstudio_project.json")):
        try:
            if int(json.loads(info.read_text(encoding="utf-8")).get("project", -1)) == int(project):
                return info.parent.name
        except (OSError, ValueError):
            continue
    return None
