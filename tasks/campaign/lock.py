"""One round at a time per workspace: the lock a running (or review-waiting) round holds.

Two rounds in one folder would overwrite each other's data. The lock file names its holder (a
flow run, a process) and is re-entrant for the same holder, e.g. a flow run resumed after its
review wait; a lock whose holder has ended is taken over.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from visem_pl.tasks.workspace.io import write_json
from visem_pl.tasks.workspace.paths import Workspace


class WorkspaceBusy(RuntimeError):
    """Another round holds this workspace."""


def lock_path(root: Path | str) -> Path:
    return Workspace(Path(root)).lock_file


def read_lock(root: Path | str) -> dict | None:
    path = lock_path(root)
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
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = {
        **holder,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
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
                f"finish, or cancel it; a lock left by a crashed run is released automatically ({path})"
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(mine, fh)
        return mine


def release_lock(root: Path | str, holder_id: str) -> bool:
    """Release the lock if `holder_id` holds it; True when released."""
    current = read_lock(root)
    if current is not None and current.get("holder") == holder_id:
        lock_path(root).unlink(missing_ok=True)
        return True
    return False
