"""Time the synthetic twin: one real-size annotated video, and the default dataset.

.venv/bin/python benchmarks/bench_synth.py [--video 24] [--default]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from visem_pl.tasks.synth import SynthConfig, synthesize


def timed(cfg: SynthConfig) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        counts = synthesize(Path(tmp) / "out", cfg, progress=False)
        return time.perf_counter() - t0, counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", type=int, default=11, help="annotated id for the real-size run")
    ap.add_argument("--default", action="store_true", help="also time the default dataset")
    args = ap.parse_args()
    cfg = SynthConfig(videos=(args.video,), frames_per_video=None, rest_clips_per_video=0, other_videos=0, workers=1)
    secs, counts = timed(cfg)
    print(
        f"one real-size video {args.video}: {counts['images']} frames, "
        f"{sum(counts['boxes'].values())} boxes: {secs:.1f} s"
    )
    if args.default:
        secs, counts = timed(SynthConfig())
        print(f"default dataset: {counts['images']} images, {counts['clips']} clips: {secs:.1f} s")


if __name__ == "__main__":
    main()
