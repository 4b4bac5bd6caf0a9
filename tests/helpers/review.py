"""One round's review queue built from the synthetic truth, and an expert's edits of it (the review-queue
and live Label Studio tests share them)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from helpers.predfiles import write_predictions
from helpers.trees import tiny_twin
from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.reader import locate
from visem_pl.tasks.dataset.truth import truth_for
from visem_pl.tasks.pseudo.bands import filter_round, label_texts, parse_bands
from visem_pl.tasks.pseudo.merge import merge_round
from visem_pl.tasks.review.priority import QueueConfig, build_queue
from visem_pl.tasks.review.queue import read_queue, write_queue
from visem_pl.tasks.review.store import QueueStore, merged_items

BANDS = parse_bands({n: {"low": 0.2, "high": 0.6} for n in layout.CLASS_NAMES})
A, B = "11_30_60", "84_0_30"
FRAMES_PER_CLIP = 10


def make_queue_synth(root: Path) -> Path:
    tiny_twin(
        root,
        seed=1,
        videos=(11, 52),
        frames_per_video=FRAMES_PER_CLIP,
        rest_clips_per_video=1,
        other_videos=1,
        frames_per_clip=FRAMES_PER_CLIP,
    )
    return root


def truth_rows(gt: pd.DataFrame, frame: int, conf: float) -> list[tuple]:
    return [(frame, int(t[3]), t.cx, t.cy, t.w, t.h, conf) for t in gt.itertuples()]


def make_queue_round(synth_root: Path, tmp: Path) -> Path:
    """Predictions from the truth: A frame 0 all in the review band, A frame 2 accepted plus one doubtful
    box on a cell, A frame 4 accepted only (stays pseudo), B frame 1 one doubtful box."""
    truth = truth_for(synth_root)
    a0, a2, a4, b1 = truth.frame(A, 0), truth.frame(A, 2), truth.frame(A, 4), truth.frame(B, 1)
    assert min(len(a0), len(a2), len(a4), len(b1)) >= 4
    rows_a = (
        truth_rows(a0, 0, 0.45)
        + truth_rows(a2.iloc[1:], 2, 0.9)
        + truth_rows(a2.iloc[:1], 2, 0.3)
        + truth_rows(a4, 4, 0.9)
    )
    write_predictions(tmp / "predictions", A, rows_a, frames_scored=5, stride=2)
    write_predictions(tmp / "predictions", B, truth_rows(b1.iloc[:1], 1, 0.5), frames_scored=FRAMES_PER_CLIP)
    filter_round(tmp / "predictions", tmp / "pseudo", BANDS)
    write_queue(
        build_queue(tmp / "predictions", BANDS, QueueConfig(per_clip_max=2, max_items=0)), tmp / "pseudo" / "queue.csv"
    )
    return tmp


ITEMS = [f"{A}_frame_0", f"{A}_frame_2", f"{B}_frame_1"]


def new_store(round_dir, where: Path) -> QueueStore:
    store = QueueStore(where)
    store.init(read_queue(round_dir / "pseudo" / "queue.csv"), 0)
    return store


def edit(boxes: list[list]) -> list[list]:
    """The expert's edits of one frame (rows [cls, cx, cy, w, h]): move the 1st box right by 0.01,
    delete the 2nd, relabel the 3rd (sperm <-> cluster), add a small/pinhead box."""
    out = [list(b) for b in boxes]
    out[0][1] += 0.01
    out[2][0] = 1 if out[2][0] == 0 else 0
    del out[1]
    out.append([2, 0.1, 0.1, 0.03, 0.03])
    return out


def pred_rows(boxes: pd.DataFrame, clip: str, frame: int) -> list[list]:
    g = boxes[(boxes["clip"] == clip) & (boxes["frame"] == frame) & (boxes["band"] != "reject")]
    g = g.sort_values("conf", ascending=False, kind="stable")
    return [[int(r.cls), float(r.cx), float(r.cy), float(r.w), float(r.h)] for r in g.itertuples()]


def expected_answers(boxes: pd.DataFrame) -> dict[str, list[list]]:
    """A frame 0 edited, A frame 2 accepted as predicted, B frame 1 cleared (its box was on a cell,
    but the expert says no)."""
    return {f"{A}_frame_0": edit(pred_rows(boxes, A, 0)), f"{A}_frame_2": pred_rows(boxes, A, 2), f"{B}_frame_1": []}


def parse_labels(text: str) -> list[list]:
    return [[int(f[0])] + [float(v) for v in f[1:]] for f in (ln.split() for ln in text.splitlines())]


def check_merged(synth_root, round_dir, store: QueueStore, tmp_path, monkeypatch):
    """Merge with the store's answers: reviewed frames hold exactly the edits, the rest pseudo-labels."""
    monkeypatch.chdir(tmp_path)
    boxes = pd.read_parquet(round_dir / "pseudo" / "boxes.parquet")
    accepted = boxes[boxes["band"] == "accept"]
    stats = merge_round(
        0,
        pd.DataFrame(columns=["image", "label"]),
        accepted,
        [(0, store.labels)],
        locate(synth_root).clips(),
        "merged",
    )
    frames = pd.read_csv(tmp_path / "merged" / "frames.csv", keep_default_na=False)
    assert dict(zip(frames["image"], frames["source"])) == {
        f"merged/images/{A}_frame_0.jpg": "reviewed",
        f"merged/images/{A}_frame_2.jpg": "reviewed",
        f"merged/images/{A}_frame_4.jpg": "pseudo",
        f"merged/images/{B}_frame_1.jpg": "reviewed",
    }
    assert stats["frames"] == {"labelled": 0, "pseudo": 1, "reviewed": 3}
    for item, want in expected_answers(boxes).items():
        got = parse_labels((tmp_path / "merged" / "labels" / f"{item}.txt").read_text())
        assert [g[0] for g in got] == [w[0] for w in want], item
        for g, w in zip(got, want):
            assert g[1:] == pytest.approx(w[1:], abs=1.5e-6), item
    assert (tmp_path / "merged" / "labels" / f"{A}_frame_4.txt").read_text() == dict(label_texts(accepted))[
        f"{A}_frame_4"
    ]
    assert merged_items(tmp_path / "merged" / "frames.csv") == set(ITEMS)
    assert store.status(merged_items(tmp_path / "merged" / "frames.csv"))["states"] == {
        "pending": 0,
        "exported": 0,
        "reviewed": 0,
        "merged": 3,
    }


