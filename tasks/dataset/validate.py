"""Check a VISEM-Tracking tree line by line and summarise it.

Every problem is reported as `path:line: what is wrong` (line 0 means the file as a whole),
all of them in one pass up to a cap, so a lab fixes its export once instead of once per run.
Nothing is written.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.reader import Dataset, index_files, locate, probe_video

DEFAULT_MAX_PROBLEMS = 200


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class Report:
    summary: dict
    problems: list[Problem] = field(default_factory=list)
    truncated: int = 0  # problems found beyond the cap
    # Unlabelled clips that cannot be read, with `on_bad_clip: skip`: quarantined, not errors. A lab's
    # round has 502 clips; one truncated download must not stop the other 501.
    bad_clips: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Problems:
    """Collects problems up to a cap and counts the rest."""

    def __init__(self, cap: int):
        self.cap, self.items, self.extra = cap, [], 0

    def add(self, path: Path, line: int, message: str) -> None:
        if len(self.items) < self.cap:
            self.items.append(Problem(path, line, message))
        else:
            self.extra += 1


def empty_summary() -> dict:
    per_class = {name: 0 for name in layout.CLASS_NAMES}
    return {
        "videos": 0,
        "images": 0,
        "label_files": 0,
        "frames_without_labels": 0,
        "boxes": dict(per_class),
        "tracks": dict(per_class),
        "clips": {"annotated_rest": 0, "other": 0},
        "participants": 0,
    }


def parse_box(fields: list[str]) -> tuple[int, float, float, float, float] | str:
    """`class cx cy w h` -> tuple, or the reason it is not a valid box."""
    cls_txt = fields[0]
    if cls_txt not in ("0", "1", "2"):
        return f"class '{cls_txt}' is not 0 (sperm), 1 (cluster) or 2 (small_or_pinhead)"
    values = []
    for name, txt in zip(("cx", "cy", "w", "h"), fields[1:]):
        try:
            v = float(txt)
        except ValueError:
            return f"{name} '{txt}' is not a number"
        if not math.isfinite(v):
            return f"{name} '{txt}' is not finite"
        values.append(v)
    cx, cy, w, h = values
    for name, v in (("cx", cx), ("cy", cy), ("w", w), ("h", h)):
        if not 0.0 <= v <= 1.0:
            return f"{name} {txt_of(v)} is outside [0, 1]"
    if w <= 0 or h <= 0:
        return f"box width/height must be > 0, got w={txt_of(w)} h={txt_of(h)}"
    return int(cls_txt), cx, cy, w, h


def txt_of(v: float) -> str:
    return f"{v:.8g}"


def _read_lines(path: Path, problems: _Problems) -> list[str] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().splitlines()
    except UnicodeDecodeError as exc:
        problems.add(path, 0, f"not UTF-8 text ({exc.reason})")
    except OSError as exc:
        problems.add(path, 0, f"cannot be read ({exc.strerror})")
    return None


def _boxes_of(
    path: Path, lines: list[str], width: int, problems: _Problems
) -> list[tuple[int, list[str], tuple | None]]:
    """Non-blank lines as (line number, fields, parsed box or None when invalid)."""
    out = []
    for n, raw in enumerate(lines, 1):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) != width:
            what = "'class cx cy w h'" if width == 5 else "'track_id class cx cy w h'"
            problems.add(path, n, f"expected {width} fields {what}, found {len(fields)}")
            out.append((n, fields, None))
            continue
        box = parse_box(fields[width - 5 :])
        if isinstance(box, str):
            problems.add(path, n, box)
            box = None
        out.append((n, fields, box))
    return out


def check_label_pair(
    label: Path, ftid: Path | None, problems: _Problems, boxes: Counter, tracks: dict[int, set]
) -> None:
    """One frame's `labels/` file against its `labels_ftid/` twin; counts boxes and track ids."""
    lines = _read_lines(label, problems)
    if lines is None:
        return
    plain = _boxes_of(label, lines, 5, problems)
    for _, _, box in plain:
        if box is not None:
            boxes[box[0]] += 1
    if ftid is None:
        return
    flines = _read_lines(ftid, problems)
    if flines is None:
        return
    with_ids = _boxes_of(ftid, flines, 6, problems)
    if len(with_ids) != len(plain):
        problems.add(ftid, 0, f"{len(with_ids)} boxes, but {label.name} has {len(plain)}")
    for _, fields, box in with_ids:
        if box is not None:
            tracks[box[0]].add(fields[0])
    for (n, fields, box), (pn, _, twin) in zip(with_ids, plain):
        if box is not None and twin is not None and twin != box:
            problems.add(ftid, n, f"box '{' '.join(fields[1:])}' disagrees with {label.name} line {pn}")


