"""The experts' answers on reviewed frames judge the whole tracks through them (tasks/pseudo/verdicts.py),
and merge teaches the result: rejected tracks as background, confirmed ones in the expert's class."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from helpers.trees import tiny_twin

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.reader import locate
from visem_pl.tasks.dataset.truth import truth_for
from visem_pl.tasks.pseudo.merge import MergeConfig, judged_parts, merge_round
from visem_pl.tasks.pseudo.verdicts import (
    REJECTED,
    RELABELLED,
    VerdictConfig,
    apply_verdicts,
    judged,
    reviewed_labels,
    track_verdicts,
)
from visem_pl.tasks.workspace.errors import ConfigError
from visem_pl.tasks.workspace.paths import Workspace

W, H = layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT
CFG = VerdictConfig()
SPERM, CLUSTER, PINHEAD = 0, 1, 2
SIZE = 0.04  # a box's normalised width and height


def clip_boxes(rows) -> pd.DataFrame:
    """One clip's boxes.parquet rows from (frame, track, cls, cx, cy, band)."""
    df = pd.DataFrame(rows, columns=["frame", "track", "cls", "cx", "cy", "band"])
    return df.assign(clip="c", w=SIZE, h=SIZE, provenance="confidence").astype({"cls": np.int8})


def expert(*boxes) -> np.ndarray:
    """An expert's answer on one frame: rows cls, cx, cy (size SIZE)."""
    return np.array([(c, x, y, SIZE, SIZE) for c, x, y in boxes], dtype=np.float64).reshape(-1, 5)


def along(track: int, cls: int, x: float, y: float, frames=(0, 3, 6, 9), band="accept") -> list[tuple]:
    """A track moving right by a box width every scored frame."""
    return [(f, track, cls, x + SIZE * k, y, band) for k, f in enumerate(frames)]


def test_a_reviewed_frame_confirms_rejects_or_leaves_each_track_through_it():
    boxes = clip_boxes(
        along(0, SPERM, 0.1, 0.1)  # the expert boxed its cell at frame 3: confirmed, as a cluster
        + along(1, SPERM, 0.1, 0.5)  # nothing the expert drew near it at frame 3: rejected
        + along(2, PINHEAD, 0.1, 0.8)  # half over the expert's box at frame 3: no verdict
        + along(3, SPERM, 0.6, 0.1, frames=(0, 9))  # not on the reviewed frame: no verdict
        + [(3, -1, SPERM, 0.6, 0.5, "accept")]  # on no track: nothing to carry
    )
    answer = {3: expert((CLUSTER, 0.1 + SIZE, 0.1), (PINHEAD, 0.1 + SIZE + 0.02, 0.8))}
    verdicts = track_verdicts(boxes, answer, CFG)
    assert verdicts == {0: ("confirmed", CLUSTER), 1: ("rejected", None)}

    out = apply_verdicts(boxes, verdicts)
    t = out["track"].to_numpy()
    assert (out.loc[t == 0, "cls"] == CLUSTER).all() and (out.loc[t == 0, "provenance"] == RELABELLED).all()
    assert (out.loc[t == 0, "band"] == "accept").all()
    assert (out.loc[t == 1, "band"] == "reject").all() and (out.loc[t == 1, "provenance"] == REJECTED).all()
    untouched = np.isin(t, [2, 3, -1])
    pd.testing.assert_frame_equal(out[untouched], boxes[untouched])
    assert len(out) == len(boxes) and boxes["band"].eq("accept").all()  # the input is not changed


def test_a_confirmed_track_in_its_own_class_keeps_its_provenance_and_its_doubtful_boxes():
    boxes = clip_boxes(along(0, SPERM, 0.1, 0.1) + [(12, 0, SPERM, 0.1 + 4 * SIZE, 0.1, "review")])
    out = apply_verdicts(boxes, track_verdicts(boxes, {0: expert((SPERM, 0.1, 0.1))}, CFG))
    pd.testing.assert_frame_equal(out, boxes)  # confirming changes nothing: no promotion of doubtful boxes


