"""Detection backends (OpenVINO on CPU, PyTorch) and the streaming prediction pipeline behind `infer`.

Design and choices: docs/INFERENCE.md.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from visem_pl.tasks.workspace import offline
from visem_pl.tasks.workspace.io import atomic_dir
from visem_pl.tasks.workspace.paths import Workspace

log = logging.getLogger(__name__)

BACKENDS = ("auto", "openvino", "torch", "onnxruntime")
EXPORT_FORMAT = 1  # bump when the export arguments below change: old cache entries are then ignored
# One OpenVINO compile at a time in a process: clip tasks on a thread pool (orchestrate.infer_concurrency > 1)
# compile the same model into the same CACHE_DIR at once, where OpenVINO has had races (its model-hash and
# cache-file code: openvinotoolkit/openvino#19196, #37689). Compiling takes well under a second from the
# cache; the inference after it still runs concurrently.
_COMPILE_LOCK = threading.Lock()


# ----------------------------------------------------------------------------------------------
# Choosing a backend


def openvino_version() -> str | None:
    offline.configure()  # before the first `import openvino`: its import would phone home
    try:
        import openvino
    except ImportError:
        return None
    return openvino.get_version().split("-")[0]


def resolve(backend: str, device: str) -> tuple[str, str]:
    """(kind, device): kind is "openvino" or "torch"; device as Ultralytics spells it ("cpu", "0")."""
    from visem_pl.tasks.workspace.device import pick_device

    if backend not in BACKENDS:
        raise ValueError(f"params.yaml infer: backend {backend!r} is not one of {list(BACKENDS)}")
    dev = pick_device(device)
    if backend == "auto":
        kind = "openvino" if dev == "cpu" and openvino_version() else "torch"
    else:
        kind = backend
    if kind == "openvino" and dev != "cpu":
        raise ValueError(
            f"params.yaml infer: backend openvino runs on the CPU, not device {dev!r}; "
            "set device: cpu or backend: torch (or auto)"
        )
    return kind, dev


def openvino_caps() -> list[str]:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES (e.g. BF16, INT8); [] without OpenVINO."""
    if openvino_version() is None:
        return []
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def openvino_precision() -> str:
    """The CPU plugin's own default: bf16 where the CPU computes it natively (AVX512_BF16, AMX), else f32.
    Only a default for a backend built by hand: `infer: precision: auto` measures instead (tuning.py)."""
    return "bf16" if "BF16" in openvino_caps() else "f32"


def openvino_label(precision: str) -> str:
    return f"openvino/{openvino_version()}/{precision}"


# ----------------------------------------------------------------------------------------------
# OpenVINO export, cached by the weights' hash


def export_key(model_sha: str) -> str:
    import ultralytics

    return f"{model_sha}-openvino{openvino_version()}-ul{ultralytics.__version__}-dyn-fp32-v{EXPORT_FORMAT}"


def export_openvino(
    weights: Path | str, model_sha: str | None = None, cache_dir: Path | str | None = None
) -> tuple[Path, bool]:
    """The cached OpenVINO IR (.xml) of `weights`, exporting it first when absent.

    Returns (xml path, whether this call exported). The export runs in a hidden temporary
    folder renamed into place, so concurrent or killed runs never leave a half-written model.
    """
    offline.quiet_ultralytics()
    offline.quiet_openvino()
    if openvino_version() is None:
        raise RuntimeError("the openvino package is not installed")
    if model_sha is None:
        from visem_pl.tasks.workspace.io import file_sha256

        model_sha = file_sha256(weights)
    cache_dir = Path(cache_dir) if cache_dir is not None else Workspace(Path.cwd()).exports_cache
    target = cache_dir / export_key(model_sha)
    xml = target / "model_openvino_model" / "model.xml"
    if xml.exists() and xml.with_suffix(".bin").exists():
        return xml, False
    from ultralytics import YOLO

    with atomic_dir(target) as tmp:
        shutil.copyfile(weights, tmp / "model.pt")
        # dynamic: any batch size and any letterboxed frame shape; imgsz only sizes the trace.
        YOLO(str(tmp / "model.pt")).export(
            format="openvino", dynamic=True, half=False, int8=False, imgsz=640, batch=1, device="cpu", verbose=False
        )
        if not (tmp / "model_openvino_model" / "model.xml").exists():
            raise RuntimeError("Ultralytics' export wrote no model.xml")
        (tmp / "model.pt").unlink()
    return xml, True


