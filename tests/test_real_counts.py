"""The real numbers: label files rebuilt from the real `sperm_counts_per_frame.csv` must validate to
exactly the real totals of VISEM-Tracking (FORMAT.md)."""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from dataclasses import replace

import pytest
from helpers.trees import Tree

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.counts import REFERENCE_COUNTS
from visem_pl.tasks.dataset.reader import locate
from visem_pl.tasks.dataset.replica import build_replica
from visem_pl.tasks.dataset.validate import validate

GAPS_23 = set(range(823, 973)) | set(range(1084, 1108))


def csv_per_video() -> dict[int, dict]:
    """Straight from the real CSV: per video, its labelled frames and boxes per class."""
    out: dict[int, dict] = defaultdict(lambda: {"frames": set(), "boxes": [0, 0, 0]})
    with open(REFERENCE_COUNTS, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, skipinitialspace=True)
        assert tuple(next(reader)) == layout.COUNTS_HEADER
        for name, *counts in reader:
            vid, frame = name.split("_frame_")
            entry = out[int(vid)]
            entry["frames"].add(int(frame))
            entry["boxes"] = [a + int(b) for a, b in zip(entry["boxes"], counts)]
    return dict(out)


@pytest.fixture(scope="session")
def full_tree(tmp_path_factory) -> Tree:
    root = tmp_path_factory.mktemp("real") / "visem"
    yield Tree(root, build_replica(root))
    shutil.rmtree(root, ignore_errors=True)  # 88k files: do not leave them to pytest's retention


@pytest.fixture(scope="session")
def lines_per_frame(full_tree) -> dict[int, list[int]]:
    """Video id -> number of lines of each labels/ file, read from the tree."""
    out = {}
    for vid, video in locate(full_tree.root).videos.items():
        out[vid] = []
        for frame in video.labelled_frames():
            with open(video.label_path(frame), "rb") as fh:
                out[vid].append(fh.read().count(b"\n"))
    return out


@pytest.fixture(scope="session")
def full_report(full_tree):
    return validate(full_tree.root)


def test_reference_csv_has_the_real_totals():
    per_video = csv_per_video()
    assert sorted(per_video) == list(layout.ANNOTATED_IDS)
    assert sum(len(v["frames"]) for v in per_video.values()) == 29196
    assert [sum(v["boxes"][c] for v in per_video.values()) for c in range(3)] == [612377, 21846, 22112]


def test_full_replica_validates_to_the_real_totals(full_tree, full_report):
    assert full_report.problems == []
    s = full_report.summary
    assert s["videos"] == 20
    assert s["images"] == 29370
    assert s["label_files"] == 29196
    assert s["frames_without_labels"] == 174
    assert s["boxes"] == {"sperm": 612377, "cluster": 21846, "small_or_pinhead": 22112}
    assert sum(s["boxes"].values()) == 656335
    assert s["participants"] == 20
    assert s == full_tree.expected


def test_full_replica_frames_per_video_and_video_23_gaps(full_tree):
    ds = locate(full_tree.root)
    assert list(ds.videos) == list(layout.ANNOTATED_IDS)
    lengths = {vid: len(v.frames()) for vid, v in ds.videos.items()}
    assert lengths == {vid: {35: 1440, 52: 1440, 82: 1500}.get(vid, 1470) for vid in layout.ANNOTATED_IDS}
    v23 = ds.videos[23]
    assert len(v23.labelled_frames()) == 1296
    assert set(v23.frames()) - set(v23.labelled_frames()) == GAPS_23
    assert all(
        v23.image_path(f).is_file() and not v23.label_path(f).exists() and not v23.ftid_path(f).exists()
        for f in (823, 900, 972, 1084, 1107)
    )
    assert v23.label_path(822).is_file() and v23.label_path(973).is_file() and v23.label_path(1108).is_file()
    others = [vid for vid in layout.ANNOTATED_IDS if vid != 23]
    assert all(ds.videos[vid].frames() == ds.videos[vid].labelled_frames() for vid in others)


def test_full_replica_boxes_per_labelled_frame(lines_per_frame):
    per_frame = [n for counts in lines_per_frame.values() for n in counts]
    assert len(per_frame) == 29196 and sum(per_frame) == 656335
    assert (min(per_frame), max(per_frame)) == (1, 71)
    assert round(sum(per_frame) / len(per_frame), 1) == 22.5


def test_official_split_totals(full_tree, lines_per_frame):
    train, val = locate(full_tree.root).split()
    for videos, frames, boxes in ((train, 23316, 529722), (val, 5880, 126613)):
        assert sum(len(lines_per_frame[v.id]) for v in videos) == frames
        assert sum(sum(lines_per_frame[v.id]) for v in videos) == boxes


@pytest.fixture(scope="session")
def two_video_tree(tmp_path_factory) -> Tree:
    root = tmp_path_factory.mktemp("real2") / "visem"
    yield Tree(root, build_replica(root, (11, 23)))
    shutil.rmtree(root, ignore_errors=True)


def test_two_videos_per_video_counts_match_the_csv(two_video_tree, run_cli):
    per_video = csv_per_video()
    ds = locate(two_video_tree.root)
    for vid, empty in ((11, 0), (23, 174)):
        s = validate(two_video_tree.root, dataset=replace(ds, videos={vid: ds.videos[vid]})).summary
        assert s["images"] == 1470
        assert s["label_files"] == len(per_video[vid]["frames"]) == 1470 - empty
        assert s["frames_without_labels"] == empty
        assert s["boxes"] == dict(zip(layout.CLASS_NAMES, per_video[vid]["boxes"]))
        assert set(ds.videos[vid].labelled_frames()) == per_video[vid]["frames"]
    report = validate(two_video_tree.root)
    assert report.problems == [] and report.summary == two_video_tree.expected
    assert report.summary["boxes"] == dict(
        zip(layout.CLASS_NAMES, (per_video[11]["boxes"][c] + per_video[23]["boxes"][c] for c in range(3)))
    )
    rc, out, err = run_cli("validate", two_video_tree.root, "--json")
    assert rc == 0, err
    assert json.loads(out) == report.summary
