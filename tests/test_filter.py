"""Confidence bands per class, and the files `filter_round` writes from a round's predictions."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from helpers.predfiles import write_predictions

from visem_pl.tasks.pseudo.bands import (
    ACCEPT,
    REJECT,
    REVIEW,
    REVIEW_BOX_COLUMNS,
    Band,
    assign_bands,
    decide_bands,
    filter_round,
    label_texts,
    parse_bands,
)

SECTION = {
    "sperm": {"low": 0.25, "high": 0.6},
    "cluster": {"low": 0.5, "high": 0.75},
    "small_or_pinhead": {"low": 0.1, "high": 0.3},
}


def bands_of(section=SECTION):
    return parse_bands(section)


def frame(cls, conf):
    return pd.DataFrame({"cls": np.asarray(cls, dtype=np.int8), "conf": np.asarray(conf, dtype=np.float64)})


# --- band logic ------------------------------------------------------------------------------


def test_band_edges():
    # Bands compare in float32, the precision of stored confidences: "just below" is the next
    # float32 down.
    b = bands_of()
    below_low = float(np.nextafter(np.float32(0.25), np.float32(0)))
    below_high = float(np.nextafter(np.float32(0.6), np.float32(0)))
    df = frame([0] * 7, [0.6, 0.25, below_low, below_high, 0.5999, 1.0, 0.0])
    assert assign_bands(df, b).tolist() == [ACCEPT, REVIEW, REJECT, REVIEW, REVIEW, ACCEPT, REJECT]


def test_band_edges_in_float32_as_stored():
    # Predictions are float32 on disk: 0.7 becomes 0.69999999; a bound written 0.7 still accepts it.
    b = parse_bands(
        {
            "sperm": {"low": 0.3, "high": 0.7},
            "cluster": {"low": 0.3, "high": 0.7},
            "small_or_pinhead": {"low": 0.3, "high": 0.7},
        }
    )
    conf = np.array([0.7, 0.3, 0.69, 0.29], dtype=np.float32)
    df = pd.DataFrame({"cls": np.zeros(4, np.int8), "conf": conf})
    assert assign_bands(df, b).tolist() == [ACCEPT, REVIEW, REVIEW, REJECT]


def test_bands_differ_per_class():
    b = bands_of()
    df = frame([0, 1, 2, 1, 2, 0], [0.5, 0.5, 0.5, 0.49, 0.09, 0.2])
    # sperm 0.5 in [0.25, 0.6) review; cluster 0.5 = low review; pinhead 0.5 >= 0.3 accept ...
    assert assign_bands(df, b).tolist() == [REVIEW, REVIEW, ACCEPT, REJECT, REJECT, REJECT]
    other = parse_bands({**SECTION, "sperm": {"low": 0.1, "high": 0.5}})
    got = assign_bands(frame([0, 1], [0.5, 0.5]), other).tolist()
    assert got == [ACCEPT, REVIEW]  # a 0.5 sperm is accepted while a 0.5 cluster is reviewed


def test_assign_bands_keeps_the_index():
    df = frame([0, 0], [0.9, 0.1])
    df.index = [7, 3]
    out = assign_bands(df, bands_of())
    assert out.index.tolist() == [7, 3] and out.name == "band"


def test_parse_bands():
    b = bands_of()
    assert b == {0: Band(0.25, 0.6), 1: Band(0.5, 0.75), 2: Band(0.1, 0.3)}
    with pytest.raises(ValueError, match=r"missing \['cluster'\], unknown \[\]"):
        parse_bands({k: v for k, v in SECTION.items() if k != "cluster"})
    with pytest.raises(ValueError, match=r"missing \[\], unknown \['debris'\]"):
        parse_bands({**SECTION, "debris": {"low": 0.1, "high": 0.2}})
    with pytest.raises(ValueError, match=r"missing \['sperm'\], unknown \['Sperm'\]"):
        parse_bands({**{k: v for k, v in SECTION.items() if k != "sperm"}, "Sperm": SECTION["sperm"]})
    with pytest.raises(ValueError, match="low=0.7 high=0.6"):
        parse_bands({**SECTION, "cluster": {"low": 0.7, "high": 0.6}})
    with pytest.raises(ValueError, match="low <= high <= 1"):
        parse_bands({**SECTION, "cluster": {"low": 0.2, "high": 1.5}})
    with pytest.raises(ValueError, match="0 <= low"):
        Band(-0.1, 0.5)
    assert parse_bands({**SECTION, "sperm": {"low": 0.4, "high": 0.4}})[0] == Band(0.4, 0.4)


# --- filter_round on hand-written prediction files -------------------------------------------

# (frame, cls, cx, cy, w, h, conf); coordinates exact in float32 so the label text is known.
CLIP_A = "11_30_60"
ROWS_A = [
    (0, 0, 0.5, 0.25, 0.0625, 0.125, 0.9),  # accept
    (0, 1, 0.25, 0.75, 0.125, 0.125, 0.5),  # cluster at its low: review
    (0, 0, 0.125, 0.375, 0.03125, 0.0625, 0.6),  # sperm at its high: accept
    (0, 2, 0.75, 0.5, 0.015625, 0.015625, 0.05),  # pinhead below 0.1: reject
    (2, 0, 0.625, 0.625, 0.0625, 0.0625, 0.3),  # review only: no label file for frame 2
    (2, 0, 0.375, 0.125, 0.0625, 0.0625, 0.25),  # review (sperm low)
    (4, 1, 0.5, 0.5, 0.25, 0.25, 0.75),  # cluster at its high: accept
    (6, 0, 0.5, 0.5, 0.0625, 0.0625, 0.1),  # reject only: nothing at all for frame 6
]
CLIP_B = "84_0_30"
ROWS_B = [
    (1, 2, 0.25, 0.25, 0.015625, 0.015625, 0.3),  # pinhead at its high: accept
    (1, 0, 0.75, 0.75, 0.0625, 0.0625, 0.45),  # review
    (3, 1, 0.5, 0.25, 0.125, 0.125, 0.49),  # cluster just below low: reject
]


@pytest.fixture
def filtered(tmp_path):
    pred = tmp_path / "predictions"
    write_predictions(pred, CLIP_A, ROWS_A, frames_scored=5, stride=2)
    write_predictions(pred, CLIP_B, ROWS_B, frames_scored=5, stride=1)
    write_predictions(pred, "90_0_30", [], frames_scored=5, stride=1)  # a clip without boxes
    out = tmp_path / "pseudo"
    stats = filter_round(pred, out, bands_of())
    return out, stats


def test_pseudo_labels_are_exactly_the_accepted_boxes(filtered):
    """No label files: a frame's pseudo-labels are the text of its accepted boxes in boxes.parquet, in order."""
    out, _ = filtered
    boxes = pd.read_parquet(out / "boxes.parquet")
    assert dict(label_texts(boxes[boxes["band"] == ACCEPT])) == {
        "11_30_60_frame_0": "0 0.500000 0.250000 0.062500 0.125000\n0 0.125000 0.375000 0.031250 0.062500\n",
        "11_30_60_frame_4": "1 0.500000 0.500000 0.250000 0.250000\n",
        "84_0_30_frame_1": "2 0.250000 0.250000 0.015625 0.015625\n",
    }
    assert not (out / "labels").exists()


