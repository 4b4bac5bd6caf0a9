"""CASA kinematics on analytic paths, the classes, independence from the infer stride, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from visem_pl.tasks.tracking.motility import IM, NP, PR, MotilityConfig, classify, kinematics, track_kinematics

FPS = 50.0


def path(x, y) -> np.ndarray:
    return np.stack([np.asarray(x, float), np.asarray(y, float)], 1)


def test_straight_line_at_constant_speed():
    t = np.arange(100) / FPS
    k = kinematics(path(40.0 * t, 10.0 + 0 * t), 1 / FPS, 5)  # 40 um/s along x
    assert k["vcl"] == pytest.approx(40.0) and k["vsl"] == pytest.approx(40.0) and k["vap"] == pytest.approx(40.0)
    assert k["lin"] == pytest.approx(1.0) and k["str"] == pytest.approx(1.0) and k["wob"] == pytest.approx(1.0)
    assert k["alh"] == pytest.approx(0.0, abs=1e-9) and k["bcf"] == 0.0


def test_sinusoid_about_a_straight_axis():
    """A head beating 2 um either side of its axis at 5 Hz while progressing at 30 um/s: ALH is twice
    the amplitude (less what the average path still follows) and BCF two crossings per beat."""
    t = np.arange(250) / FPS
    amp, freq = 2.0, 5.0
    k = kinematics(path(30.0 * t, amp * np.sin(2 * np.pi * freq * t)), 1 / FPS, 11)
    assert k["vap"] == pytest.approx(30.0, rel=0.02) and k["vsl"] == pytest.approx(30.0, rel=0.01)
    assert k["alh"] == pytest.approx(2 * amp, rel=0.15)
    assert k["bcf"] == pytest.approx(2 * freq, rel=0.1)
    assert k["vcl"] > k["vap"] and k["lin"] < 1 and k["str"] == pytest.approx(1.0, abs=0.02)


def test_circle_has_no_straight_line_velocity():
    t = np.arange(int(4 * FPS) + 1) / FPS  # four full turns of one second
    r = 5.0
    k = kinematics(path(r * np.cos(2 * np.pi * t), r * np.sin(2 * np.pi * t)), 1 / FPS, 5)
    assert k["vsl"] < 0.01 * k["vcl"] and k["vcl"] == pytest.approx(2 * np.pi * r, rel=0.01)
    assert classify(k, MotilityConfig()) == NP


def test_still_cell_with_jitter_is_immotile_and_a_swimmer_progressive():
    """A still head whose measured position jitters by 0.1 um (the measured noise floor, docs/MOTILITY.md)
    is immotile; a slow straight swimmer (10 um/s) and a fast one are progressive: WHO counts
    progression regardless of speed."""
    rng = np.random.default_rng(0)
    dt = 3 / FPS
    still = kinematics(path(rng.normal(0, 0.1, 60), rng.normal(0, 0.1, 60)), dt, 5)
    assert classify(still, MotilityConfig()) == IM
    t = np.arange(60) * dt
    for speed in (10.0, 45.0):
        swim = kinematics(path(speed * t + rng.normal(0, 0.1, 60), rng.normal(0, 0.1, 60)), dt, 5)
        assert classify(swim, MotilityConfig()) == PR, speed


def test_a_head_beating_in_place_is_non_progressive():
    """A head that does not move on but is shaken 0.5 um either side by its beating tail (13 Hz) is
    non-progressive, not immotile: its VCL is well above a still head's, its VSL and VAP are not."""
    frames = np.arange(0, 60, 3)
    t = frames / FPS
    k = kinematics(path(0.5 * np.sin(2 * np.pi * 13 * t), 0.1 * np.cos(2 * np.pi * 13 * t)), 3 / FPS, 5)
    assert k["vsl"] < 2 and k["vcl"] > MotilityConfig().immotile_vcl_um_s
    assert classify(k, MotilityConfig()) == NP


def test_the_thresholds_are_read_from_the_config():
    cfg = MotilityConfig(progressive_vap_um_s=25.0, progressive_str=0.8, immotile_vcl_um_s=5.0)
    k = {"vap": 20.0, "str": 0.95, "vcl": 22.0, "vsl": 19.0}
    assert classify(k, cfg) == NP and classify({**k, "vap": 25.0}, cfg) == PR
    assert classify({**k, "vap": 4.0, "vcl": 4.9}, cfg) == IM and classify({**k, "vap": 4.0, "vcl": 5.0}, cfg) == NP


def boxes(x_px, y_px, frames) -> pd.DataFrame:
    return pd.DataFrame({"track": 0, "frame": frames, "cx": np.asarray(x_px) / 640, "cy": np.asarray(y_px) / 480})


