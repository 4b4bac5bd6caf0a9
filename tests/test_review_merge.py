"""The review step (the simulated expert through the review queue) and the merge into the next round's training set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from helpers.predfiles import write_predictions
from helpers.trees import tiny_twin, tree_digest

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.reader import locate
from visem_pl.tasks.dataset.truth import truth_for
from visem_pl.tasks.pseudo.bands import filter_round, parse_bands
from visem_pl.tasks.pseudo.merge import MergeConfig, choose_frames, completeness, mask_boxes, merge_round
from visem_pl.tasks.review.expert import SIMULATED_EXPERT, SIMULATED_TIME, ReviewConfig, expert_answer, simulate_review
from visem_pl.tasks.review.priority import QueueConfig, build_queue
from visem_pl.tasks.review.queue import read_queue, write_queue
from visem_pl.tasks.review.store import QueueStore
from visem_pl.tasks.training.metrics import box_iou, xywhn_to_xyxy

W, H = layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT
BANDS = {n: {"low": 0.25, "high": 0.6} for n in layout.CLASS_NAMES}
FRAMES_PER_CLIP = 12


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("review_synth") / "twin"
    tiny_twin(
        root,
        seed=1,
        videos=(11, 52),
        frames_per_video=12,
        rest_clips_per_video=1,
        other_videos=1,
        frames_per_clip=FRAMES_PER_CLIP,
    )
    return root


def truth_frame(rows) -> pd.DataFrame:
    """Truth rows (class, cx, cy, w, h) in the `_truth/clips` columns."""
    df = pd.DataFrame(rows, columns=["class", "cx", "cy", "w", "h"])
    df.insert(0, "frame", 0)
    df.insert(1, "track_id", [f"t{i}" for i in range(len(df))])
    df["motility"] = "immotile"
    return df


def pred_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cls", "cx", "cy", "w", "h", "conf"])


def label_rows(df: pd.DataFrame) -> list[tuple]:
    return [(int(r.cls), round(r.cx, 9), round(r.cy, 9), round(r.w, 9), round(r.h, 9)) for r in df.itertuples()]


# --- the simulated expert on one hand-made frame ------------------------------------------------

TRUTH = [
    (0, 0.2, 0.2, 0.05, 0.05),  # T0: found exactly
    (1, 0.5, 0.5, 0.1, 0.1),  # T1: found with the wrong class
    (0, 0.8, 0.8, 0.05, 0.05),  # T2: missed
    (2, 0.2, 0.8, 0.02, 0.02),
]  # T3: right class, poor placement (IoU 1/3)
PREDS = [
    (0, 0.2, 0.2, 0.05, 0.05, 0.9),  # kept as predicted
    (0, 0.51, 0.5, 0.1, 0.1, 0.8),  # fixed to T1 (class and box)
    (0, 0.5, 0.1, 0.05, 0.05, 0.7),  # on nothing: deleted
    (0, 0.205, 0.2, 0.05, 0.05, 0.4),  # a duplicate of T0, which is taken: deleted
    (2, 0.21, 0.8, 0.02, 0.02, 0.3),
]  # fixed to T3's box


def test_hand_frame_ious_are_as_designed():
    iou = box_iou(
        xywhn_to_xyxy(pred_frame(PREDS)[["cx", "cy", "w", "h"]].to_numpy(), W, H),
        xywhn_to_xyxy(truth_frame(TRUTH)[["cx", "cy", "w", "h"]].to_numpy(), W, H),
    )
    assert iou[0, 0] == pytest.approx(1.0)
    assert iou[1, 1] > 0.5
    assert iou[2].max() == 0.0
    assert iou[4, 3] == pytest.approx(1 / 3)


@pytest.mark.parametrize("add_missed, added", [(1.0, 1), (0.0, 0)])
def test_expert_keeps_fixes_deletes_and_adds(add_missed, added):
    cfg = ReviewConfig(add_missed=add_missed, fix_iou=0.1)
    labels, log = expert_answer(pred_frame(PREDS), truth_frame(TRUTH), cfg, np.random.default_rng(0))
    assert log == {"kept": 1, "fixed": 2, "deleted": 2, "added": added}
    expected = [
        (0, 0.2, 0.2, 0.05, 0.05),  # kept: the predicted box
        (1, 0.5, 0.5, 0.1, 0.1),  # fixed: the truth box and class
        (2, 0.2, 0.8, 0.02, 0.02),
    ]  # fixed
    if added:
        expected.append((0, 0.8, 0.8, 0.05, 0.05))
    assert label_rows(labels) == expected
    assert list(labels.columns) == ["cls", "cx", "cy", "w", "h"]


def test_expert_deletes_a_poorly_placed_box_below_fix_iou():
    # IoU 1/3 with T3: fixed at fix_iou 0.1, deleted at fix_iou 0.4 (and T3 then counts as missed).
    labels, log = expert_answer(
        pred_frame([PREDS[4]]),
        truth_frame([TRUTH[3]]),
        ReviewConfig(fix_iou=0.4, add_missed=0.0),
        np.random.default_rng(0),
    )
    assert log == {"kept": 0, "fixed": 0, "deleted": 1, "added": 0}
    assert labels.empty


def test_expert_on_empty_frames():
    rng = np.random.default_rng(0)
    labels, log = expert_answer(pred_frame(PREDS[:2]), truth_frame([]), ReviewConfig(add_missed=1.0), rng)
    assert log == {"kept": 0, "fixed": 0, "deleted": 2, "added": 0} and labels.empty
    labels, log = expert_answer(pred_frame([]), truth_frame(TRUTH), ReviewConfig(add_missed=1.0), rng)
    assert log == {"kept": 0, "fixed": 0, "deleted": 0, "added": 4}
    assert label_rows(labels) == [tuple(t) for t in TRUTH]


# --- simulate_review on a synthesized dataset's queue ------------------------------------------


def empty_spot(truth: pd.DataFrame) -> tuple[float, float]:
    """Centre of a 0.03 x 0.03 box that overlaps no truth box of the frame."""
    t_xy = xywhn_to_xyxy(truth[["cx", "cy", "w", "h"]].to_numpy(), W, H)
    for cx in np.arange(0.05, 0.96, 0.05):
        for cy in np.arange(0.05, 0.96, 0.05):
            if not len(t_xy) or box_iou(xywhn_to_xyxy([[cx, cy, 0.03, 0.03]], W, H), t_xy).max() == 0:
                return float(cx), float(cy)
    raise AssertionError("no empty spot")


def boxes_of(truth: pd.DataFrame, conf: float, skip=(), wrong_class=()) -> list[tuple]:
    rows = []
    for i, t in enumerate(truth.itertuples()):
        if i in skip:
            continue
        cls = (t[3] + 1) % 3 if i in wrong_class else t[3]  # t[3] is "class"
        rows.append((int(t.frame), int(cls), t.cx, t.cy, t.w, t.h, conf))
    return rows


def read_label_file(path: Path) -> list[tuple]:
    return sorted(tuple(float(v) for v in line.split()) for line in path.read_text().splitlines())


@pytest.fixture(scope="module")
def sim_round(synth_root, tmp_path_factory):
    """Predictions built from the truth with known mistakes, filtered into a review queue."""
    truth = truth_for(synth_root)
    assert truth is not None
    a, b = "11_30_60", "84_0_30"
    a0, a2, a4, b1 = truth.frame(a, 0), truth.frame(a, 2), truth.frame(a, 4), truth.frame(b, 1)
    assert min(len(a0), len(a4), len(b1)) >= 5
    fp0, fp1 = empty_spot(a0), empty_spot(b1)
    rows_a = (
        # frame 0: box 0 in the review band, box 1 with the wrong class, box 2 missed,
        # one review-band box on nothing (deleted) and one reject-band box on nothing (unseen).
        boxes_of(a0.iloc[:1], 0.4)
        + boxes_of(a0, 0.9, skip=(0, 2), wrong_class=(1,))
        + [(0, 0, *fp0, 0.03, 0.03, 0.3), (0, 0, *fp0, 0.03, 0.03, 0.1)]
        # frame 2: everything accepted: not queued; frame 4: everything in the review band.
        + boxes_of(a2, 0.9)
        + boxes_of(a4, 0.5)
    )
    rows_b = [(1, 2, *fp1, 0.03, 0.03, 0.45)]  # frame 1: only a box on nothing
    tmp = tmp_path_factory.mktemp("sim_round")
    write_predictions(tmp / "predictions", a, rows_a, frames_scored=6, stride=2)
    write_predictions(tmp / "predictions", b, rows_b, frames_scored=FRAMES_PER_CLIP)
    filter_round(tmp / "predictions", tmp / "pseudo", parse_bands(BANDS))
    write_queue(
        build_queue(tmp / "predictions", parse_bands(BANDS), QueueConfig(per_clip_max=2, max_items=0)),
        tmp / "pseudo" / "queue.csv",
    )
    return tmp, truth, {"a0": a0, "a4": a4, "b1": b1}


def test_simulate_review_answers_the_whole_queue(sim_round, synth_root, tmp_path):
    src, truth, frames = sim_round
    q = pd.read_csv(src / "pseudo" / "review_queue.csv")
    assert list(dict.fromkeys(q["item"])) == ["11_30_60_frame_0", "11_30_60_frame_4", "84_0_30_frame_1"]
    queue = read_queue(src / "pseudo" / "queue.csv")
    assert sorted(queue["item"]) == ["11_30_60_frame_0", "11_30_60_frame_4", "84_0_30_frame_1"]
    n0, n4, nb = len(frames["a0"]), len(frames["a4"]), len(frames["b1"])
    out = tmp_path / "reviewed"
    stats = simulate_review(
        0, src / "pseudo", out, truth, locate(synth_root).clips(), ReviewConfig(add_missed=1.0, fix_iou=0.1, seed=0)
    )
    assert stats == {
        "reviewer": "simulated-expert",
        "items": 3,
        "kept": (n0 - 2) + n4,
        "fixed": 1,
        "deleted": 2,
        "added": 1 + nb,
    }
    assert json.loads((out / "stats.json").read_text()) == stats
    log = pd.read_csv(out / "review_log.csv")
    assert list(log.columns) == ["item", "clip", "frame", "reviewer", "kept", "fixed", "deleted", "added"]
    assert sorted(tuple(r) for r in log.itertuples(index=False)) == [
        ("11_30_60_frame_0", "11_30_60", 0, "simulated-expert", n0 - 2, 1, 1, 1),
        ("11_30_60_frame_4", "11_30_60", 4, "simulated-expert", n4, 0, 0, 0),
        ("84_0_30_frame_1", "84_0_30", 1, "simulated-expert", 0, 0, 1, nb),
    ]
    # The answers went through the queue and Label Studio's export format, like an expert's file.
    store = QueueStore(out / "queue")
    state = store.state()
    assert {i: (e["state"], e["reviewer"], e["reviewed_at"]) for i, e in state["items"].items()} == {
        i: ("reviewed", SIMULATED_EXPERT, SIMULATED_TIME) for i in queue["item"]
    }
    assert [e["format"] for e in state["exports"]] == ["labelstudio"]
    (imported,) = state["imports"]
    assert imported["file"] == "imports/20000101T000000Z_simulated-expert_simulated-expert-export.json"
    answer = json.loads((store.root / imported["file"]).read_text())
    assert sorted(t["data"]["item"] for t in answer) == sorted(queue["item"])
    assert all(len(t["annotations"]) == 1 and t["annotations"][0]["result"] is not None for t in answer)
    labels = out / "labels"
    assert sorted(p.name for p in labels.iterdir()) == [
        "11_30_60_frame_0.txt",
        "11_30_60_frame_4.txt",
        "84_0_30_frame_1.txt",
    ]
    # With every miss added and every mistake fixed, each reviewed frame holds exactly its truth
    # (kept boxes are the float32 predictions, hence the 2e-6 tolerance on coordinates).
    for name, gt in (
        ("11_30_60_frame_0", frames["a0"]),
        ("11_30_60_frame_4", frames["a4"]),
        ("84_0_30_frame_1", frames["b1"]),
    ):
        got = read_label_file(labels / f"{name}.txt")
        want = sorted((float(t[3]), t.cx, t.cy, t.w, t.h) for t in gt.itertuples())
        assert len(got) == len(want)
        for g, e in zip(got, want):
            assert g[0] == e[0]
            assert g[1:] == pytest.approx(e[1:], abs=2e-6)
    # Deterministic: a second run gives the same files, byte for byte (a second `dvc repro` does nothing).
    before = tree_digest(out)
    simulate_review(
        0, src / "pseudo", out, truth, locate(synth_root).clips(), ReviewConfig(add_missed=1.0, fix_iou=0.1, seed=0)
    )
    assert tree_digest(out) == before


def test_simulate_review_answers_only_the_budgeted_queue(sim_round, synth_root, tmp_path):
    src, truth, frames = sim_round
    pseudo = tmp_path / "pseudo"
    shutil.copytree(src / "pseudo", pseudo)
    queue = build_queue(src / "predictions", parse_bands(BANDS), QueueConfig(per_clip_max=2, max_items=2))
    write_queue(queue, pseudo / "queue.csv")
    assert len(queue) == 2
    stats = simulate_review(
        0, pseudo, tmp_path / "reviewed", truth, locate(synth_root).clips(), ReviewConfig(add_missed=0.0, seed=0)
    )
    assert stats["items"] == 2
    assert sorted(p.stem for p in (tmp_path / "reviewed" / "labels").iterdir()) == sorted(queue["item"])


# --- merge_round -------------------------------------------------------------------------------


def decode_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


@pytest.fixture
def merge_inputs(synth_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = locate(synth_root)
    v11 = ds.videos[11]
    labelled = pd.DataFrame(
        {
            "split": "train",
            "video": 11,
            "frame": [0, 1, 2],
            "image": [str(v11.image_path(f)) for f in (0, 1, 2)],
            "label": [str(v11.label_path(0)), str(v11.label_path(1)), np.nan],  # frame 2: a frame without objects
        }
    )
    pseudo = tmp_path / "pseudo"
    r0, r1 = tmp_path / "reviewed0", tmp_path / "reviewed1"
    files = {
        pseudo
        / "11_30_60_frame_0.txt": "0 0.100000 0.200000 0.030000 0.040000\n2 0.300000 0.400000 0.010000 0.010000\n",
        pseudo / "11_30_60_frame_4.txt": "0 0.500000 0.500000 0.030000 0.040000\n",
        pseudo / "84_0_30_frame_2.txt": "1 0.600000 0.600000 0.100000 0.100000\n",
        pseudo / "84_0_30_frame_5.txt": "0 0.700000 0.700000 0.030000 0.040000\n",
        r0 / "11_30_60_frame_4.txt": "0 0.510000 0.500000 0.030000 0.040000\n0 0.2 0.2 0.03 0.04\n1 0.9 0.9 0.1 0.1\n",
        r0 / "11_30_60_frame_6.txt": "",  # the expert deleted every box
        r0 / "84_0_30_frame_5.txt": "1 0.700000 0.700000 0.100000 0.100000\n",
        r1 / "84_0_30_frame_5.txt": "2 0.710000 0.700000 0.010000 0.010000\n2 0.1 0.1 0.01 0.01\n",
    }
    for path, text in files.items():
        if path.parent != pseudo:  # the pseudo-labels are boxes (boxes.parquet's accepted ones), not files
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    accepted = accepted_boxes({p.stem: t for p, t in files.items() if p.parent == pseudo})
    return ds, labelled, accepted, [(1, r1), (0, r0)], files


def accepted_boxes(texts: dict[str, str]) -> pd.DataFrame:
    """The accepted rows of boxes.parquet (in its types) whose label texts are `texts` {frame item: text}."""
    rows = []
    for item, text in texts.items():
        clip, frame = layout.split_item(item)
        rows += [(clip, frame, int(v[0]), *map(float, v[1:])) for v in (line.split() for line in text.splitlines())]
    boxes = pd.DataFrame(rows, columns=["clip", "frame", "cls", "cx", "cy", "w", "h"])
    return boxes.astype({"frame": np.int64, "cls": np.int8, **{c: np.float32 for c in ("cx", "cy", "w", "h")}})


def test_merge_round(merge_inputs, tmp_path):
    ds, labelled, pseudo, reviewed, files = merge_inputs
    provenance = {("11_30_60", 0): ["promoted", "interpolated"], ("11_30_60", 4): ["confidence"] * 3}
    stats = merge_round(1, labelled, pseudo, reviewed, ds.clips(), "merged", provenance=provenance)
    out = tmp_path / "merged"

    frames = pd.read_csv(out / "frames.csv", keep_default_na=False)
    assert list(frames.columns) == ["image", "label", "source", "round"]
    expected_frames = [
        (labelled.image[0], labelled.label[0], "labelled", -1),
        (labelled.image[1], labelled.label[1], "labelled", -1),
        (labelled.image[2], "", "labelled", -1),
    ]
    for stem, source, rnd in [
        ("11_30_60_frame_0", "pseudo", 1),
        ("11_30_60_frame_4", "reviewed", 0),
        ("11_30_60_frame_6", "reviewed", 0),
        ("84_0_30_frame_2", "pseudo", 1),
        ("84_0_30_frame_5", "reviewed", 1),
    ]:
        expected_frames.append((f"merged/images/{stem}.jpg", f"merged/labels/{stem}.txt", source, rnd))
    assert [tuple(r) for r in frames.itertuples(index=False)] == expected_frames
    assert stats["frames"] == {"labelled": 3, "pseudo": 2, "reviewed": 3}

    # Labels: the reviewed file replaces the pseudo-labels of its frame; a later round's review wins.
    pseudo = tmp_path / "pseudo"  # the keys of the texts the accepted boxes were made from
    winners = {
        "11_30_60_frame_0": pseudo / "11_30_60_frame_0.txt",
        "11_30_60_frame_4": tmp_path / "reviewed0" / "11_30_60_frame_4.txt",
        "11_30_60_frame_6": tmp_path / "reviewed0" / "11_30_60_frame_6.txt",
        "84_0_30_frame_2": pseudo / "84_0_30_frame_2.txt",
        "84_0_30_frame_5": tmp_path / "reviewed1" / "84_0_30_frame_5.txt",
    }
    assert sorted(p.stem for p in (out / "labels").iterdir()) == sorted(winners)
    for stem, src in winners.items():
        assert (out / "labels" / f"{stem}.txt").read_text() == files[src]

    # Manifest: one row per box, with its source, round and, for pseudo-labels, the rule that accepted it
    # (a frame the filter gave no provenance: confidence; a reviewed frame's boxes are the expert's).
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert list(manifest.columns) == ["image", "source", "round", "rule", "cls", "cx", "cy", "w", "h"]
    rules = manifest.groupby("image")["rule"].agg(list).to_dict()
    assert rules["merged/images/11_30_60_frame_0.jpg"] == ["promoted", "interpolated"]
    assert rules["merged/images/84_0_30_frame_2.jpg"] == ["confidence"]
    assert set(rules["merged/images/11_30_60_frame_4.jpg"]) == {""} and set(rules[labelled.image[0]]) == {""}
    n_lab = [len(Path(labelled.label[i]).read_text().splitlines()) for i in (0, 1)]
    assert min(n_lab) > 0
    counts = manifest.groupby(["image", "source", "round"]).size().to_dict()
    assert counts == {
        (labelled.image[0], "labelled", -1): n_lab[0],
        (labelled.image[1], "labelled", -1): n_lab[1],
        ("merged/images/11_30_60_frame_0.jpg", "pseudo", 1): 2,
        ("merged/images/11_30_60_frame_4.jpg", "reviewed", 0): 3,
        ("merged/images/84_0_30_frame_2.jpg", "pseudo", 1): 1,
        ("merged/images/84_0_30_frame_5.jpg", "reviewed", 1): 2,
    }
    assert len(manifest) == sum(n_lab) + 8
    rev = manifest[manifest.image == "merged/images/84_0_30_frame_5.jpg"]
    assert [tuple(r) for r in rev[["cls", "cx", "cy", "w", "h"]].itertuples(index=False)] == [
        (2, 0.71, 0.7, 0.01, 0.01),
        (2, 0.1, 0.1, 0.01, 0.01),
    ]
    lab_cls = np.concatenate([np.loadtxt(labelled.label[i], ndmin=2)[:, 0] for i in (0, 1)]).astype(int)
    assert stats["boxes"] == {
        "labelled": {n: int((lab_cls == k).sum()) for k, n in enumerate(layout.CLASS_NAMES)},
        "pseudo": {"sperm": 1, "cluster": 1, "small_or_pinhead": 1},
        "reviewed": {"sperm": 2, "cluster": 1, "small_or_pinhead": 2},
    }
    assert json.loads((out / "stats.json").read_text()) == stats


def test_merge_round_images_are_the_right_clip_frames(merge_inputs, tmp_path):
    ds, labelled, pseudo, reviewed, _ = merge_inputs
    merge_round(1, labelled, pseudo, reviewed, ds.clips(), "merged")
    clips = {c.name: c for c in ds.clips()}
    for clip, wanted in (("11_30_60", (0, 4, 6)), ("84_0_30", (2, 5))):
        decoded = decode_all(clips[clip].path)
        assert len(decoded) == FRAMES_PER_CLIP
        for index in wanted:
            img = cv2.imread(str(tmp_path / "merged" / "images" / f"{clip}_frame_{index}.jpg"))
            assert img.shape == (H, W, 3)
            diff = [np.abs(img.astype(np.int16) - f.astype(np.int16)).mean() for f in decoded]
            # The JPEG of frame `index` is (nearly) that decoded frame, and farther from every other.
            assert int(np.argmin(diff)) == index
            assert diff[index] < 1.5
            assert min(d for k, d in enumerate(diff) if k != index) > 2 * diff[index]


def test_doubtful_boxes_are_painted_out_of_pseudo_labelled_frames_only(merge_inputs, synth_root, tmp_path):
    """README: in pseudo-labelled frames the doubtful boxes are inpainted (not taught as background);
    a reviewed frame is the expert's whole answer and keeps every pixel."""
    ds, labelled, pseudo, reviewed, _ = merge_inputs
    clip = "11_30_60"
    cell = truth_for(synth_root).frame(clip, 0).iloc[0]  # a real cell under a doubtful box
    doubtful = pd.DataFrame(
        [(clip, 0, cell.cx, cell.cy, cell.w, cell.h), (clip, 4, cell.cx, cell.cy, cell.w, cell.h)],
        columns=["clip", "frame", "cx", "cy", "w", "h"],
    )
    merge_round(1, labelled, pseudo, reviewed, ds.clips(), "merged", doubtful=doubtful)
    decoded = decode_all({c.name: c for c in ds.clips()}[clip].path)
    x0, x1 = int((cell.cx - cell.w / 2) * W), int((cell.cx + cell.w / 2) * W)
    y0, y1 = int((cell.cy - cell.h / 2) * H), int((cell.cy + cell.h / 2) * H)
    outside = np.ones((H, W), bool)
    outside[max(0, y0 - 24) : y1 + 24, max(0, x0 - 24) : x1 + 24] = False

    def diff(index: int, reference: np.ndarray) -> tuple[float, float]:
        img = cv2.imread(str(tmp_path / "merged" / "images" / f"{clip}_frame_{index}.jpg")).astype(np.int16)
        d = np.abs(img - reference.astype(np.int16)).mean(axis=2)
        return float(d[y0:y1, x0:x1].mean()), float(d[outside].mean())

    inpainted = mask_boxes(decoded[0], doubtful.iloc[:1])
    changed_in, changed_out = diff(0, decoded[0])  # frame 0: pseudo-labels, its doubtful box painted out
    as_painted_in, _ = diff(0, inpainted)
    kept_in, kept_out = diff(4, decoded[4])  # frame 4: reviewed, untouched
    assert changed_out < 1.5 and kept_out < 1.5  # elsewhere only JPEG noise
    assert kept_in < 1.5 and changed_in > max(3 * kept_in, 2.0), (kept_in, changed_in)  # frame 0's cell is gone
    assert as_painted_in < changed_in / 3, (as_painted_in, changed_in)  # ... replaced by its surroundings


