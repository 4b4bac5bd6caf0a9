"""The OpenVINO backend agrees with PyTorch, its export is cached, and the threaded pipeline
gives what a sequential loop gives.

The model is an untrained YOLOv8n (models/yolov8n.yaml, fixed torch seed; nothing is downloaded,
no trained weights in a fresh checkout); with conf 0.0 it still returns max_det boxes per frame, as
in test_infer_resume.py. Its confidences are tiny (about 0.001 to 0.004), so every tolerance on
them is a share of their spread, never an absolute number larger than the whole range.
Everything runs behind the network guard: the export must not fetch anything and OpenVINO's
telemetry must stay silent.

Tolerance, documented: every PyTorch box has an OpenVINO box at IoU >= 0.9 (>= 99 % of them), with
confidences within 1 % of PyTorch's confidence spread in f32 and within 10 % in bf16 (measured on
an AMX CPU: f32 0, bf16 1.6 %). On the trained demo model bf16 moves scores by up to ~0.012, so
boxes near the conf threshold can cross it: there 98.3 % of all boxes at conf >= 0.05 and
99.8 % of those >= 0.1 (the lowest review band) matched; docs/BENCHMARKS.md has the figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.trees import tiny_twin

from visem_pl.tasks.workspace import offline

offline.quiet_ultralytics()

import torch  # noqa: E402
from ultralytics import YOLO  # noqa: E402
from ultralytics.utils import ops  # noqa: E402
from ultralytics.utils.metrics import box_iou  # noqa: E402

from visem_pl.tasks.dataset.reader import locate  # noqa: E402
from visem_pl.tasks.inference import backends  # noqa: E402
from visem_pl.tasks.inference.backends import (  # noqa: E402
    OpenVINOBackend,
    TorchBackend,
    build_backend,
    export_openvino,
    postprocess,
    predict_sources,
)
from visem_pl.tasks.inference.clips import InferConfig, file_sha256, iter_frames  # noqa: E402
from visem_pl.tasks.inference.tuning import Config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CFG = InferConfig(stride=1, imgsz=320, conf=0.0, iou=0.7, batch=4, max_det=30, device="cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("infer_backend")
    root = base / "twin"
    tiny_twin(root, seed=5, videos=(11,), frames_per_video=1, rest_clips_per_video=2, other_videos=0, frames_per_clip=9)
    torch.manual_seed(0)
    weights = base / "w.pt"
    YOLO(str(REPO / "models" / "yolov8n.yaml")).save(str(weights))
    cache = base / "exports"
    return locate(root).clips(), weights, cache


def sources(clips):
    return [(c, (lambda into=None, c=c: iter_frames(c.path, CFG.stride, into))) for c in clips]


def run(backend, clips, cfg=CFG):
    return [(clip, frames) for clip, frames in predict_sources(backend, sources(clips), cfg)]


def compare(ref, got, floor: float) -> tuple[int, float, float]:
    """(reference boxes with conf >= floor, share matched at IoU >= 0.9, max conf gap)."""
    total = matched = 0
    gap = 0.0
    for (_, rf), (_, gf) in zip(ref, got):
        assert [f[0] for f in rf] == [f[0] for f in gf]
        for (_, rx, _, rc), (_, gx, _, gc) in zip(rf, gf):
            keep = rc >= floor
            total += int(keep.sum())
            if not keep.any() or not len(gx):
                continue
            iou = box_iou(ops.xywh2xyxy(torch.from_numpy(rx[keep])), ops.xywh2xyxy(torch.from_numpy(gx))).max(1)
            ok = (iou.values >= 0.9).numpy()
            matched += int(ok.sum())
            if ok.any():
                gap = max(gap, float(np.abs(rc[keep][ok] - gc[iou.indices.numpy()[ok]]).max()))
    return total, matched / max(total, 1), gap


def test_export_is_cached_and_openvino_agrees_with_torch(setup, monkeypatch):
    clips, weights, cache = setup
    xml, exported = export_openvino(weights, cache_dir=cache)
    assert exported and xml.exists() and xml.with_suffix(".bin").exists()
    assert xml.parent.parent.name.startswith(file_sha256(weights))
    # The second call finds the cached export and never reaches Ultralytics' exporter.
    monkeypatch.setattr("ultralytics.YOLO.export", lambda *a, **k: pytest.fail("exported twice"))
    again, exported_again = export_openvino(weights, cache_dir=cache)
    assert (again, exported_again) == (xml, False)
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary folder left

    ref = run(TorchBackend(weights, "cpu"), clips)
    n_ref, spread = reference_boxes(ref)
    assert n_ref == 2 * 9 * CFG.max_det, "conf 0.0: max_det boxes in every frame of both clips"

    f32 = run(OpenVINOBackend(xml, precision="f32"), clips)
    total, share, gap = compare(ref, f32, floor=0.0)
    assert total == n_ref and share >= 0.99 and gap <= 0.01 * spread, (total, share, gap, spread)

    default = OpenVINOBackend(xml)  # the CPU plugin's default: bf16 where the CPU has it, else f32
    assert default.precision == backends.openvino_precision()
    got = run(default, clips)
    total, share, gap = compare(ref, got, floor=0.0)
    limit = (0.1 if default.precision == "bf16" else 0.01) * spread
    assert total == n_ref and share >= 0.99 and gap <= limit, (default.precision, total, share, gap, spread)


def reference_boxes(ref) -> tuple[int, float]:
    """(boxes PyTorch found, the spread of their confidences)."""
    confs = np.concatenate([f[3] for _, frames in ref for f in frames])
    return len(confs), float(confs.max() - confs.min())


def test_bf16_path_agrees_with_torch(setup):
    """OpenVINO in bf16, asked for explicitly; it runs only where the CPU computes bf16 natively."""
    if backends.openvino_precision() != "bf16":
        pytest.skip("this CPU has no native bf16 (AVX512_BF16 or AMX): OpenVINO's bf16 path cannot run here")
    clips, weights, cache = setup
    xml, _ = export_openvino(weights, cache_dir=cache)
    bf16 = OpenVINOBackend(xml, precision="bf16")
    assert bf16.precision == "bf16" and bf16.label.endswith("/bf16")
    assert "bfloat16" in str(bf16.compiled.get_property("INFERENCE_PRECISION_HINT"))
    ref = run(TorchBackend(weights, "cpu"), clips)
    n_ref, spread = reference_boxes(ref)
    total, share, gap = compare(ref, run(bf16, clips), floor=0.0)
    assert total == n_ref and share >= 0.99 and gap <= 0.1 * spread, (total, share, gap, spread)


def test_threaded_pipeline_equals_a_sequential_loop(setup):
    clips, weights, cache = setup
    backend = build_backend(Config("openvino", "f32", CFG.batch), weights, cache_dir=cache)
    piped = run(backend, clips)

    from ultralytics.data.augment import LetterBox

    lb = LetterBox((CFG.imgsz, CFG.imgsz), auto=True, stride=backend.stride)
    for clip, frames in piped:
        seq = []
        items = list(iter_frames(clip.path, CFG.stride))
        for start in range(0, len(items), CFG.batch):
            chunk = items[start : start + CFG.batch]
            arr = np.stack([lb(image=f) for _, f in chunk])
            backend.submit(0, arr)
            raw = backend.wait(0)
            for (index, _f), out in zip(
                chunk,
                postprocess(
                    raw,
                    arr.shape[1:3],
                    [f.shape[:2] for _, f in chunk],
                    CFG.conf,
                    CFG.iou,
                    CFG.max_det,
                    len(backend.names),
                ),
            ):
                seq.append((index, *out))
        assert [f[0] for f in frames] == [s[0] for s in seq] == list(range(9))
        for a, b in zip(frames, seq):
            for x, y in zip(a[1:], b[1:]):
                np.testing.assert_array_equal(x, y)


def test_backend_choice_and_fallback(setup, monkeypatch, caplog):
    clips, weights, cache = setup
    assert backends.resolve("auto", "cpu") == ("openvino", "cpu")
    assert backends.resolve("torch", "cpu") == ("torch", "cpu")
    with pytest.raises(ValueError, match="backend"):
        backends.resolve("tensorrt", "cpu")
    with pytest.raises(ValueError, match="runs on the CPU"):
        backends.resolve("openvino", "0")
    ov = build_backend(Config("openvino", "f32", 4, streams="latency"), weights, cache_dir=cache)
    assert ov.label == f"openvino/{backends.openvino_version()}/f32/b4/latency"
    assert str(ov.compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
    assert build_backend(Config("torch", "fp32", 2), weights).label == "torch/cpu/fp32/b2"

    # An impossible export is logged and PyTorch takes over; its label says so.
    def broken(*a, **k):
        raise RuntimeError("no exporter here")

    monkeypatch.setattr(backends, "export_openvino", broken)
    with caplog.at_level("WARNING"):
        b = build_backend(Config("openvino", "bf16", 4), weights, cache_dir=cache)
    assert isinstance(b, TorchBackend) and "no exporter here" in caplog.text and b.label == "torch/cpu/fp32/b4"
    with pytest.raises(RuntimeError, match="no exporter here"):
        build_backend(Config("openvino", "f32", 4), weights, cache_dir=cache, fallback=False)


def test_onnxruntime_backend_agrees_with_torch(setup):
    """The ONNX Runtime backend (a GPU candidate with the TensorRT or CUDA provider) checked here on
    its CPU provider: same export, same pipeline, the same boxes as PyTorch."""
    clips, weights, cache = setup
    ort = build_backend(Config("onnxruntime", "fp32", 4, provider="CPUExecutionProvider"), weights, cache_dir=cache)
    assert isinstance(ort, backends.OnnxRuntimeBackend) and ort.label == "onnxruntime/CPUExecutionProvider/fp32/b4"
    ref = run(TorchBackend(weights, "cpu"), clips)
    n_ref, spread = reference_boxes(ref)
    total, share, gap = compare(ref, run(ort, clips), floor=0.0)
    assert total == n_ref and share >= 0.99 and gap <= 0.01 * spread, (total, share, gap, spread)


def test_batched_postprocess_equals_ultralytics_nms(setup):
    """One batched NMS call per batch gives exactly what Ultralytics' per-frame NMS gives: the same
    boxes, in the same order, for thresholds with few and with thousands of candidates, a max_det
    that cuts, and a batch of frames of two sizes."""
    clips, weights, cache = setup
    backend = build_backend(Config("openvino", "f32", 4), weights, cache_dir=cache)
    frames = [f for _, f in iter_frames(clips[0].path, 1)][:4]
    from ultralytics.data.augment import LetterBox

    imgs = [LetterBox((CFG.imgsz, CFG.imgsz), auto=True, stride=backend.stride)(image=f) for f in frames]
    backend.submit(0, np.stack(imgs))
    raw = backend.wait(0)
    # Untrained, the model gives each frame three distinct scores; among equal scores two correct NMS
    # runs may keep different boxes, so a fixed jitter makes every score distinct first.
    step = 0.01 * raw[:, 4].max() / raw.shape[-1]
    raw[:, 4] += torch.randperm(raw.shape[-1], generator=torch.Generator().manual_seed(0)).float() * step
    assert all(len(torch.unique(r)) == raw.shape[-1] for r in raw[:, 4])
    spread = raw[:, 4].max().item()  # every score is tiny: thresholds are shares of the top one
    origs = [f.shape[:2] for f in frames]
    cases = [(0.0, 300, origs), (0.5 * spread, 300, origs), (0.0, 7, origs), (0.0, 300, origs[:2] + [(960, 1280)] * 2)]
    for conf, max_det, hws in cases:
        got = postprocess(raw.clone(), imgs[0].shape[:2], hws, conf, CFG.iou, max_det, 1)
        want = backends._postprocess_ultralytics(raw.clone(), imgs[0].shape[:2], hws, conf, CFG.iou, max_det, 1, False)
        assert len(got) == len(want) == 4
        for g, w in zip(got, want):
            assert len(w[0]) > 0
            for a, b in zip(g, w):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


class _Identity:
    """A letterbox that finds 640x480 frames unchanged (as 640x480 clips at imgsz 640 are) and pads others."""

    def __init__(self):
        self.identity: dict = {}

    def __call__(self, frame):
        self.identity.setdefault(frame.shape, frame.shape == (480, 640, 3))
        return frame if frame.shape == (480, 640, 3) else np.zeros((128, 128, 3), np.uint8)


def test_frames_decoded_into_the_batch_are_not_copied(setup):
    clips, _, _ = setup
    batch = backends._Batch(4, _Identity())
    batches, slots = [], []

    def into():
        slots.append(batch.slot())
        return slots[-1]

    for index, frame in iter_frames(clips[0].path, 1, into, threads=1):
        done = batch.add(index, frame)
        if done:
            batches.append(done)
    batches.append(batch.flush())
    reference = [f for _, f in iter_frames(clips[0].path, 1)]
    assert [len(b[0]) for b in batches] == [4, 4, 1] and [i for b in batches for i in b[0]] == list(range(9))
    # The first frame is copied (its shape is not known yet); every later one is decoded in place.
    assert slots[0] is None and all(s is not None for s in slots[1:])
    assert all(np.shares_memory(batches[k // 4][1], slots[k]) for k in range(1, 9))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), np.stack(reference))
    # A frame of another size closes the batch and goes through the letterbox.
    batch.add(0, reference[0])
    done = batch.add(1, np.zeros((100, 100, 3), np.uint8))
    assert done[0] == [0] and batch.flush()[0] == [1]
