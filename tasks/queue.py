"""The review queue of a round: which frames an expert looks at, in which order, and where each one is.

Priority of a frame (an item, `<clip>_frame_<n>`, with at least one box in the review band) is a
weighted mean of three components, each in [0, 1]:

- uncertainty: of the frame's review-band boxes, the one closest to the middle of its class's band:
  1 - |conf - mid| / half-width (1 at the middle, 0 at the band's bounds);
- disagreement: between this round's and the previous round's model on that frame (both models'
  accept + review boxes; round 0 has no previous model, and a frame the previous round did not
  score counts 0): same-class boxes are matched greedily by IoU and
  disagreement = 1 - 2 * sum(matched IoU) / (boxes of this round + boxes of the previous round);
- temporal: inconsistency with the neighbouring scored frames of the same clip (the previous and
  next frame at the infer stride): a box of the frame with no same-class box within one box size
  (centre distance <= the larger side) in any neighbour, plus each neighbour box with none in the
  frame, over all those boxes.

Items are taken round-robin across clips (each clip's items by priority, clips by their best item)
up to `max_items` (0 = every review-band frame), at most `per_clip_max` per clip (0 = no cap).

A `QueueStore` is a folder holding one round's queue and its lifecycle:

    queue.csv        the items (QUEUE_COLUMNS), in review order
    state.json       per item: state (pending, exported, reviewed), reviewer, reviewed_at, exports,
                     import; plus the list of exports and imports
    exports/<batch>/ what was handed to the experts (Label Studio tasks, CVAT zips, frame images)
    imports/         every imported file as it came back, named <UTC time>_<reviewer>_<name>
    labels/<item>.txt the answers: complete YOLO labels per frame (an empty file = no object)

"merged" is not stored: an item is merged once it is in the round's merged training set
(`merged/frames.csv`), which `review status` reads.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from tasks import layout
from tasks.filter import REJECT, REVIEW, Band, assign_bands, frame_key, yolo_lines
from tasks.infer import scored_frames
from tasks.io import file_sha256, write_json, write_text
from tasks.metrics import box_iou, xywhn_to_xyxy

PENDING, EXPORTED, REVIEWED, MERGED = "pending", "exported", "reviewed", "merged"
STATES = (PENDING, EXPORTED, REVIEWED, MERGED)
COMPONENTS = ("uncertainty", "disagreement", "temporal")
QUEUE_COLUMNS = ["item", "clip", "frame", "priority", *COMPONENTS, "n_boxes", "n_review"]
QUEUE_FILE = "queue.csv"


@dataclass(frozen=True)
class QueueConfig:
    max_items: int = 30         # review budget in frames per round; 0 = every review-band frame
    per_clip_max: int = 0       # at most this many frames of one clip; 0 = no cap
    weights: dict = field(default_factory=lambda: {c: 1.0 for c in COMPONENTS})

    def __post_init__(self):
        if int(self.max_items) < 0 or int(self.per_clip_max) < 0:
            raise ValueError("review.max_items and review.per_clip_max must be >= 0")
        if not isinstance(self.weights, dict):
            raise ValueError(f"review.weights must be a mapping of {list(COMPONENTS)} to numbers")
        unknown = sorted(set(self.weights) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"review.weights: unknown key(s) {unknown}; known: {list(COMPONENTS)}")
        for k, v in self.weights.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"review.weights.{k} must be a number >= 0, got {v!r}")


# --- priority -------------------------------------------------------------------------------------

def _xyxy(df: pd.DataFrame) -> np.ndarray:
    return xywhn_to_xyxy(df[["cx", "cy", "w", "h"]].to_numpy(np.float64), layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT)


def uncertainty(review_boxes: pd.DataFrame, bands: dict[int, Band]) -> float:
    best = 0.0
    for cls, conf in zip(review_boxes["cls"], review_boxes["conf"]):
        b = bands[int(cls)]
        half = (b.high - b.low) / 2
        u = 1.0 if half <= 0 else 1.0 - abs(float(conf) - (b.low + b.high) / 2) / half
        best = max(best, min(1.0, max(0.0, u)))
    return best


def disagreement(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """1 - 2 * sum(IoU of greedily matched same-class pairs) / (len(a) + len(b)); 0 if both empty."""
    n = len(a) + len(b)
    if n == 0:
        return 0.0
    if len(a) == 0 or len(b) == 0:
        return 1.0
    iou = box_iou(_xyxy(a), _xyxy(b))
    iou[a["cls"].to_numpy()[:, None] != b["cls"].to_numpy()[None, :]] = 0.0
    total = 0.0
    while iou.size and iou.max() > 0:
        i, j = np.unravel_index(int(iou.argmax()), iou.shape)
        total += float(iou[i, j])
        iou[i, :] = 0.0
        iou[:, j] = 0.0
    return 1.0 - 2.0 * total / n


def _has_partner(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """For each box of a: is there a same-class box of b within one box size (centre distance)?"""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a), dtype=bool)
    wh = np.array([layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT], dtype=np.float64)
    ca, cb = a[["cx", "cy"]].to_numpy(np.float64) * wh, b[["cx", "cy"]].to_numpy(np.float64) * wh
    size = (a[["w", "h"]].to_numpy(np.float64) * wh).max(axis=1)
    dist = np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2)
    same = a["cls"].to_numpy()[:, None] == b["cls"].to_numpy()[None, :]
    return ((dist <= size[:, None]) & same).any(axis=1)


def temporal(frame: pd.DataFrame, neighbours: list[pd.DataFrame]) -> float:
    """(boxes of the frame in no neighbour + neighbour boxes not in the frame) / all those boxes."""
    if not neighbours:
        return 0.0
    n = len(frame) + sum(len(nb) for nb in neighbours)
    if n == 0:
        return 0.0
    seen = np.zeros(len(frame), dtype=bool)
    lost = 0
    for nb in neighbours:
        seen |= _has_partner(frame, nb)
        lost += int((~_has_partner(nb, frame)).sum())
    return (int((~seen).sum()) + lost) / n


def _shown(pred: pd.DataFrame, bands: dict[int, Band]) -> pd.DataFrame:
    pred = pred.copy()
    pred["band"] = assign_bands(pred, bands)
    return pred[pred["band"] != REJECT]


def score_frames(pred_dir: Path | str, bands: dict[int, Band], prev_dir: Path | str | None = None) -> pd.DataFrame:
    """Every frame with a review-band box, with its three components (QUEUE_COLUMNS less priority)."""
    rows = []
    for path in sorted(Path(pred_dir).glob("*.parquet")):
        clip = path.stem
        pred = _shown(pd.read_parquet(path), bands)
        by_frame = {int(f): g for f, g in pred.groupby("frame")}
        empty = pred.iloc[0:0]
        order = scored_frames(path)
        prev_path = Path(prev_dir) / path.name if prev_dir is not None else None
        prev_by_frame, prev_scored = {}, set()
        if prev_path is not None and prev_path.exists():
            prev = _shown(pd.read_parquet(prev_path), bands)
            prev_by_frame = {int(f): g for f, g in prev.groupby("frame")}
            prev_scored = set(scored_frames(prev_path))
        for k, frame in enumerate(order):
            boxes = by_frame.get(frame, empty)
            review = boxes[boxes["band"] == REVIEW]
            if review.empty:
                continue
            neighbours = [by_frame.get(order[j], empty) for j in (k - 1, k + 1) if 0 <= j < len(order)]
            d = disagreement(boxes, prev_by_frame.get(frame, empty)) if frame in prev_scored else 0.0
            rows.append({"item": frame_key(clip, frame), "clip": clip, "frame": frame,
                         "uncertainty": uncertainty(review, bands), "disagreement": d,
                         "temporal": temporal(boxes, neighbours), "n_boxes": len(boxes), "n_review": len(review)})
    return pd.DataFrame(rows, columns=[c for c in QUEUE_COLUMNS if c != "priority"])


def prioritise(frames: pd.DataFrame, cfg: QueueConfig) -> pd.DataFrame:
    """Priority (weighted mean of the components) and the budgeted, clip-spread review order."""
    frames = frames.copy()
    total = float(sum(cfg.weights.get(c, 0.0) for c in COMPONENTS))
    frames["priority"] = (sum(frames[c] * float(cfg.weights.get(c, 0.0)) for c in COMPONENTS) / total
                          if total > 0 else 0.0)
    frames = frames.sort_values(["priority", "clip", "frame"], ascending=[False, True, True], kind="stable")
    per_clip = {clip: list(g.index) for clip, g in frames.groupby("clip", sort=False)}  # clips by best item
    cap = int(cfg.per_clip_max) or None
    budget = int(cfg.max_items) or len(frames)
    picked: list = []
    depth = 0
    while len(picked) < budget:
        layer = [idx[depth] for idx in per_clip.values() if depth < len(idx) and (cap is None or depth < cap)]
        if not layer:
            break
        picked += layer[: budget - len(picked)]
        depth += 1
    out = frames.loc[picked, QUEUE_COLUMNS].reset_index(drop=True)
    out["frame"] = out["frame"].astype(int)
    return out


def build_queue(pred_dir: Path | str, bands: dict[int, Band], cfg: QueueConfig,
                prev_dir: Path | str | None = None) -> pd.DataFrame:
    return prioritise(score_frames(pred_dir, bands, prev_dir), cfg)


def write_queue(queue: pd.DataFrame, path: Path | str) -> None:
    write_text(path, queue[QUEUE_COLUMNS].to_csv(index=False, float_format="%.6f", lineterminator="\n"))


def read_queue(path: Path | str) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"item": str, "clip": str})


REVIEW_README = """\
Review folder of round {n} (see README.md, "Review queue").