# ----------------------------------------------------------------------------------------------
# Backends: submit(slot, uint8 BGR NHWC batch) / wait(slot) -> raw (B, 4+nc, anchors) tensor


def to_float_nchw(batch: np.ndarray) -> np.ndarray:
    """uint8 BGR NHWC -> float32 RGB NCHW in [0, 1] (what the in-graph pre-processing does)."""
    out = np.empty((batch.shape[0], 3, batch.shape[1], batch.shape[2]), np.float32)
    np.divide(batch[..., ::-1].transpose(0, 3, 1, 2), np.float32(255), out=out)
    return out


class OpenVINOBackend:
    kind = "openvino"

    def __init__(
        self,
        xml: Path | str,
        hint: str = "THROUGHPUT",
        requests: int | None = None,
        preprocess_in_graph: bool = True,
        precision: str | None = None,
        compiled_cache: Path | str | None = None,
    ):
        """`precision`: f32 | bf16 | int8 | int8-bf16 (an INT8 `xml`, its float layers in f32 or bf16);
        None: the CPU plugin's default. `hint`: THROUGHPUT (the plugin's streams) or LATENCY (one stream).
        `compiled_cache`: OpenVINO's model cache folder (a compiled model loads in a third of the time:
        the Prefect round compiles once per clip task)."""
        offline.configure()
        import openvino as ov
        import yaml

        meta = yaml.safe_load((Path(xml).parent / "metadata.yaml").read_text(encoding="utf-8")) or {}
        self.names = {int(k): v for k, v in (meta.get("names") or {}).items()}
        stride = meta.get("stride", 32)
        self.stride = int(max(stride) if isinstance(stride, (list, tuple)) else stride)
        self.end2end = bool(meta.get("end2end", False))
        self.precision = precision or openvino_precision()
        if self.precision not in ("f32", "bf16", "int8", "int8-bf16"):
            raise ValueError(f"OpenVINO precision {self.precision!r} is not one of f32, bf16, int8, int8-bf16")
        self.label = openvino_label(self.precision)
        self.uint8_input = preprocess_in_graph
        with _COMPILE_LOCK:
            core = ov.Core()
            if compiled_cache is not None:
                core.set_property({"CACHE_DIR": str(compiled_cache)})
            model = core.read_model(str(xml))
            if preprocess_in_graph:
                from openvino.preprocess import ColorFormat, PrePostProcessor

                ppp = PrePostProcessor(model)
                ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
                    ColorFormat.BGR
                )
                ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
                ppp.input().model().set_layout(ov.Layout("NCHW"))
                model = ppp.build()
            self.compiled = core.compile_model(
                model,
                "CPU",
                {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": "bf16" if "bf16" in self.precision else "f32"},
            )
        # Twice the plugin's suggestion: every stream keeps a batch queued while the Python side decodes
        # and runs NMS on the cores it shares with them (measured on 2 cores: 133 vs 126 frames/s).
        n = requests or 2 * int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.requests = [self.compiled.create_infer_request() for _ in range(max(1, n))]
        self.slots = len(self.requests)
        self._keep: dict[int, np.ndarray] = {}

    def submit(self, slot: int, batch: np.ndarray) -> None:
        if not self.uint8_input:  # the plain fp32 NCHW RGB model (benchmark's comparison)
            batch = to_float_nchw(batch)
        # share_inputs: no copy; the pipeline keeps `batch` alive until wait(slot) returns.
        self._keep[slot] = batch
        self.requests[slot].start_async({0: batch}, share_inputs=True)

    def wait(self, slot: int):
        import torch

        req = self.requests[slot]
        req.wait()
        return torch.from_numpy(req.get_output_tensor(0).data.copy())


class TorchBackend:
    kind = "torch"

    def __init__(self, weights: Path | str, device: str = "cpu", half: bool | None = None):
        """`half`: fp16 (None: on CUDA only, as Ultralytics' predict does)."""
        offline.quiet_ultralytics()
        import torch
        from ultralytics.nn.autobackend import AutoBackend

        self.device = torch.device(
            "cpu"
            if device == "cpu"
            else "mps"
            if device == "mps"
            else f"cuda:{device}"
            if str(device).isdigit()
            else device
        )
        # Ultralytics sets OMP_NUM_THREADS=1 on import; the forward pass wants every core (set
        # around each forward only, so the rest of the process keeps its setting).
        self.threads = (os.cpu_count() or 1) if self.device.type == "cpu" else None
        half = self.device.type == "cuda" if half is None else half
        self.model = AutoBackend(model=str(weights), device=self.device, fp16=half, fuse=True, verbose=False)
        self.model.eval()
        self.names = dict(self.model.names)
        self.stride = int(max(self.model.stride) if hasattr(self.model.stride, "__len__") else self.model.stride)
        self.end2end = bool(getattr(self.model, "end2end", False))
        where = "cpu" if self.device.type == "cpu" else self.device.type if self.device.type == "mps" else "cuda"
        self.label = f"torch/{where}/{'fp16' if half else 'fp32'}"
        self.uint8_input = True
        self.slots = 1
        self._out = {}

    def submit(self, slot: int, batch: np.ndarray) -> None:
        import torch

        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                # Exactly Ultralytics' BasePredictor.preprocess arithmetic.
                im = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).contiguous().flip(1)
                im = (im.half() if self.model.fp16 else im.float()).div_(255)
                out = self.model(im)
        finally:
            if self.threads:
                torch.set_num_threads(before)
        self._out[slot] = out[0] if isinstance(out, (list, tuple)) else out

    def wait(self, slot: int):
        return self._out.pop(slot)


