"""The review queue: priority, the durable per-round store, Label Studio and CVAT round trips
through the merge, and every malformed import refused with nothing changed."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import tree_digest
from predfiles import write_predictions
from tasks import layout
from tasks.dataset import locate
from tasks.exchange import CVAT, LABELSTUDIO, export_queue, import_answers
from tasks.exchange import cvat as cvat_fmt
from tasks.filter import filter_round, parse_bands
from tasks.merge import merge_round
from tasks.queue import (EXPORTED, QUEUE_COLUMNS, REVIEWED, ImportRefused, QueueConfig, QueueStore,
                         build_queue, merged_items, read_queue, write_queue)
from tasks.review import ReviewPending, collect_review
from tasks.synth import SynthConfig, synthesize
from tasks.truth import truth_for

BANDS = parse_bands({n: {"low": 0.2, "high": 0.6} for n in layout.CLASS_NAMES})
A, B = "11_30_60", "84_0_30"
FRAMES_PER_CLIP = 10


# --- priority --------------------------------------------------------------------------------------

@pytest.fixture
def scored(tmp_path):
    """Clip A (stride 1, frames 0-2) and B (stride 2, frames 0, 2); round N-1 predicted clip A only."""
    box = (0.5, 0.5, 0.05, 0.05)
    write_predictions(tmp_path / "now", A, [
        (0, 0, *box, 0.9),                      # frame 0: accepted only, not queued
        (1, 0, *box, 0.4),                      # frame 1: review, conf at the band's middle
        (1, 1, 0.9, 0.9, 0.1, 0.1, 0.1),        # reject band: counts nowhere
        (2, 0, 0.2, 0.2, 0.05, 0.05, 0.5),      # frame 2: review, halfway to the bound; far from frame 1's box
    ], frames_scored=3, stride=1)
    write_predictions(tmp_path / "now", B, [(2, 2, 0.3, 0.3, 0.05, 0.05, 0.3)], frames_scored=2, stride=2)
    write_predictions(tmp_path / "prev", A, [
        (1, 0, *box, 0.9),                      # same box as now: agreement
        (2, 0, 0.225, 0.2, 0.05, 0.05, 0.9),    # shifted by half a width: IoU 1/3
    ], frames_scored=3, stride=1)
    return tmp_path


def test_priority_components(scored):
    q = build_queue(scored / "now", BANDS, QueueConfig(max_items=0), prev_dir=scored / "prev")
    assert list(q.columns) == QUEUE_COLUMNS
    rows = {r.item: r for r in q.itertuples()}
    assert sorted(rows) == [f"{A}_frame_1", f"{A}_frame_2", f"{B}_frame_2"]
    a1, a2, b2 = rows[f"{A}_frame_1"], rows[f"{A}_frame_2"], rows[f"{B}_frame_2"]
    # Frame 1's box is in frame 0, but frame 2's box is not in frame 1: 1 of 3 boxes inconsistent.
    assert (a1.uncertainty, a1.disagreement, a1.temporal) == pytest.approx((1.0, 0.0, 1 / 3))
    assert (a2.uncertainty, a2.disagreement, a2.temporal) == pytest.approx((0.5, 2 / 3, 1.0))
    assert (b2.uncertainty, b2.disagreement, b2.temporal) == pytest.approx((0.5, 0.0, 1.0))
    assert a1.priority == pytest.approx(4 / 9) and a2.priority == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert b2.priority == pytest.approx(0.5)
    assert (a1.n_boxes, a1.n_review, a2.n_boxes, b2.n_boxes) == (1, 1, 1, 1)
    # Spread over clips: each clip's best first (A's best outranks B's), then the next layer.
    assert list(q["item"]) == [f"{A}_frame_2", f"{B}_frame_2", f"{A}_frame_1"]


def test_round_zero_has_no_disagreement_and_budgets(scored):
    q = build_queue(scored / "now", BANDS, QueueConfig(max_items=0))
    assert list(q["disagreement"]) == [0.0, 0.0, 0.0]
    assert list(build_queue(scored / "now", BANDS, QueueConfig(max_items=2), scored / "prev")["item"]) == [
        f"{A}_frame_2", f"{B}_frame_2"]
    assert list(build_queue(scored / "now", BANDS, QueueConfig(max_items=0, per_clip_max=1), scored / "prev")["item"]) == [
        f"{A}_frame_2", f"{B}_frame_2"]
    only_u = QueueConfig(max_items=0, weights={"uncertainty": 1.0, "disagreement": 0.0, "temporal": 0.0})
    q = build_queue(scored / "now", BANDS, only_u, scored / "prev")
    assert list(q["item"]) == [f"{A}_frame_1", f"{B}_frame_2", f"{A}_frame_2"]
    assert list(q["priority"]) == pytest.approx([1.0, 0.5, 0.5])


def test_bad_queue_params_are_refused():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['novelty'\]"):
        QueueConfig(weights={"novelty": 1.0})
    with pytest.raises(ValueError, match="review.weights.temporal must be a number >= 0"):
        QueueConfig(weights={"temporal": -1})


# --- a synthesized round ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("queue_synth") / "twin"
    synthesize(root, SynthConfig(seed=1, videos=(11, 52), frames_per_video=FRAMES_PER_CLIP, rest_clips_per_video=1,
                                 other_videos=1, frames_per_clip=FRAMES_PER_CLIP, workers=1), progress=False)
    return root


def truth_rows(gt: pd.DataFrame, frame: int, conf: float) -> list[tuple]:
    return [(frame, int(t[3]), t.cx, t.cy, t.w, t.h, conf) for t in gt.itertuples()]


@pytest.fixture(scope="module")
def round_dir(synth_root, tmp_path_factory):
    """Predictions from the truth: A frame 0 all in the review band, A frame 2 accepted plus one doubtful
    box on a cell, A frame 4 accepted only (stays pseudo), B frame 1 one doubtful box."""
    truth = truth_for(synth_root)
    a0, a2, a4, b1 = truth.frame(A, 0), truth.frame(A, 2), truth.frame(A, 4), truth.frame(B, 1)
    assert min(len(a0), len(a2), len(a4), len(b1)) >= 4
    tmp = tmp_path_factory.mktemp("queue_round")
    rows_a = truth_rows(a0, 0, 0.45) + truth_rows(a2.iloc[1:], 2, 0.9) + truth_rows(a2.iloc[:1], 2, 0.3) \
        + truth_rows(a4, 4, 0.9)
    write_predictions(tmp / "predictions", A, rows_a, frames_scored=5, stride=2)
    write_predictions(tmp / "predictions", B, truth_rows(b1.iloc[:1], 1, 0.5), frames_scored=FRAMES_PER_CLIP)
    filter_round(tmp / "predictions", tmp / "pseudo", BANDS)
    write_queue(build_queue(tmp / "predictions", BANDS, QueueConfig(max_items=0)), tmp / "pseudo" / "queue.csv")
    return tmp


ITEMS = [f"{A}_frame_0", f"{A}_frame_2", f"{B}_frame_1"]


def new_store(round_dir, where: Path) -> QueueStore:
    store = QueueStore(where)
    store.init(read_queue(round_dir / "pseudo" / "queue.csv"), 0)
    return store


def test_store_lifecycle_and_reexport(synth_root, round_dir, tmp_path):
    store = new_store(round_dir, tmp_path / "q")
    assert sorted(store.queue()["item"]) == sorted(ITEMS)
    assert store.status()["states"] == {"pending": 3, "exported": 0, "reviewed": 0, "merged": 0}
    boxes = pd.read_parquet(round_dir / "pseudo" / "boxes.parquet")
    clips = locate(synth_root).clips()
    first = export_queue(store, LABELSTUDIO, boxes, clips, 0, when="2024-05-01T10:00:00Z")
    second = export_queue(store, CVAT, boxes, clips, 0, when="2024-05-01T10:00:00Z")
    assert (first["batch"], second["batch"]) == ("20240501T100000Z-labelstudio", "20240501T100000Z-cvat")
    assert first["items"] == second["items"] == 3
    state = store.state()
    assert [e["batch"] for e in state["exports"]] == [first["batch"], second["batch"]]
    # Re-exporting never duplicates items: same queue, each item once, both batches recorded on it.
    assert len(store.queue()) == 3 and len(state["items"]) == 3
    assert {i: (e["state"], e["exports"]) for i, e in state["items"].items()} == {
        i: (EXPORTED, [first["batch"], second["batch"]]) for i in ITEMS}
    tasks = json.loads((Path(first["dir"]) / "tasks.json").read_text())
    assert sorted(t["data"]["item"] for t in tasks) == sorted(ITEMS)
    assert len({t["data"]["item"] for t in tasks}) == len(tasks)
    # The same queue again: nothing changes; another queue: refused.
    store.init(store.queue(), 0)
    with pytest.raises(ValueError, match="holds another queue"):
        store.init(store.queue().iloc[:1], 0)
    assert (store.root / ".gitignore").read_text() == "exports/*/images/\n"


def test_labelstudio_tasks_predictions_and_images(synth_root, round_dir, tmp_path):
    store = new_store(round_dir, tmp_path / "q")
    boxes = pd.read_parquet(round_dir / "pseudo" / "boxes.parquet")
    out = export_queue(store, LABELSTUDIO, boxes, locate(synth_root).clips(), 3, when="2024-05-01T10:00:00Z")
    folder = Path(out["dir"])
    assert sorted(p.name for p in folder.iterdir()) == ["images", "labelling_config.xml", "tasks.json"]
    config = (folder / "labelling_config.xml").read_text()
    for name in layout.CLASS_NAMES:
        assert f'<Label value="{name}"' in config
    assert '<RectangleLabels name="label" toName="image"' in config and 'value="$image"' in config
    tasks = {t["data"]["item"]: t for t in json.loads((folder / "tasks.json").read_text())}
    t = tasks[f"{A}_frame_2"]
    assert t["data"] == {"image": f"/data/local-files/?d=images/{A}_frame_2.jpg", "item": f"{A}_frame_2",
                         "clip": A, "frame": 2, "batch": "20240501T100000Z-labelstudio"}
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
            ((b.cx - b.w / 2) * 100, (b.cy - b.h / 2) * 100, b.w * 100, b.h * 100))
        assert region["score"] == pytest.approx(b.conf)
    assert pred["score"] == pytest.approx(mine["conf"].mean())
    # The images are the clip's frames at the items' indices.
    cap = cv2.VideoCapture(str(next(c.path for c in locate(synth_root).clips() if c.name == A)))
    decoded = [cap.read()[1] for _ in range(3)]
    cap.release()
    img = cv2.imread(str(folder / "images" / f"{A}_frame_2.jpg"))
    diffs = [np.abs(img.astype(int) - f.astype(int)).mean() for f in decoded]
    assert int(np.argmin(diffs)) == 2 and diffs[2] < 1.5


# --- round trips with simulated expert edits ------------------------------------------------------

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
    stats = merge_round(0, pd.DataFrame(columns=["image", "label"]), round_dir / "pseudo" / "labels",
                        [(0, store.labels)], locate(synth_root).clips(), "merged")
    frames = pd.read_csv(tmp_path / "merged" / "frames.csv", keep_default_na=False)
    assert dict(zip(frames["image"], frames["source"])) == {
        f"merged/images/{A}_frame_0.jpg": "reviewed", f"merged/images/{A}_frame_2.jpg": "reviewed",
        f"merged/images/{A}_frame_4.jpg": "pseudo", f"merged/images/{B}_frame_1.jpg": "reviewed"}
    assert stats["frames"] == {"labelled": 0, "pseudo": 1, "reviewed": 3}
    for item, want in expected_answers(boxes).items():
        got = parse_labels((tmp_path / "merged" / "labels" / f"{item}.txt").read_text())
        assert [g[0] for g in got] == [w[0] for w in want], item
        for g, w in zip(got, want):
            assert g[1:] == pytest.approx(w[1:], abs=1.5e-6), item
    assert (tmp_path / "merged" / "labels" / f"{A}_frame_4.txt").read_text() == \
        (round_dir / "pseudo" / "labels" / f"{A}_frame_4.txt").read_text()
    assert merged_items(tmp_path / "merged" / "frames.csv") == set(ITEMS)
    assert store.status(merged_items(tmp_path / "merged" / "frames.csv"))["states"] == {
        "pending": 0, "exported": 0, "reviewed": 0, "merged": 3}


def region(cls, cx, cy, w, h, rid):
    return {"id": rid, "type": "rectanglelabels", "from_name": "label", "to_name": "image",
            "original_width": 640, "original_height": 480, "image_rotation": 0, "origin": "manual",
            "value": {"x": (cx - w / 2) * 100, "y": (cy - h / 2) * 100, "width": w * 100, "height": h * 100,
                      "rotation": 0, "rectanglelabels": [layout.CLASS_NAMES[int(cls)]]}}


def labelstudio_export(tasks: list[dict], answers: dict[str, list[list]]) -> list[dict]:
    """What Label Studio's JSON export of the project looks like after the expert's work."""
    out = []
    for k, t in enumerate(tasks, start=1):
        rows = answers[t["data"]["item"]]
        out.append({"id": k, "data": t["data"], "predictions": [1], "drafts": [], "meta": {},
                    "annotations": [{"id": 100 + k, "completed_by": 1, "was_cancelled": False, "ground_truth": False,
                                     "created_at": "2024-05-02T09:00:00.000000Z", "lead_time": 12.5,
                                     "result": [region(*r, f"r{j}") for j, r in enumerate(rows)]}]})
    return out


@pytest.fixture
def exported_ls(synth_root, round_dir, tmp_path):
    store = new_store(round_dir, tmp_path / "review" / "round-0")
    boxes = pd.read_parquet(round_dir / "pseudo" / "boxes.parquet")
    out = export_queue(store, LABELSTUDIO, boxes, locate(synth_root).clips(), 0, when="2024-05-01T10:00:00Z")
    tasks = json.loads((Path(out["dir"]) / "tasks.json").read_text())
    good = labelstudio_export(tasks, expected_answers(boxes))
    path = tmp_path / "project-1-at-2024-05-02.json"
    path.write_text(json.dumps(good))
    return store, tasks, good, path


def test_labelstudio_round_trip(synth_root, round_dir, exported_ls, tmp_path, monkeypatch):
    store, _, _, path = exported_ls
    result = import_answers(store, path, "dr-a", when="2024-05-02T10:11:12Z")
    assert result == {"format": "labelstudio", "imported": 3, "changed": 3, "unchanged": False,
                      "file": "imports/20240502T101112Z_dr-a_project-1-at-2024-05-02.json"}
    assert (store.root / result["file"]).read_bytes() == path.read_bytes()
    state = store.state()
    assert {i: (e["state"], e["reviewer"], e["reviewed_at"]) for i, e in state["items"].items()} == {
        i: (REVIEWED, "dr-a", "2024-05-02T10:11:12Z") for i in ITEMS}
    assert (store.labels / f"{B}_frame_1.txt").read_text() == ""
    # The same file again: a no-op.
    before = tree_digest(store.root)
    again = import_answers(store, path, "dr-a", when="2024-05-03T00:00:00Z")
    assert again["unchanged"] is True and tree_digest(store.root) == before
    # Nothing left to export.
    boxes = pd.read_parquet(round_dir / "pseudo" / "boxes.parquet")
    assert export_queue(store, LABELSTUDIO, boxes, [], 0)["batch"] is None
    check_merged(synth_root, round_dir, store, tmp_path, monkeypatch)


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
def test_cvat_round_trip(synth_root, round_dir, tmp_path, monkeypatch, flavour):
    store = new_store(round_dir, tmp_path / "q")
    boxes = pd.read_parquet(round_dir / "pseudo" / "boxes.parquet")
    out = export_queue(store, CVAT, boxes, locate(synth_root).clips(), 0, when="2024-05-01T10:00:00Z")
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
        assert yaml.safe_load(z.read("data.yaml")) == {"path": "./", "train": "train.txt",
                                                       "names": {0: "sperm", 1: "cluster", 2: "small_or_pinhead"}}
        assert sorted(z.read("train.txt").decode().split()) == sorted(f"images/train/{i}.jpg" for i in ITEMS)
    # Pre-annotations: the predictions of each frame.
    pre = parse_labels(z.read(next(n for n in names if n.endswith(f"{A}_frame_2.txt"))).decode())
    assert pre == [[r[0]] + [pytest.approx(v, abs=1e-6) for v in r[1:]] for r in pred_rows(boxes, A, 2)]
    back = tmp_path / "task_1_annotations.zip"
    back.write_bytes(cvat_back(src, expected_answers(boxes), flavour))
    result = import_answers(store, back, "dr-b", when="2024-05-02T10:11:12Z")
    assert (result["format"], result["imported"], result["changed"]) == ("cvat", 3, 3)
    check_merged(synth_root, round_dir, store, tmp_path, monkeypatch)


# --- malformed imports: listed with item ids, exit 2, nothing changed ------------------------------

def corrupt(good: list[dict], case: str) -> tuple[list[dict], list[str]]:
    bad = json.loads(json.dumps(good))
    k = [t["data"]["item"] for t in bad].index(f"{A}_frame_0")   # a task with boxes
    first = bad[k]["data"]["item"]
    if case == "unknown frame":
        renamed = bad[1]["data"]["item"]
        bad[1]["data"]["item"] = f"{A}_frame_8"
        # The renamed task's real item is then missing too: both are listed.
        return bad, [f"{A}_frame_8: not an item of this round's queue (unknown frame)",
                     f"{renamed}: missing from the file (no answer)"]
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


@pytest.mark.parametrize("case", ["unknown frame", "unknown label", "out of range", "duplicate", "missing",
                                  "not annotated"])
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


def test_malformed_cvat_import_is_refused(synth_root, round_dir, tmp_path):
    store = new_store(round_dir, tmp_path / "q")
    boxes = pd.read_parquet(round_dir / "pseudo" / "boxes.parquet")
    out = export_queue(store, CVAT, boxes, locate(synth_root).clips(), 0, when="2024-05-01T10:00:00Z")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("obj.names", "sperm\ncluster\nsmall_or_pinhead\ntail\n")
        z.writestr("obj.data", "classes = 4\ntrain = train.txt\nnames = obj.names\n")
        z.writestr("train.txt", "".join(f"obj_train_data/{i}.jpg\n" for i in ITEMS))
        z.writestr(f"obj_train_data/{ITEMS[0]}.txt", "3 0.5 0.5 0.1 0.1\n")       # unknown label
        z.writestr(f"obj_train_data/{ITEMS[1]}.txt", "0 1.5 0.5 0.1 0.1\n")       # out of range
        z.writestr(f"obj_valid_data/{ITEMS[1]}.txt", "0 0.5 0.5 0.1 0.1\n")       # duplicate
        # ITEMS[2]: listed in train.txt, no label file: missing
        z.writestr(f"obj_train_data/{A}_frame_6.txt", "")                         # unknown frame
    path = tmp_path / "bad.zip"
    path.write_bytes(buf.getvalue())
    before = tree_digest(store.root)
    with pytest.raises(ImportRefused) as exc:
        import_answers(store, path, "dr-b")
    problems = exc.value.problems
    assert f"{ITEMS[0]}: obj_train_data/{ITEMS[0]}.txt:1: unknown label 'tail' (known: sperm, cluster, small_or_pinhead)" \
        in problems
    assert f"{ITEMS[1]}: obj_train_data/{ITEMS[1]}.txt:1: coordinates out of range or invalid: cx 1.5 is outside [0, 1]" \
        in problems
    assert f"{ITEMS[1]}: answered 2 times in the file (duplicate)" not in problems  # the bad copy is not an answer
    assert f"{A}_frame_6: not an item of this round's queue (unknown frame)" in problems
    assert f"{ITEMS[2]}: missing from the file (no answer)" in problems
    assert tree_digest(store.root) == before
    assert out["items"] == 3


def test_cvat_duplicate_item(synth_root, round_dir, tmp_path):
    store = new_store(round_dir, tmp_path / "q")
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
    other[k]["annotations"][0]["result"] = []            # the second expert clears a frame with boxes
    p2 = tmp_path / "second.json"
    p2.write_text(json.dumps(other))
    before = tree_digest(store.root)
    rc, out, err = run_cli("review", "import", p2, "--round", "0", "--reviewer", "dr-c", "--store", store.root)
    assert rc == 2
    item = f"{A}_frame_0"
    assert f"{item}: already reviewed by dr-a with another answer (use --replace to overwrite)" in err
    assert sum("already reviewed" in ln for ln in err.splitlines()) == 1   # the unchanged items are fine
    assert tree_digest(store.root) == before
    rc, out, err = run_cli("review", "import", p2, "--round", "0", "--reviewer", "dr-c", "--store", store.root,
                           "--replace")
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
    assert data["clips"] == {A: {"pending": 0, "exported": 0, "reviewed": 2, "merged": 0},
                             B: {"pending": 0, "exported": 0, "reviewed": 1, "merged": 0}}
    assert (data["left"], data["reviewers"]) == (0, ["dr-a", "dr-c"])


# --- the review stage on real data: waits for the experts' answers ---------------------------------

def test_collect_review_waits_then_copies(round_dir, exported_ls, tmp_path):
    store, _, _, path = exported_ls
    pseudo = round_dir / "pseudo"
    with pytest.raises(ReviewPending) as exc:
        collect_review(0, pseudo, tmp_path / "reviewed", review_root=tmp_path / "nowhere")
    assert "waiting for 3 reviewed items" in str(exc.value)
    assert "visem-pl review export --round 0" in str(exc.value) and "visem-pl review import --round 0" in str(exc.value)
    with pytest.raises(ReviewPending, match=r"waiting for 3 of 3 items"):
        collect_review(0, pseudo, tmp_path / "reviewed", review_root=store.root.parent)
    assert not (tmp_path / "reviewed").exists()
    import_answers(store, path, "dr-a")
    stats = collect_review(0, pseudo, tmp_path / "reviewed", review_root=store.root.parent)
    assert stats == {"reviewer": "experts", "items": 3, "queued": 3, "reviewers": ["dr-a"]}
    assert {p.name: p.read_text() for p in (tmp_path / "reviewed" / "labels").iterdir()} == {
        p.name: p.read_text() for p in store.labels.iterdir()}
    assert store.state()["items"][ITEMS[0]]["state"] == REVIEWED
