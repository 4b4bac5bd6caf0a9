"""Split a round's predictions into confidence bands per class.

accept (conf >= high): the box becomes a pseudo-label; review (low <= conf < high): the box
goes to the round's review queue for an expert; reject (conf < low): dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.labels import yolo_text
from visem_pl.tasks.inference.clips import prediction_files, read_predictions
from visem_pl.tasks.workspace.io import atomic_path, write_json

ACCEPT, REVIEW, REJECT = "accept", "review", "reject"
# review_queue.csv: one row per review-band box (the frame-level queue is tasks.review.queue).
REVIEW_BOX_COLUMNS = ["item", "clip", "frame", "cls", "class_name", "cx", "cy", "w", "h", "conf"]
BOX_COLUMNS = ["cls", "cx", "cy", "w", "h"]
# boxes.parquet's columns with few distinct values in a clip, dictionary-encoded. Not the coordinates,
# conf and box: nearly all distinct within a clip's row group, where a dictionary costs more than it
# saves (50 clips: 47.6 MB with every column coded, 33.0 MB so, 36.0 MB as one table before).
DICTIONARY_COLUMNS = ["clip", "frame", "cls", "band", "band_conf", "provenance", "track"]


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


def sum_histograms(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """`confidence_histogram`s of parts of the boxes (clips) added up: that of them all."""
    if not parts:
        return confidence_histogram(pd.DataFrame())
    total = parts[0].copy()
    for part in parts[1:]:
        for name in layout.CLASS_NAMES:
            total[name] += part[name]
    return total


def assign_bands(pred: pd.DataFrame, bands: dict[int, Band]) -> pd.Series:
    # Compare in float32, the precision confidences are stored in (infer.SCHEMA): a box whose conf
    # reads 0.7 sits at a bound written as 0.7 in params.yaml, not just below it (0.69999999 < 0.7).
    low = pred["cls"].map({k: b.low for k, b in bands.items()}).to_numpy(dtype=np.float32)
    high = pred["cls"].map({k: b.high for k, b in bands.items()}).to_numpy(dtype=np.float32)
    conf = pred["conf"].to_numpy(dtype=np.float32)
    band = np.where(conf >= high, ACCEPT, np.where(conf >= low, REVIEW, REJECT))
    return pd.Series(band, index=pred.index, name="band")


def _decided(pred: pd.DataFrame, bands: dict[int, Band], temporal, tracks_dir: Path | None) -> pd.DataFrame:
    """One clip's boxes (`pred`, a prediction file's rows) with their bands, the temporal rule applied
    when `temporal` is enabled: columns box (row in the file, as tracks say), band, band_conf,
    provenance, track."""
    pred = pred.assign(box=np.arange(len(pred), dtype=np.int64))
    pred["band"] = assign_bands(pred, bands)
    if temporal is not None and temporal.enabled:
        from visem_pl.tasks.pseudo.temporal import apply_temporal, read_tracks

        # A clip without a box has no track to read (nor needs one): the rule then changes nothing.
        tracks = read_tracks(tracks_dir, sorted(pred["clip"].unique())) if len(pred) else pd.DataFrame()
        return apply_temporal(pred, tracks, temporal)
    return pred.assign(band_conf=pred["band"], provenance="confidence", track=np.int64(-1))


def decided_clips(
    pred_dir: Path | str, bands: dict[int, Band], temporal=None, tracks_dir: Path | None = None, clips=None
):
    """(prediction file, its boxes with their bands) of each clip of `pred_dir` (of `clips`, names, when
    given) in name order, one clip at a time (`decide_bands` is them all in one table). With `temporal`
    enabled every clip with boxes needs its tracks in `tracks_dir`, checked before the first clip."""
    files = prediction_files(pred_dir, clips)
    if temporal is not None and temporal.enabled:
        from visem_pl.tasks.pseudo.temporal import tracks_file

        for path in files:
            if pq.ParquetFile(path).metadata.num_rows:
                tracks_file(tracks_dir, path.stem)  # raises for the first one missing
    for path in files:
        yield path, _decided(pq.read_table(path).to_pandas(), bands, temporal, tracks_dir)


def decide_bands(
    pred_dir: Path | str, bands: dict[int, Band], temporal=None, tracks_dir: Path | None = None, clips=None
):
    """Every box of the prediction files in `pred_dir` (of `clips`, names, when given) with its band (and,
    with `temporal` enabled, the temporal rule applied with the tracks in `tracks_dir`): columns band,
    band_conf, provenance, track. Rows by clip (name order), then as `decided_clips` orders a clip's."""
    parts = [boxes for _, boxes in decided_clips(pred_dir, bands, temporal, tracks_dir, clips)]
    if not parts:
        return _decided(read_predictions(pred_dir, []), bands, temporal, tracks_dir)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def label_texts(accepted: pd.DataFrame):
    """(frame item, YOLO label text) of every frame of `accepted` (columns clip, frame, cls, cx, cy, w, h),
    frames in (clip, frame) order, each frame's boxes in their order: what `yolo_text` writes, built in
    one pass over the boxes rather than a DataFrame per frame. A frame's pseudo-labels are this text of
    its accepted boxes in boxes.parquet (`merge` writes it; `filter` keeps no label files)."""
    for clip, rows in accepted.groupby("clip", sort=True).indices.items():  # a clip's lines at a time
        boxes = accepted.iloc[rows].sort_values("frame", kind="stable")
        lines = yolo_text(zip(*(boxes[c].to_numpy().tolist() for c in BOX_COLUMNS))).splitlines(keepends=True)
        frame = boxes["frame"].to_numpy()
        starts = np.flatnonzero(np.r_[True, frame[1:] != frame[:-1]])
        for a, b in zip(starts, [*starts[1:], len(lines)]):
            yield layout.frame_item(clip, frame[a]), "".join(lines[a:b])


