"""The review queue: priority, the durable per-round store, Label Studio and CVAT round trips
through the merge, and every malformed import refused with nothing changed."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.predfiles import write_predictions
from helpers.review import (
    BANDS,
    ITEMS,
    KILL_AFTER,
    A,
    B,
    check_merged,
    expected_answers,
    labelstudio_export,
    new_store,
    parse_labels,
    pred_rows,
)
from helpers.trees import tree_digest

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.reader import locate
from visem_pl.tasks.review.exchange import CVAT, LABELSTUDIO, export_queue, import_answers
from visem_pl.tasks.review.exchange import cvat as cvat_fmt
from visem_pl.tasks.review.priority import QueueConfig, build_queue
from visem_pl.tasks.review.queue import EXPORTED, QUEUE_COLUMNS, REVIEWED
from visem_pl.tasks.review.stages import ReviewPending, collect_review
from visem_pl.tasks.review.store import PULLED_PREFIX, ImportRefused, QueueStore

REPO = Path(__file__).resolve().parent.parent

# --- priority --------------------------------------------------------------------------------------


@pytest.fixture
def scored(tmp_path):
    """Clip A (stride 1, frames 0-2) and B (stride 2, frames 0, 2); round N-1 predicted clip A only."""
    box = (0.5, 0.5, 0.05, 0.05)
    write_predictions(
        tmp_path / "now",
        A,
        [
            (0, 0, *box, 0.9),  # frame 0: accepted only, not queued
            (1, 0, *box, 0.4),  # frame 1: review, conf at the band's middle
            (1, 1, 0.9, 0.9, 0.1, 0.1, 0.1),  # reject band: counts nowhere
            (2, 0, 0.2, 0.2, 0.05, 0.05, 0.5),  # frame 2: review, halfway to the bound; far from frame 1's box
        ],
        frames_scored=3,
        stride=1,
    )
    write_predictions(tmp_path / "now", B, [(2, 2, 0.3, 0.3, 0.05, 0.05, 0.3)], frames_scored=2, stride=2)
    write_predictions(
        tmp_path / "prev",
        A,
        [
            (1, 0, *box, 0.9),  # same box as now: agreement
            (2, 0, 0.225, 0.2, 0.05, 0.05, 0.9),  # shifted by half a width: IoU 1/3
        ],
        frames_scored=3,
        stride=1,
    )
    return tmp_path


def test_priority_components(scored):
    q = build_queue(scored / "now", BANDS, QueueConfig(max_items=0, per_clip_max=2), prev_dir=scored / "prev")
    assert list(q.columns) == QUEUE_COLUMNS
    rows = {r.item: r for r in q.itertuples()}
    assert sorted(rows) == [f"{A}_frame_1", f"{A}_frame_2", f"{B}_frame_2"]
    a1, a2, b2 = rows[f"{A}_frame_1"], rows[f"{A}_frame_2"], rows[f"{B}_frame_2"]
    # Frame 1's box is in frame 0, but frame 2's box is not in frame 1: 1 of 3 boxes inconsistent.
    assert (a1.uncertainty, a1.disagreement, a1.temporal) == pytest.approx((1.0, 0.0, 1 / 3))
    assert (a2.uncertainty, a2.disagreement, a2.temporal) == pytest.approx((0.5, 2 / 3, 1.0))
    assert (b2.uncertainty, b2.disagreement, b2.temporal) == pytest.approx((0.5, 0.0, 1.0))
    # One review box in every frame: the same load, the round's top percentile.
    assert (a1.load, a2.load, b2.load) == (1.0, 1.0, 1.0)
    assert a1.priority == pytest.approx((1 + 1 / 3 + 1) / 4) and a2.priority == pytest.approx((0.5 + 2 / 3 + 2) / 4)
    assert b2.priority == pytest.approx(2.5 / 4)
    assert (a1.n_boxes, a1.n_review, a2.n_boxes, b2.n_boxes) == (1, 1, 1, 1)
    # By priority, highest first (at most per_clip_max = 2 frames of a clip).
    assert list(q["item"]) == [f"{A}_frame_2", f"{B}_frame_2", f"{A}_frame_1"]


def test_load_and_the_per_clip_cap():
    """Load is the frame's review-band boxes as a percentile of the round's review-band frames (ties take the
    higher rank); the cap keeps a crowded clip from taking the whole budget."""
    from visem_pl.tasks.review.priority import prioritise

    frames = pd.DataFrame(
        {
            "item": [f"c{c}_frame_{f}" for c, f in [(1, 0), (1, 3), (1, 6), (2, 0), (2, 3)]],
            "clip": ["c1", "c1", "c1", "c2", "c2"],
            "frame": [0, 3, 6, 0, 3],
            "uncertainty": [0.5] * 5,
            "disagreement": [0.0] * 5,
            "temporal": [0.0] * 5,
            "n_boxes": [30, 25, 20, 5, 2],
            "n_review": [12, 10, 8, 2, 1],
        }
    )
    q = prioritise(frames, QueueConfig(max_items=0, per_clip_max=0))
    assert list(q["item"]) == ["c1_frame_0", "c1_frame_3", "c1_frame_6", "c2_frame_0", "c2_frame_3"]
    assert list(q["load"]) == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert list(q["priority"]) == pytest.approx([(0.5 + x) / 4 for x in (1.0, 0.8, 0.6, 0.4, 0.2)])
    capped = prioritise(frames, QueueConfig(per_clip_max=2, max_items=3))
    assert list(capped["item"]) == ["c1_frame_0", "c1_frame_3", "c2_frame_0"]
    # The default cap, one frame a clip: a reviewed frame judges every track through it (merge.track_verdicts).
    assert list(prioritise(frames, QueueConfig(max_items=3))["item"]) == ["c1_frame_0", "c2_frame_0"]
    no_load = prioritise(frames, QueueConfig(max_items=0, per_clip_max=0, weights={"uncertainty": 1.0}))
    assert list(no_load["priority"]) == [0.5] * 5  # weights without load: the component does not count
    assert list(prioritise(frames.iloc[0:0], QueueConfig())["item"]) == []


def test_round_zero_has_no_disagreement_and_budgets(scored):
    q = build_queue(scored / "now", BANDS, QueueConfig(per_clip_max=2, max_items=0))
    assert list(q["disagreement"]) == [0.0, 0.0, 0.0]
    assert list(
        build_queue(scored / "now", BANDS, QueueConfig(per_clip_max=2, max_items=2), scored / "prev")["item"]
    ) == [
        f"{A}_frame_2",
        f"{B}_frame_2",
    ]
    assert list(
        build_queue(scored / "now", BANDS, QueueConfig(max_items=0, per_clip_max=1), scored / "prev")["item"]
    ) == [f"{A}_frame_2", f"{B}_frame_2"]
    only_u = QueueConfig(
        per_clip_max=2, max_items=0, weights={"uncertainty": 1.0, "disagreement": 0.0, "temporal": 0.0}
    )
    q = build_queue(scored / "now", BANDS, only_u, scored / "prev")
    assert list(q["item"])[0] == f"{A}_frame_1" and sorted(q["item"]) == sorted(rows_of(scored))
    assert list(q["priority"]) == pytest.approx([1.0, 0.5, 0.5])


def rows_of(scored):
    return list(build_queue(scored / "now", BANDS, QueueConfig(per_clip_max=2, max_items=0))["item"])


def test_uncertainty_and_random_orders(scored):
    """bench review's baselines: the top frames by uncertainty alone (no spread over clips), and a seeded
    draw from the review band (the same draw for the same seed, every frame once, the budget and cap kept)."""
    by_u = build_queue(
        scored / "now", BANDS, QueueConfig(per_clip_max=2, max_items=0, order="uncertainty"), scored / "prev"
    )
    # A's frame 1 (uncertainty 1.0) first although A's frame 2 has the higher priority; then the two at 0.5.
    assert list(by_u["item"])[0] == f"{A}_frame_1" and list(by_u["uncertainty"]) == pytest.approx([1.0, 0.5, 0.5])
    priority = {f"{A}_frame_1": (1 + 1 / 3 + 1) / 4, f"{A}_frame_2": (0.5 + 2 / 3 + 2) / 4, f"{B}_frame_2": 2.5 / 4}
    assert list(by_u["priority"]) == pytest.approx([priority[i] for i in by_u["item"]])  # still written
    two = build_queue(
        scored / "now", BANDS, QueueConfig(per_clip_max=2, max_items=2, order="uncertainty"), scored / "prev"
    )
    assert list(two["item"]) == list(by_u["item"])[:2]
    capped = QueueConfig(max_items=0, per_clip_max=1, order="uncertainty")
    assert list(build_queue(scored / "now", BANDS, capped, scored / "prev")["item"]) == [
        f"{A}_frame_1",
        f"{B}_frame_2",
    ]
    draws = {
        seed: list(
            build_queue(
                scored / "now", BANDS, QueueConfig(per_clip_max=2, max_items=0, order="random", order_seed=seed)
            )["item"]
        )
        for seed in range(8)
    }
    assert all(sorted(d) == sorted(by_u["item"]) for d in draws.values())
    assert len({tuple(d) for d in draws.values()}) > 1, "the seed does not change the draw"
    again = build_queue(scored / "now", BANDS, QueueConfig(per_clip_max=2, max_items=0, order="random", order_seed=3))
    assert list(again["item"]) == draws[3]
    one = build_queue(scored / "now", BANDS, QueueConfig(per_clip_max=2, max_items=1, order="random", order_seed=3))
    assert list(one["item"]) == draws[3][:1]
    with pytest.raises(ValueError, match="review.order must be one of priority, uncertainty, random, not 'best'"):
        QueueConfig(per_clip_max=2, order="best")


def test_the_queue_follows_the_bands_filter_decided(scored, tmp_path):
    """With the temporal rule, an isolated confident box demoted to review puts its frame in the queue,
    and a promoted one takes its frame out: the queue reads filter's bands, not confidence again."""
    from visem_pl.tasks.pseudo.bands import filter_round

    filter_round(scored / "now", tmp_path / "pseudo", BANDS)
    boxes = pd.read_parquet(tmp_path / "pseudo" / "boxes.parquet")
    assert list(
        build_queue(scored / "now", BANDS, QueueConfig(per_clip_max=2, max_items=0), boxes=boxes)["item"]
    ) == list(build_queue(scored / "now", BANDS, QueueConfig(per_clip_max=2, max_items=0))["item"])
    demoted = (boxes["clip"] == A) & (boxes["frame"] == 0)  # frame 0's accepted box, isolated
    promoted = (boxes["clip"] == A) & (boxes["frame"] == 1) & (boxes["cls"] == 0)
    boxes.loc[demoted, "band"], boxes.loc[promoted, "band"] = "review", "accept"
    q = build_queue(scored / "now", BANDS, QueueConfig(per_clip_max=2, max_items=0), boxes=boxes)
    assert sorted(q["item"]) == [f"{A}_frame_0", f"{A}_frame_2", f"{B}_frame_2"]


