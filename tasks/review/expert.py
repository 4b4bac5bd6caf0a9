"""The simulated expert (synthetic data only): answers a round's review queue from the ground truth.

Every answer goes through the round's review queue and one of the real exchange formats
(`tasks.review.exchange`). On synthetic data a clearly named simulated expert does the whole
lifecycle inside the stage's output `reviewed/queue/`: the queue is exported as Label Studio
tasks, the expert reads them, edits the model's boxes from the ground truth (keeps boxes that are
right, fixes boxes near a cell but wrong in class or placement, deletes boxes on nothing, adds a
share of the cells the model missed) and writes a Label Studio JSON export, which is imported by
the same code as an expert's file (`tasks.review.stages` decides who answers a round).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.reader import Clip
from visem_pl.tasks.dataset.truth import TruthStore
from visem_pl.tasks.review.queue import read_queue
from visem_pl.tasks.review.store import QueueStore
from visem_pl.tasks.training.metrics import box_iou, xywhn_to_xyxy
from visem_pl.tasks.workspace.io import atomic_path, write_json
from visem_pl.tasks.workspace.paths import Workspace

SIMULATED_EXPERT = "simulated-expert"
# The simulated expert's clock: a fixed time, so the stage's outputs are the same on every run
# (`dvc repro` twice does nothing). Real imports record the real UTC time.
SIMULATED_TIME = "2000-01-01T00:00:00Z"


@dataclass(frozen=True)
class ReviewConfig:
    add_missed: float = 0.8  # share of missed cells the simulated expert adds
    fix_iou: float = 0.1  # a wrong box overlapping a cell this much is fixed, not deleted
    seed: int = 0


# params.yaml `review:` holds the queue's keys (`priority.QueueConfig`) and these.
REVIEW_KEYS = tuple(f.name for f in fields(ReviewConfig))


def expert_config(ws: Workspace) -> ReviewConfig:
    """The simulated expert's part of params.yaml `review:`."""
    from visem_pl.tasks.review.exchange.overlap import IMPORT_KEYS
    from visem_pl.tasks.review.priority import QueueConfig

    return ws.section("review", ReviewConfig, drop=tuple(f.name for f in fields(QueueConfig)) + IMPORT_KEYS)


def expert_answer(pred: pd.DataFrame, truth: pd.DataFrame, cfg: ReviewConfig, rng) -> tuple[pd.DataFrame, dict]:
    """The simulated expert's complete labels for one frame, and what it did."""
    w, h = layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT
    p_xy = xywhn_to_xyxy(pred[["cx", "cy", "w", "h"]].to_numpy(), w, h)
    t_xy = xywhn_to_xyxy(truth[["cx", "cy", "w", "h"]].to_numpy(), w, h)
    iou = box_iou(p_xy, t_xy)
    t_cls, p_cls = truth["class"].to_numpy(), pred["cls"].to_numpy()
    used = np.zeros(len(truth), dtype=bool)
    rows, log = [], {"kept": 0, "fixed": 0, "deleted": 0, "added": 0}
    for i in np.argsort(-pred["conf"].to_numpy(), kind="stable"):
        cand = np.where(used, -1.0, iou[i]) if len(truth) else np.zeros(0)
        j = int(cand.argmax()) if len(cand) else -1
        if j >= 0 and cand[j] >= 0.5 and t_cls[j] == p_cls[i]:
            used[j] = True
            rows.append((int(p_cls[i]), *pred.iloc[i][["cx", "cy", "w", "h"]].to_numpy()))
            log["kept"] += 1
        elif j >= 0 and cand[j] >= cfg.fix_iou:
            used[j] = True
            rows.append((int(t_cls[j]), *truth.iloc[j][["cx", "cy", "w", "h"]].to_numpy()))
            log["fixed"] += 1
        else:
            log["deleted"] += 1
    for j in np.flatnonzero(~used):
        if rng.random() < cfg.add_missed:
            rows.append((int(t_cls[j]), *truth.iloc[j][["cx", "cy", "w", "h"]].to_numpy()))
            log["added"] += 1
    labels = pd.DataFrame(rows, columns=["cls", "cx", "cy", "w", "h"])
    return labels, log


def simulated_export(tasks: list[dict], truth: TruthStore, cfg: ReviewConfig) -> tuple[list[dict], list[dict]]:
    """The simulated expert: Label Studio tasks in, a Label Studio JSON export (and a log) out."""
    from visem_pl.tasks.review.exchange import labelstudio

    rng = np.random.default_rng(cfg.seed)
    export, log_rows = [], []
    for k, task in enumerate(tasks, start=1):
        d = task["data"]
        rows = []
        for region in task["predictions"][0]["result"] if task.get("predictions") else []:
            box = labelstudio.region_to_box(region)
            if isinstance(box, str):
                raise ValueError(f"{d['item']}: the exported prediction is not a valid box: {box}")
            rows.append((*box, float(region.get("score", 0.0))))
        pred = pd.DataFrame(rows, columns=["cls", "cx", "cy", "w", "h", "conf"])
        labels, log = expert_answer(pred, truth.frame(d["clip"], int(d["frame"])), cfg, rng)
        result = [
            labelstudio.box_to_region(b.cls, b.cx, b.cy, b.w, b.h, region_id=f"a{j}")
            for j, b in enumerate(labels.itertuples())
        ]
        export.append(
            {
                "id": k,
                "data": d,
                "predictions": task.get("predictions", []),
                "annotations": [labelstudio.annotation(result, SIMULATED_EXPERT, SIMULATED_TIME, k)],
            }
        )
        log_rows.append(
            {"item": d["item"], "clip": d["clip"], "frame": int(d["frame"]), "reviewer": SIMULATED_EXPERT, **log}
        )
    return export, log_rows


def simulate_review(
    round_n: int, pseudo_dir: Path, out_dir: Path, truth: TruthStore, clips: list[Clip], cfg: ReviewConfig
) -> dict:
    """Synthetic data: the whole queue lifecycle in `out_dir/queue/` through Label Studio's format;
    the answers to `out_dir/labels/`, a log and stats beside."""
    from visem_pl.tasks.review import exchange

    out_dir = Path(out_dir)
    for old in (out_dir / "queue", out_dir / "labels"):
        if old.exists():
            shutil.rmtree(old)
    store = QueueStore(out_dir / "queue")
    store.init(read_queue(pseudo_dir / "queue.csv"), round_n)
    boxes = pseudo_dir / "boxes.parquet"  # only the queued frames' boxes are read
    batch = exchange.export_queue(store, exchange.LABELSTUDIO, boxes, clips, round_n, when=SIMULATED_TIME)
    log_rows = []
    if batch["batch"]:
        tasks = json.loads((Path(batch["dir"]) / "tasks.json").read_text())
        export, log_rows = simulated_export(tasks, truth, cfg)
        answer = out_dir / "simulated-expert-export.json"
        write_json(answer, export)
        exchange.import_answers(store, answer, SIMULATED_EXPERT, exchange.LABELSTUDIO, when=SIMULATED_TIME)
    items = list(store.queue()["item"])
    store.copy_labels(items, out_dir)
    log_df = pd.DataFrame(log_rows, columns=["item", "clip", "frame", "reviewer", "kept", "fixed", "deleted", "added"])
    with atomic_path(out_dir / "review_log.csv") as tmp:
        log_df.to_csv(tmp, index=False)
    stats = {
        "reviewer": SIMULATED_EXPERT,
        "items": len(log_rows),
        **{k: int(log_df[k].sum()) for k in ("kept", "fixed", "deleted", "added")},
    }
    write_json(out_dir / "stats.json", stats)
    return stats
