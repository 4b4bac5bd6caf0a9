"""prepare: the split and frame sampling, and an Ultralytics dataset that Ultralytics accepts."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from visem_pl.tasks.dataset.replica import build_replica
from visem_pl.tasks.training.prepare import PrepareConfig, prepare, sample_frames


def test_sample_frames_stride_and_even_cap():
    frames = list(range(100))
    assert sample_frames(frames, 10, 0) == list(range(0, 100, 10))
    assert sample_frames(frames, 1, 4) == [0, 33, 66, 99]
    assert sample_frames(frames, 5, 1) == [0]
    assert sample_frames([3, 4], 1, 5) == [3, 4]


@pytest.fixture
def project(tmp_path):
    build_replica(tmp_path / "data" / "real", (11, 23, 52), max_frames=30)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


def test_prepare_split_sampling_and_ultralytics_dataset(project):
    counts = prepare(
        "data/real", "data/prepared", PrepareConfig(train_stride=5, max_frames_per_video=4, val_stride=3), val_ids=[52]
    )
    assert counts == {
        "train_videos": 2,
        "val_videos": 1,
        "train_frames": 8,
        "val_frames": 10,
        "train_labelled_frames": 8,
    }
    table = pd.read_csv(project / "data/prepared/frames.csv")
    assert sorted(table[table.split == "train"].video.unique()) == [11, 23]
    assert list(table[(table.split == "train") & (table.video == 11)].frame) == [0, 10, 15, 25]
    assert list(table[table.split == "val"].frame) == list(range(0, 30, 3))
    # Paths are relative to the project folder, so the table is the same in every clone.
    assert not any(p.startswith("/") for p in table.image)

    from visem_pl.tasks.workspace.offline import quiet_ultralytics

    quiet_ultralytics()
    from ultralytics.data.utils import check_det_dataset, img2label_paths

    data = check_det_dataset("data/prepared/data.yaml")
    assert data["nc"] == 3 and data["names"] == {0: "sperm", 1: "cluster", 2: "small_or_pinhead"}
    images = [line for line in open(data["train"]).read().splitlines()]
    assert len(images) == 8
    assert all(os.path.exists(p) for p in images)
    assert all(os.path.exists(p) for p in img2label_paths(images))


def test_prepare_refuses_unknown_validation_video(project):
    with pytest.raises(ValueError, match=r"validation video ids \[60\]"):
        prepare("data/real", "data/prepared", PrepareConfig(), val_ids=[60])
