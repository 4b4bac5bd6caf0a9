"""The DVC stages filter@N, merge@N and quality@N, each one function of a workspace and a round."""

from __future__ import annotations

import pandas as pd

from visem_pl.tasks.workspace.errors import ConfigError
from visem_pl.tasks.workspace.io import write_csv, write_json
from visem_pl.tasks.workspace.paths import Workspace


def filter_stage(ws: Workspace, n: int) -> dict:
    """Split round n's boxes into accept / review / reject bands per class (pseudo-labels, boxes.parquet),
    build the prioritised review queue and create the experts' review folder; writes pseudo.json (with the
    bands used) and the confidence histogram per class, confidence.csv. Clip by clip: the queue's frame
    scores and the histogram are taken from each clip's boxes as `filter_round` writes them."""
    from visem_pl.tasks.pseudo.bands import (
        bands_record,
        confidence_histogram,
        filter_round,
        parse_bands,
        sum_histograms,
    )
    from visem_pl.tasks.review.priority import join_scores, prioritise, queue_config, score_clip
    from visem_pl.tasks.review.queue import init_review_folder, write_queue

    try:
        bands = parse_bands((ws.params().get("filter") or {}).get("bands") or {})
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError([f"{ws.params_path}: {exc}"]) from None
    qcfg = queue_config(ws)
    paths = ws.round(n)
    calibration = calibration_config(ws)
    calibrated = calibrate_bands(ws, n, bands, calibration) if calibration.enabled else None
    if calibrated is not None:
        bands = calibrated[0]
    temporal, check = temporal_config(ws), None
    if temporal is not None and temporal.enabled and temporal.check:
        temporal, check = check_temporal(ws, n, bands, temporal)
    clips = [c.name for c in ws.clips()]  # the dataset's: the folders may hold another one's (data.root changed)
    # Disagreement with the previous round's model: its predictions, when that round was pseudo-labelled.
    prev = paths.previous.predictions if paths.previous is not None else None
    prev = prev if prev is not None and prev.is_dir() else None
    scores, histograms = [], []

    def each_clip(path, boxes):  # the queue's rows and the histogram from each clip's boxes, as filter goes
        scores.append(score_clip(path, bands, prev, boxes))
        histograms.append(confidence_histogram(boxes))

    stats = filter_round(paths.predictions, paths.pseudo, bands, temporal, paths.tracks, clips, on_clip=each_clip)
    if check is not None:
        stats["temporal_check"] = check
    if calibrated is not None:
        stats["calibration"] = calibrated[1]
    queue = prioritise(join_scores(scores), qcfg)
    write_csv(paths.confidence_histogram, sum_histograms(histograms))
    stats["bands"] = bands_record(bands)
    write_queue(queue, paths.queue_csv)
    init_review_folder(paths.review_folder, n)
    stats["queue_items"] = len(queue)
    stats["computed_from"] = ws.computed_from(n)
    write_json(paths.metrics / "pseudo.json", stats)
    return stats


def check_temporal(ws: Workspace, n: int, bands: dict, temporal):
    """The temporal rule run on round n's labelled validation videos (inferred and tracked like the
    clips): the actions that pay there (`temporal.check_actions`) and what was measured. Without
    validation predictions and tracks the rule is used as configured."""
    import logging

    from visem_pl.tasks.pseudo.bands import decide_bands
    from visem_pl.tasks.pseudo.temporal import check_actions

    paths = ws.round(n)
    videos = [v for v in _validation_inferred(ws, n) if (paths.validation_tracks / f"{v.id}.parquet").exists()]
    if not videos:
        return temporal, {"skipped": "no validation videos tracked in this round"}
    names = [str(v.id) for v in videos]
    boxes = decide_bands(paths.validation_predictions, bands, temporal, paths.validation_tracks, names)
    boxes, truth, last = _labelled_part(boxes, videos, paths.validation_predictions)
    used, report = check_actions(boxes, truth, temporal)
    kept = {name: [a for a, e in c.items() if e.get("used")] for name, c in report["classes"].items()}
    logging.getLogger(__name__).info(
        "temporal rule checked on validation videos %s: actions kept per class %s (pseudo.json temporal_check)",
        sorted(last),
        kept,
    )
    return used, {"videos": sorted(int(v) for v in last), **report}


def _validation_inferred(ws: Workspace, n: int) -> list:
    """The validation videos round n's model ran over (`infer`)."""
    paths = ws.round(n)
    return [v for v in ws.validation_videos() if (paths.validation_predictions / f"{v.id}.parquet").exists()]