def test_bad_queue_params_are_refused():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['novelty'\]"):
        QueueConfig(per_clip_max=2, weights={"novelty": 1.0})
    with pytest.raises(ValueError, match="review.weights.temporal must be a number >= 0"):
        QueueConfig(per_clip_max=2, weights={"temporal": -1})


# --- a synthesized round ------------------------------------------------------------------------


def test_store_lifecycle_and_reexport(queue_synth, queue_round, tmp_path):
    store = new_store(queue_round, tmp_path / "q")
    assert sorted(store.queue()["item"]) == sorted(ITEMS)
    assert store.status()["states"] == {"pending": 3, "exported": 0, "reviewed": 0, "merged": 0}
    boxes = pd.read_parquet(queue_round / "pseudo" / "boxes.parquet")
    clips = locate(queue_synth).clips()
    first = export_queue(store, LABELSTUDIO, boxes, clips, 0, when="2024-05-01T10:00:00Z")
    second = export_queue(store, CVAT, boxes, clips, 0, when="2024-05-01T10:00:00Z")
    assert (first["batch"], second["batch"]) == ("20240501T100000Z-labelstudio", "20240501T100000Z-cvat")
    assert first["items"] == second["items"] == 3
    state = store.state()
    assert [e["batch"] for e in state["exports"]] == [first["batch"], second["batch"]]
    # Re-exporting never duplicates items: same queue, each item once, both batches recorded on it.
    assert len(store.queue()) == 3 and len(state["items"]) == 3
    assert {i: (e["state"], e["exports"]) for i, e in state["items"].items()} == {
        i: (EXPORTED, [first["batch"], second["batch"]]) for i in ITEMS
    }
    tasks = json.loads((Path(first["dir"]) / "tasks.json").read_text())
    assert sorted(t["data"]["item"] for t in tasks) == sorted(ITEMS)
    assert len({t["data"]["item"] for t in tasks}) == len(tasks)
    # The same queue again: nothing changes; another queue: refused.
    store.init(store.queue(), 0)
    with pytest.raises(ValueError, match="holds another queue"):
        store.init(store.queue().iloc[:1], 0)
    assert (store.root / ".gitignore").read_text() == "exports/*/images/\n"


