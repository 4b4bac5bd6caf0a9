"""What a review changed, read back from the labels an expert returned: the same counts the simulated expert
logs when it makes them (so the report's review section is right for real experts too)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from visem_pl.tasks.review.changes import frame_changes
from visem_pl.tasks.review.expert import ReviewConfig, expert_answer

BOX = ["cls", "cx", "cy", "w", "h"]


def frame(rows, conf: bool) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[*BOX, "conf"] if conf else BOX)


def test_each_kind_of_change_on_a_hand_made_frame():
    shown = frame(
        [
            (0, 0.2, 0.2, 0.05, 0.05, 0.9),  # answered unchanged: kept
            (0, 0.5, 0.5, 0.1, 0.1, 0.8),  # answered as a cluster at the same place: fixed
            (2, 0.8, 0.8, 0.02, 0.02, 0.7),  # answered moved by half its width: fixed
            (0, 0.5, 0.1, 0.05, 0.05, 0.6),  # no answer near it: deleted
        ],
        conf=True,
    )
    answer = frame(
        [
            (0, 0.2, 0.2, 0.05, 0.05),
            (1, 0.5, 0.5, 0.1, 0.1),
            (2, 0.81, 0.8, 0.02, 0.02),
            (0, 0.9, 0.1, 0.05, 0.05),  # a cell the model missed: added
        ],
        conf=False,
    )
    assert frame_changes(shown, answer) == {"kept": 1, "fixed": 2, "deleted": 1, "added": 1}
    assert frame_changes(shown, answer.iloc[:0]) == {"kept": 0, "fixed": 0, "deleted": 4, "added": 0}
    assert frame_changes(shown.iloc[:0], answer) == {"kept": 0, "fixed": 0, "deleted": 0, "added": 4}


@pytest.mark.parametrize("seed", range(8))
def test_reads_back_what_the_simulated_expert_logged(seed):
    """Random frames: the expert keeps, fixes, deletes and adds against its truth; the labels it returns,
    compared with the boxes it was shown, give exactly its log."""
    rng = np.random.default_rng(seed)
    n_truth, n_pred = rng.integers(0, 25), rng.integers(0, 25)
    truth = pd.DataFrame(
        {
            "class": rng.integers(0, 3, n_truth),
            "cx": rng.uniform(0.05, 0.95, n_truth),
            "cy": rng.uniform(0.05, 0.95, n_truth),
            "w": rng.uniform(0.02, 0.08, n_truth),
            "h": rng.uniform(0.02, 0.08, n_truth),
        }
    )
    # Predictions: truth boxes jittered (some reclassed) and boxes on nothing.
    near = truth.sample(min(n_pred, n_truth), random_state=seed) if n_truth else truth
    pred = pd.DataFrame(
        {
            "cls": np.where(rng.random(len(near)) < 0.2, rng.integers(0, 3, len(near)), near["class"]),
            "cx": near["cx"].to_numpy() + rng.normal(0, 0.01, len(near)),
            "cy": near["cy"].to_numpy() + rng.normal(0, 0.01, len(near)),
            "w": near["w"].to_numpy(),
            "h": near["h"].to_numpy(),
        }
    )
    extra = int(rng.integers(0, 6))
    pred = pd.concat(
        [
            pred,
            pd.DataFrame(
                {
                    "cls": rng.integers(0, 3, extra),
                    "cx": rng.uniform(0.05, 0.95, extra),
                    "cy": rng.uniform(0.05, 0.95, extra),
                    "w": 0.04,
                    "h": 0.04,
                }
            ),
        ],  # fmt: skip
        ignore_index=True,
    ).assign(conf=lambda d: rng.uniform(0.1, 0.3, len(d)))
    labels, log = expert_answer(pred, truth, ReviewConfig(add_missed=0.7, fix_iou=0.1), rng)
    assert sum(log.values()) > 0
    assert frame_changes(pred, labels) == log