def test_choose_frames_spreads_over_the_clip_and_prefers_the_most_complete():
    frames = list(range(0, 30, 3))  # 10 scored frames: runs [0 3 6 9] [12 15 18] [21 24 27]
    complete = {0: 0.5, 3: 0.5, 6: 0.9, 9: 0.1, 12: 0.2, 15: 1.0, 18: 0.3, 21: 0.7, 24: 0.7, 27: 0.0}
    assert choose_frames(frames, complete, 3) == [6, 15, 21]  # 21 and 24 tie: the earlier
    assert choose_frames(frames[::-1], {}, 2) == [0, 15]  # no scores: the first of each run
    assert choose_frames(frames, complete, 0) == frames and choose_frames(frames, complete, 10) == frames
    with pytest.raises(ValueError, match="merge.frames_per_clip must be >= 0"):
        MergeConfig(frames_per_clip=-1)


def test_completeness_is_the_share_of_a_frames_likely_cells_that_are_pseudo_labels():
    boxes = pd.DataFrame(
        {
            "clip": ["a", "a", "a", "a", "a", "b"],
            "frame": [0, 0, 0, 0, 3, 0],
            "band": ["accept", "accept", "review", "reject", "review", "accept"],
        }
    )
    assert completeness(boxes) == {("a", 0): 2 / 3, ("a", 3): 0.0, ("b", 0): 1.0}  # rejects are not cells
    assert completeness(boxes.iloc[:0]) == {}


