"""Find and describe a VISEM-Tracking tree on disk: annotated videos, unlabelled clips, CSVs.

The same reader serves the real 33 GB unzip and the synthetic twin. It only lists and
locates; checking what the files contain is `tasks/dataset/validate.py`'s job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from visem_pl.tasks.dataset import layout

# How far below the given path (or the zip root above it) names are searched for.
SEARCH_DEPTH = 4


class DatasetNotFound(FileNotFoundError):
    """The given path holds no VISEM-Tracking layout."""


@dataclass(frozen=True)
class Video:
    """One annotated 30 s video: its frames, both label folders and its mp4."""

    id: int
    dir: Path

    @property
    def images_dir(self) -> Path:
        return self.dir / "images"

    @property
    def labels_dir(self) -> Path:
        return self.dir / "labels"

    @property
    def ftid_dir(self) -> Path:
        return self.dir / "labels_ftid"

    @property
    def mp4(self) -> Path:
        return self.dir / f"{self.dir.name}.mp4"

    def image_path(self, frame: int) -> Path:
        return self.images_dir / layout.image_name(self.dir.name, frame)

    def label_path(self, frame: int) -> Path:
        return self.labels_dir / layout.label_name(self.dir.name, frame)

    def ftid_path(self, frame: int) -> Path:
        return self.ftid_dir / layout.ftid_name(self.dir.name, frame)

    def frames(self) -> list[int]:
        """Frame indices that have an image, sorted."""
        return sorted(index_files(self.images_dir, layout.IMAGE_NAME_RE))

    def labelled_frames(self) -> list[int]:
        """Frame indices that have a label file, sorted (frames without objects have none)."""
        return sorted(index_files(self.labels_dir, layout.LABEL_NAME_RE))


@dataclass(frozen=True)
class Clip:
    """One unlabelled mp4 clip named `<id>_<start>_<stop>.mp4`."""

    path: Path
    video_id: int
    start_s: int
    stop_s: int
    group: str  # "annotated_rest" (166 real) or "other" (336 real)

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Dataset:
    """Where everything of one VISEM-Tracking tree is."""

    top: Path
    train_dir: Path
    videos: dict[int, Video]
    clip_dirs: dict[str, Path | None]
    csvs: dict[str, Path | None]
    all_clips: list[Clip] = field(default_factory=list)
    odd_clip_files: list[Path] = field(default_factory=list)

    def clips(self, group: str | None = None) -> list[Clip]:
        return [c for c in self.all_clips if group is None or c.group == group]

    def split(
        self,
        val_ids: tuple[int, ...] | list[int] = layout.OFFICIAL_VAL_IDS,
        train_ids: tuple[int, ...] | list[int] | None = None,
    ) -> tuple[list[Video], list[Video]]:
        """(train, val) videos; train defaults to every annotated video not in val."""
        val_set = {int(v) for v in val_ids}
        unknown = sorted(val_set - set(self.videos))
        if unknown:
            raise ValueError(f"validation video ids {unknown} are not in {self.train_dir}")
        if train_ids is None:
            train_set = set(self.videos) - val_set
        else:
            train_set = {int(v) for v in train_ids}
            overlap = sorted(train_set & val_set)
            if overlap:
                raise ValueError(f"video ids {overlap} are in both the train and the validation split")
            missing = sorted(train_set - set(self.videos))
            if missing:
                raise ValueError(f"training video ids {missing} are not in {self.train_dir}")
        return ([self.videos[i] for i in sorted(train_set)], [self.videos[i] for i in sorted(val_set)])


def index_files(folder: Path, pattern) -> dict[int, tuple[str, str]]:
    """frame index -> (video id in the name, file name) for the names in `folder` matching `pattern`."""
    out: dict[int, tuple[str, str]] = {}
    try:
        with os.scandir(folder) as it:
            for entry in it:
                m = pattern.match(entry.name)
                if m:
                    out[int(m["frame"])] = (m["id"], entry.name)
    except FileNotFoundError:
        pass
    return out


def _walk_dirs(top: Path, depth: int, skip: set[Path]):
    """Breadth-first directories under `top` to `depth`, never entering `skip` (the big Train tree)."""
    level = [top]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            yield d
            if d in skip:
                continue
            try:
                with os.scandir(d) as it:
                    nxt.extend(Path(e.path) for e in it if e.is_dir(follow_symlinks=True))
            except (PermissionError, FileNotFoundError, NotADirectoryError):
                continue
        level = sorted(nxt)


def _find_train_dir(given: Path) -> Path:
    if given.name == layout.VIDEOS_DIR and given.is_dir():
        return given
    for d in _walk_dirs(given, SEARCH_DEPTH, skip=set()):
        if d.name == layout.VIDEOS_DIR and (d.parent.name == layout.TRAIN_DIR or d.parent == given):
            return d
    for d in _walk_dirs(given, SEARCH_DEPTH, skip=set()):
        if d.name == layout.VIDEOS_DIR:
            return d
    raise DatasetNotFound(
        f"{given}: no '{layout.VIDEOS_DIR}/' folder found within {SEARCH_DEPTH} levels; give the zip root, "
        f"'{layout.TRAIN_DIR}/' or '{layout.VIDEOS_DIR}/'"
    )


def _top_of(train_dir: Path, given: Path) -> Path:
    """Where CSVs and clip folders are searched: the zip root when given Train/ or the v4 folder."""
    if given == train_dir or (given == train_dir.parent and given.name == layout.TRAIN_DIR):
        return train_dir.parent.parent if train_dir.parent.name == layout.TRAIN_DIR else train_dir.parent
    return given


def locate(root: Path | str) -> Dataset:
    """Find the layout from the zip root, `VISEM_Tracking_Train_v4/` or `Train/`."""
    given = Path(root).expanduser().resolve()
    if not given.is_dir():
        raise DatasetNotFound(f"{given}: not a folder")
    train_dir = _find_train_dir(given)
    top = _top_of(train_dir, given)

    videos: dict[int, Video] = {}
    with os.scandir(train_dir) as it:
        for entry in it:
            if entry.is_dir() and entry.name.isdigit():
                videos[int(entry.name)] = Video(int(entry.name), Path(entry.path))

    wanted_files = {layout.COUNTS_CSV, *layout.CLINICAL_CSVS}
    wanted_dirs = {layout.CLIPS_REST_DIR, layout.CLIPS_OTHER_DIR}
    csvs: dict[str, Path | None] = {name: None for name in sorted(wanted_files)}
    clip_dirs: dict[str, Path | None] = {"annotated_rest": None, "other": None}
    for d in _walk_dirs(top, SEARCH_DEPTH, skip={train_dir}):
        if d == train_dir:
            continue
        if d.name in wanted_dirs:
            group = "annotated_rest" if d.name == layout.CLIPS_REST_DIR else "other"
            # After a plain unzip the folder is nested twice: keep the innermost one.
            prev = clip_dirs[group]
            if prev is None or d.is_relative_to(prev):
                clip_dirs[group] = d
        for name in wanted_files:
            if csvs[name] is None and (d / name).is_file():
                csvs[name] = d / name
    clips, odd = scan_clips(clip_dirs)
    return Dataset(
        top=top,
        train_dir=train_dir,
        videos=dict(sorted(videos.items())),
        clip_dirs=clip_dirs,
        csvs=csvs,
        all_clips=clips,
        odd_clip_files=odd,
    )


def scan_clips(clip_dirs: dict[str, Path | None]) -> tuple[list[Clip], list[Path]]:
    """Parse every mp4 under the two clip folders; return (clips, files whose names do not parse)."""
    clips: list[Clip] = []
    odd: list[Path] = []
    for group, folder in clip_dirs.items():
        if folder is None:
            continue
        for path in sorted(folder.rglob("*.mp4")):
            m = layout.CLIP_NAME_RE.match(path.name)
            if not m or int(m["stop"]) <= int(m["start"]):
                odd.append(path)
                continue
            clips.append(Clip(path, int(m["id"]), int(m["start"]), int(m["stop"]), group))
    clips.sort(key=lambda c: (c.group, c.video_id, c.start_s))
    return clips, odd


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: never assume 50 fps or 1,470 frames."""

    fps: float
    frames: int
    width: int
    height: int


def probe_video(path: Path) -> VideoInfo:
    """fps, frame count and size from the mp4 container (OpenCV); raises ValueError if unreadable."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError("cannot be opened as a video (truncated or not an mp4)")
        info = VideoInfo(
            fps=float(cap.get(cv2.CAP_PROP_FPS)),
            frames=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        if info.frames <= 0 or info.fps <= 0:
            raise ValueError(f"container reports {info.frames} frames at {info.fps:g} fps")
        ok, _ = cap.read()
        if not ok:
            raise ValueError("first frame cannot be decoded")
        # A cut-off file often opens and decodes its start; the last frame tells.
        cap.set(cv2.CAP_PROP_POS_FRAMES, info.frames - 1)
        ok, _ = cap.read()
        if not ok:
            raise ValueError(f"frame {info.frames - 1} of {info.frames} cannot be decoded (truncated?)")
        return info
    finally:
        cap.release()
