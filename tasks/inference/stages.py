"""The DVC stage infer@N: pseudo-label every unlabelled clip with round N's model (resumable per clip).

`visem-pl infer` calls `infer_stage`; the Prefect round settles the backend with `choose_round_backend`,
maps `infer_clips` over the clips (one task per clip) and then runs the stage, which finds every
clip done and records them.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from visem_pl.tasks.dataset.reader import Clip
from visem_pl.tasks.inference.clips import InferConfig, choose_backend, infer_clips, pending
from visem_pl.tasks.workspace.io import remove_other_clips, write_json
from visem_pl.tasks.workspace.paths import Workspace


def infer_config(ws: Workspace) -> InferConfig:
    """params.yaml `infer`. `window_s` is the motility window's, set by `motility.window_s`: written
    under `infer` it would cut every clip's predictions to their first seconds, so it is refused."""
    from visem_pl.tasks.workspace.errors import ConfigError

    if "window_s" in (ws.params().get("infer") or {}):
        raise ConfigError([f"{ws.params_path} infer.window_s: not a setting of infer; the motility window's "
                           "length is motility.window_s"])  # fmt: skip
    return ws.section("infer", InferConfig)


def left_out(ws: Workspace, n: int) -> dict[str, str]:
    """{clip: reason} of the clips round n's inference could not decode and left out (infer.json)."""
    import json

    record = ws.round(n).metrics / "infer.json"
    return json.loads(record.read_text()).get("bad_clips", {}) if record.exists() else {}


def int8_frames(ws: Workspace, n: int):
    """Round n's INT8 calibration frames (its labelled training frames) and validation frames."""
    from visem_pl.tasks.inference.int8 import round_frames

    listing = ws.prepared / "frames.csv"
    if not listing.exists():
        return None
    frames = pd.read_csv(listing)
    return round_frames(frames[frames["split"] == "train"], frames[frames["split"] == "val"])


def choose_round_backend(ws: Workspace, n: int):
    """How round n's clips are run (`tuning.Choice`): measured on this machine where params say auto."""
    paths = ws.round(n)
    return choose_backend(paths.weights, ws.clips(), infer_config(ws), ws.exports_cache, int8_frames=int8_frames(ws, n))


def infer_stage(ws: Workspace, n: int, progress: bool = True) -> dict:
    """Pseudo-label every clip, and run the labelled validation videos the same way (tracking is scored
    on them); metrics/rounds/round-N/infer.json records the configuration and its trial. `progress`:
    how far it got, on stderr (False: silent)."""
    paths = ws.round(n)
    clips = ws.clips()
    validation = ws.validation_clips()
    choice = choose_round_backend(ws, n) if clips else None
    run = dict(progress=progress, cache_dir=ws.exports_cache, choice=choice)
    cfg = infer_config(ws)
    # Predictions of another dataset's clips (data.root changed) must not be read as this one's.
    removed = remove_other_clips(paths.predictions, clips) + remove_other_clips(paths.validation_predictions,
                                                                                validation)  # fmt: skip
    # A clip that cannot be decoded is the clip's problem (skip: recorded, left out); the labelled
    # validation videos are always strict.
    stats = infer_clips(paths.weights, clips, paths.predictions, cfg, on_bad_clip=ws.on_bad_clip(), **run)
    paths.validation_predictions.mkdir(parents=True, exist_ok=True)  # a DVC output, even when there is none
    if validation and choice is not None:
        stats["validation"] = infer_clips(paths.weights, validation, paths.validation_predictions, cfg,
                                          description="infer validation", **run)  # fmt: skip
    window = motility_window(ws)
    paths.motility_predictions.mkdir(parents=True, exist_ok=True)  # a DVC output, even when there is none
    if window is not None:
        # CASA samples every frame: at the round's stride a tail beating in place aliases (docs/MOTILITY.md).
        removed += remove_other_clips(paths.motility_predictions, clips)
        good = [c for c in clips if c.name not in stats.get("bad_clips", {})]
        stats["motility_window"] = infer_clips(paths.weights, good, paths.motility_predictions,
                                               replace(cfg, stride=1, window_s=window), on_bad_clip=ws.on_bad_clip(),
                                               description="infer motility window", **run)  # fmt: skip
    if removed:
        stats["removed_other_dataset"] = removed
    record = {**stats, "backend": choice.record() if choice else None, "computed_from": ws.computed_from(n)}
    write_json(paths.metrics / "infer.json", record)
    return {**stats, "backend": choice.label if choice else None}


def motility_window(ws: Workspace) -> float | None:
    """params.yaml `motility.window_s`: the seconds of each clip run at every frame for motility (0: whole
    clips), or None where motility reads the round's own tracks."""
    from visem_pl.tasks.tracking.motility import MotilityConfig

    return ws.section("motility", MotilityConfig).window_s


def pending_clips(ws: Workspace, n: int) -> list[Clip]:
    """Clips of round n not yet pseudo-labelled with its model, configuration and parameters."""
    paths = ws.round(n)
    clips = ws.clips()
    if not clips:
        return []
    return pending(paths.weights, clips, paths.predictions, infer_config(ws), choice=choose_round_backend(ws, n))
