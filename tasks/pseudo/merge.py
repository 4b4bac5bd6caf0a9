"""Build the next round's training set: labelled frames + accepted pseudo-labels + reviewed labels.

Frames of the unlabelled clips are decoded once and written as JPEGs beside their labels, so
the next round trains from plain files. A reviewed frame replaces its pseudo-labels (the expert
saw the whole frame). Every box keeps its provenance (label source and round) in `manifest.csv`.

A real clip has about 490 scored frames, nearly alike at 50 fps, and training only ever cuts
`train.crops` crops per epoch: `merge.frames_per_clip` keeps a bounded choice of each clip's
pseudo-labelled frames, spread over the clip and preferring the frames whose pseudo-labels are
most complete (`choose_frames`). 502 clips x 16 frames is about 8,000 JPEGs instead of 246,000.

A pseudo-labelled frame is only partly labelled: the doubtful boxes (review and reject bands)
may be cells. Ultralytics has no ignore regions, so those boxes are painted out of the frame
(inpainted from their surroundings) rather than taught as background. Never over a pseudo-label:
a doubtful box on an accepted one is mostly a second detection of the same cell (NMS keeps boxes
that overlap less than its IoU), and painting it erased 11 % of the accepted cells of a strong
round 0 while their labels stayed (`visem-pl bench ssl`, docs/BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.labels import read_yolo_labels
from visem_pl.tasks.dataset.reader import Clip
from visem_pl.tasks.inference.clips import frames_at
from visem_pl.tasks.pseudo.bands import label_texts
from visem_pl.tasks.pseudo.verdicts import REJECTED, VerdictConfig, judged
from visem_pl.tasks.workspace.io import atomic_path, write_json
from visem_pl.tasks.workspace.params import build
from visem_pl.tasks.workspace.paths import portable
from visem_pl.tasks.workspace.progress import progress as report

LABELLED, PSEUDO, REVIEWED = "labelled", "pseudo", "reviewed"


@dataclass(frozen=True)
class MergeConfig:
    # Pseudo-labelled frames kept per clip (0 = every one). Reviewed frames are always kept, beyond it.
    frames_per_clip: int = 16
    # The experts' answers on reviewed frames judge the whole tracks through them (tasks/pseudo/verdicts.py).
    track_verdicts: VerdictConfig | dict = field(default_factory=VerdictConfig)

    def __post_init__(self):
        if int(self.frames_per_clip) < 0:
            raise ValueError("merge.frames_per_clip must be >= 0 (0 = every pseudo-labelled frame)")
        if isinstance(self.track_verdicts, dict):
            verdicts = build(VerdictConfig, self.track_verdicts, "merge.track_verdicts")
            object.__setattr__(self, "track_verdicts", verdicts)


def choose_frames(frames: list[int], completeness: dict[int, float], k: int) -> list[int]:
    """At most `k` of a clip's pseudo-labelled `frames`, spread over the clip: the frames, in time order,
    are cut into k runs of (nearly) equal length and each run gives its most complete frame (the
    highest `completeness`, the share of the frame's likely cells that are pseudo-labels; ties: the
    earlier frame). k = 0 keeps every frame."""
    frames = sorted(frames)
    if k == 0 or len(frames) <= k:
        return frames
    runs = np.array_split(np.asarray(frames), k)
    return [int(max(run, key=lambda f: (completeness.get(int(f), 0.0), -f))) for run in runs]


def completeness(boxes: pd.DataFrame) -> dict[tuple[str, int], float]:
    """{(clip, frame): accepted / (accepted + review-band) boxes} from `filter`'s boxes: how much of
    what the model half-saw on a frame its pseudo-labels cover (the rest is painted out or lost)."""
    if boxes.empty:
        return {}
    seen = boxes[boxes["band"].isin(["accept", "review"])]
    counts = seen.assign(accepted=seen["band"] == "accept").groupby(["clip", "frame"])["accepted"].agg(["sum", "size"])
    return {(c, int(f)): float(a / n) for (c, f), a, n in zip(counts.index, counts["sum"], counts["size"])}


def _of_frames(boxes: pd.DataFrame, frames: list[tuple[str, int]]) -> pd.DataFrame:
    """The rows of `boxes` (columns clip, frame, ...) on `frames` [(clip, frame)], in their order."""
    if not frames or boxes.empty:
        return boxes.iloc[:0]
    on = pd.MultiIndex.from_frame(boxes[["clip", "frame"]].astype({"frame": np.int64}))
    return boxes[on.isin(pd.MultiIndex.from_tuples(frames, names=["clip", "frame"]))]


def _parse_labels(text: str) -> np.ndarray:
    """(N, 5) rows of a label file's text, as `labels.read_yolo_labels` reads its file."""
    if not text.strip():
        return np.zeros((0, 5))
    return np.array([line.split() for line in text.splitlines() if line.strip()], dtype=np.float64).reshape(-1, 5)


