"""Hand-written prediction files, exactly as `tasks.infer.infer_clips` writes them.

One parquet file per clip with `tasks.infer.SCHEMA` and the same schema metadata (model
fingerprint, parameters, box count, frames scored), so filter, review and quality read them
as they read a real round's predictions.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from visem_pl.tasks.inference.clips import META_KEY, SCHEMA, InferConfig

FAKE_SHA = "0" * 64


def write_predictions(out_dir: Path, clip: str, rows: list[tuple], frames_scored: int, stride: int = 1) -> Path:
    """rows: (frame, cls, cx, cy, w, h, conf); returns the file `out_dir/<clip>.parquet`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = {name: [] for name in SCHEMA.names}
    for frame, cls, cx, cy, w, h, conf in rows:
        for name, value in zip(SCHEMA.names, (clip, frame, cls, cx, cy, w, h, conf)):
            cols[name].append(value)
    table = pa.table(cols, schema=SCHEMA)
    meta = {
        "model_sha256": FAKE_SHA,
        "params": asdict(InferConfig(stride=stride)),
        "clip": clip,
        "boxes": table.num_rows,
        "frames_scored": frames_scored,
    }
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    path = out_dir / f"{clip}.parquet"
    pq.write_table(table, path)
    return path