def test_labelstudio_tasks_predictions_and_images(queue_synth, queue_round, tmp_path):
    store = new_store(queue_round, tmp_path / "q")
    boxes = pd.read_parquet(queue_round / "pseudo" / "boxes.parquet")
    out = export_queue(store, LABELSTUDIO, boxes, locate(queue_synth).clips(), 3, when="2024-05-01T10:00:00Z")
    folder = Path(out["dir"])
    assert sorted(p.name for p in folder.iterdir()) == ["images", "labelling_config.xml", "tasks.json"]
    config = (folder / "labelling_config.xml").read_text()
    for name in layout.CLASS_NAMES:
        assert f'<Label value="{name}"' in config
    assert '<RectangleLabels name="label" toName="image"' in config and 'value="$image"' in config
    tasks = {t["data"]["item"]: t for t in json.loads((folder / "tasks.json").read_text())}
    t = tasks[f"{A}_frame_2"]
    assert t["data"] == {
        "image": f"/data/local-files/?d=images/{A}_frame_2.jpg",
        "item": f"{A}_frame_2",
        "clip": A,
        "frame": 2,
        "batch": "20240501T100000Z-labelstudio",
    }
    (pred,) = t["predictions"]
    assert pred["model_version"] == "round-3"
    mine = boxes[(boxes["clip"] == A) & (boxes["frame"] == 2)].sort_values("conf", ascending=False, kind="stable")
    assert len(pred["result"]) == len(mine)
    for region, b in zip(pred["result"], mine.itertuples()):
        assert region["type"] == "rectanglelabels" and region["from_name"] == "label" and region["to_name"] == "image"
        assert (region["original_width"], region["original_height"]) == (640, 480)
        v = region["value"]
        assert v["rectanglelabels"] == [layout.CLASS_NAMES[b.cls]]
        assert (v["x"], v["y"], v["width"], v["height"]) == pytest.approx(
            ((b.cx - b.w / 2) * 100, (b.cy - b.h / 2) * 100, b.w * 100, b.h * 100)
        )
        assert region["score"] == pytest.approx(b.conf)
    assert pred["score"] == pytest.approx(mine["conf"].mean())
    # The images are the clip's frames at the items' indices.
    cap = cv2.VideoCapture(str(next(c.path for c in locate(queue_synth).clips() if c.name == A)))
    decoded = [cap.read()[1] for _ in range(3)]
    cap.release()
    img = cv2.imread(str(folder / "images" / f"{A}_frame_2.jpg"))
    diffs = [np.abs(img.astype(int) - f.astype(int)).mean() for f in decoded]
    assert int(np.argmin(diffs)) == 2 and diffs[2] < 1.5