def _labelled_part(boxes: pd.DataFrame, videos: list, pred_dir) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The validation boxes within the videos' labelled frames, the labelled boxes of the frames the model
    scored there (`pred_dir`: the videos' prediction files; recall needs them), and {video: last frame}."""
    from visem_pl.tasks.dataset.labels import read_ftid_tracks
    from visem_pl.tasks.inference.clips import scored_frames

    last = {str(v.id): max(v.frames(), default=-1) for v in videos}
    boxes = boxes[boxes["clip"].isin(last) & (boxes["frame"] <= boxes["clip"].map(last))]
    parts = []
    for v in videos:
        labelled = read_ftid_tracks(v).assign(clip=str(v.id))
        parts.append(labelled[labelled["frame"].isin(scored_frames(pred_dir / f"{v.id}.parquet"))])
    return boxes, pd.concat(parts, ignore_index=True), last


def calibrate_bands(ws: Workspace, n: int, bands: dict, cfg) -> tuple[dict, dict]:
    """Per-class accept thresholds from round n's predictions on its labelled validation videos
    (tasks/pseudo/calibrate.py); the configured bands, and why, when no video was inferred."""
    from visem_pl.tasks.inference.clips import read_predictions
    from visem_pl.tasks.pseudo.calibrate import calibrate
    from visem_pl.tasks.pseudo.temporal import true_positives

    videos = _validation_inferred(ws, n)
    if not videos:
        return bands, {"skipped": "no validation videos inferred in this round"}
    names = [str(v.id) for v in videos]
    pred_dir = ws.round(n).validation_predictions
    boxes, truth, last = _labelled_part(read_predictions(pred_dir, names), videos, pred_dir)
    used, report = calibrate(true_positives(boxes, truth), bands, cfg)
    return used, {"videos": sorted(int(v) for v in last), **report}


def calibration_config(ws: Workspace):
    """params.yaml `filter.calibrate`; absent: off."""
    from visem_pl.tasks.pseudo.calibrate import Calibration
    from visem_pl.tasks.workspace.params import build

    section = (ws.params().get("filter") or {}).get("calibrate") or {}
    try:
        return build(Calibration, section, f"{ws.params_path} filter.calibrate")
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise _config_error(ws, exc) from None


def temporal_config(ws: Workspace):
    """params.yaml `filter.temporal` (tasks/pseudo/temporal.py); absent: the rule is off."""
    from visem_pl.tasks.pseudo.temporal import Temporal
    from visem_pl.tasks.workspace.params import build

    section = (ws.params().get("filter") or {}).get("temporal")
    if section is None:
        return None
    if "by_class" in section:  # the check's output, not a setting
        raise ConfigError([f"{ws.params_path} filter.temporal: by_class is decided by the check, not set"])
    try:
        return build(Temporal, section, f"{ws.params_path} filter.temporal")
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise _config_error(ws, exc) from None


def merge_stage(ws: Workspace, n: int) -> dict:
    """Round n+1's training set: labelled frames + accepted pseudo-labels + reviewed labels of rounds 0..n.
    The pseudo-labels are the accepted boxes of boxes.parquet (no label files: `bands.label_texts`), once
    the experts' answers judged the tracks through the reviewed frames (`merge.track_verdicts`). Writes
    metrics/rounds/round-N/merge.json: the frames, what the verdicts did, and on synthetic data the
    accepted boxes so judged against the truth (`accept_after_review`, as quality@N's bands)."""
    from visem_pl.tasks.dataset.truth import truth_for
    from visem_pl.tasks.pseudo.boxfile import BoxFile
    from visem_pl.tasks.pseudo.merge import MergeConfig, judged_parts, merge_round
    from visem_pl.tasks.pseudo.quality import pseudo_label_quality
    from visem_pl.tasks.pseudo.verdicts import judged, reviewed_labels

    cfg = ws.section("merge", MergeConfig)
    paths = ws.round(n)
    labelled = pd.read_csv(ws.prepared / "frames.csv")
    labelled = labelled[labelled["split"] == "train"]
    reviewed = [(k, ws.round(k).reviewed / "labels") for k in range(n + 1)]
    answers = reviewed_labels(reviewed)
    # What merge reads (not conf, box, band_conf), one clip at a time: memory holds one clip's
    # boxes and the kept frames' boxes, whatever the number of clips.
    boxes = BoxFile(paths.boxes, columns=["cls", "cx", "cy", "w", "h", "band", "provenance", "track"])
    counts: dict[str, int] = {}
    stats = merge_round(
        n,
        labelled,
        judged_parts(boxes.clips(), answers, cfg.track_verdicts, counts),
        reviewed,
        ws.clips(),
        paths.merged,
        frames_per_clip=cfg.frames_per_clip,
    )
    stats["track_verdicts"] = {"enabled": cfg.track_verdicts.enabled, **counts}
    write_json(paths.merged / "stats.json", stats)
    record = {"frames": stats["frames"], "track_verdicts": stats["track_verdicts"]}
    truth = truth_for(ws.data_root())
    if truth is not None:  # the accepted boxes merge teaches, against the synthetic truth (as quality@N's bands)

        def after_review(clip: str, rows: pd.DataFrame) -> pd.DataFrame:
            return judged(rows, answers.get(clip), cfg.track_verdicts)[0]

        clips = [c.name for c in ws.clips()]
        after = pseudo_label_quality(paths.boxes, paths.predictions, truth, clips, adjust=after_review)
        record["accept_after_review"] = after["accept"]
    record["computed_from"] = ws.computed_from(n)
    write_json(paths.metrics / "merge.json", record)
    return stats


def quality_stage(ws: Workspace, n: int) -> dict:
    """Precision and recall of round n's pseudo-labels per class and band against the synthetic truth
    (`{"truth": false}` on real data); writes quality.json."""
    from visem_pl.tasks.dataset.truth import truth_for
    from visem_pl.tasks.pseudo.quality import pseudo_label_quality

    paths = ws.round(n)
    truth = truth_for(ws.data_root())
    if truth is None:
        result = {"truth": False}
    else:
        clips = [c.name for c in ws.clips()]  # boxes.parquet read one clip at a time
        result = {"truth": True, **pseudo_label_quality(paths.boxes, paths.predictions, truth, clips)}
    result["computed_from"] = ws.computed_from(n)
    write_json(paths.metrics / "quality.json", result)
    return result


def _config_error(ws: Workspace, exc: Exception) -> ConfigError:
    """A settings error that names the params file (a dataclass's own check does not know it)."""
    msg = str(exc)
    return ConfigError([msg if str(ws.params_path) in msg else f"{ws.params_path}: {msg}"])