def test_a_frame_the_expert_cleared_rejects_every_track_on_it_and_its_doubtful_boxes_too():
    boxes = clip_boxes(along(0, SPERM, 0.1, 0.1) + along(1, PINHEAD, 0.5, 0.5, band="review"))
    out, counts = judged(boxes, {6: expert()}, CFG)
    assert (out["band"] == "reject").all() and (out["provenance"] == REJECTED).all()
    assert counts == {"tracks_confirmed": 0, "tracks_rejected": 2, "accepted_rejected": 4, "accepted_relabelled": 0}


def test_one_expert_box_confirms_one_track_and_the_second_box_on_the_cell_gets_no_verdict():
    # Two tracks on one cell (a second detection): the closer one is the cell; the other lies over the
    # expert's box too (IoU >= reject_iou), so it is not rejected either: demote overlap handles repeats.
    boxes = clip_boxes(along(0, SPERM, 0.3, 0.3) + along(1, SPERM, 0.3 + SIZE / 4, 0.3))
    assert track_verdicts(boxes, {0: expert((SPERM, 0.3, 0.3))}, CFG) == {0: ("confirmed", SPERM)}


def test_a_track_two_reviewed_frames_judge_differently_gets_no_verdict():
    boxes = clip_boxes(along(0, SPERM, 0.1, 0.1))
    both = {0: expert((SPERM, 0.1, 0.1)), 9: expert((SPERM, 0.9, 0.9))}  # confirmed at 0, rejected at 9
    assert track_verdicts(boxes, both, CFG) == {}
    classes = {0: expert((SPERM, 0.1, 0.1)), 9: expert((CLUSTER, 0.1 + 3 * SIZE, 0.1))}
    assert track_verdicts(boxes, classes, CFG) == {}  # confirmed as two classes: no relabelling either
    again = {0: expert((SPERM, 0.1, 0.1)), 9: expert((SPERM, 0.1 + 3 * SIZE, 0.1))}
    assert track_verdicts(boxes, again, CFG) == {0: ("confirmed", SPERM)}


def test_the_thresholds_decide_and_off_means_off():
    boxes = clip_boxes(along(0, SPERM, 0.1, 0.1))
    shifted = {3: expert((SPERM, 0.1 + SIZE + SIZE / 2, 0.1))}  # IoU 1/3 with the track's box there
    assert track_verdicts(boxes, shifted, CFG) == {}
    assert track_verdicts(boxes, shifted, VerdictConfig(confirm_iou=0.3)) == {0: ("confirmed", SPERM)}
    assert track_verdicts(boxes, shifted, VerdictConfig(reject_iou=0.4, confirm_iou=0.5)) == {0: ("rejected", None)}
    out, counts = judged(boxes, {3: expert()}, VerdictConfig(enabled=False))
    assert out is boxes and set(counts.values()) == {0}


@pytest.mark.parametrize(
    "section, message",
    [
        ({"track_verdicts": {"reject_iou": 0.6, "confirm_iou": 0.5}}, "reject_iou <= confirm_iou"),
        ({"track_verdicts": {"reject_iou": 0}}, "0 < reject_iou"),
        ({"track_verdicts": {"confirm": 0.5}}, "unknown key(s) ['confirm']"),
    ],
)
def test_bad_settings_are_refused_by_name(tmp_path, section, message):
    params = tmp_path / "params.yaml"
    params.write_text(f"merge: {section}\n".replace("'", '"'))
    with pytest.raises(ConfigError) as err:
        Workspace(tmp_path, params).section("merge", MergeConfig)
    assert message in str(err.value) and "merge.track_verdicts" in str(err.value)


def test_reviewed_labels_take_the_latest_rounds_answer(tmp_path):
    r0, r1 = tmp_path / "r0", tmp_path / "r1"
    r0.mkdir()
    r1.mkdir()
    (r0 / "c_frame_3.txt").write_text("0 0.1 0.1 0.04 0.04\n")
    (r0 / "c_frame_6.txt").write_text("")
    (r1 / "c_frame_3.txt").write_text("1 0.2 0.2 0.04 0.04\n2 0.3 0.3 0.04 0.04\n")
    answers = reviewed_labels([(1, r1), (0, r0), (2, tmp_path / "not-reviewed-yet")])
    assert sorted(answers) == ["c"] and sorted(answers["c"]) == [3, 6]
    assert answers["c"][3][:, 0].tolist() == [1, 2] and answers["c"][6].shape == (0, 5)


