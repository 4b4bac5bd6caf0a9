"""Choose the labelled frames a round trains and validates on.

Writes `frames.csv` (the table every later step reads), `counts.json`, and an Ultralytics
dataset: `train.txt`, `val.txt` and `data.yaml`, usable from the project folder as
`yolo val model=models/round-0/weights.pt data=data/prepared/data.yaml`. VISEM's
`<id>/images/` beside `<id>/labels/` is already the layout Ultralytics expects, so the lists
point at the original frames and nothing is copied. Paths are relative to the project folder
(absolute for a dataset outside it) so the files are the same in every clone. Consecutive frames at 50 fps
are near duplicates: training frames are sampled with a stride (and optionally capped per
video, to simulate scarce labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.reader import Video, locate
from visem_pl.tasks.workspace.io import write_json, write_text
from visem_pl.tasks.workspace.paths import portable


@dataclass(frozen=True)
class PrepareConfig:
    train_stride: int = 10  # every n-th frame of a training video
    max_frames_per_video: int = 0  # 0 = no cap; >0 keeps that many, spread evenly
    val_stride: int = 1
    include_empty: bool = True  # frames without objects teach the model what background is


def sample_frames(frames: list[int], stride: int, cap: int) -> list[int]:
    picked = frames[:: max(1, stride)]
    if cap and len(picked) > cap:
        # Spread evenly over the whole clip rather than taking its first seconds.
        idx = [round(i * (len(picked) - 1) / max(1, cap - 1)) for i in range(cap)] if cap > 1 else [0]
        picked = [picked[i] for i in idx]
    return picked


def frame_rows(video: Video, frames: list[int], split: str) -> list[dict]:
    labelled = set(video.labelled_frames())
    return [
        {
            "split": split,
            "video": video.id,
            "frame": f,
            "image": portable(video.image_path(f)),
            "label": portable(video.label_path(f)) if f in labelled else "",
        }
        for f in frames
    ]


def prepare(
    root: Path | str, out_dir: Path | str, cfg: PrepareConfig, val_ids=layout.OFFICIAL_VAL_IDS, train_ids=None
) -> dict:
    """Write `frames.csv` (split, video, frame, image, label) and `counts.json`; return counts."""
    ds = locate(root)
    train_videos, val_videos = ds.split(val_ids, train_ids)
    rows: list[dict] = []
    for video in train_videos:
        frames = video.frames() if cfg.include_empty else video.labelled_frames()
        rows += frame_rows(video, sample_frames(frames, cfg.train_stride, cfg.max_frames_per_video), "train")
    for video in val_videos:
        rows += frame_rows(video, video.frames()[:: max(1, cfg.val_stride)], "val")
    table = pd.DataFrame(rows, columns=["split", "video", "frame", "image", "label"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "frames.csv", table.to_csv(index=False))
    for split in ("train", "val"):
        write_text(out / f"{split}.txt", "".join(f"{p}\n" for p in table.loc[table.split == split, "image"]))
    # `path: .` makes Ultralytics resolve the lists (and the relative frame paths in them)
    # from the working directory, i.e. the project folder.
    write_text(
        out / "data.yaml",
        yaml.safe_dump(
            {
                "path": ".",
                "train": portable(out / "train.txt"),
                "val": portable(out / "val.txt"),
                "names": dict(enumerate(layout.CLASS_NAMES)),
            },
            sort_keys=False,
        ),
    )
    counts = {
        "train_videos": len(train_videos),
        "val_videos": len(val_videos),
        "train_frames": int((table.split == "train").sum()),
        "val_frames": int((table.split == "val").sum()),
        "train_labelled_frames": int(((table.split == "train") & (table.label != "")).sum()),
    }
    write_json(out / "counts.json", counts)
    return counts