def filter_round(
    pred_dir: Path | str,
    out_dir: Path | str,
    bands: dict[int, Band],
    temporal=None,
    tracks_dir: Path | None = None,
    clips: list[str] | None = None,
    on_clip=None,
) -> dict:
    """Write `boxes.parquet` (every box with its band; the accepted ones are the pseudo-labels, see
    `label_texts`) and `review_queue.csv` (the review band) under `out_dir`; return counts.

    Clip by clip (`decided_clips`): memory holds one clip's boxes, whatever the number of clips;
    boxes.parquet gets one row group per clip (with boxes) and both files are renamed into place once
    complete. `on_clip(path, boxes)`: called with each clip's prediction file and decided boxes.

    `temporal` (a `tasks.pseudo.temporal.Temporal`, enabled) also decides bands by the round's tracks
    in `tracks_dir`; every box then says how its band was decided (`provenance`). `clips`: the names of
    the clips to read (the dataset's), else every file in `pred_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = {"boxes": 0, "frames_with_pseudo_labels": 0, "review_items": 0, "review_boxes": 0}
    by_band = {band: np.zeros(len(layout.CLASS_NAMES), dtype=np.int64) for band in (ACCEPT, REVIEW, REJECT)}
    provenance: dict[str, int] = {}
    with atomic_path(out / "review_queue.csv") as queue_tmp, atomic_path(out / "boxes.parquet") as boxes_tmp:
        writer, last = None, None
        with open(queue_tmp, "w", encoding="utf-8", newline="") as queue:
            pd.DataFrame(columns=REVIEW_BOX_COLUMNS).to_csv(queue, index=False)
            try:
                for path, pred in decided_clips(pred_dir, bands, temporal, tracks_dir, clips):
                    last = pred
                    review = _review_boxes(pred)
                    review.to_csv(queue, header=False, index=False, float_format="%.6f")
                    if len(pred):
                        table = pa.Table.from_pandas(pred, preserve_index=False)
                        if writer is None:
                            coded = [c for c in DICTIONARY_COLUMNS if c in table.schema.names]
                            writer = pq.ParquetWriter(boxes_tmp, table.schema, use_dictionary=coded)
                        writer.write_table(table.cast(writer.schema))
                    accepted = pred[pred["band"] == ACCEPT]
                    stats["boxes"] += len(pred)
                    stats["frames_with_pseudo_labels"] += accepted.groupby(["clip", "frame"]).ngroups
                    stats["review_items"] += review["item"].nunique()
                    stats["review_boxes"] += len(review)
                    for band, counts in by_band.items():
                        cls = pred.loc[pred["band"] == band, "cls"].to_numpy(np.int64)
                        counts += np.bincount(cls, minlength=len(counts))[: len(counts)]
                    for k, v in pred["provenance"].value_counts().items():
                        provenance[str(k)] = provenance.get(str(k), 0) + int(v)
                    if on_clip is not None:
                        on_clip(path, pred)
            finally:
                if writer is not None:
                    writer.close()
        if writer is None:  # no box at all: the (empty) table, with its columns
            empty = last if last is not None else decide_bands(pred_dir, bands, temporal, tracks_dir, [])
            empty.to_parquet(boxes_tmp, index=False)
    stats = {k: int(v) for k, v in stats.items()}
    for band, counts in by_band.items():
        stats[band] = {n: int(counts[k]) for k, n in enumerate(layout.CLASS_NAMES)}
    stats["provenance"] = dict(sorted(provenance.items()))
    write_json(out / "stats.json", stats)
    return stats


def _review_boxes(pred: pd.DataFrame) -> pd.DataFrame:
    """review_queue.csv's rows of one clip's boxes: its review band, by frame, most confident first."""
    review = pred[pred.band == REVIEW].copy()
    review["item"] = [layout.frame_item(c, f) for c, f in zip(review["clip"], review["frame"])]
    review["class_name"] = review["cls"].map(dict(enumerate(layout.CLASS_NAMES)))
    review = review.sort_values(["clip", "frame", "conf"], ascending=[True, True, False])
    return review[REVIEW_BOX_COLUMNS]
