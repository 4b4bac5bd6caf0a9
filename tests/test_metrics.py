"""Detection metrics on hand-made boxes with known answers, and against Ultralytics' own code."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from visem_pl.tasks.workspace import offline

offline.quiet_ultralytics()  # before Ultralytics is imported: offline, settings under .cache/

import torch  # noqa: E402
from ultralytics.engine.validator import BaseValidator  # noqa: E402
from ultralytics.utils.metrics import ap_per_class  # noqa: E402
from ultralytics.utils.metrics import box_iou as ul_box_iou  # noqa: E402

from visem_pl.tasks.training.metrics import (  # noqa: E402
    IOU_THRESHOLDS,
    Accumulator,
    average_precision,
    box_iou,
    fitness,
    match_frame,
    xywhn_to_xyxy,
)

NAMES = ("sperm", "cluster", "small_or_pinhead")
SQUARE = [0.0, 0.0, 100.0, 100.0]


def trapezoid_101(samples: list[float]) -> float:
    """Area under 101 precision samples at recall 0, 0.01, ..., 1 (the trapezoid rule, written out)."""
    assert len(samples) == 101
    return sum(0.01 * (a + b) / 2 for a, b in zip(samples[:-1], samples[1:]))


# --- IoU and box conversion -----------------------------------------------------------------


def test_iou_of_known_rectangles():
    a = [[0, 0, 10, 10]]
    b = [
        [5, 0, 15, 10],  # half overlap: 50 / 150
        [0, 0, 10, 10],  # identical
        [20, 20, 30, 30],  # disjoint
        [2, 2, 4, 4],  # inside: 4 / 100
        [10, 0, 20, 10],
    ]  # touching edge only
    iou = box_iou(a, b)
    assert iou.shape == (1, 5)
    assert iou[0].tolist() == pytest.approx([1 / 3, 1.0, 0.0, 0.04, 0.0], abs=1e-12)
    # Symmetric, and a degenerate (zero-area) box has IoU 0 with itself.
    assert box_iou(b, a)[:, 0].tolist() == pytest.approx(iou[0].tolist(), abs=1e-12)
    assert box_iou([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 0.0


def test_xywhn_to_xyxy():
    xy = xywhn_to_xyxy([[0.5, 0.5, 0.25, 0.5], [0.1, 0.2, 0.1, 0.1]], 640, 480)
    assert xy.ravel().tolist() == pytest.approx([240, 120, 400, 360, 32, 72, 96, 120], abs=1e-9)


def test_fitness_formula():
    for m50, m5095 in [(0.0, 0.0), (1.0, 1.0), (0.8, 0.4), (0.3, 0.9), (0.55, 0.123)]:
        assert fitness(m50, m5095) == pytest.approx(0.1 * m50 + 0.9 * m5095, abs=1e-15)
    assert fitness(0.8, 0.4) == pytest.approx(0.44, abs=1e-15)


# --- AP of hand-ranked lists ---------------------------------------------------------------


def test_perfect_predictions_score_one():
    acc = Accumulator(NAMES)
    frames = [
        ([[10, 10, 30, 30], [100, 100, 140, 130], [200, 50, 260, 90]], [0, 1, 2]),
        ([[300, 300, 320, 330], [50, 400, 70, 420]], [0, 0]),
        ([], []),
        ([[500, 20, 530, 50]], [2]),
    ]
    rng = np.random.default_rng(0)
    for boxes, cls in frames:
        acc.add(boxes, cls, rng.uniform(0.3, 1.0, len(cls)), boxes, cls)
    s = acc.summary()
    o = s["overall"]
    assert (o["precision"], o["recall"], o["mAP50"], o["mAP50-95"], o["fitness"]) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert o["instances"] == 6
    for name, n in zip(NAMES, (3, 1, 2)):
        c = s["per_class"][name]
        assert (c["instances"], c["predictions"]) == (n, n)
        assert (c["precision"], c["recall"], c["mAP50"], c["mAP50-95"], c["fitness"]) == (1.0, 1.0, 1.0, 1.0, 1.0)


def test_false_positive_ranked_above_the_true_positive():
    # One truth box; a box on nothing (conf 0.9) outranks the right box (conf 0.8).
    acc = Accumulator(NAMES)
    acc.add([[400, 400, 420, 420], SQUARE], [0, 0], [0.9, 0.8], [SQUARE], [0])
    # Ranked: FP (recall 0, precision 0), TP (recall 1, precision 1/2). The envelope (best
    # precision at recall >= r) is 1/2 for every r in [0, 1].
    expected = trapezoid_101([0.5] * 101)
    assert expected == pytest.approx(0.5, abs=1e-12)
    c = acc.summary()["per_class"]["sperm"]
    assert c["mAP50"] == pytest.approx(expected, abs=1e-12)
    assert c["mAP50-95"] == pytest.approx(expected, abs=1e-12)  # the TP box is exact: TP at every threshold


def test_ap_with_two_false_positives_between_true_positives():
    # Two truth boxes in two frames. Ranking: TP 0.95, FP 0.9, FP 0.85, TP 0.8.
    acc = Accumulator(NAMES)
    acc.add([SQUARE, [300, 300, 310, 310]], [0, 0], [0.95, 0.9], [SQUARE], [0])
    acc.add([[200, 200, 210, 210], [0, 0, 50, 50]], [0, 0], [0.85, 0.8], [[0, 0, 50, 50]], [0])
    # recall 1/2 1/2 1/2 1 ; precision 1 1/2 1/3 1/2.
    # Envelope: r <= 0.5 -> 1 (the first TP), 0.5 < r <= 1 -> 1/2 (the last TP).
    samples = [1.0] * 51 + [0.5] * 50
    expected = trapezoid_101(samples)
    assert expected == pytest.approx(0.5 + 0.0075 + 0.245, abs=1e-12)
    assert acc.summary()["per_class"]["sperm"]["mAP50"] == pytest.approx(expected, abs=1e-12)


def test_missed_truth_box_caps_recall():
    # Two truth boxes, one found with full precision: recall stops at 1/2, and past it the
    # precision envelope is 0 (no triangle down to recall 1).
    acc = Accumulator(NAMES)
    acc.add([SQUARE], [0], [0.9], [SQUARE, [300, 300, 320, 320]], [0, 0])
    expected = trapezoid_101([1.0] * 51 + [0.0] * 50)
    assert expected == pytest.approx(0.505, abs=1e-12)
    c = acc.summary()["per_class"]["sperm"]
    assert c["mAP50"] == pytest.approx(expected, abs=1e-12)
    assert c["recall"] == pytest.approx(0.5, abs=1e-12)
    assert c["precision"] == pytest.approx(1.0, abs=1e-12)


def test_average_precision_direct():
    assert average_precision(np.array([]), np.array([])) == 0.0
    assert average_precision(np.array([0.0, 0.0]), np.array([0.0, 0.0])) == 0.0
    assert average_precision(np.array([1.0]), np.array([1.0])) == pytest.approx(1.0, abs=1e-12)
    # recall 7/10 meets the sample point 0.7 exactly: 71 samples at 0.8, then 0.
    r = np.arange(1, 8) / 10
    assert average_precision(r, np.full(7, 0.8)) == pytest.approx(trapezoid_101([0.8] * 71 + [0.0] * 30), abs=1e-12)


# --- matching --------------------------------------------------------------------------------


def test_wrong_class_never_matches():
    tp = match_frame([SQUARE], [1], [0.9], [SQUARE], [0])
    assert tp.shape == (1, 10) and not tp.any()
    acc = Accumulator(NAMES)
    acc.add([SQUARE], [1], [0.9], [SQUARE], [0])
    s = acc.summary()["per_class"]
    assert s["sperm"]["instances"] == 1 and s["sperm"]["predictions"] == 0
    assert (s["sperm"]["mAP50"], s["sperm"]["mAP50-95"], s["sperm"]["recall"]) == (0.0, 0.0, 0.0)
    # The cluster box has no truth of its class: no AP for that class, but it is counted.
    assert s["cluster"] == {
        "instances": 0,
        "predictions": 1,
        "precision": None,
        "recall": None,
        "mAP50": None,
        "mAP50-95": None,
        "fitness": None,
    }


def test_two_predictions_on_one_truth_box():
    # Identical boxes: the higher confidence one is the TP, the other a duplicate (FP).
    tp = match_frame([SQUARE, SQUARE], [0, 0], [0.6, 0.9], [SQUARE], [0])
    assert tp[:, 0].tolist() == [False, True]
    assert tp.sum() == 10 and tp[1].all()
    # Greedy by confidence: the 0.9 box (IoU 0.7) takes the truth box wherever it is eligible
    # (0.5..0.7); at 0.75+ only the 0.8 box (IoU 1) reaches the threshold and matches instead.
    tp = match_frame([[0, 0, 100, 70], SQUARE], [0, 0], [0.9, 0.8], [SQUARE], [0])
    assert tp[0].tolist() == [True] * 5 + [False] * 5
    assert tp[1].tolist() == [False] * 5 + [True] * 5
    assert IOU_THRESHOLDS[4] == pytest.approx(0.7) and IOU_THRESHOLDS[5] == pytest.approx(0.75)


def test_each_prediction_takes_its_best_unmatched_truth():
    truths = [SQUARE, [0, 0, 100, 80]]  # IoU 0.8 with each other
    # The top box sits on the second truth; the next one, exactly on the first, still matches it.
    tp = match_frame([[0, 0, 100, 80], SQUARE], [0, 0], [0.9, 0.8], truths, [0, 0])
    assert tp.all()


@pytest.mark.parametrize("height, n_tp", [(58, 2), (62, 3), (100, 10), (48, 0)])
def test_iou_threshold_steps(height, n_tp):
    # Box [0,0,100,h] on [0,0,100,100]: IoU h/100, a TP at the thresholds 0.5, 0.55, ... <= h/100.
    tp = match_frame([[0, 0, 100, height]], [0], [0.9], [SQUARE], [0])
    assert tp[0].tolist() == [True] * n_tp + [False] * (10 - n_tp)
    acc = Accumulator(NAMES)
    acc.add([[0, 0, 100, height]], [0], [0.9], [SQUARE], [0])
    c = acc.summary()["per_class"]["sperm"]
    ap50 = 1.0 if n_tp else 0.0
    assert c["mAP50"] == pytest.approx(ap50, abs=1e-12)
    assert c["mAP50-95"] == pytest.approx(n_tp / 10 * ap50, abs=1e-12)
    assert c["fitness"] == pytest.approx(0.1 * ap50 + 0.9 * n_tp / 10, abs=1e-12)


def test_iou_058_box_counts_at_050_and_055_only_in_a_mixed_set():
    # Two classes: sperm found exactly, cluster found at IoU 0.58 -> mAP50-95 = (1 + 0.2) / 2.
    acc = Accumulator(NAMES)
    acc.add([SQUARE, [200, 0, 300, 58]], [0, 1], [0.9, 0.8], [SQUARE, [200, 0, 300, 100]], [0, 1])
    s = acc.summary()
    assert s["per_class"]["cluster"]["mAP50-95"] == pytest.approx(0.2 * s["per_class"]["cluster"]["mAP50"])
    assert s["overall"]["mAP50"] == pytest.approx(1.0, abs=1e-12)
    assert s["overall"]["mAP50-95"] == pytest.approx(0.6, abs=1e-12)
    assert s["overall"]["fitness"] == pytest.approx(0.1 * 1.0 + 0.9 * 0.6, abs=1e-12)
    assert s["overall"]["instances"] == 2


# --- against Ultralytics' implementation ------------------------------------------------------


def random_frames(seed: int, n_frames: int):
    """Truth boxes and noisy predictions: jittered hits, wrong classes, duplicates, boxes on nothing."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_frames):
        n = int(rng.integers(0, 9))
        wh = rng.uniform(12, 48, (n, 2))
        c = rng.uniform([30, 30], [610, 450], (n, 2))
        gt = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
        gt_cls = rng.choice(3, n, p=[0.6, 0.2, 0.2])
        boxes, cls, conf = [], [], []
        for box, k in zip(gt, gt_cls):
            if rng.random() < 0.8:  # found
                w, h = box[2] - box[0], box[3] - box[1]
                shift = rng.normal(0, 0.12, 2) * (w, h)
                scale = np.exp(rng.normal(0, 0.15, 2))
                cx, cy = (box[0] + box[2]) / 2 + shift[0], (box[1] + box[3]) / 2 + shift[1]
                pw, ph = w * scale[0], h * scale[1]
                boxes.append([cx - pw / 2, cy - ph / 2, cx + pw / 2, cy + ph / 2])
                cls.append(k if rng.random() < 0.9 else (k + 1) % 3)
                conf.append(rng.uniform(0.2, 1.0))
                if rng.random() < 0.1:  # a duplicate of it
                    boxes.append(boxes[-1] + rng.normal(0, 2, 4))
                    cls.append(cls[-1])
                    conf.append(rng.uniform(0.05, 0.9))
        for _ in range(int(rng.poisson(1.0))):  # on nothing (or by chance near a cell)
            x, y = rng.uniform([0, 0], [600, 440])
            s = rng.uniform(12, 40)
            boxes.append([x, y, x + s, y + s])
            cls.append(int(rng.choice(3)))
            conf.append(rng.uniform(0.01, 0.8))
        frames.append(
            (np.array(boxes).reshape(-1, 4), np.array(cls, dtype=np.int64), np.array(conf), gt, gt_cls.astype(np.int64))
        )
    return frames