Experts' answers for round {n}'s review queue live here, written only by visem-pl:

  visem-pl review status --round {n}
  visem-pl review export --round {n} --format labelstudio   (or cvat)
  visem-pl review import --round {n} FILE --reviewer NAME

queue.csv, state.json, imports/ and labels/ are small text files: commit them with git.
The DVC stage review@{n} copies labels/ into data/rounds/round-{n}/reviewed/ once every item is
reviewed, and waits (saying what is left) until then.
"""


def init_review_folder(folder: Path | str, round_n: int) -> None:
    """Create the round's review folder with its README (the review stage's dependency)."""
    path = Path(folder) / "README.txt"
    text = REVIEW_README.format(n=round_n)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)


# --- the store ------------------------------------------------------------------------------------

def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(when: str) -> str:
    """`2024-05-01T10:20:30Z` -> `20240501T102030Z` (for file names)."""
    return re.sub(r"[-:]", "", when)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unnamed"


Box = tuple[int, float, float, float, float]


def label_text(boxes: list[Box]) -> str:
    return yolo_lines(pd.DataFrame(list(boxes), columns=["cls", "cx", "cy", "w", "h"]))


@dataclass
class Answers:
    """What an expert's file says, before it is checked against the queue."""

    boxes: list[tuple[str, list[Box]]] = field(default_factory=list)   # (item, complete labels), file order
    problems: list[tuple[str, str]] = field(default_factory=list)      # (item, what is wrong)
    unanswered: list[str] = field(default_factory=list)                # items in the file without an answer
    batch: str | None = None                                           # the export the file answers, if known


