"""The DVC stage infer@N: pseudo-label every unlabelled clip with round N's model (resumable per clip).

`visem-pl infer` calls `infer_stage`; the Prefect round maps `infer_clips` over the clips first
(one task per clip) and then runs the stage, which finds every clip done and records them.
"""

from __future__ import annotations

from visem_pl.tasks.dataset.reader import Clip
from visem_pl.tasks.inference.clips import InferConfig, infer_clips, pending
from visem_pl.tasks.workspace.paths import Workspace


def infer_config(ws: Workspace) -> InferConfig:
    return ws.section("infer", InferConfig)


def infer_stage(ws: Workspace, n: int, progress: bool = False) -> dict:
    paths = ws.round(n)
    return infer_clips(
        paths.weights, ws.clips(), paths.predictions, infer_config(ws), progress=progress, cache_dir=ws.exports_cache
    )


def pending_clips(ws: Workspace, n: int) -> list[Clip]:
    """Clips of round n not yet pseudo-labelled with its model and the current parameters."""
    paths = ws.round(n)
    return pending(paths.weights, ws.clips(), paths.predictions, infer_config(ws))