# --- round trips with simulated expert edits ------------------------------------------------------


@pytest.fixture
def exported_ls(queue_synth, queue_round, tmp_path):
    store = new_store(queue_round, tmp_path / "review" / "round-0")
    boxes = pd.read_parquet(queue_round / "pseudo" / "boxes.parquet")
    out = export_queue(store, LABELSTUDIO, boxes, locate(queue_synth).clips(), 0, when="2024-05-01T10:00:00Z")
    tasks = json.loads((Path(out["dir"]) / "tasks.json").read_text())
    good = labelstudio_export(tasks, expected_answers(boxes))
    path = tmp_path / "project-1-at-2024-05-02.json"
    path.write_text(json.dumps(good))
    return store, tasks, good, path


def test_labelstudio_round_trip(queue_synth, queue_round, exported_ls, tmp_path, monkeypatch):
    store, _, _, path = exported_ls
    result = import_answers(store, path, "dr-a", when="2024-05-02T10:11:12Z")
    assert result == {
        "format": "labelstudio",
        "imported": 3,
        "changed": 3,
        "requeued": 0,  # items the annotators disagree on (review.multiple_annotations agree)
        "unchanged": False,
        "file": "imports/20240502T101112Z_dr-a_project-1-at-2024-05-02.json",
    }
    assert (store.root / result["file"]).read_bytes() == path.read_bytes()
    state = store.state()
    assert {i: (e["state"], e["reviewer"], e["reviewed_at"]) for i, e in state["items"].items()} == {
        i: (REVIEWED, "dr-a", "2024-05-02T10:11:12Z") for i in ITEMS
    }
    assert (store.labels / f"{B}_frame_1.txt").read_text() == ""
    # The same file again: a no-op.
    before = tree_digest(store.root)
    again = import_answers(store, path, "dr-a", when="2024-05-03T00:00:00Z")
    assert again["unchanged"] is True and tree_digest(store.root) == before
    # Nothing left to export.
    boxes = pd.read_parquet(queue_round / "pseudo" / "boxes.parquet")
    assert export_queue(store, LABELSTUDIO, boxes, [], 0)["batch"] is None
    check_merged(queue_synth, queue_round, store, tmp_path, monkeypatch)