def test_merge_round_keeps_a_bounded_choice_of_pseudo_labelled_frames(merge_inputs, tmp_path):
    """merge.frames_per_clip: at most that many pseudo-labelled frames per clip, the most complete of
    each stretch; reviewed frames are all kept beyond the bound."""
    ds, labelled, pseudo, reviewed, _ = merge_inputs
    more = {stem: "0 0.400000 0.400000 0.030000 0.040000\n" for stem in ("11_30_60_frame_3", "84_0_30_frame_1")}
    pseudo = pd.concat([pseudo, accepted_boxes(more)], ignore_index=True)
    complete = {("11_30_60", 0): 0.4, ("11_30_60", 3): 0.8, ("84_0_30", 1): 0.2, ("84_0_30", 2): 0.9}
    stats = merge_round(1, labelled, pseudo, reviewed, ds.clips(), "merged", frames_per_clip=1, complete=complete)
    frames = pd.read_csv(tmp_path / "merged" / "frames.csv")
    stems = {Path(p).stem: src for p, src in zip(frames["image"], frames["source"]) if src != "labelled"}
    assert stems == {
        "11_30_60_frame_3": "pseudo",
        "84_0_30_frame_2": "pseudo",
        "11_30_60_frame_4": "reviewed",
        "11_30_60_frame_6": "reviewed",
        "84_0_30_frame_5": "reviewed",
    }
    assert sorted(p.stem for p in (tmp_path / "merged" / "images").glob("*.jpg")) == sorted(stems)
    assert stats["frames"]["pseudo"] == 2 and stats["pseudo_frames_available"] == 4
    manifest = pd.read_csv(tmp_path / "merged" / "manifest.csv")
    assert not manifest["image"].str.contains("11_30_60_frame_0|84_0_30_frame_1").any()