class OnnxRuntimeBackend:
    """An ONNX export run by ONNX Runtime with one provider (TensorRT or CUDA on a GPU; CPU in tests)."""

    kind = "onnxruntime"

    def __init__(self, onnx: Path | str, provider: str = "CPUExecutionProvider", half: bool = False):
        import onnxruntime as ort
        import yaml

        meta = yaml.safe_load((Path(onnx).parent / "metadata.yaml").read_text(encoding="utf-8")) or {}
        self.names = {int(k): v for k, v in (meta.get("names") or {}).items()}
        stride = meta.get("stride", 32)
        self.stride = int(max(stride) if isinstance(stride, (list, tuple)) else stride)
        self.end2end = bool(meta.get("end2end", False))
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(onnx), providers=providers)
        self.input = self.session.get_inputs()[0].name
        self.half = half
        self.label = f"onnxruntime/{provider}/{'fp16' if half else 'fp32'}"
        self.uint8_input = True
        self.slots = 1
        self._out = {}

    def submit(self, slot: int, batch: np.ndarray) -> None:
        import torch

        x = to_float_nchw(batch)
        out = self.session.run(None, {self.input: x.astype(np.float16) if self.half else x})[0]
        self._out[slot] = torch.from_numpy(np.asarray(out, np.float32))

    def wait(self, slot: int):
        return self._out.pop(slot)


def export_onnx(weights: Path | str, model_sha: str, cache_dir: Path | str, half: bool, device: str) -> Path:
    """The cached ONNX export of `weights` (dynamic shapes), exported first when absent."""
    import ultralytics

    offline.quiet_ultralytics()
    cache_dir = Path(cache_dir)
    target = (
        cache_dir / f"{model_sha}-onnx-ul{ultralytics.__version__}-dyn-{'fp16' if half else 'fp32'}-v{EXPORT_FORMAT}"
    )
    onnx = target / "model.onnx"
    if onnx.exists():
        return onnx
    import yaml
    from ultralytics import YOLO

    with atomic_dir(target) as tmp:
        shutil.copyfile(weights, tmp / "model.pt")
        YOLO(str(tmp / "model.pt")).export(
            format="onnx", dynamic=True, half=half, imgsz=640, batch=1, device=device, simplify=False, verbose=False
        )
        (tmp / "model.pt").unlink()
        meta = {"names": YOLO(str(weights)).names, "stride": 32}
        (tmp / "metadata.yaml").write_text(yaml.safe_dump(meta), encoding="utf-8")
    return onnx


