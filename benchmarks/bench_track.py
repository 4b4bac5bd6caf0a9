"""Compare the tracking methods of `track` on the synthetic twin, and time them on a real-size clip.

Protocol (fixed before choosing the default):

1. Tracker alone: a twin of `--clips` clips of `--frames` frames (seed 1) is written; every method
   is fed the truth boxes on every `stride`-th frame (strides 1 and 3, the default infer stride 3)
   and scored against the truth with HOTA, MOTA and IDF1 (`tasks/tracking/score.py`).
2. End to end, where the workspace it is run from has round-0 weights (`models/round-0/weights.pt`,
   e.g. after `make demo`): the same clips pseudo-labelled by our inference at stride 3, each
   method linking those boxes with the settings of params.yaml's `track` section, scored the same
   way. Without weights this part is skipped and the output says so.
3. Speed: one clip of 1,470 frames (a real 30 s clip) at about 22 boxes a frame (VISEM-Tracking's
   mean), truth boxes on every frame, each method timed at stride 1 and at stride 3 (best of `--repeat`).

trackpy runs twice, without and with its nearest-velocity predictor.

Each method runs with params.yaml's `track` settings (`min_length` 1 for the truth boxes: a track
of the tracker alone is never cut for being short).

    visem-pl bench track [--json] [--out FILE]        # or: .venv/bin/python benchmarks/bench_track.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from visem_pl.tasks.workspace import offline  # noqa: E402

offline.quiet_ultralytics(project_dir=REPO)

import pandas as pd  # noqa: E402

from visem_pl.tasks.dataset.reader import locate  # noqa: E402
from visem_pl.tasks.dataset.truth import truth_for  # noqa: E402
from visem_pl.tasks.synth.config import SynthConfig  # noqa: E402
from visem_pl.tasks.synth.generate import synthesize  # noqa: E402
from visem_pl.tasks.tracking.link import METHODS, TrackConfig, link  # noqa: E402, F401
from visem_pl.tasks.tracking.score import score, truth_boxes  # noqa: E402
from visem_pl.tasks.workspace.paths import Workspace  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def twin(root: Path, clips: int, frames: int, seed: int, scale: float = 1.0) -> dict[str, pd.DataFrame]:
    videos = tuple(range(11, 11 + clips))
    cfg = SynthConfig(seed=seed, videos=videos, frames_per_video=1, frames_per_clip=frames, rest_clips_per_video=1,
                      other_videos=0, workers=1, scale=scale)  # fmt: skip
    synthesize(root, cfg, progress=False)
    truth = truth_for(root)
    return {c.name: truth.clip(c.name) for c in locate(root).clips()}


def variants(cfg: TrackConfig) -> list[tuple[str, TrackConfig]]:
    """Every method with params.yaml's settings; trackpy both with and without its velocity predictor."""
    out = []
    for method in METHODS:
        if method == "trackpy":
            out += [("trackpy", replace(cfg, method=method, predictor=False)),
                    ("trackpy+predictor", replace(cfg, method=method, predictor=True))]  # fmt: skip
        else:
            out.append((method, replace(cfg, method=method)))
    return out


def tracker_alone(truths: dict, cfg: TrackConfig) -> list[dict]:
    rows = []
    for stride in (1, 3):
        for name, c in variants(cfg):
            c = replace(c, min_length=1)
            t0 = time.perf_counter()
            pairs = [(t, link(truth_boxes(t, stride), 640, 480, stride, c)) for t in truths.values()]
            rows.append({"method": name, "stride": stride, **score(pairs, stride),
                         "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip
            log(f"tracker alone, stride {stride}, {name}: {rows[-1]}")
    return rows


def end_to_end(root: Path, truths: dict, weights: Path, cfg: TrackConfig, base: Path) -> list[dict]:
    from visem_pl.tasks.inference.clips import InferConfig, infer_clips

    clips = locate(root).clips()
    preds = base / "predictions"
    icfg = InferConfig(stride=3)
    infer_clips(weights, clips, preds, icfg, progress=False, cache_dir=base / "exports")
    rows = []
    for method, c in variants(cfg):
        pairs = []
        for clip in clips:
            boxes = pd.read_parquet(preds / f"{clip.name}.parquet")
            pairs.append((truths[clip.name], link(boxes, 640, 480, icfg.stride, c)))
        rows.append({"method": method, "stride": icfg.stride, **score(pairs, icfg.stride)})
        log(f"end to end, stride 3, {method}: {rows[-1]}")
    return rows


def speed(root: Path, cfg: TrackConfig, repeat: int, frames: int) -> list[dict]:
    # scale 0.6: about 22 boxes a frame, VISEM-Tracking's mean (656,334 boxes / 29,196 frames)
    (t,) = twin(root, 1, frames, seed=2, scale=0.6).values()
    rows = []
    for stride in (1, 3):
        boxes = truth_boxes(t, stride)
        for method, c in variants(cfg):
            c = replace(c, min_length=1)
            best = min(_timed(link, boxes, 640, 480, stride, c) for _ in range(repeat))
            rows.append({"method": method, "stride": stride, "frames": int(boxes["frame"].nunique()),
                         "boxes_per_frame": round(len(boxes) / boxes["frame"].nunique(), 1),
                         "seconds": round(best, 3)})  # fmt: skip
            log(f"speed, stride {stride}, {method}: {rows[-1]}")
    return rows


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def table(result: dict) -> str:
    lines = ["| method | stride | input | HOTA | MOTA | IDF1 | ID switches |", "|---|---|---|---|---|---|---|"]
    for part, name in (("tracker_alone", "truth boxes"), ("end_to_end", "round-0 detections")):
        for r in result.get(part) or []:
            lines.append(f"| {r['method']} | {r['stride']} | {name} | {r['hota']} | {r['mota']} | {r['idf1']} | "
                         f"{r['id_switches']} |")  # fmt: skip
    lines += ["", "| method | stride | frames | boxes/frame | seconds |", "|---|---|---|---|---|"]
    for r in result["speed"]:
        lines.append(f"| {r['method']} | {r['stride']} | {r['frames']} | {r['boxes_per_frame']} | {r['seconds']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=300, help="frames per synthetic clip")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per speed measurement; the best is kept")
    ap.add_argument("--long-frames", type=int, default=1470, help="frames of the timed clip (a real one: 1,470)")
    ap.add_argument("--weights", type=Path, help="default: models/round-0/weights.pt of the current folder")
    ap.add_argument("--json", action="store_true", help="print the JSON result (only) on stdout")
    ap.add_argument("--out", type=Path, help="also write the JSON result to this file")
    args = ap.parse_args()

    ws = Workspace(Path.cwd())
    cfg = ws.section("track", TrackConfig) if ws.params_path.exists() else TrackConfig()
    weights = args.weights or ws.round(0).weights
    base = Path(tempfile.mkdtemp(prefix="bench-track-"))
    try:
        truths = twin(base / "twin", args.clips, args.frames, seed=1)
        result = {"settings": cfg.__dict__, "clips": args.clips, "frames_per_clip": args.frames}
        result["tracker_alone"] = tracker_alone(truths, cfg)
        if weights.exists():
            result["weights"] = str(weights)
            result["end_to_end"] = end_to_end(base / "twin", truths, weights, cfg, base)
        else:
            result["end_to_end"] = None
            result["note"] = f"no {weights}: end to end skipped (run it where `make demo` ran, or pass --weights)"
            log(result["note"])
        result["speed"] = speed(base / "long", cfg, args.repeat, args.long_frames)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text if args.json else table(result))


if __name__ == "__main__":
    main()
