"""Benchmark the pseudo-labelling inference stage against the naive Ultralytics loop.

On the same synthetic clips and the same weights, in one process, interleaved (round-robin,
best of `--repeat`), it measures:

1. naive: ``YOLO(weights).predict(source=clip.mp4, stream=True, imgsz=640)`` (PyTorch, as shipped);
2. ours: ``visem_pl.tasks.inference.clips.infer_clips`` end to end (decode thread, OpenVINO, NMS, Parquet), the
   export already cached (its one-off cost is reported separately);
3. limit: the forward pass alone on pre-decoded, pre-letterboxed batches through the same
   backend (same compiled model, same batch size, same number of requests in flight); also the
   plain fp32-input model fed pre-normalised tensors; the faster of the two is the limit.

Also: box agreement naive vs ours (IoU >= 0.9 matching; the OpenVINO f32 variant too), the
frame stride's effect on recall against the synthetic truth, validation-time throughput
(`tasks/training/evaluate.py` vs the same frames through the backend), and peak RSS (VmHWM, one
subprocess per measurement) for a clip and a 3x longer one.

Writes JSON to `metrics/bench_infer.json` and prints a Markdown table.

    .venv/bin/python benchmarks/bench_infer.py [--repeat 3] [--frames 150] [--out metrics/bench_infer.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
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
from visem_pl.tasks.inference.backends import (  # noqa: E402
    OpenVINOBackend,
    export_openvino,
    load_backend,
    predict_sources,
    to_float_nchw,
)
from visem_pl.tasks.inference.clips import (  # noqa: E402
    META_KEY,
    InferConfig,
    file_sha256,
    infer_clips,
    iter_frames,
    read_predictions,
)

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


def get_weights(base: Path) -> tuple[Path, str]:
    trained = REPO / "models" / "round-0" / "weights.pt"
    if trained.exists():
        return trained, "models/round-0/weights.pt (the demo's round-0 model, trained on the synthetic twin)"
    from ultralytics import YOLO

    torch.manual_seed(0)
    path = base / "untrained.pt"
    YOLO(str(REPO / "models" / "yolov8n.yaml")).save(str(path))
    return path, "UNTRAINED yolov8n (models/round-0/weights.pt absent): boxes are not realistic"


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
                device="cpu",
                verbose=False,
            )
        ):
            boxes.append((index * cfg.stride, res.boxes.xywhn.numpy(), res.boxes.cls.numpy(), res.boxes.conf.numpy()))
            frames += 1
        out[clip.name] = boxes
    return frames / (time.perf_counter() - t0), out


def run_ours(weights, clips, cfg: InferConfig, cache: Path) -> tuple[float, int, Path]:
    out = Path(tempfile.mkdtemp(prefix="ours-"))
    t0 = time.perf_counter()
    infer_clips(weights, clips, out, cfg, progress=False, cache_dir=cache)
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


def predecode(clips, backend, cfg: InferConfig, limit_frames: int) -> list[np.ndarray]:
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.checks import check_imgsz

    lb = LetterBox(check_imgsz(cfg.imgsz, stride=backend.stride, min_dim=2), auto=True, stride=backend.stride)
    imgs = []
    for clip in clips:
        for _, frame in iter_frames(clip.path, 1):
            imgs.append(lb(image=frame))
            if len(imgs) >= limit_frames:
                break
        if len(imgs) >= limit_frames:
            break
    return [np.stack(imgs[i : i + cfg.batch]) for i in range(0, len(imgs) - cfg.batch + 1, cfg.batch)]


def run_limit(backend, batches: list[np.ndarray]) -> float:
    """Forward only: same submit/wait ping-pong over the backend's slots, no decode, no NMS."""
    inflight, slot = [], 0
    t0 = time.perf_counter()
    for arr in batches:
        if len(inflight) == backend.slots:
            backend.wait(inflight.pop(0))
        backend.submit(slot, arr)
        inflight.append(slot)
        slot = (slot + 1) % backend.slots
    for s in inflight:
        backend.wait(s)
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


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
    cfg = InferConfig(stride=1, device="cpu")
    if args.mode == "ours":
        infer_clips(
            args.weights, clips, Path(tempfile.mkdtemp(prefix="rss-")), cfg, progress=False, cache_dir=args.cache
        )
    else:
        run_naive(args.weights, clips, cfg)
    print(json.dumps({"vmhwm_kb": vmhwm_kb(), "frames": sum(1 for c in clips for _ in iter_frames(c.path, 1))}))


