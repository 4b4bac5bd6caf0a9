"""The two-round project of the pipeline tests: round 0 reproduced, committed and tagged, then round 1."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import yaml

from helpers.project import run, write_params
from helpers.trees import tree_digest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lock_outs(ws: Path) -> list[str]:
    """Every output dvc.lock records in the DVC cache (data, models; metrics/ are small files git keeps)."""
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    outs = {o["path"] for stage in lock.values() for o in stage.get("outs", [])}
    return sorted(p for p in outs if not p.startswith("metrics/"))


def digest(path: Path) -> dict[str, str]:
    return tree_digest(path) if path.is_dir() else {"": sha256(path)}


def copy_project(src: Path, dst: Path) -> Path:
    """A copy of a project folder (its git repository, DVC cache and outputs), a project of its own: DVC
    re-hashes what it finds, and of what the stages write only the weights file names the folder (Ultralytics'
    record of its training arguments), which nothing reads back."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def two_rounds(ws: Path, round0_copy: Path | None = None) -> dict:
    """Reproduce round 0, tag it, add round 1, reproduce, tag it; return what each step printed.

    With `round0_copy`, the project as round 0 left it (committed and tagged) is copied there first: the
    tests that start from a finished round 0 start from copies of it instead of reproducing it each.
    """
    out = {"repro0": run(["dvc", "repro"], ws).stdout}
    out["weights0"] = sha256(ws / "models/round-0/weights.pt")
    out["outs0"] = {path: digest(ws / path) for path in lock_outs(ws)}
    run(["git", "add", "-A"], ws)
    run(["git", "commit", "-qm", "round 0"], ws)
    run(["git", "tag", "round-0"], ws)
    if round0_copy is not None:
        copy_project(ws, round0_copy)

    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["rounds"].append({"round": 1, "data": "data/rounds/round-0/merged", "init": "models/round-0"})
    write_params(ws, params)
    out["repro1"] = run(["dvc", "repro"], ws).stdout
    out["weights1"] = sha256(ws / "models/round-1/weights.pt")
    run(["git", "add", "-A"], ws)
    run(["git", "commit", "-qm", "round 1"], ws)
    run(["git", "tag", "round-1"], ws)
    out["repro2"] = run(["dvc", "repro"], ws).stdout
    return out