# --- what merge teaches ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verdict_twin") / "twin"
    tiny_twin(root, seed=2, videos=(11, 52), frames_per_video=9, rest_clips_per_video=1, other_videos=0,
              frames_per_clip=9)  # fmt: skip
    return root


def test_merge_teaches_rejected_tracks_as_background_and_confirmed_ones_in_the_experts_class(twin, tmp_path):
    ds = locate(twin)
    clip = "11_30_60"
    cells = truth_for(twin).clip(clip)
    seen = cells[cells["frame"].isin([0, 3, 6])].groupby("track_id")["frame"].nunique()
    cell = cells[cells["track_id"] == seen.index[seen == 3][0]].set_index("frame")  # a cell on frames 0, 3, 6
    # Track 0 follows a real cell; track 1 sits still on an empty patch far from every cell.
    near = cells[cells["frame"] <= 6]
    grid = [(x, y) for x in np.linspace(0.05, 0.95, 19) for y in np.linspace(0.05, 0.95, 19)]
    empty = max(grid, key=lambda p: np.hypot(near["cx"] - p[0], near["cy"] - p[1]).min())
    assert np.hypot(near["cx"] - empty[0], near["cy"] - empty[1]).min() > 0.05
    rows = []
    for f in (0, 3, 6):
        c = cell.loc[f]
        rows.append((f, 0, SPERM, c.cx, c.cy, c.w, c.h, "accept"))
        rows.append((f, 1, PINHEAD, *empty, 0.03, 0.04, "accept" if f else "review"))
    boxes = pd.DataFrame(rows, columns=["frame", "track", "cls", "cx", "cy", "w", "h", "band"])
    boxes = boxes.assign(clip=clip, provenance="confidence").astype({"cls": np.int8})
    reviewed = tmp_path / "reviewed"
    reviewed.mkdir()
    c = cell.loc[3]  # the expert's answer on frame 3: the cell, as a cluster; nothing where track 1 is
    (reviewed / f"{clip}_frame_3.txt").write_text(f"1 {c.cx:.6f} {c.cy:.6f} {c.w:.6f} {c.h:.6f}\n")
    counts: dict[str, int] = {}
    answers = reviewed_labels([(0, reviewed)])
    parts = judged_parts([(clip, boxes)], answers, VerdictConfig(), counts)
    labelled = pd.DataFrame(columns=["split", "video", "frame", "image", "label"])
    stats = merge_round(0, labelled, parts, [(0, reviewed)], ds.clips(), tmp_path / "merged")
    assert counts == {"tracks_confirmed": 1, "tracks_rejected": 1, "accepted_rejected": 2, "accepted_relabelled": 3}
    assert stats["frames"] == {"labelled": 0, "pseudo": 2, "reviewed": 1}

    decoded = []
    cap = cv2.VideoCapture(str({c.name: c for c in ds.clips()}[clip].path))
    while (frame := cap.read())[0]:
        decoded.append(frame[1])
    cap.release()
    x0, y0 = int((empty[0] - 0.015) * W), int((empty[1] - 0.02) * H)
    x1, y1 = int((empty[0] + 0.015) * W), int((empty[1] + 0.02) * H)
    for f in (0, 6):
        label = (tmp_path / "merged" / "labels" / f"{clip}_frame_{f}.txt").read_text().split()
        # Only the confirmed cell is a pseudo-label, in the expert's class; the rejected track is none.
        assert label[0] == "1" and len(label) == 5, label
        img = cv2.imread(str(tmp_path / "merged" / "images" / f"{clip}_frame_{f}.jpg")).astype(np.int16)
        # ... nor painted out: its patch is the frame's own pixels (a doubtful box there would be inpainted).
        assert np.abs(img[y0:y1, x0:x1] - decoded[f][y0:y1, x0:x1]).mean() < 1.5
    manifest = pd.read_csv(tmp_path / "merged" / "manifest.csv")
    assert sorted(manifest.loc[manifest["source"] == "pseudo", "rule"]) == [RELABELLED, RELABELLED]
