"""Training crops: boxes re-expressed in the crop, crops shared out between trusted and pseudo frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from visem_pl.tasks.training.crops import allocate, crop_labels
from visem_pl.tasks.training.train import crop_weights


def test_crop_labels_shift_clip_and_drop():
    # 640x480 frame; boxes of 20x20 px at (100, 100), (155, 100) and (300, 300); crop (90, 90) size 80.
    labels = np.array(
        [
            [0, 100 / 640, 100 / 480, 20 / 640, 20 / 480],
            [1, 165 / 640, 100 / 480, 20 / 640, 20 / 480],
            [2, 300 / 640, 300 / 480, 20 / 640, 20 / 480],
        ]
    )
    out = crop_labels(labels, 640, 480, 90, 90, 80)
    # First box fully inside: centre (10, 10) of 80; second has 15 of 20 px inside (75 %) and is kept, clipped.
    assert out.shape == (2, 5)
    np.testing.assert_allclose(out[0], [0, 10 / 80, 10 / 80, 20 / 80, 20 / 80])
    np.testing.assert_allclose(out[1], [1, (155 - 90 + 80) / 2 / 80, 10 / 80, 15 / 80, 20 / 80])
    # Only 10 of 20 px inside (50 % < 60 %): dropped.
    assert len(crop_labels(labels[1:2], 640, 480, 165, 90, 80)) == 0


def test_allocate_is_proportional_and_exact():
    assert allocate(10, np.array([1.0, 1.0, 1.0])).tolist() == [3, 4, 3]
    assert allocate(3, np.ones(6)).tolist() == [1, 0, 1, 0, 1, 0]  # fewer crops than frames: spread
    counts = allocate(640, np.array([3.0] * 64 + [1.0] * 500))
    assert counts.sum() == 640
    assert counts[:64].sum() == pytest.approx(640 * 192 / 692, abs=1)


def test_trusted_frames_get_their_share_of_crops():
    frames = pd.DataFrame({"source": ["labelled"] * 60 + ["reviewed"] * 20 + ["pseudo"] * 420})
    weights = np.array(crop_weights(frames, 0.5))
    counts = allocate(640, weights)
    assert counts[:80].sum() == 320 and counts[80:].sum() == 320
    assert crop_weights(frames.iloc[:80], 0.5) is None  # no pseudo frames: even
    assert crop_weights(frames, 0.0) is None
    assert crop_weights(frames.drop(columns="source"), 0.5) is None  # round 0 table