def test_the_infer_stride_does_not_change_the_result():
    """The same cells tracked at stride 1 and at stride 3 give the same kinematics (both sampled every
    `frame_step` frames)."""
    frames = np.arange(0, 150)
    rng = np.random.default_rng(1)
    x = 100 + 1.8 * frames + rng.normal(0, 0.5, len(frames))
    y = 200 + 3 * np.sin(frames / 4) + rng.normal(0, 0.5, len(frames))
    cfg = MotilityConfig()
    one = track_kinematics(boxes(x, y, frames), 640, 480, FPS, 1, cfg)
    sel = frames % 3 == 0
    three = track_kinematics(boxes(x[sel], y[sel], frames[sel]), 640, 480, FPS, 3, cfg)
    pd.testing.assert_frame_equal(one, three)
    assert one["class"].iloc[0] == PR and one["vap"].iloc[0] == pytest.approx(1.8 * 0.5 * FPS, rel=0.05)


def test_bad_or_short_input():
    cfg = MotilityConfig()
    empty = track_kinematics(boxes([], [], []), 640, 480, FPS, 3, cfg)
    assert empty.empty and list(empty.columns)[:2] == ["track", "seconds"]
    one = track_kinematics(boxes([10], [10], [0]), 640, 480, FPS, 3, cfg)
    assert one["class"].isna().all() and one["vcl"].isna().all()  # one frame: nothing to measure
    with pytest.raises(ValueError, match="does not divide"):
        track_kinematics(boxes([1, 2], [1, 2], [0, 2]), 640, 480, FPS, 2, cfg)
    with pytest.raises(ValueError, match="frame rate"):
        track_kinematics(boxes([1, 2], [1, 2], [0, 3]), 640, 480, 0.0, 3, cfg)
    with pytest.raises(ValueError, match="vap_window"):
        MotilityConfig(vap_window=4)


def test_tracks_the_detector_is_unsure_of_are_not_classified():
    """motility.min_track_conf: a still object detected at a mean confidence of 0.3 (a defocused cell,
    debris) is listed with its confidence but not classified; the mean is over detected boxes only
    (an interpolated box carries no detector confidence); 0 classifies every track."""
    frames = np.arange(0, 60, 3)
    rng = np.random.default_rng(3)
    still = boxes(300 + rng.normal(0, 0.2, len(frames)), 200 + rng.normal(0, 0.2, len(frames)), frames)
    moving = boxes(100 + 1.8 * frames, 100 + 0 * frames, frames).assign(track=1)
    tracks = pd.concat([still.assign(conf=0.3), moving.assign(conf=0.8)], ignore_index=True)
    tracks["source"] = "detected"
    # The moving cell's interpolated boxes (confidence 0.1 as a linker might carry) do not lower its mean.
    tracks.loc[(tracks["track"] == 1) & (tracks["frame"] % 9 == 0), ["source", "conf"]] = ["interpolated", 0.1]
    per = track_kinematics(tracks, 640, 480, FPS, 3, MotilityConfig(min_track_conf=0.5)).set_index("track")
    assert per.loc[0, "conf"] == pytest.approx(0.3) and pd.isna(per.loc[0, "class"])
    assert per.loc[1, "conf"] == pytest.approx(0.8) and per.loc[1, "class"] == PR
    every = track_kinematics(tracks, 640, 480, FPS, 3, MotilityConfig(min_track_conf=0.0)).set_index("track")
    assert list(every["class"]) == [IM, PR]
    # No confidence column (true paths): nothing is left out.
    assert list(track_kinematics(tracks.drop(columns="conf"), 640, 480, FPS, 3, MotilityConfig())["class"]) == [IM, PR]
    with pytest.raises(ValueError, match="min_track_conf"):
        MotilityConfig(min_track_conf=1.5)


def test_clusters_are_left_out_of_the_shares():
    """WHO shares are of spermatozoa: a still cluster (an agglutinate) beside a swimmer leaves 100 % PR."""
    from visem_pl.tasks.tracking.stages import _clip_shares

    frames = np.arange(0, 60, 3)
    swim = boxes(100 + 1.8 * frames, 200 + 0 * frames, frames).assign(cls=0)
    cluster = boxes(300 + 0 * frames, 300 + 0 * frames, frames).assign(track=1, cls=1)
    meta = {"width": 640, "height": 480, "fps": FPS, "stride": 3}
    per, share = _clip_shares(pd.concat([swim, cluster]), meta, MotilityConfig())
    assert list(per["track"]) == [0] and share["tracks"] == 1 and share["pr"] == 100.0