def test_merge_round_rejects_unknown_clips_and_frames_past_the_end(synth_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clips = locate(synth_root).clips()
    empty = pd.DataFrame(columns=["image", "label"])
    box = "0 0.500000 0.500000 0.030000 0.040000\n"
    with pytest.raises(ValueError, match=r"\['99_0_30'\] that are not in the dataset"):
        merge_round(0, empty, accepted_boxes({"99_0_30_frame_0": box}), [], clips, "m1")
    past = accepted_boxes({f"11_30_60_frame_{FRAMES_PER_CLIP}": box})
    with pytest.raises(ValueError, match=rf"11_30_60\.mp4:0: frames \[{FRAMES_PER_CLIP}\] are past the clip's end"):
        merge_round(0, empty, past, [], clips, "m2")


def test_painting_never_touches_a_pseudo_label():
    """A doubtful box on an accepted one (the same cell detected twice) is not painted, and no pixel inside
    an accepted box is, even where a doubtful box's grown mask reaches it; other doubtful boxes are painted."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    accepted = np.array([[0, 0.25, 0.5, 0.05, 0.06], [0, 0.6, 0.5, 0.05, 0.06]])
    doubtful = pd.DataFrame(
        [(0.252, 0.5, 0.05, 0.06), (0.64, 0.5, 0.05, 0.06), (0.8, 0.2, 0.05, 0.06)],  # duplicate, neighbour, alone
        columns=["cx", "cy", "w", "h"],
    )
    out = mask_boxes(frame, doubtful, keep=accepted)

    def changed(cx, cy, bw, bh) -> float:
        x0, x1, y0, y1 = int((cx - bw / 2) * W), int((cx + bw / 2) * W), int((cy - bh / 2) * H), int((cy + bh / 2) * H)
        return float((out[y0:y1, x0:x1] != frame[y0:y1, x0:x1]).any(axis=2).mean())

    assert changed(*accepted[0, 1:]) == 0.0 and changed(*accepted[1, 1:]) == 0.0
    assert changed(0.8, 0.2, 0.05, 0.06) > 0.9, "a doubtful box on no pseudo-label is painted out"
    assert changed(0.665, 0.5, 0.02, 0.06) > 0.9, "the neighbour's part outside the accepted box is painted"
    assert (mask_boxes(frame, doubtful.iloc[:1], keep=accepted) == frame).all(), "a duplicate alone: frame untouched"


def test_frames_at_gives_the_full_decode_s_frames(synth_root):
    """merge and the review export decode chosen frames with frames_at (the others grabbed, not converted,
    and decoding stops after the last): pixel for pixel the frames of a full decode; past the end is named."""
    from visem_pl.tasks.inference.clips import frames_at, iter_frames

    clip = locate(synth_root).clips()[0]
    full = dict(iter_frames(clip.path, 1))
    wanted = [0, 3, len(full) // 2, len(full) - 1]
    got = list(frames_at(clip.path, [wanted[2], wanted[0], wanted[3], wanted[1]]))
    assert [i for i, _ in got] == wanted
    assert all(np.array_equal(frame, full[i]) for i, frame in got)
    with pytest.raises(ValueError, match=rf"frames \[{len(full)}\] are past the clip's end"):
        list(frames_at(clip.path, [1, len(full)]))
