"""Train the sperm detector for one round: Ultralytics YOLO on full-resolution crops.

Round 0 starts from a model `.yaml` (from scratch) or from local weights (e.g. COCO-pretrained
`yolov8n.pt` a lab copied in); round N+1 starts from round N's weights.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.training.crops import cut_crops
from visem_pl.tasks.workspace import offline
from visem_pl.tasks.workspace.device import pick_device
from visem_pl.tasks.workspace.io import atomic_path, write_json
from visem_pl.tasks.workspace.progress import is_terminal
from visem_pl.tasks.workspace.progress import progress as report

WEIGHTS_NAME = "weights.pt"


@dataclass(frozen=True)
class TrainConfig:
    model: str = "yolov8n.yaml"  # a model .yaml (from scratch) or local .pt weights
    epochs: int = 10  # per round that starts from earlier weights (round N+1 from round N)
    # A round that starts from `model` (round 0, or every round with restart_each_round): a model
    # learning from scratch needs several rounds' budget to converge (`visem-pl bench ssl`). 0 = epochs.
    round0_epochs: int = 0
    batch: int = 32
    crop_size: int = 160  # crops cut at full resolution; also the training imgsz
    crops: int = 640  # crops per epoch's dataset
    device: str = "auto"  # auto = first GPU when present, else cpu
    seed: int = 0
    workers: int = 2
    # AdamW at 0.002 x 5 / (4 + 3 classes): what Ultralytics' optimizer=auto picks for runs under
    # 10,000 iterations (it then ignores lr0), written out so the rate is stated and can be changed.
    optimizer: str = "AdamW"
    lr0: float = 0.001429
    # Rounds that start from earlier weights (round N+1 from round N): a converged model is moved less.
    finetune_lr0: float = 0.001429
    warmup_epochs: float = 1.0
    val_crops: int = 64  # small crop set Ultralytics validates on at the last epoch
    # Share of crops cut from trusted frames (labelled or expert-reviewed) when the training
    # set also holds pseudo-labelled frames, so pseudo-labels add to the labels' signal
    # instead of drowning it. 0 = every frame weighs the same.
    trusted_share: float = 0.5
    # The weights a call writes: the mean of the weights after each update of its last `average_share` of
    # epochs (at least one epoch; 0 = Ultralytics' own EMA, whose 2,000-update ramp averages nothing in our
    # calls of 80-320 updates). One call's last raw weights scatter widely in fitness from seed to seed.
    average_share: float = 0.0


def write_yolo_data(workdir: Path, train_images: list[Path], val_images: list[Path]) -> Path:
    """Ultralytics image lists + data YAML with absolute paths (they live in a scratch folder)."""
    (workdir / "train.txt").write_text("".join(f"{p.resolve()}\n" for p in train_images))
    (workdir / "val.txt").write_text("".join(f"{p.resolve()}\n" for p in val_images))
    data = {
        "path": str(workdir.resolve()),
        "train": "train.txt",
        "val": "val.txt",
        "names": dict(enumerate(layout.CLASS_NAMES)),
    }
    path = workdir / "data.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def crop_weights(frames: pd.DataFrame, trusted_share: float) -> list[float] | None:
    """Per-frame crop weights giving trusted frames `trusted_share` of the crops (None = even)."""
    if not trusted_share or "source" not in frames.columns:
        return None
    trusted = frames["source"].isin(["labelled", "reviewed"]).to_numpy()
    if trusted.all() or not trusted.any():
        return None
    return list(np.where(trusted, trusted_share / trusted.sum(), (1 - trusted_share) / (~trusted).sum()))


def training_crops(frames: pd.DataFrame, workdir: Path, cfg: TrainConfig) -> tuple[list[Path], list[Path]]:
    """The crops a round trains and validates on, cut from `frames` (columns image, label[, source])
    under `workdir`: `crops` per epoch's dataset (trusted frames weighted by `trusted_share`), `val_crops`."""
    pairs = [(r.image, r.label if isinstance(r.label, str) else "") for r in frames.itertuples()]
    if not pairs:
        raise ValueError("no training frames")
    weights = crop_weights(frames, cfg.trusted_share)
    train_imgs = cut_crops(pairs, workdir / "crops_train", cfg.crops, cfg.crop_size, seed=cfg.seed, weights=weights)
    val_imgs = cut_crops(pairs, workdir / "crops_val", cfg.val_crops, cfg.crop_size, seed=cfg.seed + 1)
    return train_imgs, val_imgs


def fine_tune(cfg: TrainConfig) -> TrainConfig:
    """The recipe of a round that starts from earlier weights: `finetune_lr0` instead of `lr0`."""
    return replace(cfg, lr0=cfg.finetune_lr0)


def from_model(cfg: TrainConfig) -> TrainConfig:
    """The recipe of a round that starts from `model`: `round0_epochs` when set."""
    return replace(cfg, epochs=cfg.round0_epochs or cfg.epochs)


