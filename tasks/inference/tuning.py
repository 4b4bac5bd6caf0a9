"""`infer: auto` settled by measurement: the fastest configuration of this machine for this model.

CPU flags do not say which precision is faster: OpenVINO's own default (bf16 wherever the CPU has
AVX512_BF16) was 1.45x slower than f32 on a CPU without AMX, and bf16 is the faster one on a CPU
with AMX. So each setting left at `auto` (backend, precision, batch, OpenVINO streams) is settled
by a short timed trial of the candidates on the round's own model and frames: the forward pass
alone, each candidate timed twice, interleaved, the best kept. The winner and every number seen
are cached per machine, weights file and settings (`.cache/exports/trials/`, beside the exported
models), logged, and the winner's label goes into each clip's resume fingerprint. Precisions change
the boxes a little, so a less exact one wins only by a margin beyond the trial's noise
(`most_exact`); otherwise two runs on one machine could pick different precisions, and so different
pseudo-labels.

Candidates (docs/INFERENCE.md):
- CPU: OpenVINO f32, bf16 (where the plugin reports native BF16), INT8 (NNCF post-training
  quantization, only once it passed its fitness check: `int8.py`) and INT8 with bf16 for the
  layers left in float; PyTorch fp32. Then batch sizes, then OpenVINO's THROUGHPUT streams
  against one LATENCY stream.
- CUDA: PyTorch fp16 and fp32, and ONNX Runtime's TensorRT or CUDA provider where that package
  is installed with them; then batch sizes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from visem_pl.tasks.workspace import offline
from visem_pl.tasks.workspace.io import atomic_path

log = logging.getLogger(__name__)

TRIAL_VERSION = 2  # bump when the trial's method changes: cached choices are then measured again
TRIAL_FRAMES = 32  # frames of the first clip, letterboxed as inference sees them
TRIAL_SECONDS = 0.5  # per timed measurement, after a warm-up batch on every request
TRIAL_REPEATS = 2  # interleaved measurements per candidate; the best is kept
CPU_BATCHES = (1, 2, 4, 8, 16)
CUDA_BATCHES = (8, 16, 32, 64)
DEFAULT_BATCH = {"cpu": 8, "cuda": 32}
OV_PRECISIONS = ("f32", "bf16", "int8", "int8-bf16")
TORCH_PRECISIONS = ("fp32", "fp16")
STREAMS = ("throughput", "latency")  # OpenVINO performance hints: its own stream count, or one stream
# Precisions from the most exact to the least: each one's boxes differ a little from the one before.
EXACTNESS = {"f32": 0, "fp32": 0, "bf16": 1, "fp16": 1, "int8": 2, "int8-bf16": 3}
# A less exact precision is picked only where it is this much faster than the most exact one within reach:
# two candidates closer than the trial's noise (int8 and int8-bf16 here: 9 % apart, and either came first
# in runs on one machine) would otherwise pick different boxes, and so different pseudo-labels, run to run.
PRECISION_MARGIN = 1.15


@dataclass(frozen=True)
class Config:
    """One way of running the model: what a trial times and what a clip's fingerprint records."""

    kind: str  # openvino | torch | onnxruntime
    precision: str  # openvino: f32 | bf16 | int8 | int8-bf16; torch / onnxruntime: fp32 | fp16
    batch: int
    device: str = "cpu"  # as Ultralytics spells it: "cpu", "0", "mps"
    streams: str = "throughput"  # openvino only: throughput | latency
    provider: str = ""  # onnxruntime only: TensorrtExecutionProvider | CUDAExecutionProvider | ...

    def label(self) -> str:
        if self.kind == "openvino":
            from visem_pl.tasks.inference.backends import openvino_version

            return f"openvino/{openvino_version()}/{self.precision}/b{self.batch}/{self.streams}"
        where = "cpu" if self.device == "cpu" else "mps" if self.device == "mps" else "cuda"
        if self.kind == "onnxruntime":
            return f"onnxruntime/{self.provider}/{self.precision}/b{self.batch}"
        return f"torch/{where}/{self.precision}/b{self.batch}"


@dataclass
class Choice:
    """The configuration to run and how it was reached (`trials`: [{config, fps}], best first)."""

    config: Config
    measured: bool
    trials: list
    machine: dict
    int8: dict | None = None

    @property
    def label(self) -> str:
        return self.config.label()

    def load(self, weights: Path | str, model_sha: str | None = None, cache_dir: Path | str | None = None):
        """The chosen configuration, loaded (`backends.build_backend`, with the INT8 model it may need)."""
        from visem_pl.tasks.inference.backends import build_backend

        return build_backend(self.config, weights, model_sha, cache_dir, int8_xml=qualified_xml(self.int8))

    @classmethod
    def from_record(cls, record: dict) -> Choice:
        return cls(
            Config(**record["config"]), record["measured"], record["trials"], record["machine"], record.get("int8")
        )

    def record(self) -> dict:
        return {
            "label": self.label,
            "config": asdict(self.config),
            "measured": self.measured,
            "trials": self.trials,
            "machine": self.machine,
            "int8": self.int8,
        }


