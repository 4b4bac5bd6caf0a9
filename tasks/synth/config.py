"""Configuration of the synthetic twin."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from visem_pl.tasks.dataset import layout


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides what `synthesize` writes; same config -> same bytes.

    seed: master seed; every video/clip derives its own stream from (seed, id, clip name),
        so the output does not depend on `workers` or on the order jobs finish in.
    videos: annotated real ids to synthesise (their real per-frame counts drive the
        population); default all 20 of `layout.ANNOTATED_IDS`.
    frames_per_video: frames per annotated video; None = the real length of that id
        (1470, 1440 for 35 and 52, 1500 for 82). The real 30 s timeline is always sampled
        end to end, so shorter videos keep e.g. video 23's empty runs.
    rest_clips_per_video: unlabelled clips `<id>_30_60.mp4`, `<id>_60_90.mp4`, ... per
        annotated video (the "rest of the recording" folder).
    other_videos: how many ids of `layout.OTHER_IDS` (chosen by the seed) get clips.
    clips_per_other_video: clips `<id>_0_30.mp4`, `<id>_30_60.mp4`, ... per such id.
    frames_per_clip: frames in each unlabelled clip. Clip names keep the real 30 s naming
        even though synthetic clips are shorter: readers must take the frame count and fps
        from the container, never from the name.
    scale: multiplies the real per-frame object counts (concentration).
    um_per_px: stated calibration of the synthetic optics (micrometres per pixel). 0.5
        makes a 5 um sperm head ~10 px long, as in the real 400x videos; speeds in um/s are
        converted with it, and the truth records it.
    chamber_depth_um: depth of the counting chamber, used only to turn the mean number of
        sperm in the field into the clinical "Sperm concentration" (x10^6/mL).
    jpeg_quality: quality of the frame jpgs (cv2 IMWRITE_JPEG_QUALITY).
    workers: processes generating videos/clips in parallel (1 = in-process).
    reference_counts: the real `sperm_counts_per_frame.csv`; None = the copy shipped in
        `data/reference/`.
    """

    seed: int = 0
    videos: tuple[int, ...] = layout.ANNOTATED_IDS
    frames_per_video: int | None = 60
    rest_clips_per_video: int = 1
    other_videos: int = 10
    clips_per_other_video: int = 1
    frames_per_clip: int = 60
    scale: float = 1.0
    um_per_px: float = 0.5
    chamber_depth_um: float = 20.0
    jpeg_quality: int = 90
    workers: int = 2
    reference_counts: Path | None = field(default=None)

    def __post_init__(self) -> None:
        unknown = [v for v in self.videos if v not in layout.ANNOTATED_IDS]
        if unknown:
            raise ValueError(f"videos must be annotated ids {layout.ANNOTATED_IDS}, got {unknown}")
        if len(set(self.videos)) != len(self.videos):
            raise ValueError("videos contains duplicates")
        if self.frames_per_video is not None and self.frames_per_video < 1:
            raise ValueError("frames_per_video must be >= 1 or None")
        if self.frames_per_clip < 1:
            raise ValueError("frames_per_clip must be >= 1")
        if not 0 <= self.other_videos <= len(layout.OTHER_IDS):
            raise ValueError(f"other_videos must be in [0, {len(layout.OTHER_IDS)}]")
        if min(self.rest_clips_per_video, self.clips_per_other_video) < 0:
            raise ValueError("clip counts must be >= 0")
        if self.scale < 0 or self.um_per_px <= 0 or self.chamber_depth_um <= 0:
            raise ValueError("scale must be >= 0, um_per_px and chamber_depth_um > 0")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in [1, 100]")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")


def synth_config(section: dict) -> SynthConfig:
    """SynthConfig from params.yaml `synth:` (`frames_per_video: 0` = the real length)."""
    from visem_pl.tasks.workspace.params import build

    section = dict(section)
    if section.get("frames_per_video") == 0:
        section["frames_per_video"] = None
    return build(SynthConfig, section, "params.yaml synth")