class ImportRefused(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class QueueStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    queue_csv = property(lambda self: self.root / QUEUE_FILE)
    state_json = property(lambda self: self.root / "state.json")
    labels = property(lambda self: self.root / "labels")
    exports = property(lambda self: self.root / "exports")
    imports = property(lambda self: self.root / "imports")

    def exists(self) -> bool:
        return self.state_json.exists()

    def init(self, queue: pd.DataFrame, round_n: int) -> None:
        """Start the lifecycle from a queue (every item pending); a second call with the same queue
        does nothing, with another queue it refuses (answers belong to the queue they were given for)."""
        if self.exists():
            if list(self.queue()["item"]) != list(queue["item"]):
                raise ValueError(f"{self.queue_csv}:0: holds another queue than the one given "
                                 f"({len(self.queue())} vs {len(queue)} items); move the folder away to start over")
            return
        write_queue(queue, self.queue_csv)
        write_text(self.root / ".gitignore", "exports/*/images/\n")
        self.labels.mkdir(parents=True, exist_ok=True)
        state = {"round": int(round_n), "exports": [], "imports": [],
                 "items": {item: {"state": PENDING, "reviewer": None, "reviewed_at": None, "exports": [],
                                  "import": None} for item in queue["item"]}}
        self.save(state)

    def queue(self) -> pd.DataFrame:
        return read_queue(self.queue_csv)

    def state(self) -> dict:
        return json.loads(self.state_json.read_text(encoding="utf-8"))

    def save(self, state: dict) -> None:
        write_json(self.state_json, state)

    # -- export bookkeeping --
    def to_export(self) -> list[str]:
        """Items not reviewed yet, in queue order."""
        items = self.state()["items"]
        return [i for i in self.queue()["item"] if items[i]["state"] != REVIEWED]

    def new_batch(self, fmt: str, when: str) -> str:
        names = {e["batch"] for e in self.state()["exports"]}
        base = f"{stamp(when)}-{fmt}"
        name, k = base, 2
        while name in names or (self.exports / name).exists():
            name, k = f"{base}-{k}", k + 1
        return name

    def record_export(self, batch: str, fmt: str, items: list[str], when: str, where: Path) -> None:
        state = self.state()
        state["exports"].append({"batch": batch, "format": fmt, "created_at": when, "path": str(where),
                                 "items": list(items)})
        for item in items:
            entry = state["items"][item]
            if batch not in entry["exports"]:
                entry["exports"].append(batch)
            if entry["state"] == PENDING:
                entry["state"] = EXPORTED
        self.save(state)

    # -- import --
    def check(self, answers: Answers, replace: bool = False) -> list[str]:
        """Every reason to refuse `answers`, as `item: what is wrong` lines; empty = acceptable."""
        state = self.state()
        known = state["items"]
        problems = [f"{item}: {msg}" for item, msg in answers.problems]
        counts: dict[str, int] = {}
        for item, _ in answers.boxes:
            counts[item] = counts.get(item, 0) + 1
        problems += [f"{item}: answered {n} times in the file (duplicate)" for item, n in counts.items() if n > 1]
        problems += [f"{item}: not an item of this round's queue (unknown frame)"
                     for item in dict.fromkeys([i for i, _ in answers.boxes] + answers.unanswered) if item not in known]
        answered = set(counts)
        expected: list[str] = []
        if answers.batch is not None:
            batches = {e["batch"]: e for e in state["exports"]}
            if answers.batch not in batches:
                problems.append(f"-: export batch '{answers.batch}' is not an export of this queue")
            else:
                expected = batches[answers.batch]["items"]
        else:
            # No batch in the file (CVAT): the latest export holding every answered item.
            for e in reversed(state["exports"]):
                if answered and answered <= set(e["items"]):
                    expected = e["items"]
                    break
        missing = [i for i in dict.fromkeys(list(expected) + answers.unanswered) if i in known and i not in answered]
        problems += [f"{item}: missing from the file (no answer)" for item in missing]
        if not replace:
            for item, boxes in answers.boxes:
                if item in known and known[item]["state"] == REVIEWED and counts[item] == 1:
                    if (self.labels / f"{item}.txt").read_text() != label_text(boxes):
                        problems.append(f"{item}: already reviewed by {known[item]['reviewer']} with another answer "
                                        f"(use --replace to overwrite)")
        return problems

    def apply(self, answers: Answers, original: Path | str, reviewer: str, fmt: str,
              replace: bool = False, when: str | None = None) -> dict:
        """Check, then import all or nothing: labels, the archived original, the states."""
        original = Path(original)
        digest = file_sha256(original)
        state = self.state()
        for done in state["imports"]:
            if done["sha256"] == digest:
                return {"imported": 0, "changed": 0, "unchanged": True, "file": done["file"]}
        problems = self.check(answers, replace=replace)
        if problems:
            raise ImportRefused(problems)
        when = when or utc_now()
        archived = self.imports / f"{stamp(when)}_{safe_name(reviewer)}_{safe_name(original.name)}"
        k = 2
        while archived.exists():
            archived = archived.with_name(f"{stamp(when)}_{safe_name(reviewer)}_{k}_{safe_name(original.name)}")
            k += 1
        archived.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, archived)
        changed = []
        for item, boxes in answers.boxes:
            path = self.labels / f"{item}.txt"
            text = label_text(boxes)
            entry = state["items"][item]
            if entry["state"] == REVIEWED and path.exists() and path.read_text() == text:
                continue
            write_text(path, text)
            entry.update({"state": REVIEWED, "reviewer": reviewer, "reviewed_at": when, "import": archived.name})
            changed.append(item)
        rel = archived.relative_to(self.root).as_posix()
        state["imports"].append({"file": rel, "sha256": digest, "reviewer": reviewer, "imported_at": when,
                                 "format": fmt, "source": original.name, "batch": answers.batch,
                                 "items": [i for i, _ in answers.boxes], "changed": changed})
        self.save(state)  # the commit point: written last
        return {"imported": len(answers.boxes), "changed": len(changed), "unchanged": False, "file": rel}

    # -- status --
    def status(self, merged: set[str] = frozenset()) -> dict:
        """Counts per state (merged derived from the merged training set), per clip, and what is left."""
        items = self.state()["items"]
        queue = self.queue()
        per_state = {s: 0 for s in STATES}
        per_clip: dict[str, dict[str, int]] = {}
        for item, clip in zip(queue["item"], queue["clip"]):
            s = items[item]["state"]
            if s == REVIEWED and item in merged:
                s = MERGED
            per_state[s] += 1
            per_clip.setdefault(clip, {k: 0 for k in STATES})[s] += 1
        left = per_state[PENDING] + per_state[EXPORTED]
        return {"items": len(queue), "states": per_state, "clips": per_clip, "left": left,
                "reviewers": sorted({e["reviewer"] for e in items.values() if e["reviewer"]})}


def queue_status(queue: pd.DataFrame) -> dict:
    """Status of a queue no one has started on: every item pending."""
    per_clip = {c: {**{k: 0 for k in STATES}, PENDING: int(n)} for c, n in queue.groupby("clip", sort=False).size().items()}
    return {"items": len(queue), "states": {**{k: 0 for k in STATES}, PENDING: len(queue)}, "clips": per_clip,
            "left": len(queue), "reviewers": []}


def merged_items(frames_csv: Path | str) -> set[str]:
    """Items that are reviewed frames of a merged training set (`merged/frames.csv`)."""
    path = Path(frames_csv)
    if not path.exists():
        return set()
    frames = pd.read_csv(path, keep_default_na=False)
    return {Path(p).stem for p in frames.loc[frames["source"] == "reviewed", "image"]}
