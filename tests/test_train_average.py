"""train.average_share: the weights a training call writes are an average over its last updates."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.project import REPO

from visem_pl.tasks.synth import SynthConfig, synthesize
from visem_pl.tasks.training.train import TailMean, TrainConfig, average_from_epoch, train


def _average(values: np.ndarray, decay, start_at: int) -> float:
    """Ultralytics' update (ema = d * ema + (1 - d) * model, d = decay(updates)) from values[0]; averaging
    starts (`TailMean.start`) before update `start_at`."""
    ema = values[0]
    for updates, value in enumerate(values[1:], start=1):
        if updates == start_at:
            decay.start(updates - 1)
        d = decay(updates)
        ema = d * ema + (1 - d) * value
    return ema


def test_tail_mean_is_the_last_weights_then_the_plain_mean_from_its_start():
    values = np.random.default_rng(0).normal(size=50)
    assert _average(values, TailMean(), start_at=10**6) == values[-1]  # never started: the last weights
    # Started before update 31: the mean of the weights after updates 30..49 (update 30's state included).
    assert _average(values, TailMean(), start_at=31) == pytest.approx(values[30:].mean())
    assert _average(values, TailMean(), start_at=1) == pytest.approx(values.mean())


def test_the_averaged_epochs_are_the_last_share_at_least_one():
    assert average_from_epoch(8, 0.25) == 6 and average_from_epoch(32, 0.25) == 24
    assert average_from_epoch(8, 1.0) == 0 and average_from_epoch(2, 0.1) == 1 and average_from_epoch(1, 0.25) == 0


def _state(path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {k: v.float() for k, v in (ckpt.get("ema") or ckpt["model"]).state_dict().items() if v.is_floating_point()}


def _distance(a: dict, b: dict) -> float:
    return float(sum(((a[k] - b[k]) ** 2).sum() for k in a if "running" not in k) ** 0.5)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("twin")
    synthesize(root, SynthConfig(seed=0, videos=(11,), frames_per_video=4, rest_clips_per_video=0, other_videos=0,
                                 workers=1), progress=False)  # fmt: skip
    video = next(root.glob("*/Train/11"))
    images = sorted((video / "images").glob("*.jpg"))
    return pd.DataFrame({"image": [str(p) for p in images],
                         "label": [str(video / "labels" / f"{p.stem}.txt") for p in images]})  # fmt: skip


def test_training_writes_the_averaged_weights(tmp_path, frames):
    """Same seed, same crops, same steps: with average_share 1 the written weights are the mean over the whole
    call, which sits between the start weights and the last ones, so nearer the start than the last weights
    (what share 0 writes: Ultralytics' EMA at a few updates is the last weights)."""
    cfg = TrainConfig(model=str(REPO / "models" / "yolov8n.yaml"), epochs=3, batch=8, crop_size=64, crops=32,
                      device="cpu", workers=0, warmup_epochs=0.0, val_crops=8, seed=3)  # fmt: skip
    train(frames, tmp_path / "start", replace(cfg, epochs=1), progress=False)
    start = str(tmp_path / "start" / "weights.pt")
    train(frames, tmp_path / "last", cfg, init=start, progress=False)
    info = train(frames, tmp_path / "mean", replace(cfg, average_share=1.0), init=start, progress=False)
    assert info["config"]["average_share"] == 1.0
    w0, last, mean = (_state(tmp_path / name / "weights.pt") for name in ("start", "last", "mean"))
    moved, averaged = _distance(last, w0), _distance(mean, w0)
    assert moved > 0 and averaged > 0
    assert averaged < 0.8 * moved, (averaged, moved)