def check_jpeg(path: Path) -> str | None:
    """Cheap structural check (markers and size) so 29k frames validate in seconds, not minutes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 2))
            tail = fh.read(2)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if head[:2] != b"\xff\xd8":
        return "not a JPEG image (no start-of-image marker)"
    if tail != b"\xff\xd9":
        return "JPEG is truncated (no end-of-image marker)"
    dims = _jpeg_size(head)
    if dims is None:
        return "JPEG has no readable frame header"
    if dims != (layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT):
        return f"image is {dims[0]}x{dims[1]}, expected {layout.IMAGE_WIDTH}x{layout.IMAGE_HEIGHT}"
    return None


def _jpeg_size(buf: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(buf):
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        seg = int.from_bytes(buf[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h = int.from_bytes(buf[i + 5 : i + 7], "big")
            w = int.from_bytes(buf[i + 7 : i + 9], "big")
            return w, h
        i += 2 + seg
    return None


def check_deep_image(path: Path) -> str | None:
    """The structural check, then a full decode (OpenCV decodes a truncated JPEG without failing)."""
    import cv2

    err = check_jpeg(path)
    if err:
        return err
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        return "cannot be decoded as an image"
    if img.shape[:2] != (layout.IMAGE_HEIGHT, layout.IMAGE_WIDTH):
        return f"image decodes to {img.shape[1]}x{img.shape[0]}, expected {layout.IMAGE_WIDTH}x{layout.IMAGE_HEIGHT}"
    return None


def check_csv(path: Path, expected: tuple[str, ...], problems: _Problems) -> set[int]:
    """Exact UTF-8 header, numeric unique IDs; returns the participant ids."""
    ids: set[int] = set()
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, skipinitialspace=True))
    except UnicodeDecodeError as exc:
        problems.add(path, 0, f"not UTF-8 ({exc.reason}); the real headers contain '²' and '⁶'")
        return ids
    except OSError as exc:
        problems.add(path, 0, f"cannot be read ({exc.strerror})")
        return ids
    if not rows:
        problems.add(path, 1, "empty file, expected a header row")
        return ids
    header = [h.strip() for h in rows[0]]
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    for col in missing:
        hint = f" (found unexpected '{extra[0]}' instead?)" if extra else ""
        problems.add(path, 1, f"missing column '{col}'{hint}")
    if "ID" not in header:
        return ids
    id_col = header.index("ID")
    first_seen: dict[int, int] = {}
    for n, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.add(path, n, f"expected {len(header)} fields, found {len(row)}")
            continue
        txt = row[id_col].strip()
        try:
            pid = int(txt)
        except ValueError:
            problems.add(path, n, f"ID '{txt}' is not a participant number")
            continue
        if pid in first_seen:
            problems.add(path, n, f"duplicate participant id {pid} (first on line {first_seen[pid]})")
            continue
        first_seen[pid] = n
        ids.add(pid)
    return ids


ON_BAD_CLIP = ("skip", "fail")  # params.yaml data.on_bad_clip (the inference stage reads the same)


def validate(
    root: Path | str,
    deep: bool = False,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    dataset: Dataset | None = None,
    on_bad_clip: str = "skip",
) -> Report:
    """Validate the whole tree; `deep` decodes every frame instead of checking its JPEG structure.

    `on_bad_clip`: `skip` reports an unlabelled clip that cannot be read (or is misnamed) in
    `bad_clips` and the summary's `bad_clips`, present only then (the round goes on without it);
    `fail` makes it a problem.
    The labelled videos, their labels and the CSVs are always strict."""
    if on_bad_clip not in ON_BAD_CLIP:
        raise ValueError(f"on_bad_clip must be one of {', '.join(ON_BAD_CLIP)}, not {on_bad_clip!r}")
    ds = dataset or locate(root)
    problems = _Problems(max_problems)
    bad_clips: list[Problem] = []
    clip_problem = problems.add if on_bad_clip == "fail" else (lambda p, line, m: bad_clips.append(Problem(p, line, m)))
    summary = empty_summary()
    boxes: Counter = Counter()
    tracks: dict[int, set] = {0: set(), 1: set(), 2: set()}
    image_check = check_deep_image if deep else check_jpeg

    for vid, video in ds.videos.items():
        images = index_files(video.images_dir, layout.IMAGE_NAME_RE)
        labels = index_files(video.labels_dir, layout.LABEL_NAME_RE)
        ftids = index_files(video.ftid_dir, layout.FTID_NAME_RE)
        if not video.images_dir.is_dir():
            problems.add(video.images_dir, 0, "missing images/ folder")
        for name, frames in (("images", images), ("labels", labels), ("labels_ftid", ftids)):
            foreign = sorted({v for v, _ in frames.values()} - {str(vid)})
            if foreign:
                problems.add(video.dir / name, 0, f"file names carry video id {foreign[0]}, folder is {vid}")
        summary["videos"] += 1
        summary["images"] += len(images)
        summary["label_files"] += len(labels)
        summary["frames_without_labels"] += len(set(images) - set(labels))

        with ThreadPoolExecutor(max_workers=4) as pool:
            paths = [video.images_dir / images[f][1] for f in sorted(images)]
            for path, err in zip(paths, pool.map(image_check, paths)):
                if err:
                    problems.add(path, 0, err)

        for frame in sorted(set(labels) | set(ftids)):
            label = video.labels_dir / labels[frame][1] if frame in labels else None
            ftid = video.ftid_dir / ftids[frame][1] if frame in ftids else None
            if label is None:
                problems.add(ftid, 0, f"no matching labels/{layout.label_name(vid, frame)}")
                continue
            if frame not in images:
                problems.add(label, 0, f"label file without its image images/{layout.image_name(vid, frame)}")
            if ftid is None:
                problems.add(label, 0, f"no matching labels_ftid/{layout.ftid_name(vid, frame)}")
            check_label_pair(label, ftid, problems, boxes, tracks)

        if video.mp4.is_file():
            try:
                probe_video(video.mp4)
            except ValueError as exc:
                problems.add(video.mp4, 0, str(exc))
        else:
            problems.add(video.mp4, 0, "missing annotated video")

    for path in ds.odd_clip_files:
        clip_problem(path, 0, f"clip name '{path.name}' is not <id>_<start>_<stop>.mp4 with start < stop")
    for clip in ds.clips():
        summary["clips"][clip.group] += 1
        try:
            probe_video(clip.path)
        except ValueError as exc:
            clip_problem(clip.path, 0, str(exc))
    if bad_clips:  # only then: a sound dataset's summary stays exactly the real totals (README)
        summary["bad_clips"] = {p.path.stem: p.message for p in bad_clips}

    participants: set[int] = set()
    for name, expected in layout.CLINICAL_HEADERS.items():
        path = ds.csvs.get(name)
        if path is None:
            problems.add(ds.top / name, 0, "missing clinical CSV")
            continue
        participants |= check_csv(path, expected, problems)
    summary["participants"] = len(participants)

    for cls, name in enumerate(layout.CLASS_NAMES):
        summary["boxes"][name] = boxes[cls]
        summary["tracks"][name] = len(tracks[cls])
    return Report(summary=summary, problems=problems.items, truncated=problems.extra, bad_clips=bad_clips)