def ultralytics_ap(frames) -> tuple[np.ndarray, np.ndarray]:
    """(classes, AP (n_classes, 10)) with Ultralytics' validator matching and `ap_per_class`."""
    validator = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))  # all match_predictions uses
    tps, confs, pcls, tcls = [], [], [], []
    for boxes, cls, conf, gt, gt_cls in frames:
        order = np.argsort(-conf)  # match_predictions expects descending confidence
        boxes, cls, conf = boxes[order], cls[order], conf[order]
        if len(boxes) and len(gt):
            iou = ul_box_iou(torch.tensor(gt), torch.tensor(boxes))  # (labels, detections)
            tp = BaseValidator.match_predictions(validator, torch.tensor(cls), torch.tensor(gt_cls), iou).numpy()
        else:
            tp = np.zeros((len(boxes), 10), dtype=bool)
        tps.append(tp)
        confs.append(conf)
        pcls.append(cls)
        tcls.append(gt_cls)
    out = ap_per_class(np.concatenate(tps), np.concatenate(confs), np.concatenate(pcls), np.concatenate(tcls))
    ap, classes = out[5], out[6]
    return classes, ap


def test_agrees_with_ultralytics_on_random_frames():
    """Per-class AP50 and AP50-95 within 0.01 of Ultralytics 8.4's own functions.

    Both match greedily in descending confidence (Ultralytics' `match_predictions`, 8.4), so
    the true-positive matrices are the same except where an IoU sits on a threshold (it
    computes IoU in float32 with an eps). The AP integrals differ by construction at one
    point: Ultralytics appends a precision-0 sentinel at the highest recall, which zeroes the
    sample at that recall when it falls on the 0.01 grid (0.995 for a perfect detector);
    ours keeps the envelope up to and including the highest recall (COCO). That costs at most
    one trapezoid half-step (0.005) per threshold.
    """
    frames = random_frames(seed=2024, n_frames=200)
    acc = Accumulator(NAMES)
    for boxes, cls, conf, gt, gt_cls in frames:
        acc.add(boxes, cls, conf, gt, gt_cls)
    ours = acc.summary()["per_class"]
    classes, ap = ultralytics_ap(frames)
    assert classes.tolist() == [0, 1, 2]
    max_recall_below_one = 0
    for k, name in enumerate(NAMES):
        assert ours[name]["instances"] > 50
        assert 0.3 < ours[name]["mAP50"] < 0.95  # a non-trivial curve
        assert ours[name]["mAP50"] == pytest.approx(ap[k, 0], abs=0.01)
        assert ours[name]["mAP50-95"] == pytest.approx(ap[k].mean(), abs=0.01)
        max_recall_below_one += ours[name]["recall"] < 1
    # The data leave cells unfound, so the "past the highest recall" part of AP is exercised.
    assert max_recall_below_one == 3