def cvat_back(src: bytes, answers: dict[str, list[list]], flavour: str) -> bytes:
    """The zip CVAT exports after the expert's work: same layout, class names in another order."""
    order = ["cluster", "sperm", "small_or_pinhead"]  # CVAT's label order need not be ours
    to_file = {layout.CLASS_NAMES.index(n): k for k, n in enumerate(order)}
    zin = zipfile.ZipFile(io.BytesIO(src))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zout:
        for name in zin.namelist():
            text = zin.read(name).decode()
            if name == "obj.names":
                text = "\n".join(order) + "\n"
            elif name == "data.yaml":
                data = yaml.safe_load(text)
                data["names"] = dict(enumerate(order))
                text = yaml.safe_dump(data)
            elif name.endswith(".txt") and "/" in name:
                rows = answers[Path(name).stem]
                text = "".join(f"{to_file[r[0]]} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f} {r[4]:.6f}\n" for r in rows)
            zout.writestr(name, text)
    return buf.getvalue()


@pytest.mark.parametrize("flavour", [cvat_fmt.YOLO11, cvat_fmt.ULTRALYTICS])
def test_cvat_round_trip(queue_synth, queue_round, tmp_path, monkeypatch, flavour):
    store = new_store(queue_round, tmp_path / "q")
    boxes = pd.read_parquet(queue_round / "pseudo" / "boxes.parquet")
    out = export_queue(store, CVAT, boxes, locate(queue_synth).clips(), 0, when="2024-05-01T10:00:00Z")
    folder = Path(out["dir"])
    assert sorted(p.name for p in folder.iterdir()) == sorted(["images", *cvat_fmt.ZIP_NAMES.values()])
    assert sorted(p.name for p in (folder / "images").iterdir()) == sorted(f"{i}.jpg" for i in ITEMS)
    src = (folder / cvat_fmt.ZIP_NAMES[flavour]).read_bytes()
    names = sorted(zipfile.ZipFile(io.BytesIO(src)).namelist())
    if flavour == cvat_fmt.YOLO11:
        assert names == sorted(["obj.names", "obj.data", "train.txt", *(f"obj_train_data/{i}.txt" for i in ITEMS)])
        z = zipfile.ZipFile(io.BytesIO(src))
        assert z.read("obj.names").decode() == "sperm\ncluster\nsmall_or_pinhead\n"
        assert sorted(z.read("train.txt").decode().split()) == sorted(f"obj_train_data/{i}.jpg" for i in ITEMS)
    else:
        assert names == sorted(["data.yaml", "train.txt", *(f"labels/train/{i}.txt" for i in ITEMS)])
        z = zipfile.ZipFile(io.BytesIO(src))
        assert yaml.safe_load(z.read("data.yaml")) == {
            "path": "./",
            "train": "train.txt",
            "names": {0: "sperm", 1: "cluster", 2: "small_or_pinhead"},
        }
        assert sorted(z.read("train.txt").decode().split()) == sorted(f"images/train/{i}.jpg" for i in ITEMS)
    # Pre-annotations: the predictions of each frame.
    pre = parse_labels(z.read(next(n for n in names if n.endswith(f"{A}_frame_2.txt"))).decode())
    assert pre == [[r[0]] + [pytest.approx(v, abs=1e-6) for v in r[1:]] for r in pred_rows(boxes, A, 2)]
    back = tmp_path / "task_1_annotations.zip"
    back.write_bytes(cvat_back(src, expected_answers(boxes), flavour))
    result = import_answers(store, back, "dr-b", when="2024-05-02T10:11:12Z")
    assert (result["format"], result["imported"], result["changed"]) == ("cvat", 3, 3)
    check_merged(queue_synth, queue_round, store, tmp_path, monkeypatch)