def test_review_queue_has_exactly_the_review_band(filtered):
    out, _ = filtered
    text = (out / "review_queue.csv").read_text()
    assert text.splitlines()[0] == ",".join(REVIEW_BOX_COLUMNS)
    assert REVIEW_BOX_COLUMNS == ["item", "clip", "frame", "cls", "class_name", "cx", "cy", "w", "h", "conf"]
    q = pd.read_csv(out / "review_queue.csv")
    got = [tuple(r) for r in q.itertuples(index=False)]
    assert got == [
        ("11_30_60_frame_0", "11_30_60", 0, 1, "cluster", 0.25, 0.75, 0.125, 0.125, 0.5),
        ("11_30_60_frame_2", "11_30_60", 2, 0, "sperm", 0.625, 0.625, 0.0625, 0.0625, 0.3),
        ("11_30_60_frame_2", "11_30_60", 2, 0, "sperm", 0.375, 0.125, 0.0625, 0.0625, 0.25),
        ("84_0_30_frame_1", "84_0_30", 1, 0, "sperm", 0.75, 0.75, 0.0625, 0.0625, 0.45),
    ]


def test_boxes_and_stats(filtered):
    out, stats = filtered
    boxes = pd.read_parquet(out / "boxes.parquet")
    assert len(boxes) == 11
    assert boxes.groupby("band").size().to_dict() == {ACCEPT: 4, REVIEW: 4, REJECT: 3}
    expected = {
        "boxes": 11,
        "frames_with_pseudo_labels": 3,
        "review_items": 3,
        "review_boxes": 4,
        "accept": {"sperm": 2, "cluster": 1, "small_or_pinhead": 1},
        "review": {"sperm": 3, "cluster": 1, "small_or_pinhead": 0},
        "reject": {"sperm": 1, "cluster": 1, "small_or_pinhead": 1},
        "provenance": {"confidence": 11},  # no temporal rule here: confidence alone decided every band
    }
    assert stats == expected
    assert json.loads((out / "stats.json").read_text()) == expected
    # Only the result files: atomic writes leave no temporary file behind.
    assert sorted(p.name for p in out.iterdir()) == ["boxes.parquet", "review_queue.csv", "stats.json"]
    # Written clip by clip: one row group per clip with boxes (90_0_30 has none), in name order.
    meta = pq.ParquetFile(out / "boxes.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [len(ROWS_A), len(ROWS_B)]


def test_no_predictions_at_all(tmp_path):
    pred = tmp_path / "predictions"
    write_predictions(pred, CLIP_A, [], frames_scored=3)
    stats = filter_round(pred, tmp_path / "pseudo", bands_of())
    assert stats["boxes"] == 0 and stats["review_items"] == 0 and stats["frames_with_pseudo_labels"] == 0
    assert pd.read_parquet(tmp_path / "pseudo" / "boxes.parquet").empty
    assert (tmp_path / "pseudo" / "review_queue.csv").read_text().strip() == ",".join(REVIEW_BOX_COLUMNS)


# --- the temporal rule -------------------------------------------------------------------------


def test_temporal_rule_promotes_demotes_and_interpolates():
    from visem_pl.tasks.pseudo.temporal import Temporal, apply_temporal

    def box(clip, b, frame, conf, band):  # a cell swimming 1.3 px a frame (a still one: demote_still's test)
        return {"clip": clip, "box": b, "frame": frame, "cls": 0, "cx": 0.5 + 0.002 * frame, "cy": 0.5, "w": 0.04,
                "h": 0.05, "conf": conf, "band": band}  # fmt: skip

    pred = pd.DataFrame(
        [box("a", i, 3 * i, 0.5, ACCEPT) for i in range(5)]  # track 0: five detected frames, confirmed
        + [box("a", 5, 9, 0.15, REVIEW), box("a", 6, 9, 0.05, REJECT)]  # on track 0, above / below the floor
        + [box("a", 7, 0, 0.9, ACCEPT)]  # on no track: isolated
        + [box("b", 0, 0, 0.8, ACCEPT), box("b", 1, 3, 0.2, REVIEW)]  # track 0 of clip b: two frames only
        + [box("c", i, 3 * i, 0.2, REVIEW) for i in range(6)]  # long, but never confident: not confirmed
    )
    tracks = pd.DataFrame(
        [{"clip": "a", "track": 0, "box": b, "frame": 3 * b, "source": "detected"} for b in range(5)]
        + [{"clip": "a", "track": 0, "box": 5, "frame": 9, "source": "detected"},
           {"clip": "a", "track": 0, "box": 6, "frame": 9, "source": "detected"},
           {"clip": "a", "track": 0, "box": -1, "frame": 15, "source": "interpolated"},
           {"clip": "b", "track": 0, "box": 0, "frame": 0, "source": "detected"},
           {"clip": "b", "track": 0, "box": 1, "frame": 3, "source": "detected"},
           {"clip": "b", "track": 0, "box": -1, "frame": 6, "source": "interpolated"}]
        + [{"clip": "c", "track": 0, "box": b, "frame": 3 * b, "source": "detected"} for b in range(6)]
    ).assign(cls=0, cx=0.5, cy=0.5, w=0.04, h=0.05, conf=np.nan)  # fmt: skip
    # A frame's boxes sit on one spot: with demote_overlap, the promoted a5 repeats a3 of its frame (checked below)
    out = apply_temporal(pred, tracks, Temporal(min_track_frames=5, floor=0.1, demote_overlap=False))
    got = {(r.clip, r.box): (r.band, r.band_conf, r.provenance) for r in out.itertuples()}
    assert got[("a", 5)] == (ACCEPT, REVIEW, "promoted")
    assert got[("a", 6)] == (REJECT, REJECT, "confidence")  # below the floor
    assert got[("a", 7)] == (REVIEW, ACCEPT, "demoted")
    assert got[("a", 0)] == (ACCEPT, ACCEPT, "confidence")
    assert got[("b", 0)] == (REVIEW, ACCEPT, "demoted") and got[("b", 1)] == (REVIEW, REVIEW, "confidence")
    assert all(got[("c", i)] == (REVIEW, REVIEW, "confidence") for i in range(6))  # min_accepted 1
    interpolated = out[out["provenance"] == "interpolated"]
    assert interpolated[["clip", "frame", "band"]].values.tolist() == [["a", 15, ACCEPT]]  # not b's: unconfirmed
    assert interpolated["conf"].isna().all() and (interpolated["band_conf"] == REJECT).all()
    # Switched off, nothing moves.
    off = apply_temporal(
        pred, tracks, Temporal(min_track_frames=5, floor=0.1, demote_isolated=False, interpolate=False)
    )
    assert (off["provenance"] != "demoted").all() and len(off) == len(pred)
    no_promotion = apply_temporal(pred, tracks, Temporal(min_track_frames=5, floor=0.1, promote=False))
    repeats = apply_temporal(pred, tracks, Temporal(min_track_frames=5, floor=0.1)).set_index(["clip", "box"])
    assert repeats.loc[("a", 5), ["band", "provenance"]].tolist() == [REVIEW, "demoted_overlap"]
    assert (no_promotion["provenance"] != "promoted").all()


def test_a_track_the_detector_is_half_sure_of_is_weak():
    """min_track_conf: a long track of middling boxes (mean 0.45) is weak: its accepted boxes go to review
    (demoted_weak) and its low ones stay where confidence put them; a track at mean 0.7 is confirmed as
    before. demote_weak off leaves the weak track's boxes alone, and isolated boxes stay `demoted`."""
    from visem_pl.tasks.pseudo.temporal import Temporal, apply_temporal

    def box(clip, b, conf):
        band = ACCEPT if conf >= 0.3 else REVIEW
        return {"clip": clip, "box": b, "frame": 3 * b, "cls": 0, "cx": 0.5 + 0.006 * b, "cy": 0.5, "w": 0.04,
                "h": 0.05, "conf": conf, "band": band}  # fmt: skip

    weak, strong = [0.5, 0.4, 0.6, 0.2, 0.55], [0.8, 0.7, 0.9, 0.2, 0.9]
    pred = pd.DataFrame([box("w", i, c) for i, c in enumerate(weak)] + [box("s", i, c) for i, c in enumerate(strong)])
    tracks = pd.DataFrame(
        [{"clip": clip, "track": 0, "box": b, "frame": 3 * b, "source": "detected"} for clip in "ws" for b in range(5)]
    ).assign(cls=0, cx=0.5, cy=0.5, w=0.04, h=0.05, conf=np.nan)
    rule = Temporal(min_track_frames=3, floor=0.1, min_track_conf=0.6)
    got = apply_temporal(pred, tracks, rule).set_index(["clip", "box"])
    assert (got.loc["w", "band"] == REVIEW).all()
    w = ["demoted_weak", "demoted_weak", "demoted_weak", "confidence", "demoted_weak"]
    assert got.loc["w", "provenance"].tolist() == w
    assert (got.loc["s", "band"] == ACCEPT).all() and got.loc[("s", 3), "provenance"] == "promoted"
    # Off (0, the default), the weak track is confirmed like any other.
    assert (apply_temporal(pred, tracks, replace(rule, min_track_conf=0.0))["band"] == ACCEPT).all()
    kept = apply_temporal(pred, tracks, replace(rule, demote_weak=False)).set_index(["clip", "box"])
    assert (kept.loc["w", "provenance"] == "confidence").all() and kept.loc[("w", 0), "band"] == ACCEPT


def test_a_still_track_must_be_seen_more_surely():
    """demote_still: a long track whose head moves less than `still_speed_px` a video frame (median over
    its detected boxes) at a mean confidence under `still_track_conf` (debris, dust, a defocused cell) is
    not confirmed: its accepted boxes go to review (`demoted_still`), nothing on it is promoted or
    interpolated. The same boxes swimming, or still but seen surely, are confirmed; a still track that is
    also weak is `demoted_weak` first, and `demoted_still` where weak demotion is off."""
    from visem_pl.tasks.pseudo.temporal import Temporal, apply_temporal

    jitter = [0.0, 0.15, -0.1, 0.05, -0.15, 0.1]  # px: a still head's position noise

    def box(clip, b, conf, px_per_frame, noise=True):
        x = 320 + px_per_frame * 3 * b + (jitter[b] if noise else 0.0)
        return {"clip": clip, "box": b, "frame": 3 * b, "cls": 0, "cx": x / 640, "cy": 0.5, "w": 0.04, "h": 0.05,
                "conf": conf, "band": ACCEPT if conf >= 0.3 else REVIEW}  # fmt: skip

    unsure, sure, weak = [0.5, 0.5, 0.45, 0.2, 0.55, 0.5], [0.8, 0.7, 0.9, 0.2, 0.9, 0.8], [0.4, 0.3, 0.35] * 2
    pred = pd.DataFrame(
        [box("still", i, c, 0.0) for i, c in enumerate(unsure)]
        + [box("swims", i, c, 1.3) for i, c in enumerate(unsure)]
        + [box("slow", i, c, 0.12, noise=False) for i, c in enumerate(unsure)]  # drifting under 0.15 px a frame
        + [box("sure", i, c, 0.0) for i, c in enumerate(sure)]
        + [box("weak", i, c, 0.0) for i, c in enumerate(weak)]
    )
    tracks = pd.DataFrame(
        [{"clip": c, "track": 0, "box": b, "frame": 3 * b, "source": "detected"}
         for c in ("still", "swims", "slow", "sure", "weak") for b in range(6)]
        + [{"clip": c, "track": 0, "box": -1, "frame": 18, "source": "interpolated"} for c in ("still", "swims")]
    ).assign(cls=0, cx=0.5, cy=0.5, w=0.04, h=0.05, conf=np.nan)  # fmt: skip
    rule = Temporal(min_track_frames=3, min_track_conf=0.4, still_speed_px=0.15, still_track_conf=0.55)
    got = apply_temporal(pred, tracks, rule)
    prov = {c: g.sort_values("box")["provenance"].tolist() for c, g in got.groupby("clip")}
    band = {c: g.sort_values("box")["band"].tolist() for c, g in got.groupby("clip")}
    still = ["demoted_still"] * 3 + ["confidence", "demoted_still", "demoted_still"]
    assert prov["still"] == still and prov["slow"] == still  # mean 0.45: confirmed but for its stillness
    assert band["still"] == [REVIEW] * 6
    assert prov["swims"] == ["interpolated"] + ["confidence"] * 3 + ["promoted"] + ["confidence"] * 2
    assert band["swims"] == [ACCEPT] * 7 and (got["clip"] == "still").sum() == 6  # no interpolated box
    assert prov["sure"] == ["confidence"] * 3 + ["promoted"] + ["confidence"] * 2
    assert set(prov["weak"]) == {"demoted_weak"}
    weak_off = apply_temporal(pred, tracks, replace(rule, demote_weak=False))
    assert set(weak_off[weak_off["clip"] == "weak"]["provenance"]) == {"demoted_still"}
    # Off, or off for its class by the check, the still track is confirmed like the swimming one
    for off in (replace(rule, demote_still=False), replace(rule, by_class=((0, "demote_still", False),))):
        kept = apply_temporal(pred, tracks, off)
        assert kept[kept["clip"] == "still"].sort_values("box")["provenance"].tolist() == prov["swims"]
    # Slower than the bound, or unsure under a higher bar, decides what is still
    assert "demoted_still" not in set(apply_temporal(pred, tracks, replace(rule, still_speed_px=0.1))
                                      .query("clip == 'slow'")["provenance"])  # fmt: skip
    assert "demoted_still" in set(apply_temporal(pred, tracks, replace(rule, still_track_conf=0.75))
                                  .query("clip == 'sure'")["provenance"])  # fmt: skip
    with pytest.raises(ValueError, match="still_speed_px"):
        Temporal(still_speed_px=-1)
    with pytest.raises(ValueError, match="still_track_conf"):
        Temporal(still_track_conf=1.5)


def test_a_track_speed_is_its_median_step_a_video_frame():
    """track_speeds: pixels a video frame between consecutive detected boxes of a track, median over its
    steps, whatever the stride or a missed frame; one box: no speed; tracks and clips never mix."""
    from visem_pl.tasks.pseudo.temporal import track_speeds

    def at(clip, track, frame, x, y):
        return {"clip": clip, "track": track, "frame": frame, "cx": x / 640, "cy": y / 480}

    linked = pd.DataFrame(
        [at("a", 0, 0, 100, 100), at("a", 0, 3, 103, 104), at("a", 0, 9, 109, 112), at("a", 0, 12, 200, 100)]
        + [at("a", 1, 0, 300, 300), at("b", 0, 3, 100, 100), at("b", 0, 0, 100, 97)]
    )
    speeds = track_speeds(linked).set_index(["clip", "track"])["speed"]
    # a0: steps of 5 px in 3 frames, 10 px in 6 frames, a 91.8 px jump in 3: median 5 / 3
    assert speeds[("a", 0)] == pytest.approx(5 / 3) and speeds[("b", 0)] == pytest.approx(1.0)
    assert ("a", 1) not in speeds.index
    assert track_speeds(linked.iloc[:0]).empty


def test_a_second_box_on_a_cell_is_repeated_whatever_its_class():
    """overlap.repeated is class-agnostic NMS among the boxes given, most confident first: a box over a
    kept one at IoU above the bound is repeated; one over a repeated box only is not (a chain keeps its
    ends); other frames and clips never compete; ties go to the earlier row; unscored boxes come last."""
    from visem_pl.tasks.pseudo.overlap import repeated

    w, h = 0.04, 0.05  # 25.6 x 24 px; a shift of 10 px sideways: IoU 0.44; 20 px: 0.12
    dx, dx2 = 10 / 640, 20 / 640

    def box(clip, frame, cls, cx, conf):
        return {"clip": clip, "frame": frame, "cls": cls, "cx": cx, "cy": 0.5, "w": w, "h": h, "conf": conf}

    boxes = pd.DataFrame(
        [
            box("a", 0, 0, 0.5, 0.9),
            box("a", 0, 1, 0.5 + dx, 0.6),  # another class over the first: repeated
            box("a", 0, 0, 0.5 + dx + dx, 0.5),  # over the repeated one only (0.12 with the first): kept
            box("a", 3, 0, 0.5 + dx, 0.6),  # another frame: kept
            box("b", 0, 0, 0.5 + dx, 0.6),  # another clip: kept
            box("c", 0, 0, 0.3, 0.7),
            box("c", 0, 0, 0.3, 0.7),  # tied: the later row is the repeat
            box("d", 0, 0, 0.3, np.nan),  # interpolated: no score, comes last
            box("d", 0, 0, 0.3 + dx2 / 4, 0.2),
        ]
    )
    assert repeated(boxes, 0.3).tolist() == [False, True, False, False, False, False, True, True, False]
    assert repeated(boxes, 0.5).tolist() == [False, False, False, False, False, False, True, True, False]
    assert repeated(boxes.iloc[:1], 0.3).tolist() == [False]


def test_the_rule_sends_a_repeated_accepted_box_to_review():
    """demote_overlap: an accepted box repeating a more confident accepted one of its frame goes to review
    (`demoted_overlap`), after the other actions (a box already sent to review is no one's original);
    switched off, or off for its class by the check, it stays."""
    from visem_pl.tasks.pseudo.temporal import Temporal, apply_temporal

    def box(b, frame, cls, cx, conf, band=ACCEPT):
        return {"clip": "a", "box": b, "frame": frame, "cls": cls, "cx": cx, "cy": 0.5, "w": 0.04, "h": 0.05,
                "conf": conf, "band": band}  # fmt: skip

    pred = pd.DataFrame(
        [
            box(0, 0, 0, 0.5, 0.9),
            box(1, 0, 1, 0.5 + 5 / 640, 0.6),  # a cluster box on the sperm cell: repeated
            box(2, 0, 0, 0.2, 0.8),  # isolated (no track): demoted, so it repeats nothing ...
            box(3, 0, 0, 0.2 + 5 / 640, 0.7),  # ... and this one, on a track, stays
            box(4, 0, 0, 0.8, 0.25, band=REVIEW),
            box(5, 0, 0, 0.8 + 5 / 640, 0.5),  # over a review-band box only: stays
        ]
    )
    tracks = pd.DataFrame(
        [
            {"clip": "a", "track": t, "box": b, "frame": 0, "source": "detected"}
            for t, b in ((0, 0), (1, 1), (3, 3), (5, 5))
        ]
    ).assign(cls=0, cx=0.5, cy=0.5, w=0.04, h=0.05, conf=np.nan)
    rule = Temporal(min_track_frames=1, floor=0.1)
    got = apply_temporal(pred, tracks, rule).set_index("box")
    assert got["provenance"].tolist() == ["confidence", "demoted_overlap", "demoted", "confidence", "confidence",
                                          "confidence"]  # fmt: skip
    assert got["band"].tolist() == [ACCEPT, REVIEW, REVIEW, ACCEPT, REVIEW, ACCEPT]
    assert got.loc[1, "band_conf"] == ACCEPT
    off = apply_temporal(pred, tracks, replace(rule, demote_overlap=False)).set_index("box")
    assert off.loc[1, ["band", "provenance"]].tolist() == [ACCEPT, "confidence"]
    not_clusters = replace(rule, by_class=((1, "demote_overlap", False),))
    assert apply_temporal(pred, tracks, not_clusters).set_index("box").loc[1, "band"] == ACCEPT
    with pytest.raises(ValueError, match="overlap_iou"):
        Temporal(overlap_iou=1.0)


def test_a_box_of_another_class_than_its_track_is_not_promoted():
    """A track is one object: a low box whose class is not the class of most of the track's accepted boxes
    (a sperm cell read as a cluster for a frame) stays where confidence put it."""
    from visem_pl.tasks.pseudo.temporal import Temporal, apply_temporal

    rows = [(0, 0.8, ACCEPT), (0, 0.9, ACCEPT), (1, 0.2, REVIEW), (0, 0.2, REVIEW), (0, 0.7, ACCEPT)]
    pred = pd.DataFrame(
        [
            {
                "clip": "a",
                "box": b,
                "frame": 3 * b,
                "cls": c,
                "cx": 0.5,
                "cy": 0.5,
                "w": 0.04,
                "h": 0.05,
                "conf": conf,
                "band": band,
            }
            for b, (c, conf, band) in enumerate(rows)
        ]  # fmt: skip
    )
    tracks = pd.DataFrame([{"clip": "a", "track": 0, "box": b, "frame": 3 * b, "source": "detected"} for b in range(5)])
    tracks = tracks.assign(cls=0, cx=0.5, cy=0.5, w=0.04, h=0.05, conf=np.nan)
    got = apply_temporal(pred, tracks, Temporal(min_track_frames=3, floor=0.1)).set_index("box")
    assert got.loc[2, ["band", "provenance"]].tolist() == [REVIEW, "confidence"]  # a cluster on a sperm track
    assert got.loc[3, ["band", "provenance"]].tolist() == [ACCEPT, "promoted"]


def test_the_rule_can_act_per_class():
    """`by_class` (what the check decides) switches an action per class; other classes use the field."""
    from visem_pl.tasks.pseudo.temporal import Temporal, apply_temporal

    pred = pd.DataFrame(
        [
            {
                "clip": "a",
                "box": c,
                "frame": 0,
                "cls": c,
                "cx": 0.2 * (c + 1),
                "cy": 0.5,
                "w": 0.04,
                "h": 0.05,
                "conf": 0.9,
                "band": ACCEPT,
            }
            for c in range(3)
        ]  # fmt: skip
    )
    tracks = pd.DataFrame(columns=["clip", "track", "box", "frame", "source", "cls", "cx", "cy", "w", "h", "conf"])
    rule = Temporal(demote_isolated=True, by_class=((0, "demote_isolated", False), (1, "demote_isolated", True)))
    got = apply_temporal(pred, tracks, rule).set_index("cls")["provenance"]
    assert got.tolist() == ["confidence", "demoted", "demoted"]  # class 2: not decided, the field (on)


def test_the_check_keeps_per_class_only_the_actions_that_pay_on_labelled_frames():
    """Each class keeps an action only where its labelled frames show, with `evidence`, that it raises
    the class's F1 without costing precision; a class whose own boxes prove nothing takes what all
    classes show, unless its own boxes lean the other way; nothing sure: the action is not used."""
    from visem_pl.tasks.pseudo.temporal import Temporal, check_actions

    frames = iter(range(10_000))

    def rows(cls, provenance, n, right, band="accept", band_conf="accept"):
        # one box per frame; a right box sits on its frame's labelled cell, a wrong one far from it
        return [{"clip": "52", "frame": next(frames), "cls": cls, "cx": 0.5 if i < right else 0.1, "cy": 0.5,
                 "w": 0.04, "h": 0.05, "conf": 0.6, "band": band, "band_conf": band_conf,
                 "provenance": provenance} for i in range(n)]  # fmt: skip

    boxes = pd.DataFrame(
        rows(0, "confidence", 200, 180)  # sperm (with the demoted boxes: P 0.73, F1 0.82)
        + rows(0, "promoted", 40, 10, band_conf="review")  # 0.25: sure to cost precision
        + rows(0, "demoted", 100, 60, band="review")  # 0.6: sure not to pay (above F1 / 2)
        + rows(0, "demoted_weak", 30, 0, band="review")  # 0: sure to pay
        + rows(0, "interpolated", 3, 3, band_conf="reject")  # too few to say; all classes: the same boxes
        + rows(1, "confidence", 20, 10)  # cluster
        + rows(1, "demoted", 2, 2, band="review")  # too few; leans against demoting, as all classes say
        + rows(1, "demoted_weak", 4, 2, band="review")  # 0.5 > F1 / 2: leans against what all classes say
        + rows(2, "confidence", 20, 18)  # pinhead
        + rows(2, "demoted_weak", 5, 1, band="review")  # 0.2: leans with all classes, who are sure
    )
    truth = boxes[boxes["cx"] == 0.5].rename(columns={"cls": "class"})[["clip", "frame", "class", "cx", "cy", "w", "h"]]
    used, report = check_actions(boxes, truth, Temporal(precision_margin=0.05, evidence=0.95))
    on = {(c, f): v for c, f, v in used.by_class}
    sperm, cluster, pinhead = (report["classes"][n] for n in ("sperm", "cluster", "small_or_pinhead"))
    assert sperm["confidence"] == {"boxes": 330, "truth": 253, "precision": 0.7273, "f1": 0.8233}
    expected = {"boxes": 40, "precision": 0.25, "leans": False, "pays": False, "decided_by": "class", "used": False}
    assert sperm["promoted"] == expected
    assert not on[(0, "promote")] and not on[(0, "demote_isolated")] and on[(0, "demote_weak")]
    assert sperm["demoted"]["decided_by"] == "class" and sperm["demoted_weak"]["pays"]
    assert sperm["interpolated"]["decided_by"] == "inconclusive" and not on[(0, "interpolate")]
    assert not on[(1, "demote_isolated")] and cluster["demoted"]["decided_by"] == "all classes"
    assert not on[(1, "demote_weak")] and cluster["demoted_weak"]["decided_by"] == "inconclusive"
    assert on[(2, "demote_weak")] and pinhead["demoted_weak"]["decided_by"] == "all classes"
    assert report["demoted_weak"]["used"] and report["confidence"]["boxes"] == 381
    # An action switched off in params.yaml stays off whatever the frames say.
    off = check_actions(boxes, truth, Temporal(demote_weak=False))[0]
    assert not any(v for c, f, v in off.by_class if f == "demote_weak")
    with pytest.raises(ValueError, match="evidence"):
        Temporal(evidence=1.0)


def test_a_beta_under_one_demotes_what_f1_would_keep():
    """F-beta's bar is TP / (A + beta^2 T): boxes 55 % right are worth keeping for F1 (bar 0.46) but
    not at beta 0.5 (bar 0.70), where a wrong pseudo-label weighs more than a missed cell."""
    from visem_pl.tasks.pseudo.temporal import Temporal, check_actions

    rows = [
        {"clip": "52", "frame": i, "cls": 0, "cx": 0.5 if right else 0.1, "cy": 0.5, "w": 0.04, "h": 0.05,
         "conf": 0.6, "band": band, "band_conf": "accept", "provenance": provenance}
        for i, (provenance, band, right) in enumerate(
            [("confidence", "accept", i < 855) for i in range(900)]
            + [("demoted_weak", "review", i < 165) for i in range(300)]
        )
    ]  # fmt: skip
    boxes = pd.DataFrame(rows)
    truth = boxes[boxes["cx"] == 0.5].rename(columns={"cls": "class"})[["clip", "frame", "class", "cx", "cy", "w", "h"]]
    f1_check = check_actions(boxes, truth, Temporal())[1]
    assert f1_check["beta"] == 1.0 and "f_beta" not in f1_check["confidence"]
    weak = f1_check["classes"]["sperm"]["demoted_weak"]
    assert (weak["boxes"], weak["precision"], weak["pays"]) == (300, 0.55, False)
    used, report = check_actions(boxes, truth, Temporal(beta=0.5))
    assert report["beta"] == 0.5 and report["confidence"]["f_beta"] == round(1.25 * 1020 / (1200 + 0.25 * 1020), 4)
    assert report["classes"]["sperm"]["demoted_weak"]["pays"] and (0, "demote_weak", True) in used.by_class
    assert (0, "demote_weak", False) in check_actions(boxes, truth, Temporal())[0].by_class
    with pytest.raises(ValueError, match="beta"):
        Temporal(beta=0)


def test_temporal_rule_needs_the_tracks(tmp_path):
    from visem_pl.tasks.pseudo.temporal import Temporal

    write_predictions(tmp_path / "predictions", CLIP_B, ROWS_B, frames_scored=5, stride=1)
    with pytest.raises(FileNotFoundError, match=f"no-tracks/{CLIP_B}.parquet.*visem-pl track"):
        filter_round(tmp_path / "predictions", tmp_path / "out", bands_of(), Temporal(), tmp_path / "no-tracks")
    assert not (tmp_path / "out" / "boxes.parquet").exists()


def test_calibrated_threshold_is_the_lowest_reaching_the_target():
    from visem_pl.tasks.pseudo.calibrate import threshold_for

    # Ranked by score: 10 true boxes (0.9..0.81), then false 0.8, true 0.79..0.7 (10), false 0.69, 0.68.
    conf = np.array([0.9 - 0.01 * i for i in range(10)] + [0.8] + [0.79 - 0.01 * i for i in range(10)] + [0.69, 0.68])
    tp = np.array([True] * 10 + [False] + [True] * 10 + [False, False])
    high, measured = threshold_for(conf, tp, target=0.95, min_boxes=5)
    # Down to 0.70 the boxes are 20/21 = 0.952 precise; at 0.69, 20/22 = 0.909.
    assert high == pytest.approx(0.70) and measured["boxes"] == 21 and measured["precision"] == 0.9524
    high, _ = threshold_for(conf, tp, target=1.0, min_boxes=5)
    assert high == pytest.approx(0.81), "only the boxes above the first false one are all right"
    assert threshold_for(conf, tp, target=1.0, min_boxes=11)[0] is None, "a target out of reach is not forced"
    # Ties: a threshold keeps every box scored like it, so a tie holding a false box moves together.
    high, _ = threshold_for(np.array([0.9, 0.5, 0.5]), np.array([True, True, False]), target=1.0, min_boxes=1)
    assert high == 0.9


def test_calibrate_keeps_the_band_of_a_class_without_enough_boxes():
    from visem_pl.tasks.pseudo.bands import Band
    from visem_pl.tasks.pseudo.calibrate import Calibration, calibrate

    rng = np.random.default_rng(0)
    conf = rng.uniform(0.05, 1.0, 200)
    boxes = pd.DataFrame({"cls": 0, "conf": conf, "tp": conf > 0.4})  # sperm: every box above 0.4 is right
    boxes = pd.concat([boxes, pd.DataFrame({"cls": [2] * 3, "conf": [0.9, 0.8, 0.7], "tp": True})])
    bands = {k: Band(0.5, 0.6) for k in range(3)}
    used, report = calibrate(boxes, bands, Calibration(enabled=True, target_precision=0.95, min_boxes=20))
    kept = boxes[(boxes["cls"] == 0) & (boxes["conf"] >= used[0].high)]
    below = boxes[(boxes["cls"] == 0) & (boxes["conf"] < used[0].high)]
    assert kept["tp"].mean() >= 0.95 > pd.concat([kept, below.nlargest(1, "conf")])["tp"].mean()
    assert used[0].high < 0.4 and used[0].low == used[0].high, "low never above the calibrated high"
    assert used[1] == bands[1] and report["cluster"]["why"] == "fewer than 20 boxes"
    assert used[2] == bands[2] and report["small_or_pinhead"]["validation_boxes"] == 3
    with pytest.raises(ValueError, match="target_precision"):
        Calibration(target_precision=1.5)


def test_filter_clip_by_clip_is_the_rule_over_all_clips_at_once(tmp_path):
    """filter decides each clip alone (bounded memory); the temporal rule over every clip in one table,
    as it ran before, gives the same boxes, in the same order and types."""
    from visem_pl.tasks.pseudo.temporal import Temporal, apply_temporal, read_tracks

    rng = np.random.default_rng(3)
    pred_dir, tracks_dir = tmp_path / "predictions", tmp_path / "tracks"
    tracks_dir.mkdir()
    clips = ["11_30_60", "84_0_30", "90_0_30"]
    for k, clip in enumerate(clips):
        n = 0 if clip == "90_0_30" else 40  # a clip without boxes: it needs no tracks
        frames = np.sort(rng.integers(0, 10, n))
        rows = [
            (int(f), int(rng.integers(0, 3)), *rng.uniform(0.1, 0.9, 2), 0.0625, 0.0625, float(rng.uniform(0.05, 1)))
            for f in frames
        ]  # apart, mostly: boxes on one spot would repeat each other (demote_overlap)
        write_predictions(pred_dir, clip, rows, frames_scored=10)
        if n:
            track = rng.integers(0, 4, n)
            tracks = pd.DataFrame({"track": track, "box": np.arange(n), "frame": frames, "source": "detected"})
            tracks = tracks.iloc[:-8]  # boxes on no track: the accepted ones are demoted
            gaps = pd.DataFrame({"track": [0, 1], "box": -1, "frame": [3 + k, 7], "source": "interpolated"})
            tracks = pd.concat([tracks, gaps], ignore_index=True).assign(
                cls=0, cx=0.5, cy=0.5, w=0.0625, h=0.0625, conf=np.nan
            )
            tracks.astype({"frame": "int64", "track": "int64", "box": "int64", "cls": "int64"}).to_parquet(
                tracks_dir / f"{clip}.parquet"
            )
    rule = Temporal(min_track_frames=3, floor=0.1)
    filter_round(pred_dir, tmp_path / "pseudo", bands_of(), rule, tracks_dir, clips)
    got = pd.read_parquet(tmp_path / "pseudo" / "boxes.parquet")
    pred = pd.concat([pd.read_parquet(pred_dir / f"{c}.parquet") for c in clips], ignore_index=True)
    pred["box"] = pred.groupby("clip").cumcount().astype(np.int64)
    pred["band"] = assign_bands(pred, bands_of())
    whole = apply_temporal(pred, read_tracks(tracks_dir, clips[:2]), rule)
    assert set(whole["provenance"]) >= {"confidence", "promoted", "demoted", "interpolated"}
    pd.testing.assert_frame_equal(got, whole)
    pd.testing.assert_frame_equal(decide_bands(pred_dir, bands_of(), rule, tracks_dir, clips), whole)


def test_temporal_settings_are_checked(tmp_path):
    """params.yaml's filter.temporal: an old or misspelt key, the check's own output, an evidence or an
    overlap bound out of range are refused with the file and the key, before any box moves."""
    from visem_pl.tasks.pseudo.stages import temporal_config
    from visem_pl.tasks.workspace.errors import ConfigError
    from visem_pl.tasks.workspace.paths import Workspace

    def config(section):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({"filter": {"temporal": section}}))
        return temporal_config(Workspace(tmp_path, tmp_path / "params.yaml"))

    assert config({"min_track_conf": 0.4, "evidence": 0.9}).evidence == 0.9
    for section, says in (
        ({"min_boxes": 20}, r"filter.temporal: unknown key\(s\) \['min_boxes'\]"),
        ({"by_class": [[0, "promote", True]]}, "by_class is decided by the check"),
        ({"evidence": 1.5}, r"evidence must be in \[0.5, 1\)"),
        ({"overlap_iou": 0}, r"overlap_iou must be in \(0, 1\)"),
    ):
        with pytest.raises(ConfigError, match=says) as err:
            config(section)
        assert str(tmp_path / "params.yaml") in str(err.value)
