"""Dataset trees the tests build (real layout, real counts) and a digest to prove nothing changed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.synth import SynthConfig, synthesize

SMALL_VIDEOS = (11, 23)
SMALL_FRAMES = 20
SMALL_CLIPS = ("11_30_60.mp4", "25_0_30.mp4")


class Tree:
    """A built dataset: its zip root and the summary `validate` must report for it."""

    def __init__(self, root: Path, expected: dict):
        self.root = root.resolve()
        self.expected = expected

    @property
    def train(self) -> Path:
        return self.root / layout.TRAIN_DIR / layout.VIDEOS_DIR

    def video_dir(self, vid: int) -> Path:
        return self.train / str(vid)

    def image(self, vid: int, frame: int) -> Path:
        return self.video_dir(vid) / "images" / layout.image_name(vid, frame)

    def label(self, vid: int, frame: int) -> Path:
        return self.video_dir(vid) / "labels" / layout.label_name(vid, frame)

    def ftid(self, vid: int, frame: int) -> Path:
        return self.video_dir(vid) / "labels_ftid" / layout.ftid_name(vid, frame)

    def mp4(self, vid: int) -> Path:
        return self.video_dir(vid) / f"{vid}.mp4"

    def clip(self, name: str) -> Path:
        vid = int(name.split("_")[0])
        folder = layout.CLIPS_REST_DIR if vid in layout.ANNOTATED_IDS else layout.CLIPS_OTHER_DIR
        return self.root / folder / folder / name

    def csv(self, name: str) -> Path:
        return self.root / name


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 for every file, and 'dir' for every folder under `root`."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def tiny_twin(root: Path, *, seed: int, videos: tuple[int, ...], frames_per_video: int, frames_per_clip: int,
              rest_clips_per_video: int = 1, other_videos: int = 0) -> Path:  # fmt: skip
    """A small synthetic twin for a test module (one worker, no progress bar); returns `root`."""
    cfg = SynthConfig(seed=seed, videos=videos, frames_per_video=frames_per_video, frames_per_clip=frames_per_clip,
                      rest_clips_per_video=rest_clips_per_video, other_videos=other_videos, workers=1)  # fmt: skip
    synthesize(root, cfg, progress=False)
    return root