def peak_rss(mode: str, root: Path, weights: Path, cache: Path) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--rss-child",
            mode,
            "--root",
            str(root),
            "--weights",
            str(weights),
            "--cache",
            str(cache),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- validation


def validation(root: Path, weights: Path, cache: Path, repeat: int) -> dict:
    from visem_pl.tasks.training.evaluate import EvalConfig, evaluate

    vdir = next(root.rglob("Train/11"))
    images = sorted((vdir / "images").glob("*.jpg"))[:60]
    labels = [vdir / "labels" / (p.stem + ".txt") for p in images]
    frames = pd.DataFrame(
        {"image": [str(p) for p in images], "label": [str(p) if p.exists() else None for p in labels]}
    )
    ecfg = EvalConfig(device="cpu")
    backend = load_backend(weights, "auto", "cpu", cache_dir=cache)
    import cv2

    source = [("val", lambda: ((i, cv2.imread(p)) for i, p in enumerate(frames["image"])))]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=150, help="frames per synthetic clip")
    ap.add_argument("--timed-clips", type=int, default=2, help="clips in each timed throughput run")
    ap.add_argument("--out", type=Path, default=REPO / "metrics" / "bench_infer.json")
    ap.add_argument("--rss-child", choices=["ours", "naive"])
    ap.add_argument("--root", type=Path)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--cache", type=Path)
    args = ap.parse_args()
    if args.rss_child:
        args.mode = args.rss_child
        return rss_child(args)

    load_start = loadavg()
    base = Path(tempfile.mkdtemp(prefix="bench-infer-"))
    tempfile.tempdir = str(base)  # every scratch output below lives here; removed at the end
    try:
        run(args, base, load_start)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(args, base: Path, load_start: list[float]) -> None:
    data = make_data(base, args.frames)
    weights, weights_note = get_weights(base)
    cache = base / "exports"
    clips = locate(data["root"]).clips()
    timed = clips[: args.timed_clips]
    cfg = InferConfig(stride=1, device="cpu")

    t0 = time.perf_counter()
    xml, exported = export_openvino(weights, file_sha256(weights), cache)
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    export_openvino(weights, file_sha256(weights), cache)
    cached_s = time.perf_counter() - t0

    backend = OpenVINOBackend(xml)
    plain = OpenVINOBackend(xml, preprocess_in_graph=False)
    batches = predecode(timed, backend, cfg, 96)
    float_batches = [to_float_nchw(b) for b in batches]

    class _Pre:  # the plain model fed tensors already normalised (pre-processing excluded entirely)
        slots, stride = plain.slots, plain.stride

        @staticmethod
        def submit(slot, arr):
            plain._keep[slot] = arr
            plain.requests[slot].start_async({0: arr}, share_inputs=True)

        wait = staticmethod(plain.wait)

    run_limit(backend, batches[:2])
    run_limit(_Pre, float_batches[:2])  # warm-up
    naive_fps = ours_fps = limit_graph = limit_plain = ours3_fps = 0.0
    naive_out = ours_dir = None
    per_rep = []
    for _rep in range(args.repeat):
        nf, naive_out = run_naive(weights, timed, cfg)
        of, _, ours_dir = run_ours(weights, timed, cfg, cache)
        lg = run_limit(backend, batches)
        lp = run_limit(_Pre, float_batches)
        o3, _, _ = run_ours(weights, timed, InferConfig(stride=3, device="cpu"), cache)
        per_rep.append(
            {
                "naive": round(nf, 2),
                "ours": round(of, 2),
                "limit_graph_pre": round(lg, 2),
                "limit_plain_fp32_input": round(lp, 2),
                "ours_stride3_scored": round(o3, 2),
                "load": loadavg(),
            }
        )
        print(json.dumps(per_rep[-1]), file=sys.stderr, flush=True)
        naive_fps, ours_fps = max(naive_fps, nf), max(ours_fps, of)
        limit_graph, limit_plain, ours3_fps = max(limit_graph, lg), max(limit_plain, lp), max(ours3_fps, o3)
    limit = max(limit_graph, limit_plain)

    ours_b = ours_boxes(ours_dir, cfg)
    agree = {"all_boxes": agreement(naive_out, ours_b), f"conf_ge_{BAND_LOW}": agreement(naive_out, ours_b, BAND_LOW)}
    # The same comparison with OpenVINO forced to f32 (what bf16 costs in agreement).
    f32_dir = Path(tempfile.mkdtemp(prefix="ours-f32-"))
    t0 = time.perf_counter()
    infer_clips(
        weights, timed, f32_dir, InferConfig(stride=1, device="cpu", precision="f32"), progress=False, cache_dir=cache
    )
    f32_fps = sum(len(v) for v in naive_out.values()) / (time.perf_counter() - t0)
    f32_b = ours_boxes(f32_dir, cfg)
    agree["f32_all_boxes"] = agreement(naive_out, f32_b)
    agree["f32_fps_single_run"] = round(f32_fps, 2)

    strides = []
    for stride in (1, 2, 3, 5):
        scfg = InferConfig(stride=stride, device="cpu")
        fps, scored, out = run_ours(weights, clips, scfg, cache)
        video_frames = sum(1 for c in clips for _ in iter_frames(c.path, 1)) if stride == 1 else strides[0]["scored"]
        strides.append(
            {
                **recall_vs_truth(data["root"], out, stride),
                "scored": scored,
                "scored_fps": round(fps, 2),
                "video_frames_per_s": round(fps * video_frames / scored, 2),
            }
        )

    val = validation(data["root"], weights, cache, max(1, args.repeat - 1))
    # short = one clip of `frames` (first clip of the main twin); long = one clip 3x as long
    short_root = base / "short"
    from visem_pl.tasks.synth import SynthConfig, synthesize

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
        s = peak_rss(mode, short_root, weights, cache)
        lo = peak_rss(mode, data["long"], weights, cache)
        mem[mode] = {
            "short_vmhwm_mib": round(s["vmhwm_kb"] / 1024, 1),
            "long_vmhwm_mib": round(lo["vmhwm_kb"] / 1024, 1),
            "long_over_short": round(lo["vmhwm_kb"] / s["vmhwm_kb"], 3),
        }

    stride3 = next(s for s in strides if s["stride"] == 3)
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "openvino": backend.label,
            "load_at_start": load_start,
            "load_at_end": loadavg(),
        },
        "weights": weights_note,
        "clips": {"timed": [c.name for c in timed], "frames_per_clip": args.frames, "all": len(clips)},
        "export": {"seconds_first": round(export_s, 2), "exported": exported, "seconds_cached": round(cached_s, 3)},
        "throughput_fps": {
            "naive": round(naive_fps, 2),
            "ours": round(ours_fps, 2),
            "limit": round(limit, 2),
            "limit_graph_preprocessing": round(limit_graph, 2),
            "limit_plain_fp32_input": round(limit_plain, 2),
            "ours_stride3_scored_frames": round(ours3_fps, 2),
        },
        "ratios": {"ours_over_naive": round(ours_fps / naive_fps, 2), "ours_over_limit": round(ours_fps / limit, 3)},
        "repeats": per_rep,
        "agreement_naive_vs_ours": agree,
        "stride_vs_recall": strides,
        "validation": val,
        "peak_memory": mem,
        "projection_502_clips": {
            "frames_per_pass": FRAMES_PER_PASS,
            "default_stride": 3,
            "scored_frames": FRAMES_PER_PASS // 3,
            "hours_ours_stride3": round(FRAMES_PER_PASS / 3 / ours3_fps / 3600, 2),
            "hours_ours_stride1": round(FRAMES_PER_PASS / ours_fps / 3600, 2),
            "hours_naive_stride1": round(FRAMES_PER_PASS / naive_fps / 3600, 2),
            "hours_naive_stride3_if_naive_fps_held": round(FRAMES_PER_PASS / 3 / naive_fps / 3600, 2),
            "stride3_video_frames_per_s": stride3["video_frames_per_s"],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(table(result))


def table(r: dict) -> str:
    t, ra = r["throughput_fps"], r["ratios"]
    lines = [
        "| measure | frames/s |",
        "|---|---|",
        f"| naive `YOLO.predict(source=mp4, stream=True)` (PyTorch) | {t['naive']} |",
        f"| ours `infer_clips` ({r['machine']['openvino']}), stride 1 | {t['ours']} |",
        f"| forward limit, same backend (uint8, pre-processing in graph) | {t['limit_graph_preprocessing']} |",
        f"| forward limit, plain fp32-input model on pre-normalised tensors | {t['limit_plain_fp32_input']} |",
        f"| ours / naive | {ra['ours_over_naive']}x |",
        f"| ours / limit | {ra['ours_over_limit']} |",
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