def qualified_xml(int8: dict | None) -> Path | None:
    """The INT8 model of a fitness check that passed, else None."""
    return Path(int8["xml"]) if int8 and int8.get("qualified") else None


# ----------------------------------------------------------------------------------------------
# This machine


def machine() -> dict:
    """What decides the speed of a configuration here: CPU model, cores, flags, library versions, GPU."""
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags" and not flags:
                wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
                flags = [f for f in value.split() if f in wanted]
    except OSError:
        pass
    import torch
    import ultralytics

    from visem_pl.tasks.inference.backends import openvino_caps, openvino_version

    info = {
        "cpu": cpu,
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "flags": sorted(flags),
        "openvino": openvino_version(),
        "openvino_caps": openvino_caps(),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Candidates


def onnxruntime_providers() -> list[str]:
    """ONNX Runtime's GPU providers available here ([] when the package is absent)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    wanted = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    return [p for p in onnxruntime.get_available_providers() if p in wanted]


def first_stage(
    backend: str,
    precision: str,
    batch: int,
    device: str,
    openvino: bool,
    bf16: bool,
    int8: bool,
    ort_providers: Iterable[str] = (),
) -> list[Config]:
    """The kinds and precisions to try at one batch size, given what this machine offers.

    `openvino`: the package is installed and the export worked; `bf16`: the CPU plugin computes
    bf16 natively; `int8`: a quantized model passed its fitness check for these weights.
    """
    out: list[Config] = []
    if device == "cpu":
        if backend in ("auto", "openvino") and openvino:
            precisions = [p for p in OV_PRECISIONS if (bf16 or "bf16" not in p) and (int8 or "int8" not in p)]
            if precision != "auto":
                precisions = [precision]
            out += [Config("openvino", p, batch, device) for p in precisions]
        if backend in ("auto", "torch"):
            if precision in ("auto", "fp32") or backend == "torch":
                out.append(Config("torch", "fp32", batch, device))
        if backend == "onnxruntime":  # asked for by name only: OpenVINO is the faster CPU runtime
            out.append(Config("onnxruntime", "fp32", batch, device, provider="CPUExecutionProvider"))
    else:  # CUDA (or MPS): half precision where the device has it
        half_ok = device != "mps"
        precisions = [p for p in ("fp16", "fp32") if half_ok or p == "fp32"]
        if precision != "auto":
            precisions = [precision]
        if backend in ("auto", "torch"):
            out += [Config("torch", p, batch, device) for p in precisions]
        if backend in ("auto", "onnxruntime"):
            out += [
                Config("onnxruntime", p, batch, device, provider=prov) for prov in ort_providers for p in precisions
            ]
    return out


# ----------------------------------------------------------------------------------------------
# Timing


def time_forward(backend, batches: list[np.ndarray], seconds: float) -> float:
    """Frames per second of the forward pass alone: the pipeline's submit/wait over every request,
    on frames already decoded and letterboxed, for at least `seconds` after a warm-up."""
    slots = backend.slots
    for s in range(min(slots, len(batches))):  # warm-up: first inference of each request
        backend.submit(s, batches[s % len(batches)])
    for s in range(min(slots, len(batches))):
        backend.wait(s)
    inflight: list[int] = []
    slot = frames = 0
    t0 = time.perf_counter()
    while True:
        for arr in batches:
            if len(inflight) == slots:
                backend.wait(inflight.pop(0))
            backend.submit(slot, arr)
            inflight.append(slot)
            slot = (slot + 1) % slots
            frames += len(arr)
        if time.perf_counter() - t0 >= seconds:
            break
    for s in inflight:
        backend.wait(s)
    return frames / (time.perf_counter() - t0)


def batches_of(frames: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """Whole batches of `batch` frames (the frames repeated when fewer than one batch)."""
    if len(frames) < batch:
        frames = (frames * (batch // max(1, len(frames)) + 1))[:batch]
    return [np.stack(frames[i : i + batch]) for i in range(0, len(frames) - batch + 1, batch)]


def measure(
    configs: list[Config], build: Callable[[Config], object], frames: list[np.ndarray], seconds: float, repeats: int
) -> list[dict]:
    """[{config, fps}] for every config that could be built, fastest first; interleaved repeats."""
    built = []
    for cfg in configs:
        try:
            built.append((cfg, build(cfg)))
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot run here is not a candidate
            log.warning("inference trial: %s cannot run here (%s: %s)", cfg.label(), type(exc).__name__, exc)
    best: dict[Config, float] = {}
    for _ in range(repeats):
        for cfg, backend in built:
            fps = time_forward(backend, batches_of(frames, cfg.batch), seconds)
            best[cfg] = max(best.get(cfg, 0.0), fps)
    rows = [{"config": cfg, "label": cfg.label(), "fps": round(fps, 2)} for cfg, fps in best.items()]
    return sorted(rows, key=lambda r: -r["fps"])


def most_exact(rows: list[dict], margin: float = PRECISION_MARGIN) -> dict:
    """Of a trial's rows (fastest first), the most exact precision among those within `margin` of the
    fastest, and its fastest row: speed decides only where it is clearly more than the trial's noise."""
    near = [r for r in rows if r["fps"] * margin >= rows[0]["fps"]]
    return min(near, key=lambda r: (EXACTNESS[r["config"].precision], -r["fps"]))


# ----------------------------------------------------------------------------------------------
# The choice


def _requested_batch(batch) -> int | None:
    if batch == "auto":
        return None
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"params.yaml infer: batch {batch!r} is neither a positive whole number nor 'auto'")
    return batch