def test_same_true_positives_as_ultralytics_matching():
    """Away from threshold ties, our greedy matching gives Ultralytics' TP matrix exactly."""
    frames = random_frames(seed=7, n_frames=60)
    validator = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
    compared = 0
    for boxes, cls, conf, gt, gt_cls in frames:
        if not len(boxes) or not len(gt):
            continue
        order = np.argsort(-conf)
        boxes, cls, conf = boxes[order], cls[order], conf[order]
        theirs = BaseValidator.match_predictions(
            validator, torch.tensor(cls), torch.tensor(gt_cls), ul_box_iou(torch.tensor(gt), torch.tensor(boxes))
        ).numpy()
        ours = match_frame(boxes, cls, conf, gt, gt_cls)
        iou = box_iou(boxes, gt)
        near_threshold = (np.abs(iou[..., None] - IOU_THRESHOLDS) < 1e-5).any()
        if not near_threshold:
            assert (ours == theirs).all()
            compared += 1
    assert compared > 40


def test_pr_curve_is_the_envelope_map50_integrates():
    """summary(curves=True): each class's precision at recall 0, 0.01, ..., 1 (IoU 0.5); its trapezoid area is
    the class's mAP50, it never rises with recall (an envelope) and it is 0 past the highest recall reached."""
    frames = random_frames(seed=7, n_frames=120)
    acc = Accumulator(NAMES)
    for boxes, cls, conf, gt, gt_cls in frames:
        acc.add(boxes, cls, conf, gt, gt_cls)
    plain, with_curves = acc.summary(), acc.summary(curves=True)
    assert "pr_curve" not in plain and with_curves["per_class"] == plain["per_class"]
    curve = with_curves["pr_curve"]
    assert curve["recall"] == [k / 100 for k in range(101)]
    for name in NAMES:
        p = np.array(curve[name])
        assert np.all(np.diff(p) <= 1e-12) and p[0] > 0.5
        assert trapezoid_101(list(p)) == pytest.approx(plain["per_class"][name]["mAP50"], abs=1e-5)
        if plain["per_class"][name]["recall"] < 1:
            assert p[-1] == 0.0