def build_backend(
    config,
    weights: Path | str,
    model_sha: str | None = None,
    cache_dir: Path | str | None = None,
    int8_xml: Path | None = None,
    fallback: bool = True,
):
    """The backend one `tuning.Config` describes, its label that config's label.

    With `fallback`, an OpenVINO or ONNX Runtime model that cannot be exported or loaded is logged
    and replaced by PyTorch on the same device (whose label then says so).
    """
    from dataclasses import replace

    try:
        if config.kind == "openvino":
            if "int8" in config.precision:
                if int8_xml is None:
                    raise ValueError("an INT8 configuration needs its quantized model")
                xml = int8_xml
            else:
                xml, _ = export_openvino(weights, model_sha, cache_dir)
            hint = "LATENCY" if config.streams == "latency" else "THROUGHPUT"
            compiled = Path(cache_dir) / "compiled" if cache_dir is not None else None
            backend = OpenVINOBackend(xml, hint=hint, precision=config.precision, compiled_cache=compiled)
        elif config.kind == "onnxruntime":
            from visem_pl.tasks.workspace.io import file_sha256

            half = config.precision == "fp16"
            onnx = export_onnx(
                weights, model_sha or file_sha256(weights), cache_dir or ".cache/exports", half, config.device
            )
            backend = OnnxRuntimeBackend(onnx, config.provider, half)
        else:
            backend = TorchBackend(weights, config.device, half=config.precision == "fp16")
    except Exception as exc:  # noqa: BLE001 - any failure means: use PyTorch instead
        if not fallback or config.kind == "torch":
            raise
        log.warning("%s export or load failed (%s: %s); falling back to PyTorch", config.kind, type(exc).__name__, exc)
        config = replace(config, kind="torch", precision="fp32" if config.device == "cpu" else "fp16", streams="")
        backend = TorchBackend(weights, config.device, half=config.precision == "fp16")
    backend.label = config.label()
    return backend


# ----------------------------------------------------------------------------------------------
# The pipeline

# (key, frames): frames(into) yields (index, BGR frame); `into()`, called before each frame is read,
# may hand out the array to decode it into (clips.iter_frames takes it; others may ignore it).
Source = tuple[object, Callable[[Callable[[], np.ndarray | None]], Iterable[tuple[int, np.ndarray]]]]
FrameBoxes = tuple[int, np.ndarray, np.ndarray, np.ndarray]  # index, xywhn [n,4] f32, cls [n], conf [n]


class _Letterbox:
    """Ultralytics' LetterBox, skipped for frames it would return unchanged (a 640x480 clip at
    imgsz 640: no resize, no padding), which saves a copy of every frame."""

    def __init__(self, letterbox):
        self.letterbox = letterbox
        self.identity: dict[tuple, bool] = {}

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        shape = frame.shape
        if self.identity.get(shape):
            return frame
        img = self.letterbox(image=frame)
        if shape not in self.identity:
            self.identity[shape] = img.shape == shape and np.array_equal(img, frame)
        return img


class _Batch:
    """One source's frames gathered into a batch array. A frame the source decoded straight into the
    slot `slot()` handed out needs no copy (np.stack cost 0.15 ms a frame on 2 cores)."""

    def __init__(self, size: int, letterbox):
        self.size, self.letterbox = size, letterbox
        self.shape: tuple | None = None  # of the last batch's frames: the next one's guess
        self.buf: np.ndarray | None = None
        self.indices: list[int] = []
        self.origs: list[tuple[int, int]] = []
        self._slot: np.ndarray | None = None

    def slot(self) -> np.ndarray | None:
        """Where the next frame may be decoded: a slot of the batch, where letterboxing is a no-op."""
        self._slot = None
        if self.shape is not None and self.letterbox.identity.get(self.shape):
            if self.buf is None:
                self.buf = np.empty((self.size, *self.shape), np.uint8)
            self._slot = self.buf[len(self.indices)]
        return self._slot

    def add(self, index: int, frame: np.ndarray) -> tuple | None:
        """Add a frame; returns a finished batch where adding closed one (the frame then opens the next)."""
        closed = None
        if self._slot is None or frame is not self._slot:  # not decoded in place: letterbox and copy
            img = self.letterbox(frame)
            if self.buf is not None and img.shape != self.buf.shape[1:]:
                closed = self.flush()
            if self.buf is None:
                self.shape = img.shape
                self.buf = np.empty((self.size, *img.shape), np.uint8)
            self.buf[len(self.indices)] = img
        self._slot = None
        self.indices.append(index)
        self.origs.append(frame.shape[:2])
        if len(self.indices) == self.size:
            return closed or self.flush()  # closed is None here: a batch of one cannot close another
        return closed

    def flush(self) -> tuple | None:
        if not self.indices:
            return None
        out = (list(self.indices), self.buf[: len(self.indices)], list(self.origs))
        self.indices.clear(), self.origs.clear()
        self.buf = None
        return out