# --- malformed imports: listed with item ids, exit 2, nothing changed ------------------------------


def corrupt(good: list[dict], case: str) -> tuple[list[dict], list[str]]:
    bad = json.loads(json.dumps(good))
    k = [t["data"]["item"] for t in bad].index(f"{A}_frame_0")  # a task with boxes
    first = bad[k]["data"]["item"]
    if case == "unknown frame":
        renamed = bad[1]["data"]["item"]
        bad[1]["data"]["item"] = f"{A}_frame_8"
        # The renamed task's real item is then missing too: both are listed.
        return bad, [
            f"{A}_frame_8: not an item of this round's queue (unknown frame)",
            f"{renamed}: missing from the file (no answer)",
        ]
    if case == "unknown label":
        bad[k]["annotations"][0]["result"][0]["value"]["rectanglelabels"] = ["tail"]
        return bad, [f"{first}: region r0: unknown label 'tail'"]
    if case == "out of range":
        v = bad[k]["annotations"][0]["result"][0]["value"]
        v["x"], v["width"] = 95.0, 10.0
        return bad, [f"{first}: region r0: coordinates out of range (x=95, y="]
    if case == "duplicate":
        bad.append(json.loads(json.dumps(bad[k])))
        return bad, [f"{first}: answered 2 times in the file (duplicate)"]
    if case == "missing":
        gone = bad.pop(2)["data"]["item"]
        return bad, [f"{gone}: missing from the file (no answer)"]
    if case == "not annotated":
        bad[2]["annotations"] = []
        return bad, [f"{bad[2]['data']['item']}: missing from the file (no answer)"]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["unknown frame", "unknown label", "out of range", "duplicate", "missing", "not annotated"]
)
def test_malformed_labelstudio_import_is_refused(exported_ls, tmp_path, run_cli, case):
    store, _, good, _ = exported_ls
    bad, expected = corrupt(good, case)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    before = tree_digest(store.root)
    rc, out, err = run_cli("review", "import", path, "--round", "0", "--reviewer", "dr-a", "--store", store.root)
    assert rc == 2, err
    assert "refused, nothing imported" in err
    for line in expected:
        assert line in err
    assert tree_digest(store.root) == before
    with pytest.raises(ImportRefused):
        import_answers(store, path, "dr-a")
    assert tree_digest(store.root) == before


def test_malformed_cvat_import_is_refused(queue_synth, queue_round, tmp_path):
    store = new_store(queue_round, tmp_path / "q")
    boxes = pd.read_parquet(queue_round / "pseudo" / "boxes.parquet")
    out = export_queue(store, CVAT, boxes, locate(queue_synth).clips(), 0, when="2024-05-01T10:00:00Z")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("obj.names", "sperm\ncluster\nsmall_or_pinhead\ntail\n")
        z.writestr("obj.data", "classes = 4\ntrain = train.txt\nnames = obj.names\n")
        z.writestr("train.txt", "".join(f"obj_train_data/{i}.jpg\n" for i in ITEMS))
        z.writestr(f"obj_train_data/{ITEMS[0]}.txt", "3 0.5 0.5 0.1 0.1\n")  # unknown label
        z.writestr(f"obj_train_data/{ITEMS[1]}.txt", "0 1.5 0.5 0.1 0.1\n")  # out of range
        z.writestr(f"obj_valid_data/{ITEMS[1]}.txt", "0 0.5 0.5 0.1 0.1\n")  # duplicate
        # ITEMS[2]: listed in train.txt, no label file: missing
        z.writestr(f"obj_train_data/{A}_frame_6.txt", "")  # unknown frame
    path = tmp_path / "bad.zip"
    path.write_bytes(buf.getvalue())
    before = tree_digest(store.root)
    with pytest.raises(ImportRefused) as exc:
        import_answers(store, path, "dr-b")
    problems = exc.value.problems
    assert (
        f"{ITEMS[0]}: obj_train_data/{ITEMS[0]}.txt:1: unknown label 'tail' (known: sperm, cluster, small_or_pinhead)"
        in problems
    )
    assert (
        f"{ITEMS[1]}: obj_train_data/{ITEMS[1]}.txt:1: coordinates out of range or invalid: cx 1.5 is outside [0, 1]"
        in problems
    )
    assert f"{ITEMS[1]}: answered 2 times in the file (duplicate)" not in problems  # the bad copy is not an answer
    assert f"{A}_frame_6: not an item of this round's queue (unknown frame)" in problems
    assert f"{ITEMS[2]}: missing from the file (no answer)" in problems
    assert tree_digest(store.root) == before
    assert out["items"] == 3


