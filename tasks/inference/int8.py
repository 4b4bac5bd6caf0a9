"""INT8 for the CPU: NNCF post-training quantization of the round's OpenVINO model, kept only where
its validation fitness stays within `TOLERANCE` of the f32 model's.

Calibration uses the round's own labelled training frames, letterboxed exactly as inference
feeds them; the detection head stays in float (the same ignored scope as Ultralytics' own
`export(format="openvino", int8=True)`), since its box decoding loses most to 8 bits. The check
scores both models through the same pipeline on the validation frames, so the difference is
the quantization's alone. Model and check are cached by the weights' and the frames' hashes.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visem_pl.tasks.workspace import offline
from visem_pl.tasks.workspace.io import atomic_dir, atomic_path

log = logging.getLogger(__name__)

TOLERANCE = 0.01  # fitness the INT8 model may lose against f32 on the validation frames
MAX_CALIBRATION = 300  # NNCF's own default subset size
INT8_FORMAT = 1  # bump when the quantization settings below change


@dataclass(frozen=True)
class Frames:
    """Calibration images and validation frames (columns image, label) of one round."""

    calibration: tuple[str, ...]
    validation: tuple[tuple[str, str | None], ...]

    def digest(self) -> str:
        import hashlib

        h = hashlib.sha256(f"v{INT8_FORMAT}".encode())
        for p in self.calibration:
            h.update(f"c:{p}:{os.path.getsize(p)}:{os.path.getmtime(p)}".encode())
        for image, label in self.validation:
            h.update(f"v:{image}:{label}".encode())
            for p in (image, label):
                if p and os.path.exists(p):
                    h.update(f"{os.path.getsize(p)}:{os.path.getmtime(p)}".encode())
        return h.hexdigest()[:16]


def _letterboxed(images, imgsz: int, stride: int):
    import cv2
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.checks import check_imgsz

    lb = LetterBox(check_imgsz(imgsz, stride=stride, min_dim=2), auto=True, stride=stride)
    for path in images:
        frame = cv2.imread(str(path))
        if frame is None:
            raise ValueError(f"{path}:0: cannot be read as an image")
        yield path, frame, lb(image=frame)


def _head_scope(model) -> list[str]:
    """Ultralytics' ignored scope for a Detect head: its sigmoid and every op of the head's module."""
    ops = model.get_ordered_ops()
    sigmoids = [op.get_friendly_name() for op in ops if op.get_type_name() == "Sigmoid"]
    if not sigmoids:
        return []
    head = sigmoids[-1].split("/", 1)[0]
    return [
        op.get_friendly_name()
        for op in ops
        if op.get_type_name() == "Sigmoid" or op.get_friendly_name().startswith((f"{head}/", f"{head}.dfl"))
    ]


def quantize(f32_xml: Path, frames: Frames, imgsz: int, target: Path) -> Path:
    """Write the INT8 IR of `f32_xml` to `target/model.xml` (atomically: a hidden folder renamed)."""
    offline.configure()
    import nncf

    nncf.set_log_level(logging.WARNING)  # not one INFO line per layer in DVC's and Prefect's logs
    import openvino as ov
    import yaml

    from visem_pl.tasks.inference.backends import to_float_nchw

    xml = target / "model.xml"
    if xml.exists():
        return xml
    meta = yaml.safe_load((f32_xml.parent / "metadata.yaml").read_text(encoding="utf-8")) or {}
    stride = meta.get("stride", 32)
    stride = int(max(stride) if isinstance(stride, (list, tuple)) else stride)
    images = list(frames.calibration)[:MAX_CALIBRATION]
    if not images:
        raise ValueError("INT8 calibration needs labelled training frames; the round has none")
    # The f32 IR takes float RGB NCHW in [0, 1]: what OpenVINOBackend's in-graph pre-processing makes.
    data = [to_float_nchw(img[None]) for _, _, img in _letterboxed(images, imgsz, stride)]
    model = ov.Core().read_model(str(f32_xml))
    scope = _head_scope(model)
    log.info("INT8: quantizing with NNCF on %d calibration frames", len(data))
    # NNCF draws its own progress bars; a few seconds of work, kept out of DVC's and Prefect's logs.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize(
            model,
            nncf.Dataset(data),
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(data),
            ignored_scope=nncf.IgnoredScope(names=scope, validate=False) if scope else None,
        )
    with atomic_dir(target) as tmp:
        ov.save_model(quantized, str(tmp / "model.xml"), compress_to_fp16=False)
        shutil.copyfile(f32_xml.parent / "metadata.yaml", tmp / "metadata.yaml")
    return xml


def fitness(backend, frames: Frames, imgsz: int) -> float:
    """Validation fitness (0.1 mAP@0.5 + 0.9 mAP@0.5:0.95) of `backend` through the inference pipeline."""
    import cv2

    from visem_pl.tasks.dataset import layout
    from visem_pl.tasks.dataset.labels import read_yolo_labels
    from visem_pl.tasks.inference.backends import predict_sources
    from visem_pl.tasks.training.evaluate import EvalConfig
    from visem_pl.tasks.training.metrics import Accumulator, xywhn_to_xyxy

    cfg = EvalConfig(imgsz=imgsz, device="cpu")
    acc = Accumulator(layout.CLASS_NAMES)
    images = [image for image, _ in frames.validation]
    shapes = {}

    def read(into=None):  # images are not decoded into the batch: cv2.imread takes no target
        for i, path in enumerate(images):
            frame = cv2.imread(path)
            if frame is None:
                raise ValueError(f"{path}:0: cannot be read as an image")
            shapes[i] = frame.shape[:2]
            yield i, frame

    for _, per_frame in predict_sources(backend, [("val", read)], cfg):
        for i, xywhn, cls, conf in per_frame:
            h, w = shapes[i]
            gt = read_yolo_labels(frames.validation[i][1] or "")
            acc.add(xywhn_to_xyxy(xywhn, w, h), cls, conf, xywhn_to_xyxy(gt[:, 1:], w, h), gt[:, 0])
    overall = acc.summary()["overall"]
    return float(overall["fitness"])


def check(weights: Path | str, model_sha: str, cache_dir: Path | str, frames: Frames, imgsz: int) -> dict:
    """Quantize `weights` (cached) and compare its validation fitness with the f32 model's (cached).

    Returns {"qualified", "f32_fitness", "int8_fitness", "tolerance", "xml", ...}.
    """
    from visem_pl.tasks.inference.backends import OpenVINOBackend, export_key, export_openvino

    cache_dir = Path(cache_dir)
    digest = frames.digest()
    record_path = cache_dir / "trials" / f"{model_sha[:16]}-int8-{digest}-i{imgsz}.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if Path(record["xml"]).exists():
            return record
    f32_xml, _ = export_openvino(weights, model_sha, cache_dir)
    target = cache_dir / f"{export_key(model_sha)}-int8-{digest}"
    try:
        xml = quantize(f32_xml, frames, imgsz, target)
    except Exception as exc:  # noqa: BLE001 - no INT8 here is an answer, not a failure of the round
        log.warning("INT8 quantization failed (%s: %s); INT8 is not a candidate", type(exc).__name__, exc)
        return {"qualified": False, "error": f"{type(exc).__name__}: {exc}", "xml": None}
    if not frames.validation:
        record = {"qualified": False, "error": "no validation frames to check INT8 against f32", "xml": str(xml)}
    else:
        f32 = fitness(OpenVINOBackend(f32_xml, precision="f32"), frames, imgsz)
        int8 = fitness(OpenVINOBackend(xml, precision="int8"), frames, imgsz)
        record = {
            "qualified": bool(int8 >= f32 - TOLERANCE),
            "f32_fitness": round(f32, 4),
            "int8_fitness": round(int8, 4),
            "tolerance": TOLERANCE,
            "calibration_frames": min(len(frames.calibration), MAX_CALIBRATION),
            "validation_frames": len(frames.validation),
            "xml": str(xml),
        }
    log.info(
        "INT8 check: fitness f32 %s, int8 %s -> %s",
        record.get("f32_fitness"),
        record.get("int8_fitness"),
        "a candidate" if record["qualified"] else "not a candidate",
    )
    with atomic_path(record_path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2))
    return record


def round_frames(training: pd.DataFrame, validation: pd.DataFrame) -> Frames:  # noqa: F821
    """Frames from a round's listing: the labelled training frames calibrate, the validation frames check."""
    calib = tuple(str(p) for p in training["image"])
    val = tuple(
        (str(image), None if label is None or (isinstance(label, float) and np.isnan(label)) else str(label))
        for image, label in zip(validation["image"], validation["label"])
    )
    return Frames(calib, val)
