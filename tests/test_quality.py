"""Pseudo-label quality per class and band on hand-made predictions with known TP/FP/FN."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers.predfiles import write_predictions

from visem_pl.tasks.dataset.truth import TruthStore
from visem_pl.tasks.pseudo.bands import ACCEPT, REJECT, REVIEW
from visem_pl.tasks.pseudo.quality import pseudo_label_quality

A, B = "11_30_60", "84_0_30"

# Truth (frame, class, cx, cy, w, h). Clip A is scored every 2nd frame, 3 frames: 0, 2, 4.
TRUTH_A = [
    (0, 0, 0.1, 0.1, 0.05, 0.05),  # Ta sperm
    (0, 0, 0.3, 0.3, 0.05, 0.05),  # Tb sperm
    (0, 1, 0.5, 0.5, 0.1, 0.1),  # Tc cluster
    (1, 0, 0.7, 0.7, 0.05, 0.05),  # frame 1 is not scored: never counted
    (2, 0, 0.2, 0.6, 0.05, 0.05),  # Td sperm
    (2, 2, 0.8, 0.2, 0.02, 0.02),  # Te pinhead
    (4, 0, 0.6, 0.6, 0.05, 0.05),  # Tf sperm, a frame without any prediction
    (6, 0, 0.6, 0.6, 0.05, 0.05),  # past the scored frames: never counted
]
# Clip B: scored frames 0 and 1, no predictions at all; frame 2 is not scored.
TRUTH_B = [
    (0, 0, 0.5, 0.5, 0.05, 0.05),
    (1, 0, 0.5, 0.5, 0.05, 0.05),
    (1, 0, 0.2, 0.2, 0.05, 0.05),
    (2, 1, 0.5, 0.5, 0.1, 0.1),
]

# Predictions (frame, cls, cx, cy, w, h, conf, band); exact boxes are TPs at IoU 0.5.
BOXES_A = [
    (0, 0, 0.1, 0.1, 0.05, 0.05, 0.9, ACCEPT),  # TP on Ta
    (0, 0, 0.101, 0.1, 0.05, 0.05, 0.7, ACCEPT),  # duplicate on Ta: FP
    (0, 0, 0.3, 0.3, 0.05, 0.05, 0.4, REVIEW),  # TP on Tb
    (0, 1, 0.9, 0.9, 0.1, 0.1, 0.8, ACCEPT),  # cluster on nothing: FP (Tc missed)
    (0, 0, 0.5, 0.9, 0.05, 0.05, 0.1, REJECT),  # rejected: ignored by every band
    (2, 0, 0.2, 0.6, 0.05, 0.05, 0.95, ACCEPT),  # TP on Td
    (2, 0, 0.8, 0.2, 0.02, 0.02, 0.65, ACCEPT),  # on Te with the wrong class: sperm FP, Te missed
    (2, 2, 0.8, 0.2, 0.02, 0.02, 0.2, REJECT),  # the right class, but rejected
]
COLS = ["frame", "cls", "cx", "cy", "w", "h", "conf", "band"]


@pytest.fixture
def result(tmp_path):
    truth_dir = tmp_path / "_truth" / "clips"
    truth_dir.mkdir(parents=True)
    for clip, rows in ((A, TRUTH_A), (B, TRUTH_B)):
        df = pd.DataFrame(rows, columns=["frame", "class", "cx", "cy", "w", "h"])
        df.insert(1, "track_id", [f"{clip}-{i}" for i in range(len(df))])
        df["motility"] = "immotile"
        df.to_parquet(truth_dir / f"{clip}.parquet", index=False)
    pred = tmp_path / "predictions"
    write_predictions(pred, A, [r[:7] for r in BOXES_A], frames_scored=3, stride=2)
    write_predictions(pred, B, [], frames_scored=2, stride=1)
    boxes = pd.DataFrame(BOXES_A, columns=COLS)
    boxes.insert(0, "clip", A)
    return pseudo_label_quality(boxes, pred, TruthStore(tmp_path / "_truth"))


def entry(tp, n_pred, n_truth):
    return {
        "precision": tp / n_pred if n_pred else None,
        "recall": tp / n_truth if n_truth else None,
        "boxes": n_pred,
        "truth": n_truth,
    }


def test_counts_truth_of_every_scored_frame(result):
    # Scored truth: sperm Ta Tb Td Tf (A) + 3 (B); cluster Tc; pinhead Te. Frames 1 and 6 of A
    # and frame 2 of B are not scored; frame 4 of A and all of B have no prediction but count.
    for band in (ACCEPT, REVIEW, "accept+review"):
        assert result[band]["sperm"]["truth"] == 7
        assert result[band]["cluster"]["truth"] == 1
        assert result[band]["small_or_pinhead"]["truth"] == 1
        assert result[band]["all"]["truth"] == 9


def test_accept_band(result):
    assert result[ACCEPT] == {
        "sperm": entry(2, 4, 7),  # TP Ta, Td; FP duplicate, wrong-class box
        "cluster": entry(0, 1, 1),
        "small_or_pinhead": entry(0, 0, 1),
        "all": entry(2, 5, 9),
    }
    assert result[ACCEPT]["sperm"]["precision"] == 0.5
    assert result[ACCEPT]["small_or_pinhead"]["precision"] is None


def test_review_band(result):
    assert result[REVIEW] == {
        "sperm": entry(1, 1, 7),  # TP Tb
        "cluster": entry(0, 0, 1),
        "small_or_pinhead": entry(0, 0, 1),
        "all": entry(1, 1, 9),
    }
    assert result[REVIEW]["sperm"]["precision"] == 1.0
    assert result[REVIEW]["sperm"]["recall"] == pytest.approx(1 / 7)


def test_accept_and_review_bands_together(result):
    assert result["accept+review"] == {
        "sperm": entry(3, 5, 7),
        "cluster": entry(0, 1, 1),
        "small_or_pinhead": entry(0, 0, 1),
        "all": entry(3, 6, 9),
    }
    assert result["accept+review"]["sperm"]["precision"] == pytest.approx(0.6)
    assert result["accept+review"]["all"]["recall"] == pytest.approx(1 / 3)
    assert set(result) == {ACCEPT, "accept_confidence_only", REVIEW, "accept+review"}
    # Boxes filtered by confidence alone: both accept rows are the same.
    assert result["accept_confidence_only"] == result[ACCEPT]