def test_cvat_duplicate_item(queue_synth, queue_round, tmp_path):
    store = new_store(queue_round, tmp_path / "q")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("obj.names", "sperm\ncluster\nsmall_or_pinhead\n")
        for i in ITEMS:
            z.writestr(f"obj_train_data/{i}.txt", "")
        z.writestr(f"obj_valid_data/{ITEMS[1]}.txt", "0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "dup.zip").write_bytes(buf.getvalue())
    with pytest.raises(ImportRefused) as exc:
        import_answers(store, tmp_path / "dup.zip", "dr-b")
    assert exc.value.problems == [f"{ITEMS[1]}: answered 2 times in the file (duplicate)"]
    assert store.status()["states"]["reviewed"] == 0


def test_another_answer_needs_replace(exported_ls, tmp_path, run_cli):
    store, _, good, path = exported_ls
    rc, out, err = run_cli("review", "import", path, "--round", "0", "--reviewer", "dr-a", "--store", store.root)
    assert rc == 0, err
    other = json.loads(json.dumps(good))
    k = [t["data"]["item"] for t in other].index(f"{A}_frame_0")
    other[k]["annotations"][0]["result"] = []  # the second expert clears a frame with boxes
    p2 = tmp_path / "second.json"
    p2.write_text(json.dumps(other))
    before = tree_digest(store.root)
    rc, out, err = run_cli("review", "import", p2, "--round", "0", "--reviewer", "dr-c", "--store", store.root)
    assert rc == 2
    item = f"{A}_frame_0"
    assert f"{item}: already reviewed by dr-a with another answer (use --replace to overwrite)" in err
    assert sum("already reviewed" in ln for ln in err.splitlines()) == 1  # the unchanged items are fine
    assert tree_digest(store.root) == before
    rc, out, err = run_cli(
        "review", "import", p2, "--round", "0", "--reviewer", "dr-c", "--store", store.root, "--replace"
    )
    assert rc == 0, err
    assert json.loads(out.splitlines()[-1])["changed"] == 1
    state = store.state()["items"]
    assert (state[item]["reviewer"], (store.labels / f"{item}.txt").read_text()) == ("dr-c", "")
    assert {state[i]["reviewer"] for i in ITEMS if i != item} == {"dr-a"}
    assert len(list((store.root / "imports").iterdir())) == 2
    # Status on the command line: counts per state and per clip, what is left.
    rc, out, err = run_cli("review", "status", "--round", "0", "--store", store.root, "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["states"] == {"pending": 0, "exported": 0, "reviewed": 3, "merged": 0}
    assert data["clips"] == {
        A: {"pending": 0, "exported": 0, "reviewed": 2, "merged": 0},
        B: {"pending": 0, "exported": 0, "reviewed": 1, "merged": 0},
    }
    assert (data["left"], data["reviewers"]) == (0, ["dr-a", "dr-c"])


# --- the review stage on real data: waits for the experts' answers ---------------------------------


def test_collect_review_waits_then_copies(queue_round, exported_ls, tmp_path):
    store, _, _, path = exported_ls
    pseudo = queue_round / "pseudo"
    with pytest.raises(ReviewPending) as exc:
        collect_review(0, pseudo, tmp_path / "reviewed", QueueStore(tmp_path / "nowhere" / "round-0"))
    assert "waiting for 3 reviewed items" in str(exc.value)
    assert "visem-pl review export --round 0" in str(exc.value) and "visem-pl review import --round 0" in str(exc.value)
    with pytest.raises(ReviewPending, match=r"waiting for 3 of 3 items"):
        collect_review(0, pseudo, tmp_path / "reviewed", store)
    assert not (tmp_path / "reviewed").exists()
    import_answers(store, path, "dr-a")
    stats = collect_review(0, pseudo, tmp_path / "reviewed", store)
    assert stats == {"reviewer": "experts", "items": 3, "queued": 3, "reviewers": ["dr-a"]}
    assert {p.name: p.read_text() for p in (tmp_path / "reviewed" / "labels").iterdir()} == {
        p.name: p.read_text() for p in store.labels.iterdir()
    }
    assert store.state()["items"][ITEMS[0]]["state"] == REVIEWED


def test_a_killed_import_leaves_the_store_as_before_or_fully_imported(exported_ls, tmp_path, run_cli):
    store, _, good, path = exported_ls
    rc, _, err = run_cli("review", "import", path, "--round", "0", "--reviewer", "dr-a", "--store", store.root)
    assert rc == 0, err
    other = json.loads(json.dumps(good))
    for task in other:  # the second expert changes every frame: each label file is rewritten
        task["annotations"][0]["result"] = task["annotations"][0]["result"][:1]
    second = tmp_path / "second.json"
    second.write_text(json.dumps(other))
    args = ["review", "import", second, "--round", "0", "--reviewer", "dr-c", "--store", store.root, "--replace"]
    pristine = tmp_path / "pristine"
    shutil.copytree(store.root, pristine)
    before = tree_digest(pristine)
    reference = tmp_path / "reference"  # the import, uninterrupted
    shutil.copytree(pristine, reference)
    rc, _, err = run_cli(*args[:-3], "--store", reference, "--replace")
    assert rc == 0, err

    def answers(root: Path) -> tuple[dict, dict]:
        items = QueueStore(root).state()["items"]
        return {i: (e["state"], e["reviewer"]) for i, e in items.items()}, tree_digest(root / "labels")

    outcomes = []
    for k in range(40):
        shutil.rmtree(store.root)
        shutil.copytree(pristine, store.root)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run([sys.executable, "-c", KILL_AFTER, str(k), *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        rc, out, err = run_cli("review", "status", "--round", "0", "--store", store.root, "--json")
        assert rc == 0, err
        state = store.state()
        if len(state["imports"]) == 1:  # undone: exactly as before, and said so (unless nothing had started)
            undone = "was interrupted; it was undone and the store is as before it: import second.json again" in err
            assert tree_digest(store.root) == before, k
            outcomes.append("undone" if undone else "untouched")
        else:  # recorded: complete, and said so
            assert "was interrupted after it was recorded; it is complete" in err, err
            assert answers(store.root) == answers(reference)
            assert len(list(store.imports.iterdir())) == 2 and not store.journal.exists()
            outcomes.append("complete")
        rc, out, err = run_cli(*args)  # and the import then works as if nothing had happened
        assert rc == 0 and "interrupted" not in err, err
        assert json.loads(out.splitlines()[-1])["unchanged"] is (outcomes[-1] == "complete")
    else:
        raise AssertionError("the import never finished")
    # Killed before the journal: untouched; after it, the archived copy, each label: undone; after
    # state.json (the commit point), before the journal is removed: complete.
    changed = json.loads(out.splitlines()[-1])["changed"]
    first = outcomes.index("complete")
    assert outcomes[0] == "untouched" and set(outcomes[1:first]) == {"undone"}, outcomes
    assert set(outcomes[first:]) == {"complete"} and first - 1 >= 2 + changed, outcomes
    assert answers(store.root) == answers(reference)


def test_an_interrupted_pull_says_to_pull_again(exported_ls, tmp_path, run_cli):
    """`review pull` imports the export it downloads to a temporary file: undone, the message asks for the pull
    again, not for an import of a file that is gone."""
    store, _, good, _ = exported_ls
    pulled = tmp_path / f"{PULLED_PREFIX}7-batch.json"
    pulled.write_text(json.dumps(good))
    args = ["review", "import", pulled, "--round", "0", "--reviewer", "dr-a", "--store", store.root]
    pristine = tmp_path / "pristine"
    shutil.copytree(store.root, pristine)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    for k in range(40):  # the first kill that leaves a journal to undo
        shutil.rmtree(store.root)
        shutil.copytree(pristine, store.root)
        proc = subprocess.run([sys.executable, "-c", KILL_AFTER, str(k), *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        if store.journal.exists():
            break
    rc, _, err = run_cli("review", "status", "--round", "0", "--store", store.root)
    assert rc == 0 and "it was undone and the store is as before it: run `visem-pl review pull` again" in err, err
    # As before: the same files (the import may leave its imports/ folder, empty).
    after = {k: v for k, v in tree_digest(store.root).items() if k != "imports/"}
    assert after == tree_digest(pristine) and not any(store.imports.iterdir())
