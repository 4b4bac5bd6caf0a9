"""Does a real-size round fit? Every post-inference stage of one round over N clips of real length.

Protocol (fixed on 2026-12-04 before any stage was changed against it; docs/BENCHMARKS.md):

- Dataset: a synthetic twin in the real layout (params.yaml `synth` otherwise): annotated videos 11
  (training) and 52 (validation) of real length, 1,470 frames, and one unlabelled clip of real
  length (1,470 frames). The N clips of a size are N names of the real 'other' folder
  (`<id>_<start>_<stop>.mp4`, 65 ids x 30 s steps), each a link to that clip and its truth: the
  stages read and decode N real-length files, the disk holds one.
- Round 0's predictions, without the detector: for each clip at params.yaml's infer stride (3: 490
  scored frames), each true box is detected with probability 0.92, moved by 0.8 px and resized by
  5 % (normal noise), with a confidence drawn from Beta(3, 2); plus Poisson(4) false boxes a frame
  anywhere, confidence Beta(1, 6): every band gets boxes. Each clip draws from its own stream (seed,
  clip index). The validation video's predictions the same way from its truth. The files are exactly
  what `infer` writes (its fingerprint metadata, so `infer` would find them done), with infer.json.
  Where params.yaml sets `motility.window_s` (added 2026-12-06, with motility's window), each clip's
  window is drawn the same way at every frame (5 s: 250 frames), as `infer` writes it.
- Stages, each as `dvc repro` runs it (its `visem-pl` command in a subprocess, in the workspace,
  params.yaml's settings otherwise): track, motility, filter (with the review queue), review answer
  (the simulated expert), merge, quality, review export (Label Studio), crops (the next round's
  training input: `train.crops` + `train.val_crops` crops cut from the merged set, what `train` does
  before it fits) and report.
- Per stage: wall seconds; peak resident memory of its process (wait4); bytes added under its
  DVC-cached outputs (dvc.yaml `outs`: what DVC copies into its cache; metrics and the git-tracked
  queue store are not counted). Goals at 502 clips (issue 14): all stages <= 20 min, peak <= 4 GB,
  <= 2 GB of new DVC-tracked data, cost linear in clips.

Everything lands under `--workdir` (default .cache/bench-scale); the twin is built once, each size's
workspace anew.

    visem-pl bench scale [--clips 50 150 502] [--json]     # or .venv/bin/python benchmarks/bench_scale.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# This process starts every measured stage, and a child's peak memory counts the parent's pages it was
# forked with: only light modules here (13 MB); the workspace is built in a child (`--build`).
import yaml  # noqa: E402

from visem_pl.tasks.dataset import layout  # noqa: E402
from visem_pl.tasks.workspace.offline import OFFLINE_ENV  # noqa: E402

BIN = Path(sys.executable).parent
TRAIN_VIDEO, VAL_VIDEO = 11, 52
BASE_CLIP = Path(layout.clip_name(TRAIN_VIDEO, 30, 60)).stem
BACKEND = "bench-scale/synthetic-detections"
ROUND = 0
# (name, command) in dvc.yaml's order; `dvc` names the dvc.yaml stage whose cached outs are counted.
STAGES = [
    ("track", ["visem-pl", "track"], "track"),
    ("motility", ["visem-pl", "motility"], "motility"),
    ("filter", ["visem-pl", "filter"], "filter"),
    ("review answer", ["visem-pl", "review", "answer"], "review"),
    ("merge", ["visem-pl", "merge"], "merge"),
    ("quality", ["visem-pl", "quality"], "quality"),
    ("review export", ["visem-pl", "review", "export", "--format", "labelstudio"], None),
    ("crops", None, None),
    ("report", ["visem-pl", "report", "--out", "metrics/report.json"], None),
]
CROPS = """
import sys, pandas as pd
from pathlib import Path
from visem_pl.tasks.training.train import TrainConfig, fine_tune, training_crops
from visem_pl.tasks.workspace.paths import Workspace
ws = Workspace(Path("."), "params.yaml")
cfg = fine_tune(ws.section("train", TrainConfig, drop=("restart_each_round",)))
frames = pd.read_csv(ws.round(1).training_frames())
train, val = training_crops(frames, Path(".cache/bench-scale-crops"), cfg)
print(len(frames), len(train), len(val))
"""


def log(msg: str) -> None:
    print(f"[bench scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def base_twin(work: Path, params: dict, frames: int) -> Path:
    """The real-length twin every size links to (built once per length)."""
    from visem_pl.tasks.synth.config import synth_config
    from visem_pl.tasks.synth.generate import synthesize

    root, done = work / f"twin-{frames}", work / f"twin-{frames}.done"
    if not done.exists():
        section = {**(params.get("synth") or {}), "videos": [TRAIN_VIDEO, VAL_VIDEO], "frames_per_video": frames,
                   "rest_clips_per_video": 1, "other_videos": 0, "frames_per_clip": frames}  # fmt: skip
        log(f"writing the twin (2 videos, 1 clip, {frames} frames each)")
        synthesize(root, synth_config(section), progress=False, overwrite=True)
        done.write_text("ok\n")
    return root


def clip_names(n: int) -> list[str]:
    """N names of the real 'other' folder: each id's 30 s clips in turn."""
    ids = layout.OTHER_IDS
    return [Path(layout.clip_name(ids[i % len(ids)], 30 * (i // len(ids)), 30 * (i // len(ids)) + 30)).stem
            for i in range(n)]  # fmt: skip


def linked_twin(base: Path, root: Path, names: list[str]) -> None:
    """`root`: the base twin's videos and CSVs, and `names` as clips, every one a link to the base clip."""
    from visem_pl.tasks.dataset.reader import locate

    root.mkdir(parents=True)
    for entry in base.iterdir():
        if entry.name not in (layout.CLIPS_OTHER_DIR, layout.CLIPS_REST_DIR, layout.TRUTH_DIR):
            (root / entry.name).symlink_to(entry.resolve())
    src = locate(base).clips()[0]
    assert src.name == BASE_CLIP, src.name
    clips = root / layout.CLIPS_OTHER_DIR / layout.CLIPS_OTHER_DIR
    clips.mkdir(parents=True)
    (root / layout.CLIPS_REST_DIR / layout.CLIPS_REST_DIR).mkdir(parents=True)
    truth = root / layout.TRUTH_DIR
    (truth / "clips").mkdir(parents=True)
    for entry in (base / layout.TRUTH_DIR).iterdir():
        if entry.name != "clips":
            (truth / entry.name).symlink_to(entry.resolve())
    base_truth = (base / layout.TRUTH_DIR / "clips" / f"{BASE_CLIP}.parquet").resolve()
    for name in names:
        (clips / f"{name}.mp4").symlink_to(src.path.resolve())
        (truth / "clips" / f"{name}.parquet").symlink_to(base_truth)


def detections(truth, frames: int, stride: int, rng) -> dict:
    """Round 0's boxes as the protocol draws them, from one clip's truth (cx, cy, w, h normalised)."""
    import numpy as np

    t = truth[truth["frame"] % stride == 0]
    t = t[t["frame"] < frames]
    hit = t[rng.random(len(t)) < 0.92]
    k = len(hit)
    cx = hit["cx"].to_numpy() + rng.normal(0, 0.8, k) / layout.IMAGE_WIDTH
    cy = hit["cy"].to_numpy() + rng.normal(0, 0.8, k) / layout.IMAGE_HEIGHT
    w = hit["w"].to_numpy() * np.exp(rng.normal(0, 0.05, k))
    h = hit["h"].to_numpy() * np.exp(rng.normal(0, 0.05, k))
    scored = np.arange(0, frames, stride)
    n_false = rng.poisson(4, len(scored))
    m = int(n_false.sum())
    cols = {
        "frame": np.concatenate([hit["frame"].to_numpy(), np.repeat(scored, n_false)]),
        "cls": np.concatenate([hit["class"].to_numpy(), rng.choice(3, m, p=[0.8, 0.1, 0.1])]),
        "cx": np.concatenate([cx, rng.uniform(0.02, 0.98, m)]),
        "cy": np.concatenate([cy, rng.uniform(0.02, 0.98, m)]),
        "w": np.concatenate([w, rng.uniform(18, 30, m) / layout.IMAGE_WIDTH]),
        "h": np.concatenate([h, rng.uniform(18, 30, m) / layout.IMAGE_HEIGHT]),
        "conf": np.concatenate([rng.beta(3, 2, k), rng.beta(1, 6, m)]),
    }
    # Clipped to the image, as the detector's boxes are.
    for c, size in (("cx", "w"), ("cy", "h")):
        lo, hi = np.clip(cols[c] - cols[size] / 2, 0, 1), np.clip(cols[c] + cols[size] / 2, 0, 1)
        cols[c], cols[size] = (lo + hi) / 2, hi - lo
    order = np.argsort(cols["frame"], kind="stable")
    return {k: v[order] for k, v in cols.items()}


def frame_count(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()


def write_predictions(out: Path, clip, cols: dict, frames: int, cfg, model_sha: str) -> int:
    """One clip's file exactly as `infer` writes it (SCHEMA, its fingerprint metadata)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from visem_pl.tasks.inference.clips import META_KEY, SCHEMA, fingerprint

    n = len(cols["frame"])
    table = pa.table(
        {"clip": [clip.name] * n, "frame": cols["frame"].astype(np.int32), "cls": cols["cls"].astype(np.int8),
         **{k: cols[k].astype(np.float32) for k in ("cx", "cy", "w", "h", "conf")}},
        schema=SCHEMA,
    )  # fmt: skip
    meta = {
        **fingerprint(model_sha, cfg, clip, BACKEND),
        "boxes": n,
        "frames_scored": len(range(0, frames, cfg.stride)),
    }
    pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()}), out / f"{clip.name}.parquet")
    return n


def workspace(base: Path, folder: Path, n: int, params: dict, seed: int) -> dict:
    """A project folder where round 0 has just been inferred over n clips (predictions drawn)."""
    import numpy as np
    import pandas as pd
    from ultralytics import YOLO

    from visem_pl.tasks.dataset.reader import locate, probe_video
    from visem_pl.tasks.dataset.truth import truth_for
    from visem_pl.tasks.inference.stages import infer_config, motility_window
    from visem_pl.tasks.workspace.io import file_sha256, write_json
    from visem_pl.tasks.workspace.paths import Workspace

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    names = clip_names(n)
    linked_twin(base, folder / "data" / "twin", names)
    params = {**params, "data": {**params.get("data", {}), "root": "data/twin"},
              "split": {"val_ids": [VAL_VIDEO], "train_ids": None}}  # fmt: skip
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(REPO / "dvc.yaml", folder / "dvc.yaml")
    run(["visem-pl", "prepare", "--params", "params.yaml"], folder, folder / "prepare.log")  # not measured
    ws = Workspace(folder, "params.yaml")
    paths = ws.round(ROUND)
    paths.model_dir.mkdir(parents=True)
    YOLO(str(REPO / "models" / "yolov8n.yaml")).save(str(paths.weights))  # identifies the round; never run
    model_sha = file_sha256(paths.weights)
    cfg = infer_config(ws)
    base_truth = truth_for(base).clip(BASE_CLIP)
    frames = frame_count(locate(base).clips()[0].path)
    paths.predictions.mkdir(parents=True)
    paths.validation_predictions.mkdir(parents=True)
    boxes = 0
    for i, clip in enumerate(sorted(ws.clips(), key=lambda c: c.name)):
        cols = detections(base_truth, frames, cfg.stride, np.random.default_rng([seed, i]))
        boxes += write_predictions(paths.predictions, clip, cols, frames, cfg, model_sha)
    window = motility_window(ws)
    paths.motility_predictions.mkdir(parents=True)
    if window is not None:  # each clip's motility window at every frame, drawn the same way
        fps = probe_video(locate(base).clips()[0].path).fps
        span = frames if window == 0 else min(frames, int(round(window * fps)))
        window_cfg = replace(cfg, stride=1, window_s=window)
        for i, clip in enumerate(sorted(ws.clips(), key=lambda c: c.name)):
            cols = detections(base_truth, span, 1, np.random.default_rng([seed, i, 1]))
            write_predictions(paths.motility_predictions, clip, cols, span, window_cfg, model_sha)
    for clip in ws.validation_clips():
        video_truth = pd.read_parquet(ws.data_root() / layout.TRUTH_DIR / "videos" / f"{clip.name}.parquet")
        length = frame_count(clip.path)
        cols = detections(video_truth, length, cfg.stride, np.random.default_rng([seed, 10**6]))
        write_predictions(paths.validation_predictions, clip, cols, length, cfg, model_sha)
    record = {"clips": n, "skipped": 0, "predicted": n, "boxes": boxes, "backend": {"label": BACKEND},
              "computed_from": ws.computed_from(ROUND)}  # fmt: skip
    write_json(paths.metrics / "infer.json", record)
    return {"frames_per_clip": frames, "scored_frames": n * len(range(0, frames, cfg.stride)), "boxes": boxes}


def run(argv: list[str], cwd: Path, log_file: Path) -> dict:
    """Run one command to its end; its seconds and peak resident memory (wait4: this process alone)."""
    argv = [str(BIN / argv[0]), *argv[1:]] if argv[0] == "visem-pl" else argv
    env = {**os.environ, **OFFLINE_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    with open(log_file, "w") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = log_file.read_text()[-3000:]
        raise SystemExit(f"{' '.join(map(str, argv))} failed (exit {proc.returncode}) in {cwd}:\n{tail}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def cached_outs(stage: str | None) -> list[str]:
    """The DVC-cached outputs of a dvc.yaml stage for this round (not metrics, not cache: false)."""
    if stage is None:
        return []
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    spec = spec.get("do", spec)
    outs = []
    for out in spec.get("outs") or []:
        path, opts = (out, {}) if isinstance(out, str) else next(iter(out.items()))
        if opts.get("cache", True):
            outs.append(path.replace("${item}", str(ROUND)))
    return outs


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) if path.exists() else 0


def build(args) -> None:
    """`--build N` (a child process): the twin once, then size N's workspace; prints what it built."""
    work = Path(args.workdir).resolve()
    params = yaml.safe_load(Path(args.params or REPO / "params.yaml").read_text())
    base = base_twin(work, params, args.frames)
    print(json.dumps(workspace(base, work / f"clips-{args.build}", args.build, params, args.seed)))


def measure(work: Path, n: int, args) -> dict:
    folder = work / f"clips-{n}"
    log(f"{n} clips: building the workspace (predictions drawn, no detector)")
    argv = [sys.executable, __file__, "--build", str(n), "--workdir", str(work), "--seed", str(args.seed)]
    argv += ["--frames", str(args.frames)]
    argv += ["--params", str(Path(args.params).resolve())] if args.params else []
    env = {**os.environ, **OFFLINE_ENV}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"building the {n}-clip workspace failed:\n{proc.stderr[-3000:]}")
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    stages = {}
    for name, argv, dvc_stage in STAGES:
        outs = cached_outs(dvc_stage)
        before = sum(tree_bytes(folder / o) for o in outs)
        log_file = folder / f"{name.replace(' ', '-')}.log"
        if argv is None:  # crops: the next round's training input
            result = run([sys.executable, "-c", CROPS], folder, log_file)
        else:
            round_arg = [] if name == "report" else ["--round", str(ROUND), "--params", "params.yaml"]
            result = run([*argv, *round_arg], folder, log_file)
        result["dvc_bytes_added"] = sum(tree_bytes(folder / o) for o in outs) - before
        stages[name] = result
        log(f"{n} clips: {name} {result['seconds']:.1f} s, {result['peak_rss_mb']:.0f} MB, "
            f"{result['dvc_bytes_added'] / 1e6:.1f} MB added")  # fmt: skip
    merged = json.loads((folder / "data" / "rounds" / f"round-{ROUND}" / "merged" / "stats.json").read_text())
    return {
        "clips": n,
        **built,
        "merged_frames": merged["frames"],
        "stages": stages,
        "total_seconds": round(sum(s["seconds"] for s in stages.values()), 2),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
        "dvc_bytes_added": sum(s["dvc_bytes_added"] for s in stages.values()),
    }


def table(results: list[dict]) -> str:
    names = list(results[0]["stages"])
    head = "stage | " + " | ".join(f"{r['clips']} clips: s / MB / MB added" for r in results)
    rows = [head, "---"]
    for name in names:
        cells = [f"{r['stages'][name]['seconds']:.1f} / {r['stages'][name]['peak_rss_mb']:.0f} / "
                 f"{r['stages'][name]['dvc_bytes_added'] / 1e6:.1f}" for r in results]  # fmt: skip
        rows.append(f"{name} | " + " | ".join(cells))
    rows.append("all | " + " | ".join(f"{r['total_seconds']:.1f} / {r['peak_rss_mb']:.0f} / "
                                      f"{r['dvc_bytes_added'] / 1e6:.1f}" for r in results))  # fmt: skip
    rows.append("scored frames, boxes | " + " | ".join(f"{r['scored_frames']:,}, {r['boxes']:,}" for r in results))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict | list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[50, 150, 502], help="sizes, in clips")
    parser.add_argument("--workdir", default=str(REPO / ".cache" / "bench-scale"))
    parser.add_argument("--params", default=None, help="params.yaml (default: the project's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=1470, help="frames of each video and clip (1,470: real)")
    parser.add_argument("--json", action="store_true", help="print the JSON result (only) on stdout")
    parser.add_argument("--out", default=None, help="also write the JSON result to this file")
    parser.add_argument("--build", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build is not None:
        return build(args)
    if min(args.clips) < 1 or args.frames < 10:
        parser.error("--clips: sizes must be >= 1; --frames: at least 10")
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = [measure(work, n, args) for n in args.clips]
    result = results[0] if len(results) == 1 else results
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else table(results))
    return result


if __name__ == "__main__":
    main()