def fixed_config(cfg, dev: str) -> Config | None:
    """The configuration `cfg` names outright (nothing left at auto), else None."""
    from visem_pl.tasks.inference.backends import resolve

    kind, _ = resolve(cfg.backend, dev)
    batch = _requested_batch(cfg.batch)
    if cfg.backend == "auto" or batch is None:
        return None
    if kind == "openvino":
        if cfg.precision == "auto":
            return None
        if cfg.precision not in OV_PRECISIONS:
            raise ValueError(f"params.yaml infer: precision {cfg.precision!r} is not one of {['auto', *OV_PRECISIONS]}")
        return Config("openvino", cfg.precision, batch, dev)
    if kind == "torch":
        half = dev not in ("cpu", "mps")
        precision = cfg.precision if cfg.precision in TORCH_PRECISIONS else ("fp16" if half else "fp32")
        if cfg.precision not in ("auto", *TORCH_PRECISIONS, "f32"):
            raise ValueError(
                f"params.yaml infer: precision {cfg.precision!r} is not one of {['auto', *TORCH_PRECISIONS]}"
            )
        return Config("torch", "fp32" if cfg.precision == "f32" else precision, batch, dev)
    if kind == "onnxruntime" and cfg.precision != "auto":
        providers = onnxruntime_providers() if dev != "cpu" else ["CPUExecutionProvider"]
        if not providers:
            raise ValueError("params.yaml infer: backend onnxruntime on a GPU needs onnxruntime-gpu (none installed)")
        precision = "fp32" if cfg.precision == "f32" else cfg.precision
        return Config("onnxruntime", precision, batch, dev, provider=providers[0])
    return None