def test_pr_curve_leaves_out_classes_without_labelled_boxes():
    acc = Accumulator(NAMES)
    acc.add(np.array([SQUARE]), [0], [0.9], np.array([SQUARE]), [0])
    curve = acc.summary(curves=True)["pr_curve"]
    assert set(curve) == {"recall", "sperm"} and curve["sperm"] == [1.0] * 101


def test_match_groups_is_match_frame_frame_by_frame():
    """Many frames at once (quality, the temporal check) give exactly what match_frame gives per frame,
    conflicts included: duplicate truth boxes, predictions near two cells, tied confidences."""
    from visem_pl.tasks.training.metrics import match_groups

    rng = np.random.default_rng(1)
    for _ in range(300):
        frames, n_pred, n_gt = int(rng.integers(1, 6)), int(rng.integers(0, 40)), int(rng.integers(0, 30))
        corner = rng.uniform(0, 60, (n_pred + n_gt, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(5, 25, (n_pred + n_gt, 2))], 1)
        pred, gt = boxes[:n_pred], boxes[n_pred:]
        if n_gt > 3:
            gt[1], gt[3] = gt[0], gt[2] + 0.5
        if n_gt and n_pred:
            near = rng.integers(0, n_gt, min(n_pred, 10))
            pred[: len(near)] = gt[near] + rng.normal(0, 1, (len(near), 4))
        pred_key, gt_key = rng.integers(0, frames, n_pred), rng.integers(0, frames, n_gt)
        pred_cls, gt_cls = rng.integers(0, 2, n_pred), rng.integers(0, 2, n_gt)
        conf = rng.choice([0.1, 0.5, 0.9], n_pred).astype(np.float32)
        want = np.zeros(n_pred, dtype=bool)
        for f in range(frames):
            p, g = np.flatnonzero(pred_key == f), np.flatnonzero(gt_key == f)
            want[p] = match_frame(pred[p], pred_cls[p], conf[p], gt[g], gt_cls[g], thresholds=np.array([0.5]))[:, 0]
        got = match_groups(pred_key, pred, pred_cls, conf, gt_key, gt, gt_cls)
        assert (got == want).all()