def train(
    frames: pd.DataFrame,
    out_dir: Path | str,
    cfg: TrainConfig,
    init: str | None = None,
    workdir: Path | str | None = None,
    progress: bool = True,
) -> dict:
    """Cut crops from `frames` (columns image, label), train, write `weights.pt` + `train.json`.

    `init` overrides `cfg.model` with earlier weights (round N+1 from round N). `progress`: one step
    per epoch with its mean losses, on stderr (False: silent).
    """
    offline.quiet_ultralytics()
    from ultralytics import YOLO

    out_dir = Path(out_dir)
    workdir = Path(workdir) if workdir else out_dir.parent / f".{out_dir.name}.work"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    started = time.time()
    data = write_yolo_data(workdir, *training_crops(frames, workdir, cfg))
    source = init or cfg.model
    model = YOLO(source)
    # One line per epoch whatever the interval: an epoch is long, and its losses belong in the log.
    with report("train", cfg.epochs, "epochs", enabled=progress, interval=0) as bar, _no_batch_bars():

        def epoch_done(trainer) -> None:
            # By the trainer's own epoch: the final validation runs this callback once more, at epochs + 1.
            done = min(trainer.epoch + 1, cfg.epochs)
            if done > bar.completed:
                bar.advance(done - bar.completed, note=_losses(trainer.tloss))

        model.add_callback("on_fit_epoch_end", epoch_done)
        if cfg.average_share > 0:
            _average_weights(model, cfg)
        model.train(
            data=str(data),
            epochs=cfg.epochs,
            imgsz=cfg.crop_size,
            batch=cfg.batch,
            device=pick_device(cfg.device),
            workers=cfg.workers,
            seed=cfg.seed,
            deterministic=True,
            project=str(workdir.resolve()),
            name="run",
            exist_ok=True,
            plots=False,
            val=False,
            optimizer=cfg.optimizer,
            lr0=cfg.lr0,
            momentum=0.9,  # AdamW's beta1, and no bias warm-up: auto's settings
            warmup_bias_lr=0.0,
            warmup_epochs=cfg.warmup_epochs,
            amp=False,
            verbose=False,
            # Microscopy has no up or down and heads have one physical size.
            flipud=0.5,
            fliplr=0.5,
            degrees=0.0,
            scale=0.1,
            mosaic=1.0,
            close_mosaic=0,
            hsv_h=0.0,
            hsv_s=0.0,
        )
    run = workdir / "run"
    best = run / "weights" / "last.pt"
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / WEIGHTS_NAME) as tmp:
        shutil.copyfile(best, tmp)
    log = run / "results.csv"
    if log.exists():
        shutil.copyfile(log, out_dir / "train_log.csv")
    iterations = cfg.epochs * -(-cfg.crops // cfg.batch)
    info = {
        "source": source,
        "config": asdict(cfg),
        "frames": len(frames),
        "labelled_frames": int(frames["label"].map(lambda v: isinstance(v, str) and v != "").sum()),
        "iterations": iterations,
        "seconds": round(time.time() - started, 1),
    }
    write_json(out_dir / "train.json", info)
    shutil.rmtree(workdir, ignore_errors=True)
    return info


class TailMean:
    """The decay of Ultralytics' EMA (ema = d * ema + (1 - d) * model after each update) that makes it the
    plain mean of the weights over the updates after `start()`: d = 0 before (the EMA is the model), then
    k / (k + 1) at the k-th update after it."""

    def __init__(self) -> None:
        self.first: int | None = None  # the EMA's update count when averaging began

    def start(self, updates: int) -> None:
        if self.first is None:
            self.first = updates

    def __call__(self, updates: int) -> float:
        if self.first is None:
            return 0.0
        k = updates - self.first
        return k / (k + 1.0)


def average_from_epoch(epochs: int, share: float) -> int:
    """The first epoch (0-based) whose updates `average_share` averages: the last `share` of them, at least one."""
    return max(0, epochs - max(1, round(share * epochs)))


def _average_weights(model, cfg: TrainConfig) -> None:
    """Callbacks on `model` that make the written weights the mean over the last `average_share` of epochs."""
    mean, first = TailMean(), average_from_epoch(cfg.epochs, cfg.average_share)

    def setup(trainer) -> None:  # the trainer's EMA exists from here (Ultralytics saves it as the weights)
        trainer.ema.decay = mean

    def epoch_start(trainer) -> None:
        if trainer.epoch >= first:
            mean.start(trainer.ema.updates)

    model.add_callback("on_pretrain_routine_end", setup)
    model.add_callback("on_train_epoch_start", epoch_start)


def _losses(tloss) -> str:
    """`box loss 1.23, cls loss 2.05, dfl loss 1.1`: the epoch's mean losses (Ultralytics 8.4: a dict)."""
    if not isinstance(tloss, dict):
        return ""
    return ", ".join(f"{name.replace('_', ' ')} {float(value):.3g}" for name, value in tloss.items())


@contextmanager
def _no_batch_bars():
    """Ultralytics' per-batch bars (on stdout, with YOLO_VERBOSE=true) redraw with '\\r' and escape codes
    whether or not stdout is a terminal, and its INFO lines are coloured: in a log, noise beside our epoch
    lines. Its logger above INFO turns both off (ultralytics/utils/tqdm.py); warnings stay."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    if not is_terminal(sys.stdout):
        LOGGER.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        LOGGER.setLevel(level)
