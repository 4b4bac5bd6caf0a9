"""A label-faithful replica of the real dataset rebuilt from `sperm_counts_per_frame.csv`.

Every real label file comes back with its real number of boxes per class (box positions
are placeholders, frames are one grey JPEG), so the reader and validator can be checked
against the real totals and timed at real size without the 33 GB download.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.counts import REFERENCE_COUNTS, per_frame_matrix, read_counts


def _track_id(video_id: int, cls: int, slot: int) -> str:
    # LabelBox-like 25-character id, unique per (video, class, slot).
    return f"c{video_id:03d}{cls}{slot:020d}"


def build_replica(
    out: Path,
    videos: tuple[int, ...] = layout.ANNOTATED_IDS,
    counts_csv: Path = REFERENCE_COUNTS,
    seed: int = 0,
    max_frames: int | None = None,
    clips: tuple[str, ...] = (),
) -> dict:
    """Write the replica under `out` (zip-root layout); returns the expected validate summary.

    `max_frames` keeps only the first frames of each video (small fixtures); `clips` are
    clip file names (`<id>_<start>_<stop>.mp4`) written as tiny mp4s into the right group,
    nested twice as after a plain unzip.
    """
    counts = read_counts(counts_csv)
    rng = np.random.default_rng(seed)
    train = out / layout.TRAIN_DIR / layout.VIDEOS_DIR
    grey = np.full((layout.IMAGE_HEIGHT, layout.IMAGE_WIDTH, 3), 128, np.uint8)
    template = out / "_frame.jpg"
    out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(template), grey)
    expected = {
        "videos": 0,
        "images": 0,
        "label_files": 0,
        "frames_without_labels": 0,
        "boxes": {n: 0 for n in layout.CLASS_NAMES},
        "tracks": {n: 0 for n in layout.CLASS_NAMES},
        "clips": {"annotated_rest": 0, "other": 0},
        "participants": len(videos),
    }
    for vid in videos:
        n_frames = min(layout.REAL_FRAMES[vid], max_frames or layout.REAL_FRAMES[vid])
        mat = per_frame_matrix(counts, vid, n_frames)
        vdir = train / str(vid)
        for sub in ("images", "labels", "labels_ftid"):
            (vdir / sub).mkdir(parents=True, exist_ok=True)
        for frame in range(n_frames):
            _link(template, vdir / "images" / layout.image_name(vid, frame))
            if mat[frame].sum() == 0:
                expected["frames_without_labels"] += 1
                continue
            plain, with_id = [], []
            for cls, n in enumerate(mat[frame]):
                xy = rng.uniform(0.05, 0.95, size=(n, 2))
                for slot, (cx, cy) in enumerate(xy):
                    line = f"{cls} {cx:.6f} {cy:.6f} 0.0359375 0.047917"
                    plain.append(line)
                    with_id.append(f"{_track_id(vid, cls, slot)} {line}")
            (vdir / "labels" / layout.label_name(vid, frame)).write_text("\n".join(plain) + "\n")
            (vdir / "labels_ftid" / layout.ftid_name(vid, frame)).write_text("\n".join(with_id) + "\n")
        for cls, name in enumerate(layout.CLASS_NAMES):
            expected["boxes"][name] += int(mat[:, cls].sum())
            expected["tracks"][name] += int(mat[:, cls].max(initial=0))
        expected["videos"] += 1
        expected["images"] += n_frames
        expected["label_files"] += int((mat.sum(axis=1) > 0).sum())
        _write_mp4(vdir / f"{vid}.mp4", grey, fps=n_frames / 30)
    template.unlink()
    for name in clips:
        vid = int(name.split("_")[0])
        group, folder = (
            ("annotated_rest", layout.CLIPS_REST_DIR)
            if vid in layout.ANNOTATED_IDS
            else ("other", layout.CLIPS_OTHER_DIR)
        )
        target = out / folder / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_mp4(target, grey, fps=47.0)
        expected["clips"][group] += 1
    for name, header in layout.CLINICAL_HEADERS.items():
        rows = [",".join(_csv_cell(h) for h in header)]
        rows += [",".join([str(v)] + ["Not reported"] * (len(header) - 1)) for v in videos]
        (out / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    shutil.copyfile(counts_csv, out / layout.COUNTS_CSV)
    return expected


def _csv_cell(text: str) -> str:
    return f'"{text}"' if "," in text else text


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _write_mp4(path: Path, frame: np.ndarray, fps: float, n: int = 5) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
    for _ in range(n):
        writer.write(frame)
    writer.release()