def region(cls, cx, cy, w, h, rid):
    return {
        "id": rid,
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": 640,
        "original_height": 480,
        "image_rotation": 0,
        "origin": "manual",
        "value": {
            "x": (cx - w / 2) * 100,
            "y": (cy - h / 2) * 100,
            "width": w * 100,
            "height": h * 100,
            "rotation": 0,
            "rectanglelabels": [layout.CLASS_NAMES[int(cls)]],
        },
    }


def labelstudio_export(tasks: list[dict], answers: dict[str, list[list]]) -> list[dict]:
    """What Label Studio's JSON export of the project looks like after the expert's work."""
    out = []
    for k, t in enumerate(tasks, start=1):
        rows = answers[t["data"]["item"]]
        out.append(
            {
                "id": k,
                "data": t["data"],
                "predictions": [1],
                "drafts": [],
                "meta": {},
                "annotations": [
                    {
                        "id": 100 + k,
                        "completed_by": 1,
                        "was_cancelled": False,
                        "ground_truth": False,
                        "created_at": "2024-05-02T09:00:00.000000Z",
                        "lead_time": 12.5,
                        "result": [region(*r, f"r{j}") for j, r in enumerate(rows)],
                    }
                ],
            }
        )
    return out


# A review command killed (SIGKILL) right before its k-th file operation (rename, copy, unlink): run as
# `python -c KILL_AFTER k visem-pl-args...`; k = 0, 1, ... reaches every point of a journaled import.
KILL_AFTER = """
import os, shutil, signal, sys
limit, done = int(sys.argv[1]), [0]
def counted(op):
    def run(*args, **kwargs):
        if done[0] == limit:
            os.kill(os.getpid(), signal.SIGKILL)
        result = op(*args, **kwargs)
        done[0] += 1
        return result
    return run
os.replace, os.unlink, shutil.copyfile = counted(os.replace), counted(os.unlink), counted(shutil.copyfile)
from visem_pl.cli.main import app
sys.argv = ["visem-pl", *sys.argv[2:]]
app()
"""