class _Feeder(threading.Thread):
    """Decode + letterbox in a thread; batches on a bounded queue."""

    def __init__(self, sources: list[Source], batch: int, letterbox, depth: int, skip_errors: tuple = ()):
        super().__init__(name="visem-decode", daemon=True)
        self.sources, self.batch, self.letterbox = sources, batch, letterbox
        self.skip_errors = skip_errors  # a source raising one of these fails alone; the others go on
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.halt = threading.Event()

    def _put(self, item) -> bool:
        while not self.halt.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            batch = _Batch(self.batch, self.letterbox)
            for si, (_, frames) in enumerate(self.sources):
                try:
                    for index, frame in frames(batch.slot):
                        done = batch.add(index, frame)
                        if done is not None and not self._put(("batch", si, *done)):
                            return
                except self.skip_errors as exc:
                    batch.flush()  # its partial batch is dropped: the source yields the error, not boxes
                    if not self._put(("failed", si, exc)):
                        return
                    continue
                done = batch.flush()
                if done is not None and not self._put(("batch", si, *done)):
                    return
                if not self._put(("end", si)):
                    return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
            self._put(("error", exc))
            return
        self._put(("done",))


def postprocess(
    raw,
    img_hw: tuple[int, int],
    orig_hws: list[tuple[int, int]],
    conf: float,
    iou: float,
    max_det: int,
    nc: int,
    end2end: bool = False,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Ultralytics' detection post-processing (best class per box, class-aware NMS, boxes back to each
    frame) as normalised xywh, cls, conf per frame.

    The whole batch goes through one `torchvision.ops.batched_nms` call, frames kept apart as NMS
    categories of their own: Ultralytics' `non_max_suppression` runs a dozen small tensor operations
    per frame, which cost 0.5 ms a frame on 2 cores, where the forward pass takes 7. End-to-end models,
    and a frame with more candidates than Ultralytics would sort and cut, take Ultralytics' own path.
    """
    import torch
    import torchvision
    from ultralytics.utils import ops

    b, n_anchors = raw.shape[0], raw.shape[-1]
    if end2end or raw.shape[-1] == 6 or n_anchors > MAX_NMS:
        return _postprocess_ultralytics(raw, img_hw, orig_hws, conf, iou, max_det, nc, end2end)
    x = raw.transpose(1, 2)  # (B, anchors, 4 + nc [+ extra])
    best, cls = x[..., 4 : 4 + nc].max(2)
    frame, anchor = (best > conf).nonzero(as_tuple=True)
    boxes = ops.xywh2xyxy(x[frame, anchor, :4].float())
    scores, cls = best[frame, anchor].float(), cls[frame, anchor]
    keep = torchvision.ops.batched_nms(boxes, scores, frame * nc + cls, iou)  # by decreasing score
    keep = keep[torch.sort(frame[keep], stable=True).indices]  # grouped by frame, each by decreasing score
    boxes, scores, cls, frame = boxes[keep], scores[keep], cls[keep], frame[keep]
    counts = torch.bincount(frame, minlength=b).tolist()
    if len(set(orig_hws)) == 1:  # one clip's frames: every box scaled back at once
        boxes = ops.scale_boxes(img_hw, boxes, orig_hws[0])
    else:
        for i, part in enumerate(boxes.split(counts)):
            part[:] = ops.scale_boxes(img_hw, part, orig_hws[i])
    xywh = ops.xyxy2xywh(boxes).cpu().numpy()
    hw = np.asarray(orig_hws, np.float32)[frame.cpu().numpy()]
    xywh /= hw[:, [1, 0, 1, 0]]
    cls, scores = cls.float().cpu().numpy(), scores.cpu().numpy()
    out, start = [], 0
    for count in counts:
        sl = slice(start, start + min(count, max_det))
        out.append((xywh[sl], cls[sl], scores[sl]))
        start += count
    return out


MAX_NMS = 30000  # Ultralytics' max_nms: more candidates in a frame are sorted and cut first


def _postprocess_ultralytics(raw, img_hw, orig_hws, conf, iou, max_det, nc, end2end):
    import torchvision  # noqa: F401 - Ultralytics' NMS takes torchvision's C++ kernel only once it is imported,
    from ultralytics.utils import nms, ops  # else a Python loop that matches it box for box, 10x slower

    preds = nms.non_max_suppression(
        raw, conf, iou, classes=None, agnostic=False, max_det=max_det, nc=nc, end2end=end2end
    )
    out = []
    for pred, (h, w) in zip(preds, orig_hws):
        pred[:, :4] = ops.scale_boxes(img_hw, pred[:, :4], (h, w))
        xywh = ops.xyxy2xywh(pred[:, :4])
        xywh[..., [0, 2]] /= w
        xywh[..., [1, 3]] /= h
        out.append((xywh.float().cpu().numpy(), pred[:, 5].cpu().numpy(), pred[:, 4].float().cpu().numpy()))
    return out


def predict_sources(
    backend, sources: list[Source], cfg, depth: int | None = None, skip_errors: tuple = ()
) -> Iterator[tuple[object, list[FrameBoxes] | BaseException]]:
    """Yield (key, [(index, xywhn, cls, conf) per frame]) for each (key, frames factory), in order.

    `cfg` needs imgsz, batch, conf, iou, max_det. Batches never span two sources. A source whose
    frames raise one of `skip_errors` yields (key, that exception) instead, its boxes dropped; any
    other exception ends the pass.
    """
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.checks import check_imgsz

    imgsz = check_imgsz(cfg.imgsz, stride=backend.stride, min_dim=2)
    letterbox = _Letterbox(LetterBox(imgsz, auto=True, stride=backend.stride))
    nc = len(backend.names)
    feeder = _Feeder(sources, cfg.batch, letterbox, depth or 2 * backend.slots + 1, tuple(skip_errors))
    inflight: deque = deque()
    done: dict[int, list[FrameBoxes]] = {}
    failed: dict[int, BaseException] = {}
    slot = 0

    def finish() -> None:
        s, si, indices, img_hw, origs, _ = inflight.popleft()
        raw = backend.wait(s)
        for index, (xywhn, cls, conf) in zip(
            indices, postprocess(raw, img_hw, origs, cfg.conf, cfg.iou, cfg.max_det, nc, backend.end2end)
        ):
            done.setdefault(si, []).append((index, xywhn, cls, conf))

    # A source is handed back once all its frames were submitted and its last batch is finished; the
    # next source's batches keep the backend busy meanwhile (no drain at every clip's end).
    ended: deque = deque()

    def ready():
        while ended and not any(f[1] == ended[0] for f in inflight):
            si = ended.popleft()
            boxes = done.pop(si, [])
            yield sources[si][0], failed.pop(si) if si in failed else boxes

    feeder.start()
    try:
        while True:
            item = feeder.q.get()
            if item[0] == "batch":
                _, si, indices, arr, origs = item
                if len(inflight) == backend.slots:
                    finish()
                    yield from ready()
                backend.submit(slot, arr)
                inflight.append((slot, si, indices, arr.shape[1:3], origs, arr))  # arr: kept alive
                slot = (slot + 1) % backend.slots
            elif item[0] == "end":
                ended.append(item[1])
                yield from ready()
            elif item[0] == "failed":
                failed[item[1]] = item[2]
                ended.append(item[1])
                yield from ready()
            elif item[0] == "error":
                raise item[1]
            else:
                while inflight:
                    finish()
                    yield from ready()
                yield from ready()
                break
    finally:
        feeder.halt.set()
        while inflight:  # an exported backend may still be reading these batches
            s = inflight.popleft()[0]
            try:
                backend.wait(s)
            except Exception:  # noqa: BLE001
                pass
        feeder.join(timeout=10)
