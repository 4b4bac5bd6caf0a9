"""Benchmark the pseudo-labelling inference stage against the naive Ultralytics loop and the best
forward pass this machine reaches.

Protocol (fixed before tuning; every number from one process, interleaved round-robin, best of
`--repeat` for each):

1. naive: ``YOLO(weights).predict(source=clip.mp4, stream=True, imgsz=640)`` (PyTorch, as shipped,
   on the same device);
2. ours: ``infer_clips`` end to end (decode thread, the backend `infer: auto` chose by its trial,
   NMS, Parquet) with the round's defaults (backend, precision and batch auto); the export and the
   trial are done first and timed separately. Cold: the call loads (compiles) the backend, as the
   naive loop loads its model: ours/naive compares these two. Warm: the same call handed the
   chosen backend already loaded, as it runs through a round of hundreds of clips per load:
   ours/limit compares this one with the forward-only limit, which excludes loading too;
3. limit: the forward pass alone, on frames already decoded and letterboxed, for EVERY supported
   configuration of this machine (CPU: OpenVINO f32, bf16 where native, INT8 and INT8+bf16 where
   the INT8 model passed its fitness check, each at batch 1/2/4/8/16 and both stream settings, and
   PyTorch fp32; CUDA: PyTorch fp16/fp32 and ONNX Runtime where installed, at batch 8-64). The
   limit is the fastest of them all, so ours/limit cannot look good by sharing a slow choice.

Weights: `--weights`, else round 0's of the workspace it is run from (`models/round-0/weights.pt`
under the current folder, e.g. after `make demo`). Without them an untrained YOLOv8n is timed
and the output says, at its top and in the JSON (`"comparable": false`), that the numbers are
not comparable (random boxes make NMS dominate). INT8 calibration and its fitness check use the
workspace's labelled and validation frames (data/prepared/frames.csv) where they exist, else
the benchmark's own synthetic frames.

Extras (skipped with --no-extras): box agreement naive vs ours, stride vs recall against the
synthetic truth, validation-time throughput, peak RSS for a clip and a 3x longer one.

    visem-pl bench infer [--json] [--out FILE]      # or: .venv/bin/python benchmarks/bench_infer.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from visem_pl.tasks.workspace import offline  # noqa: E402

offline.quiet_ultralytics(project_dir=REPO)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from visem_pl.tasks.dataset.reader import locate  # noqa: E402
from visem_pl.tasks.inference import int8, tuning  # noqa: E402
from visem_pl.tasks.inference.backends import build_backend, export_openvino, predict_sources  # noqa: E402
from visem_pl.tasks.inference.clips import (  # noqa: E402
    META_KEY,
    InferConfig,
    choose_backend,
    file_sha256,
    infer_clips,
    iter_frames,
    read_predictions,
)
from visem_pl.tasks.workspace.device import pick_device  # noqa: E402
from visem_pl.tasks.workspace.paths import Workspace  # noqa: E402

CLIPS_PER_PASS = 502
FRAMES_PER_PASS = 738_000
BAND_LOW = 0.1  # the lowest review band: boxes below it are rejected by `filter` anyway


def vmhwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------------------- data


def make_data(base: Path, frames: int) -> dict:
    from visem_pl.tasks.synth import SynthConfig, synthesize

    root = base / "twin"
    synthesize(
        root,
        SynthConfig(
            seed=0,
            videos=(11,),
            frames_per_video=60,
            rest_clips_per_video=2,
            other_videos=2,
            frames_per_clip=frames,
            workers=2,
        ),
        progress=False,
    )
    long_root = base / "long"
    synthesize(
        long_root,
        SynthConfig(
            seed=1,
            videos=(11,),
            frames_per_video=1,
            rest_clips_per_video=1,
            other_videos=0,
            frames_per_clip=3 * frames,
            workers=1,
        ),
        progress=False,
    )
    return {"root": root, "long": long_root}


def get_weights(args, base: Path) -> tuple[Path, str, bool]:
    """(weights, what they are, whether the numbers are comparable with trained weights)."""
    if args.weights is not None:
        return args.weights, f"{args.weights} (given)", True
    trained = Workspace(Path.cwd()).round(0).weights
    if trained.exists():
        return trained, f"{trained} (round 0 of the workspace {Path.cwd()})", True
    from ultralytics import YOLO

    torch.manual_seed(0)
    path = base / "untrained.pt"
    YOLO(str(REPO / "models" / "yolov8n.yaml")).save(str(path))
    return path, f"UNTRAINED yolov8n ({trained} absent: run `make demo` first, or pass --weights)", False


def bench_int8_frames(data_root: Path) -> int8.Frames:
    """INT8 calibration and check frames: the workspace's (as `infer` uses them), else the twin's own."""
    from visem_pl.tasks.inference.stages import int8_frames

    ws = Workspace(Path.cwd())
    if (ws.prepared / "frames.csv").exists():
        return int8_frames(ws, 0)
    video = locate(data_root).videos[11]
    frames = video.labelled_frames()
    cut = (2 * len(frames)) // 3
    return int8.Frames(
        tuple(str(video.image_path(f)) for f in frames[:cut]),
        tuple((str(video.image_path(f)), str(video.label_path(f))) for f in frames[cut:]),
    )


# ---------------------------------------------------------------------------------------------- runs


def run_naive(weights, clips, cfg: InferConfig) -> tuple[float, dict]:
    from ultralytics import YOLO

    model = YOLO(str(weights))
    out, frames = {}, 0
    t0 = time.perf_counter()
    for clip in clips:
        boxes = []
        for index, res in enumerate(
            model.predict(
                source=str(clip.path),
                stream=True,
                imgsz=cfg.imgsz,
                conf=cfg.conf,
                iou=cfg.iou,
                max_det=cfg.max_det,
                vid_stride=cfg.stride,
                device=pick_device(cfg.device),
                verbose=False,
            )
        ):
            b = res.boxes.cpu()
            boxes.append((index * cfg.stride, b.xywhn.numpy(), b.cls.numpy(), b.conf.numpy()))
            frames += 1
        out[clip.name] = boxes
    return frames / (time.perf_counter() - t0), out


def run_ours(weights, clips, cfg: InferConfig, cache: Path, choice, backend=None) -> tuple[float, int, Path]:
    """`infer_clips` end to end; cold (it loads the backend) unless `backend` is the chosen one, loaded."""
    out = Path(tempfile.mkdtemp(prefix="ours-"))
    t0 = time.perf_counter()
    infer_clips(weights, clips, out, cfg, progress=False, cache_dir=cache, choice=choice, backend=backend)
    seconds = time.perf_counter() - t0
    frames = sum(json.loads(pq.read_schema(p).metadata[META_KEY])["frames_scored"] for p in out.glob("*.parquet"))
    return frames / seconds, frames, out


def ours_boxes(out: Path, cfg: InferConfig) -> dict:
    df = read_predictions(out)
    res = {}
    for clip, g in df.groupby("clip"):
        res[clip] = {
            f: (gg[["cx", "cy", "w", "h"]].to_numpy(np.float32), gg["cls"].to_numpy(), gg["conf"].to_numpy())
            for f, gg in g.groupby("frame")
        }
    return res


def predecode(clips, cfg: InferConfig, limit_frames: int, stride: int = 32) -> list[np.ndarray]:
    """Frames decoded and letterboxed once, as the pipeline hands them to a backend."""
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.checks import check_imgsz

    lb = LetterBox(check_imgsz(cfg.imgsz, stride=stride, min_dim=2), auto=True, stride=stride)
    imgs = []
    for clip in clips:
        for _, frame in iter_frames(clip.path, 1):
            imgs.append(lb(image=frame))
            if len(imgs) >= limit_frames:
                return imgs
    return imgs


def limit_grid(dev: str, choice) -> list[tuning.Config]:
    """Every supported configuration of this machine (see the module's docstring)."""
    qualified = tuning.qualified_xml(choice.int8) is not None
    from visem_pl.tasks.inference.backends import openvino_caps, openvino_version

    if dev == "cpu":
        stage = tuning.first_stage(
            "auto", "auto", 8, dev, openvino=openvino_version() is not None, bf16="BF16" in openvino_caps(),
            int8=qualified,
        )  # fmt: skip
        grid = []
        for c in stage:
            if c.kind == "openvino":
                grid += [replace(c, batch=b, streams=s) for b in tuning.CPU_BATCHES for s in tuning.STREAMS]
            else:
                grid += [replace(c, batch=b) for b in (1, 8)]
        return grid
    stage = tuning.first_stage("auto", "auto", 32, dev, False, False, False, tuning.onnxruntime_providers())
    return [replace(c, batch=b) for c in stage for b in tuning.CUDA_BATCHES]


# ---------------------------------------------------------------------------------------------- agreement / recall


def _xyxy(xywh: np.ndarray) -> torch.Tensor:
    from ultralytics.utils import ops

    return ops.xywh2xyxy(torch.from_numpy(np.asarray(xywh, np.float32).reshape(-1, 4)))


def agreement(ref: dict, got: dict, floor: float = 0.0) -> dict:
    """Share of reference boxes (conf >= floor) with a box of `got` at IoU >= 0.9, and the conf gap."""
    from ultralytics.utils.metrics import box_iou

    total = matched = 0
    gaps = []
    for clip, frames in ref.items():
        for index, xywh, _, conf in frames:
            keep = conf >= floor
            if not keep.any():
                continue
            g = got.get(clip, {}).get(index)
            total += int(keep.sum())
            if g is None or not len(g[0]):
                continue
            iou = box_iou(_xyxy(xywh[keep]), _xyxy(g[0])).max(1)
            ok = iou.values >= 0.9
            matched += int(ok.sum())
            gaps += list(np.abs(conf[keep][ok.numpy()] - g[2][iou.indices.numpy()[ok.numpy()]]))
    return {
        "reference_boxes": total,
        "matched_share": round(matched / max(total, 1), 5),
        "conf_gap_max": round(float(max(gaps, default=0)), 5),
        "conf_gap_p99": round(float(np.percentile(gaps, 99)) if gaps else 0.0, 5),
    }


def as_ref(boxes_by_clip: dict) -> dict:
    """ours_boxes() layout -> agreement()'s reference layout."""
    return {clip: [(f, *v) for f, v in sorted(frames.items())] for clip, frames in boxes_by_clip.items()}


def recall_vs_truth(root: Path, out: Path, stride: int) -> dict:
    """Class-agnostic, IoU >= 0.5 greedy one-to-one matching of predictions with conf >= 0.1."""
    from ultralytics.utils.metrics import box_iou

    pred = read_predictions(out)
    pred = pred[pred["conf"] >= BAND_LOW]
    tracks_total = tracks_hit = boxes_total = boxes_hit = 0
    for truth_file in sorted((root / "_truth" / "clips").glob("*.parquet")):
        truth = pd.read_parquet(truth_file)
        clip = truth_file.stem
        p = pred[pred["clip"] == clip]
        hit_tracks = set()
        scored = truth[truth["frame"] % stride == 0]
        for frame, t in scored.groupby("frame"):
            boxes_total += len(t)
            q = p[p["frame"] == frame]
            if not len(q):
                continue
            iou = box_iou(_xyxy(t[["cx", "cy", "w", "h"]].to_numpy()), _xyxy(q[["cx", "cy", "w", "h"]].to_numpy()))
            used = set()
            for ti in torch.argsort(iou.max(1).values, descending=True).tolist():
                order = torch.argsort(iou[ti], descending=True).tolist()
                for pj in order:
                    if iou[ti, pj] < 0.5:
                        break
                    if pj not in used:
                        used.add(pj)
                        boxes_hit += 1
                        hit_tracks.add(t["track_id"].iloc[ti])
                        break
        tracks = set(truth["track_id"])
        tracks_total += len(tracks)
        tracks_hit += len(hit_tracks)
    return {
        "stride": stride,
        "track_recall": round(tracks_hit / max(tracks_total, 1), 4),
        "box_recall_scored_frames": round(boxes_hit / max(boxes_total, 1), 4),
        "tracks": tracks_total,
        "truth_boxes_scored": boxes_total,
    }


# ---------------------------------------------------------------------------------------------- memory


def rss_child(args) -> None:
    """Subprocess: one measurement, prints {"vmhwm_kb": ...}."""
    tempfile.tempdir = str(args.cache.parent)  # the parent's scratch folder, removed at its end
    clips = locate(args.root).clips()
    cfg = InferConfig(stride=1, device=args.device)
    if args.mode == "ours":
        choice = tuning.Choice.from_record(json.loads(args.choice.read_text()))
        out = Path(tempfile.mkdtemp(prefix="rss-"))
        infer_clips(args.weights, clips, out, cfg, progress=False, cache_dir=args.cache, choice=choice)
    else:
        run_naive(args.weights, clips, cfg)
    print(json.dumps({"vmhwm_kb": vmhwm_kb(), "frames": sum(1 for c in clips for _ in iter_frames(c.path, 1))}))


def peak_rss(mode: str, root: Path, weights: Path, cache: Path, choice_file: Path, device: str) -> dict:
    cmd = [sys.executable, __file__, "--rss-child", mode, "--root", str(root), "--weights", str(weights)]
    cmd += ["--cache", str(cache), "--choice", str(choice_file), "--device", device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- validation


def validation(root: Path, weights: Path, cache: Path, repeat: int, choice, device: str) -> dict:
    """`evaluate` (PyTorch, as shipped) vs the same frames through the chosen backend and our pipeline."""
    import cv2

    from visem_pl.tasks.training.evaluate import EvalConfig, evaluate

    vdir = next(root.rglob("Train/11"))
    images = sorted((vdir / "images").glob("*.jpg"))[:60]
    labels = [vdir / "labels" / (p.stem + ".txt") for p in images]
    frames = pd.DataFrame(
        {"image": [str(p) for p in images], "label": [str(p) if p.exists() else None for p in labels]}
    )
    ecfg = EvalConfig(device=device, batch=choice.config.batch)
    backend = choice.load(weights, cache_dir=cache)
    source = [("val", lambda into=None: ((i, cv2.imread(p)) for i, p in enumerate(frames["image"])))]
    best_eval = best_ours = 0.0
    res = None
    for _ in range(repeat):
        res = evaluate(weights, frames, ecfg)
        best_eval = max(best_eval, res["frames_per_second"])
        t0 = time.perf_counter()
        list(predict_sources(backend, source, ecfg))
        best_ours = max(best_ours, len(frames) / (time.perf_counter() - t0))
    return {
        "frames": len(frames),
        "evaluate_fps_torch": round(best_eval, 2),
        "backend_fps_same_frames": round(best_ours, 2),
        "backend": backend.label,
        "ratio": round(best_ours / best_eval, 2),
        "evaluate_mAP50": round(res["overall"]["mAP50"], 4),
    }


# ---------------------------------------------------------------------------------------------- main


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=150, help="frames per synthetic clip")
    ap.add_argument("--timed-clips", type=int, default=4, help="clips in each timed throughput run")
    ap.add_argument("--weights", type=Path, help="default: models/round-0/weights.pt of the current folder")
    ap.add_argument("--device", default="auto", help="auto (first GPU, else CPU) | cpu | 0")
    ap.add_argument("--limit-seconds", type=float, default=1.0, help="timed seconds per limit configuration")
    ap.add_argument("--no-extras", action="store_true", help="skip agreement, stride, validation and memory")
    ap.add_argument("--json", action="store_true", help="print the JSON result (only) on stdout")
    ap.add_argument("--out", type=Path, help="also write the JSON result to this file")
    ap.add_argument("--rss-child", choices=["ours", "naive"])
    ap.add_argument("--root", type=Path)
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--choice", type=Path)
    args = ap.parse_args()
    if args.rss_child:
        args.mode = args.rss_child
        return rss_child(args)

    load_start = loadavg()
    base = Path(tempfile.mkdtemp(prefix="bench-infer-"))
    tempfile.tempdir = str(base)  # every scratch output below lives here; removed at the end
    try:
        result = run(args, base, load_start)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print(table(result))


def run(args, base: Path, load_start: list[float]) -> dict:
    dev = pick_device(args.device)
    data = make_data(base, args.frames)
    weights, weights_note, comparable = get_weights(args, base)
    if not comparable:
        log(f"NOT COMPARABLE: {weights_note}")
    cache = base / "exports"
    clips = locate(data["root"]).clips()
    timed = clips[: args.timed_clips]
    cfg = InferConfig(stride=1, device=dev)  # backend, precision and batch: auto, as params.yaml ships them
    sha = file_sha256(weights)

    export = {}
    if dev == "cpu":
        t0 = time.perf_counter()
        _, exported = export_openvino(weights, sha, cache)
        export = {"seconds_first": round(time.perf_counter() - t0, 2), "exported": exported}
        t0 = time.perf_counter()
        export_openvino(weights, sha, cache)
        export["seconds_cached"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    choice = choose_backend(weights, timed, cfg, cache, sha, int8_frames=bench_int8_frames(data["root"]))
    trial_s = time.perf_counter() - t0
    log(f"auto chose {choice.label} in {trial_s:.1f} s (INT8 check: {choice.int8})")
    choice_file = base / "choice.json"
    choice_file.write_text(json.dumps(choice.record()))

    frames = predecode(timed, cfg, 96)
    grid = limit_grid(dev, choice)
    int8_xml = tuning.qualified_xml(choice.int8)
    built = []
    for c in grid:
        try:
            built.append((c, build_backend(c, weights, sha, cache, int8_xml=int8_xml, fallback=False)))
        except Exception as exc:  # noqa: BLE001 - a configuration this machine cannot run is not a limit
            log(f"limit: {c.label()} cannot run here ({type(exc).__name__}: {exc})")
    chosen = choice.load(weights, sha, cache)
    tuning.time_forward(chosen, tuning.batches_of(frames, choice.config.batch), 0.2)  # its requests warmed up
    limits: dict[str, float] = {}
    naive_fps = ours_fps = ours3_fps = warm_fps = 0.0
    naive_out = ours_dir = None
    per_rep = []
    for rep in range(args.repeat):
        nf, naive_out = run_naive(weights, timed, cfg)
        of, _, ours_dir = run_ours(weights, timed, cfg, cache, choice)
        wf, _, _ = run_ours(weights, timed, cfg, cache, choice, backend=chosen)
        rep_limits = {}
        for c, backend in built:
            fps = tuning.time_forward(backend, tuning.batches_of(frames, c.batch), args.limit_seconds)
            rep_limits[c.label()] = fps
            limits[c.label()] = max(limits.get(c.label(), 0.0), fps)
        o3, _, _ = run_ours(weights, timed, replace(cfg, stride=3), cache, choice)
        best = max(rep_limits, key=rep_limits.get)
        per_rep.append(
            {
                "naive": round(nf, 2),
                "ours": round(of, 2),
                "ours_warm": round(wf, 2),
                "limit": round(rep_limits[best], 2),
                "limit_config": best,
                "ours_stride3_scored": round(o3, 2),
                "load": loadavg(),
            }
        )
        log(f"repeat {rep + 1}/{args.repeat}: {json.dumps(per_rep[-1])}")
        naive_fps, ours_fps, ours3_fps = max(naive_fps, nf), max(ours_fps, of), max(ours3_fps, o3)
        warm_fps = max(warm_fps, wf)
    limit_label = max(limits, key=limits.get)
    limit = limits[limit_label]

    result = {
        "comparable": comparable,
        "machine": {**tuning.machine(), "load_at_start": load_start, "load_at_end": loadavg()},
        "device": dev,
        "weights": weights_note,
        "clips": {"timed": [c.name for c in timed], "frames_per_clip": args.frames, "all": len(clips)},
        "export": export,
        "chosen": {"label": choice.label, "config": choice.record()["config"], "trial_seconds": round(trial_s, 1)},
        "trial": [{"label": r["label"], "fps": r["fps"]} for r in choice.trials],
        "int8": choice.int8,
        "throughput_fps": {
            "naive": round(naive_fps, 2),
            "ours": round(ours_fps, 2),
            "ours_warm": round(warm_fps, 2),
            "limit": round(limit, 2),
            "limit_config": limit_label,
            "ours_stride3_scored_frames": round(ours3_fps, 2),
        },
        "ratios": {
            "ours_over_naive": round(ours_fps / naive_fps, 2),
            "ours_over_limit": round(warm_fps / limit, 3),
            "ours_cold_over_limit": round(ours_fps / limit, 3),
        },
        "limits": dict(sorted(((k, round(v, 2)) for k, v in limits.items()), key=lambda kv: -kv[1])),
        "repeats": per_rep,
        "projection_502_clips": {
            "frames_per_pass": FRAMES_PER_PASS,
            "default_stride": 3,
            "hours_ours_stride3": round(FRAMES_PER_PASS / 3 / ours3_fps / 3600, 2),
            "hours_naive_stride1": round(FRAMES_PER_PASS / naive_fps / 3600, 2),
        },
    }
    if not args.no_extras:
        result.update(extras(args, data, weights, cache, choice, choice_file, naive_out, ours_dir, cfg, dev))
    return result


def extras(args, data, weights, cache, choice, choice_file, naive_out, ours_dir, cfg, dev) -> dict:
    ours_b = ours_boxes(ours_dir, cfg)
    agree = {"all_boxes": agreement(naive_out, ours_b), f"conf_ge_{BAND_LOW}": agreement(naive_out, ours_b, BAND_LOW)}
    clips = locate(data["root"]).clips()
    strides = []
    for stride in (1, 2, 3, 5):
        fps, scored, out = run_ours(weights, clips, replace(cfg, stride=stride), cache, choice)
        video_frames = sum(1 for c in clips for _ in iter_frames(c.path, 1)) if stride == 1 else strides[0]["scored"]
        strides.append(
            {
                **recall_vs_truth(data["root"], out, stride),
                "scored": scored,
                "scored_fps": round(fps, 2),
                "video_frames_per_s": round(fps * video_frames / scored, 2),
            }
        )
    val = validation(data["root"], weights, cache, max(1, args.repeat - 1), choice, dev)
    from visem_pl.tasks.synth import SynthConfig, synthesize

    short_root = data["root"].parent / "short"
    synthesize(
        short_root,
        SynthConfig(
            seed=1,
            videos=(11,),
            frames_per_video=1,
            rest_clips_per_video=1,
            other_videos=0,
            frames_per_clip=args.frames,
            workers=1,
        ),
        progress=False,
    )
    mem = {"short_frames": args.frames, "long_frames": 3 * args.frames}
    for mode in ("ours", "naive"):
        s = peak_rss(mode, short_root, weights, cache, choice_file, dev)
        lo = peak_rss(mode, data["long"], weights, cache, choice_file, dev)
        mem[mode] = {
            "short_vmhwm_mib": round(s["vmhwm_kb"] / 1024, 1),
            "long_vmhwm_mib": round(lo["vmhwm_kb"] / 1024, 1),
            "long_over_short": round(lo["vmhwm_kb"] / s["vmhwm_kb"], 3),
        }
    return {"agreement_naive_vs_ours": agree, "stride_vs_recall": strides, "validation": val, "peak_memory": mem}


def table(r: dict) -> str:
    t, ra, m = r["throughput_fps"], r["ratios"], r["machine"]
    lines = []
    if not r["comparable"]:
        lines += [f"**NOT COMPARABLE**: {r['weights']}", ""]
    lines += [
        f"Machine: {m['cpu']}, {m['cores']} cores, flags {' '.join(m['flags']) or '-'}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + f"; device {r['device']}; weights: {r['weights']}",
        "",
        "| measure | frames/s |",
        "|---|---|",
        f"| naive `YOLO.predict(source=mp4, stream=True)` (PyTorch) | {t['naive']} |",
        f"| ours `infer_clips`, auto chose `{r['chosen']['label']}`, stride 1, cold (loads it) | {t['ours']} |",
        f"| ours, the same call with the chosen backend already loaded (warm) | {t['ours_warm']} |",
        f"| forward limit: fastest of {len(r['limits'])} configurations (`{t['limit_config']}`) | {t['limit']} |",
        f"| ours / naive | {ra['ours_over_naive']}x |",
        f"| ours (warm) / limit | {ra['ours_over_limit']} |",
    ]
    if "stride_vs_recall" in r:
        lines += [
            "",
            "| stride | track recall | box recall (scored frames) | scored frames/s | video frames/s |",
            "|---|---|---|---|---|",
        ]
        for s in r["stride_vs_recall"]:
            lines.append(
                f"| {s['stride']} | {s['track_recall']} | {s['box_recall_scored_frames']} | {s['scored_fps']} | "
                f"{s['video_frames_per_s']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
