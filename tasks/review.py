"""The review step: an expert answers the round's review queue with complete labels per frame.

On synthetic data a clearly named simulated expert answers from the ground truth: it keeps
boxes that are right, fixes boxes that are near a cell but wrong in class or placement,
deletes boxes on nothing, and adds a share of the cells the model missed. On real data the
round waits for experts' label files in `review/incoming/round-N/labels/`.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks import layout
from tasks.filter import frame_key, yolo_lines
from tasks.io import atomic_path, write_json
from tasks.metrics import box_iou, xywhn_to_xyxy
from tasks.truth import TruthStore

SIMULATED_EXPERT = "simulated-expert"
INCOMING = Path("review/incoming")


class ReviewPending(RuntimeError):
    """Real data: the experts' labels for this round are not there yet."""


@dataclass(frozen=True)
class ReviewConfig:
    max_items: int = 0          # review budget in frames per round; 0 = the whole queue
    add_missed: float = 0.8     # share of missed cells the simulated expert adds
    fix_iou: float = 0.1        # a wrong box overlapping a cell this much is fixed, not deleted
    seed: int = 0


def pick_items(queue: pd.DataFrame, budget: int) -> list[str]:
    """Frames to review, spread evenly over the queue when the budget is smaller than it."""
    items = list(dict.fromkeys(queue["item"]))
    if budget and len(items) > budget:
        idx = np.linspace(0, len(items) - 1, budget).round().astype(int)
        items = [items[i] for i in idx]
    return items


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


def simulate_review(pseudo_dir: Path, out_dir: Path, truth: TruthStore, cfg: ReviewConfig) -> dict:
    """Answer the queue in `pseudo_dir` from the truth; labels to `out_dir/labels/`, a log beside."""
    queue = pd.read_csv(pseudo_dir / "review_queue.csv")
    boxes = pd.read_parquet(pseudo_dir / "boxes.parquet")
    boxes = boxes[boxes.band != "reject"]
    rng = np.random.default_rng(cfg.seed)
    labels_dir = out_dir / "labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    log_rows = []
    by_frame = {k: g for k, g in boxes.groupby(["clip", "frame"])}
    for item in pick_items(queue, cfg.max_items):
        first = queue[queue["item"] == item].iloc[0]
        clip, frame = str(first["clip"]), int(first["frame"])
        pred = by_frame.get((clip, frame), boxes.iloc[0:0])
        labels, log = expert_answer(pred.reset_index(drop=True), truth.frame(clip, frame), cfg, rng)
        with atomic_path(labels_dir / f"{frame_key(clip, frame)}.txt") as tmp:
            tmp.write_text(yolo_lines(labels))
        log_rows.append({"item": item, "clip": clip, "frame": frame, "reviewer": SIMULATED_EXPERT, **log})
    log_df = pd.DataFrame(log_rows, columns=["item", "clip", "frame", "reviewer", "kept", "fixed", "deleted", "added"])
    with atomic_path(out_dir / "review_log.csv") as tmp:
        log_df.to_csv(tmp, index=False)
    stats = {"reviewer": SIMULATED_EXPERT, "items": len(log_rows),
             **{k: int(log_df[k].sum()) for k in ("kept", "fixed", "deleted", "added")}}
    write_json(out_dir / "stats.json", stats)
    return stats


def collect_review(round_n: int, pseudo_dir: Path, out_dir: Path, incoming: Path = INCOMING) -> dict:
    """Real data: take the experts' label files for every queued frame, or say what is missing."""
    source = incoming / f"round-{round_n}" / "labels"
    queue = pd.read_csv(pseudo_dir / "review_queue.csv")
    items = list(dict.fromkeys(queue["item"]))
    present = {p.stem for p in source.glob("*.txt")} if source.is_dir() else set()
    if items and not present:
        raise ReviewPending(
            f"round {round_n} waits for reviewed labels: put one YOLO label file per queued frame "
            f"({len(items)} in {pseudo_dir / 'review_queue.csv'}), named <item>.txt, into {source}/")
    unknown = sorted(present - set(items))
    if unknown:
        raise ValueError(f"{source}/{unknown[0]}.txt:0: not an item of {pseudo_dir / 'review_queue.csv'}")
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    for stem in sorted(present):
        shutil.copyfile(source / f"{stem}.txt", out_dir / "labels" / f"{stem}.txt")
    stats = {"reviewer": "experts", "items": len(present), "queued": len(items)}
    write_json(out_dir / "stats.json", stats)
    return stats
