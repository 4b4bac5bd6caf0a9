"""Split a round's predictions into confidence bands per class.

accept (conf >= high): the box becomes a pseudo-label; review (low <= conf < high): the box
goes to the round's review queue for an expert; reject (conf < low): dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.labels import yolo_text
from visem_pl.tasks.inference.clips import read_predictions
from visem_pl.tasks.workspace.io import atomic_path, write_json, write_texts

ACCEPT, REVIEW, REJECT = "accept", "review", "reject"
# review_queue.csv: one row per review-band box (the frame-level queue is tasks.review.queue).
REVIEW_BOX_COLUMNS = ["item", "clip", "frame", "cls", "class_name", "cx", "cy", "w", "h", "conf"]
BOX_COLUMNS = ["cls", "cx", "cy", "w", "h"]


@dataclass(frozen=True)
class Band:
    low: float
    high: float

    def __post_init__(self):
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"band needs 0 <= low <= high <= 1, got low={self.low} high={self.high}")


def parse_bands(section: dict) -> dict[int, Band]:
    """`{sperm: {low, high}, ...}` from params.yaml -> {class index: Band}; every class required."""
    missing = [n for n in layout.CLASS_NAMES if n not in section]
    unknown = [n for n in section if n not in layout.CLASS_NAMES]
    if missing or unknown:
        raise ValueError(
            f"params.yaml filter.bands: missing {missing}, unknown {unknown}; expected {list(layout.CLASS_NAMES)}"
        )
    return {k: Band(float(section[n]["low"]), float(section[n]["high"])) for k, n in enumerate(layout.CLASS_NAMES)}


def bands_record(bands: dict[int, Band]) -> dict:
    """{class name: {low, high}}: the bands a round used (calibration may have moved them), as pseudo.json says."""
    return {layout.CLASS_NAMES[k]: {"low": b.low, "high": b.high} for k, b in sorted(bands.items())}


def confidence_histogram(boxes: pd.DataFrame, width: float = 0.02) -> pd.DataFrame:
    """Detected boxes per confidence bin and class: columns conf (the bin's lower edge), then one count
    column per class. Boxes a track interpolated have no confidence of their own and are not counted."""
    edges = np.linspace(0.0, 1.0, round(1 / width) + 1)
    found = boxes[boxes["conf"].notna()] if len(boxes) else boxes
    table = {"conf": edges[:-1].round(4)}
    for k, name in enumerate(layout.CLASS_NAMES):
        conf = found.loc[found["cls"] == k, "conf"].to_numpy(dtype=np.float64) if len(found) else np.zeros(0)
        table[name] = np.histogram(np.clip(conf, 0.0, 1.0), bins=edges)[0]
    return pd.DataFrame(table)


def assign_bands(pred: pd.DataFrame, bands: dict[int, Band]) -> pd.Series:
    # Compare in float32, the precision confidences are stored in (infer.SCHEMA): a box whose conf
    # reads 0.7 sits at a bound written as 0.7 in params.yaml, not just below it (0.69999999 < 0.7).
    low = pred["cls"].map({k: b.low for k, b in bands.items()}).to_numpy(dtype=np.float32)
    high = pred["cls"].map({k: b.high for k, b in bands.items()}).to_numpy(dtype=np.float32)
    conf = pred["conf"].to_numpy(dtype=np.float32)
    band = np.where(conf >= high, ACCEPT, np.where(conf >= low, REVIEW, REJECT))
    return pd.Series(band, index=pred.index, name="band")


def decide_bands(
    pred_dir: Path | str, bands: dict[int, Band], temporal=None, tracks_dir: Path | None = None, clips=None
):
    """Every box of the prediction files in `pred_dir` (of `clips`, names, when given) with its band (and,
    with `temporal` enabled, the temporal rule applied with the tracks in `tracks_dir`): columns band,
    band_conf, provenance, track."""
    pred = read_predictions(pred_dir, clips)
    pred["box"] = pred.groupby("clip").cumcount().astype(np.int64)  # row in its clip's file, as tracks say
    pred["band"] = assign_bands(pred, bands)
    if temporal is not None and temporal.enabled:
        from visem_pl.tasks.pseudo.temporal import apply_temporal, read_tracks

        return apply_temporal(pred, read_tracks(tracks_dir, sorted(pred["clip"].unique())), temporal)
    return pred.assign(band_conf=pred["band"], provenance="confidence", track=np.int64(-1))


def label_texts(accepted: pd.DataFrame):
    """(file name, YOLO label text) of every frame of `accepted` (columns clip, frame, cls, cx, cy, w, h),
    frames in (clip, frame) order, each frame's boxes in their order: what `yolo_text` writes, built in
    one pass over the boxes rather than a DataFrame per frame."""
    for clip, rows in accepted.groupby("clip", sort=True).indices.items():  # a clip's lines at a time
        boxes = accepted.iloc[rows].sort_values("frame", kind="stable")
        lines = yolo_text(zip(*(boxes[c].to_numpy().tolist() for c in BOX_COLUMNS))).splitlines(keepends=True)
        frame = boxes["frame"].to_numpy()
        starts = np.flatnonzero(np.r_[True, frame[1:] != frame[:-1]])
        for a, b in zip(starts, [*starts[1:], len(lines)]):
            yield f"{layout.frame_item(clip, frame[a])}.txt", "".join(lines[a:b])


def filter_round(
    pred_dir: Path | str,
    out_dir: Path | str,
    bands: dict[int, Band],
    temporal=None,
    tracks_dir: Path | None = None,
    clips: list[str] | None = None,
) -> dict:
    """Write `boxes.parquet` (every box with its band), `labels/` (accepted pseudo-labels per
    frame) and `review_queue.csv` (the review band) under `out_dir`; return counts.

    `temporal` (a `tasks.pseudo.temporal.Temporal`, enabled) also decides bands by the round's tracks
    in `tracks_dir`; every box then says how its band was decided (`provenance`). `clips`: the names of
    the clips to read (the dataset's), else every file in `pred_dir`."""
    pred = decide_bands(pred_dir, bands, temporal, tracks_dir, clips)
    out = Path(out_dir)
    labels = out / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    accepted = pred[pred.band == ACCEPT]
    write_texts(labels, label_texts(accepted))
    review = pred[pred.band == REVIEW].copy()
    review["item"] = [layout.frame_item(c, f) for c, f in zip(review["clip"], review["frame"])]
    review["class_name"] = review["cls"].map(dict(enumerate(layout.CLASS_NAMES)))
    review = review.sort_values(["clip", "frame", "conf"], ascending=[True, True, False])
    with atomic_path(out / "review_queue.csv") as tmp:
        review[REVIEW_BOX_COLUMNS].to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(out / "boxes.parquet") as tmp:
        pred.to_parquet(tmp, index=False)
    stats = {
        "boxes": int(len(pred)),
        "frames_with_pseudo_labels": int(accepted.groupby(["clip", "frame"]).ngroups),
        "review_items": int(review["item"].nunique()),
        "review_boxes": int(len(review)),
    }
    for band in (ACCEPT, REVIEW, REJECT):
        sel = pred[pred.band == band]
        stats[band] = {n: int((sel.cls == k).sum()) for k, n in enumerate(layout.CLASS_NAMES)}
    stats["provenance"] = {str(k): int(v) for k, v in pred["provenance"].value_counts().sort_index().items()}
    write_json(out / "stats.json", stats)
    return stats