def _stems(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.txt"))} if folder.is_dir() else {}


# Doubtful boxes are painted out a little larger than the box: a head's halo spills over it.
MASK_GROW = 1.3


# A doubtful box overlapping an accepted one this much (IoU) is taken for the same cell: not painted.
SAME_CELL_IOU = 0.3


def _rect(cx: float, cy: float, bw: float, bh: float, w: int, h: int, grow: float) -> tuple[int, int, int, int]:
    """Pixel rectangle of a normalised box grown by `grow`."""
    bw, bh = bw * w * grow, bh * h * grow
    x0, y0 = int(max(0, cx * w - bw / 2)), int(max(0, cy * h - bh / 2))
    return x0, y0, int(min(w, cx * w + bw / 2 + 1)), int(min(h, cy * h + bh / 2 + 1))


def _kept_frames(
    accepted: pd.DataFrame, doubtful: pd.DataFrame | None, complete: dict, reviewed: set[str], k: int
) -> tuple[int, pd.DataFrame, pd.DataFrame | None]:
    """Of some clips' `accepted` boxes (every accepted box of each of these clips), the pseudo-labelled
    frames there are (those not `reviewed`, frame items), and the accepted and `doubtful` boxes of the
    frames kept: at most k per clip (`choose_frames` by `complete`), k = 0 all."""
    frames = accepted[["clip", "frame"]].drop_duplicates()
    by_clip: dict[str, list[int]] = {}
    for clip, frame in zip(frames["clip"], frames["frame"]):
        if layout.frame_item(clip, int(frame)) not in reviewed:
            by_clip.setdefault(clip, []).append(int(frame))
    kept = []
    for clip, clip_frames in by_clip.items():
        scores = {f: complete.get((clip, f), 0.0) for f in clip_frames}
        kept += [(clip, f) for f in choose_frames(clip_frames, scores, k)]
    doubtful = _of_frames(doubtful, kept) if doubtful is not None and not doubtful.empty else None
    return sum(map(len, by_clip.values())), _of_frames(accepted, kept), doubtful


def mask_boxes(frame, boxes: pd.DataFrame, keep: np.ndarray | None = None):
    """The frame with `boxes` (normalised cx, cy, w, h) inpainted from their surroundings, except where
    the frame's pseudo-labels `keep` (rows cls, cx, cy, w, h) are: a box overlapping one of them at
    SAME_CELL_IOU or more is left alone, and no pixel inside a kept box is painted."""
    keep = np.zeros((0, 5)) if keep is None else np.asarray(keep, dtype=np.float64).reshape(-1, 5)
    if len(keep) and not boxes.empty:
        from visem_pl.tasks.training.metrics import box_iou, xywhn_to_xyxy

        iou = box_iou(xywhn_to_xyxy(boxes[["cx", "cy", "w", "h"]].to_numpy(), 1, 1), xywhn_to_xyxy(keep[:, 1:], 1, 1))
        boxes = boxes[iou.max(axis=1) < SAME_CELL_IOU]
    if boxes.empty:
        return frame
    h, w = frame.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    for b in boxes.itertuples():
        x0, y0, x1, y1 = _rect(b.cx, b.cy, b.w, b.h, w, h, MASK_GROW)
        mask[y0:y1, x0:x1] = 255
    for _, cx, cy, bw, bh in keep:
        x0, y0, x1, y1 = _rect(cx, cy, bw, bh, w, h, 1.0)
        mask[y0:y1, x0:x1] = 0
    return cv2.inpaint(frame, mask, 3, cv2.INPAINT_TELEA) if mask.any() else frame


def judged_parts(
    clips: Iterable[tuple[str, pd.DataFrame]],
    answers: dict[str, dict[int, np.ndarray]],
    cfg: VerdictConfig,
    counts: dict[str, int] | None = None,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, dict]]:
    """`merge_round`'s parts from each clip's boxes (boxes.parquet's rows, a clip at a time) once the
    experts' `answers` ({clip: {frame: boxes}}) judged the tracks through their frames: the accepted boxes,
    the doubtful ones to paint out (not those of rejected tracks: the experts said they are background),
    and the frames' completeness. `counts` adds up what the verdicts did (`verdicts.judged`)."""
    for clip, rows in clips:
        rows, done = judged(rows, answers.get(clip), cfg)
        if counts is not None:
            for k, v in done.items():
                counts[k] = counts.get(k, 0) + v
        accepted = (rows["band"] == "accept").to_numpy()
        doubtful = ~accepted
        if "provenance" in rows:
            doubtful &= (rows["provenance"] != REJECTED).to_numpy()
        yield rows[accepted], rows[doubtful], completeness(rows)