def choose(
    weights: Path | str,
    cfg,
    trial_frames: Callable[[], list[np.ndarray]],
    cache_dir: Path | str,
    model_sha: str | None = None,
    int8_check: Callable[[], dict] | None = None,
    int8_key: str = "",
    seconds: float = TRIAL_SECONDS,
    repeats: int = TRIAL_REPEATS,
) -> Choice:
    """The configuration to run `weights` with, given `cfg` (an InferConfig: backend, precision,
    batch, device, imgsz). Settings left at auto are measured once per machine, weights and
    settings and cached; `trial_frames()` gives letterboxed uint8 frames; `int8_check()`, where
    given, quantizes the model and returns its fitness check ({"qualified": bool, ...}); `int8_key`
    names the frames it uses (another calibration or validation set is measured again)."""
    from visem_pl.tasks.inference.backends import resolve
    from visem_pl.tasks.workspace.io import file_sha256

    kind, dev = resolve(cfg.backend, cfg.device)
    here = machine()
    fixed = fixed_config(cfg, dev)
    if fixed is not None:
        record = _int8_record(cfg, int8_check) if "int8" in fixed.precision else None
        return Choice(fixed, measured=False, trials=[], machine=here, int8=record)
    model_sha = model_sha or file_sha256(weights)
    requested = {k: getattr(cfg, k) for k in ("backend", "precision", "batch", "device", "imgsz")}
    int8_key = int8_key if int8_check is not None else "none"
    key = _digest(
        {"v": TRIAL_VERSION, "machine": here, "model": model_sha, "requested": requested, "dev": dev, "int8": int8_key}
    )
    trials_dir = Path(cache_dir) / "trials"
    trials_dir.mkdir(parents=True, exist_ok=True)
    path = trials_dir / f"{model_sha[:16]}-{key}.json"
    # One trial at a time per machine: parallel clip workers wait for the first and read its result,
    # and no trial is timed while another one loads the cores.
    with open(trials_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.exists():
                cached = json.loads(path.read_text())
                choice = Choice.from_record(cached)
                log.info("inference: %s (measured %s; %s)", choice.label, cached.get("measured_at"), path.name)
                return choice
            choice = _trial(weights, cfg, dev, model_sha, trial_frames(), cache_dir, int8_check, seconds, repeats)
            choice.machine = here
            with atomic_path(path) as tmp:
                Path(tmp).write_text(
                    json.dumps({**choice.record(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2)
                )
            return choice
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _int8_record(cfg, int8_check) -> dict:
    """The INT8 model's fitness check; asked for by name, a model that failed it (or cannot be checked) is refused."""
    if int8_check is None:
        raise ValueError(
            f"params.yaml infer: precision {cfg.precision!r} needs the round's labelled frames for calibration "
            "and its validation frames for the fitness check (run it through `visem-pl infer`)"
        )
    record = int8_check()
    if not record.get("qualified") and cfg.precision != "auto":
        raise ValueError(
            f"params.yaml infer: precision {cfg.precision!r} refused: "
            + (
                record["error"]
                if record.get("error")
                else f"the INT8 model's validation fitness {record.get('int8_fitness')} is more than "
                f"{record.get('tolerance')} below f32's {record.get('f32_fitness')}"
            )
        )
    return record


def _trial(weights, cfg, dev, model_sha, frames, cache_dir, int8_check, seconds, repeats) -> Choice:
    from visem_pl.tasks.inference.backends import build_backend, export_openvino, openvino_caps

    offline.quiet_ultralytics()
    batch = _requested_batch(cfg.batch)
    start_batch = batch or DEFAULT_BATCH["cpu" if dev == "cpu" else "cuda"]
    openvino_ok = False
    if dev == "cpu" and cfg.backend in ("auto", "openvino"):
        try:
            export_openvino(weights, model_sha, cache_dir)
            openvino_ok = True
        except Exception as exc:  # noqa: BLE001 - OpenVINO absent or the export failed: PyTorch only
            log.warning("OpenVINO export failed (%s: %s); trying PyTorch only", type(exc).__name__, exc)
    int8 = None
    if openvino_ok and cfg.precision in ("auto", "int8", "int8-bf16") and (int8_check or cfg.precision != "auto"):
        int8 = _int8_record(cfg, int8_check)
    stage1 = first_stage(
        cfg.backend,
        cfg.precision,
        start_batch,
        dev,
        openvino=openvino_ok,
        bf16="BF16" in openvino_caps() if openvino_ok else False,
        int8=bool(int8 and int8.get("qualified")),
        ort_providers=onnxruntime_providers() if dev != "cpu" else (),
    )
    if not stage1:
        raise ValueError(
            f"params.yaml infer: nothing can run backend {cfg.backend!r} with precision {cfg.precision!r} on {dev!r}"
        )
    int8_xml = qualified_xml(int8)

    def build(c: Config):
        return build_backend(c, weights, model_sha, cache_dir, int8_xml=int8_xml, fallback=False)

    rows = measure(stage1, build, frames, seconds, repeats) if len(stage1) > 1 or batch is None else []
    picked = most_exact(rows) if rows else None
    best = picked["config"] if picked else stage1[0]
    if picked and best.precision != rows[0]["config"].precision:
        log.info(
            "inference trial: %s kept over %s (%.0f%% faster, under the %.2fx a less exact precision needs)",
            best.precision,
            rows[0]["config"].precision,
            100 * (rows[0]["fps"] / picked["fps"] - 1),
            PRECISION_MARGIN,
        )

    def fastest_like(chosen: Config) -> Config:  # batch and streams do not change the precision
        key = (chosen.kind, chosen.precision)
        return next(r["config"] for r in rows if (r["config"].kind, r["config"].precision) == key)

    if batch is None:  # then the batch size, for the chosen kind and precision
        sizes = CPU_BATCHES if dev == "cpu" else CUDA_BATCHES
        more = measure([replace(best, batch=b) for b in sizes if b != best.batch], build, frames, seconds, repeats)
        rows = sorted(rows + more, key=lambda r: -r["fps"])
        best = fastest_like(best)
    if best.kind == "openvino":  # then OpenVINO's streams: its THROUGHPUT streams or one LATENCY stream
        other = [replace(best, streams=s) for s in STREAMS if s != best.streams]
        rows = sorted(rows + measure(other, build, frames, seconds, repeats), key=lambda r: -r["fps"])
        best = fastest_like(best)
    table = [{"label": r["label"], "fps": r["fps"], "config": asdict(r["config"])} for r in rows]
    log.info(
        "inference trial on %d frames: %s -> %s",
        len(frames),
        ", ".join(f"{r['label']} {r['fps']} frames/s" for r in table),
        best.label(),
    )
    return Choice(best, measured=True, trials=table, machine={}, int8=int8)