def merge_round(
    round_n: int,
    labelled: pd.DataFrame,
    pseudo: pd.DataFrame | Iterable[tuple[pd.DataFrame, pd.DataFrame | None, dict]],
    reviewed: list[tuple[int, Path]],
    clips: list[Clip],
    out_dir: Path | str,
    doubtful: pd.DataFrame | None = None,
    provenance: dict | None = None,
    frames_per_clip: int = 0,
    complete: dict[tuple[str, int], float] | None = None,
    progress: bool = True,
) -> dict:
    """Write `images/`, `labels/`, `frames.csv` (image, label, source, round) and `manifest.csv`
    (one row per box with its source and round) under `out_dir`.

    `pseudo`: the round's accepted boxes (columns clip, frame, cls, cx, cy, w, h, and provenance when
    the round has it), in boxes.parquet's order; a kept frame's label file is their text
    (`bands.label_texts`, what `filter` used to write as pseudo/labels/).
    Or `pseudo` is parts [(accepted, doubtful, complete)], each of them every box of some clips (a clip
    at a time: `merge_stage` reads boxes.parquet so), `doubtful` and `complete` then unused: only the kept
    frames' boxes of each part are held.
    `reviewed` is [(round, labels folder)] for every round reviewed so far; later rounds win.
    `doubtful` (columns clip, frame, cx, cy, w, h) are painted out of pseudo-labelled frames.
    `provenance`: {(clip, frame): how each pseudo-label of the frame was accepted, in label order}
    (confidence, promoted, interpolated: tasks/pseudo/temporal.py), the manifest's `rule`; without it,
    `pseudo`'s provenance column says.
    `frames_per_clip` (0 = all): the pseudo-labelled frames kept per clip (`choose_frames`, by
    `complete`: {(clip, frame): completeness}); reviewed frames are all kept. `progress`: the clips
    decoded so far, on stderr (False: silent).
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    chosen: dict[str, tuple[str, int, Path | None]] = {}  # reviewed frames: later rounds win
    for rnd, folder in sorted(reviewed):
        chosen.update({s: (REVIEWED, rnd, p) for s, p in _stems(folder).items()})
    parts = [(pseudo, doubtful, complete or {})] if isinstance(pseudo, pd.DataFrame) else pseudo
    # Part by part (a clip at a time from the stage), only the kept pseudo-labelled frames' boxes stay.
    reviewed_items, pseudo_available, kept_pseudo, kept_doubtful = set(chosen), 0, [], []
    pseudo = pd.DataFrame(columns=["clip", "frame", "cls", "cx", "cy", "w", "h"])  # no part: no pseudo-label
    for accepted, doubtful_part, complete_part in parts:
        available, accepted, doubtful_part = _kept_frames(
            accepted, doubtful_part, complete_part, reviewed_items, int(frames_per_clip)
        )
        pseudo_available += available
        pseudo = accepted if not kept_pseudo else pseudo  # the columns when no frame is kept
        if len(accepted):
            kept_pseudo.append(accepted)
        if doubtful_part is not None and len(doubtful_part):
            kept_doubtful.append(doubtful_part)
    if kept_pseudo:
        pseudo = pd.concat(kept_pseudo, ignore_index=True) if len(kept_pseudo) > 1 else kept_pseudo[0]
    for clip, frame in zip(pseudo["clip"], pseudo["frame"]):
        chosen.setdefault(layout.frame_item(clip, int(frame)), (PSEUDO, round_n, None))
    texts = dict(label_texts(pseudo))
    if provenance is None and "provenance" in pseudo:
        provenance = {(c, int(f)): g["provenance"].tolist() for (c, f), g in pseudo.groupby(["clip", "frame"])}
    provenance = provenance or {}
    doubtful = pd.concat(kept_doubtful, ignore_index=True) if kept_doubtful else None
    doubtful_by_frame = {k: g for k, g in doubtful.groupby(["clip", "frame"])} if doubtful is not None else {}
    by_clip: dict[str, set[int]] = {}
    for stem in chosen:
        clip, frame = layout.split_item(stem)
        by_clip.setdefault(clip, set()).add(frame)
    known = {c.name: c for c in clips}
    missing = sorted(set(by_clip) - set(known))
    if missing:
        raise ValueError(f"labels name clip(s) {missing[:3]} that are not in the dataset")

    frames, boxes = [], []
    for row in labelled.itertuples():
        label = row.label if isinstance(row.label, str) else ""
        frames.append({"image": row.image, "label": label, "source": LABELLED, "round": -1})
        for b in read_yolo_labels(label):
            boxes.append(
                {
                    "image": row.image,
                    "source": LABELLED,
                    "round": -1,
                    "rule": "",
                    "cls": int(b[0]),
                    "cx": b[1],
                    "cy": b[2],
                    "w": b[3],
                    "h": b[4],
                }
            )
    with report("merge", len(by_clip), enabled=progress) as bar:
        for clip_name in sorted(by_clip):
            for index, frame in frames_at(known[clip_name].path, by_clip[clip_name]):
                stem = layout.frame_item(clip_name, index)
                source, rnd, label_src = chosen[stem]
                image = out / "images" / f"{stem}.jpg"
                label = out / "labels" / f"{stem}.txt"
                text = texts[stem] if source == PSEUDO else label_src.read_text()
                parsed = _parse_labels(text)
                if source == PSEUDO and (clip_name, index) in doubtful_by_frame:
                    frame = mask_boxes(frame, doubtful_by_frame[(clip_name, index)], keep=parsed)
                ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    raise ValueError(f"{known[clip_name].path}:0: frame {index} cannot be encoded")
                with atomic_path(image) as tmp:
                    tmp.write_bytes(jpg.tobytes())
                with atomic_path(label) as tmp:
                    tmp.write_text(text)
                frames.append({"image": portable(image), "label": portable(label), "source": source, "round": rnd})
                rules = provenance.get((clip_name, index), []) if source == PSEUDO else []
                fallback = "confidence" if source == PSEUDO else ""
                for i, b in enumerate(parsed):
                    boxes.append(
                        {
                            "image": portable(image),
                            "source": source,
                            "round": rnd,
                            "rule": rules[i] if len(rules) == len(parsed) else fallback,
                            "cls": int(b[0]),
                            "cx": b[1],
                            "cy": b[2],
                            "w": b[3],
                            "h": b[4],
                        }
                    )
            bar.advance(note=f"{len(frames) - len(labelled)} frames written")
    frames_df = pd.DataFrame(frames, columns=["image", "label", "source", "round"])
    boxes_df = pd.DataFrame(boxes, columns=["image", "source", "round", "rule", "cls", "cx", "cy", "w", "h"])
    with atomic_path(out / "frames.csv") as tmp:
        frames_df.to_csv(tmp, index=False)
    with atomic_path(out / "manifest.csv") as tmp:
        boxes_df.to_csv(tmp, index=False, float_format="%.6f")
    stats = {
        "frames": {s: int((frames_df.source == s).sum()) for s in (LABELLED, PSEUDO, REVIEWED)},
        # pseudo-labelled frames there were; `frames.pseudo` of them were kept (merge.frames_per_clip)
        "pseudo_frames_available": int(pseudo_available),
        "frames_per_clip": int(frames_per_clip),
        "boxes": {
            s: {n: int(((boxes_df.source == s) & (boxes_df.cls == k)).sum()) for k, n in enumerate(layout.CLASS_NAMES)}
            for s in (LABELLED, PSEUDO, REVIEWED)
        },
    }
    write_json(out / "stats.json", stats)
    return stats
