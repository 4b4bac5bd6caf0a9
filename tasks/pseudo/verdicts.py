"""An expert's answer on a reviewed frame holds for the whole track through it.

A reviewed frame is seen whole: the expert boxed every cell in it and nothing else. A track of the round's
boxes that passes through it is therefore **confirmed** when its box there matches an expert box (IoU >=
`confirm_iou`, one to one, the most overlapping pairs first), with the expert's class, and **rejected**
when its box there lies over no expert box at all (IoU < `reject_iou` with every one): what it follows
is not a cell. A box half over a cell says nothing, and a track two reviewed frames judge differently
(the tracker went from one object to another) gets no verdict.

On the clip's other frames the accepted boxes of a rejected track are no pseudo-labels, and are not
painted out either: the expert said what is there, background, the negatives the detector most needs
(whole tracks over defocused cells and debris are most of the wrong accepted boxes, docs/TRACKING.md).
The accepted boxes of a confirmed track take the expert's class. One reviewed frame judges every
track through it, so the review's few frames clean the boxes of many (measured in docs/TRACKING.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.labels import read_yolo_labels
from visem_pl.tasks.pseudo.bands import ACCEPT, REJECT
from visem_pl.tasks.training.metrics import box_iou, xywhn_to_xyxy

# provenance of the boxes the verdicts changed
REJECTED, RELABELLED = "rejected_by_review", "relabelled_by_review"
# what a reviewed frame says of a track
CONFIRMED, REJECTED_TRACK = "confirmed", "rejected"
_XYWH = ["cx", "cy", "w", "h"]


@dataclass(frozen=True)
class VerdictConfig:
    enabled: bool = True
    confirm_iou: float = 0.5  # a track's box this close to an expert box: the track is that cell
    reject_iou: float = 0.1  # under this with every expert box of the frame: the track is no cell

    def __post_init__(self):
        if not 0.0 < float(self.reject_iou) <= float(self.confirm_iou) <= 1.0:
            raise ValueError(
                f"merge.track_verdicts: need 0 < reject_iou <= confirm_iou <= 1, got reject_iou "
                f"{self.reject_iou}, confirm_iou {self.confirm_iou}"
            )


def reviewed_labels(folders: list[tuple[int, Path]]) -> dict[str, dict[int, np.ndarray]]:
    """{clip: {frame: the expert's boxes (rows cls, cx, cy, w, h)}} from reviewed label folders
    [(round, folder)]; a frame reviewed in several rounds: the latest round's answer."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for _, folder in sorted(folders):
        if not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).glob("*.txt")):
            clip, frame = layout.split_item(path.stem)
            out.setdefault(clip, {})[frame] = read_yolo_labels(path).reshape(-1, 5)
    return out


def track_verdicts(boxes: pd.DataFrame, reviewed: dict[int, np.ndarray], cfg: VerdictConfig) -> dict[int, tuple]:
    """{track: ("confirmed", class) or ("rejected", None)} for one clip's `boxes` (columns frame, track, cx,
    cy, w, h; track -1: on no track) from its reviewed frames {frame: expert rows cls, cx, cy, w, h}."""
    said: dict[int, set] = {}
    tracked = boxes[boxes["track"].to_numpy() >= 0]
    for frame, expert in reviewed.items():
        here = tracked[tracked["frame"].to_numpy() == frame]
        if here.empty:
            continue
        tracks = here["track"].to_numpy()
        iou = (
            box_iou(xywhn_to_xyxy(here[_XYWH].to_numpy(), 1, 1), xywhn_to_xyxy(expert[:, 1:], 1, 1))
            if len(expert)
            else np.zeros((len(here), 0))
        )
        for i in np.flatnonzero(iou.max(axis=1, initial=0.0) < cfg.reject_iou):
            said.setdefault(int(tracks[i]), set()).add((REJECTED_TRACK, None))
        # One to one: each expert box confirms at most one track, the most overlapping pairs first.
        taken_box, taken_expert = set(), set()
        for i, j in zip(*np.unravel_index(np.argsort(-iou, axis=None, kind="stable"), iou.shape)):
            if iou[i, j] < cfg.confirm_iou:
                break
            if i in taken_box or j in taken_expert:
                continue
            taken_box.add(i)
            taken_expert.add(j)
            said.setdefault(int(tracks[i]), set()).add((CONFIRMED, int(expert[j, 0])))
    return {track: next(iter(v)) for track, v in said.items() if len(v) == 1}


def apply_verdicts(boxes: pd.DataFrame, verdicts: dict[int, tuple]) -> pd.DataFrame:
    """One clip's boxes (columns cls, band, provenance, track) after the verdicts: every box of a rejected
    track in the reject band with provenance `rejected_by_review`; the accepted boxes of a confirmed track
    in the expert's class (provenance `relabelled_by_review` where it changed)."""
    if not verdicts:
        return boxes
    out = boxes.copy()
    if "provenance" not in out:  # a round filtered before provenance was recorded
        out["provenance"] = "confidence"
    track = out["track"].to_numpy()
    rejected = np.isin(track, [t for t, (v, _) in verdicts.items() if v == REJECTED_TRACK])
    out.loc[rejected, "band"] = REJECT
    out.loc[rejected, "provenance"] = REJECTED
    confirmed = {t: c for t, (v, c) in verdicts.items() if v == CONFIRMED}
    expert_cls = pd.Series(track).map(confirmed).to_numpy(dtype=float)  # NaN: no confirmed track
    change = (out["band"].to_numpy() == ACCEPT) & ~np.isnan(expert_cls) & (expert_cls != out["cls"].to_numpy())
    out.loc[change, "cls"] = expert_cls[change].astype(out["cls"].dtype)
    out.loc[change, "provenance"] = RELABELLED
    return out


def judged(
    boxes: pd.DataFrame, reviewed: dict[int, np.ndarray] | None, cfg: VerdictConfig
) -> tuple[pd.DataFrame, dict]:
    """`apply_verdicts` of one clip's boxes by its reviewed frames, and counts {tracks confirmed, rejected;
    accepted boxes taken away, relabelled} for the round's record."""
    counts = {"tracks_confirmed": 0, "tracks_rejected": 0, "accepted_rejected": 0, "accepted_relabelled": 0}
    if not cfg.enabled or not reviewed or "track" not in boxes:
        return boxes, counts
    verdicts = track_verdicts(boxes, reviewed, cfg)
    out = apply_verdicts(boxes, verdicts)
    counts["tracks_confirmed"] = sum(v == CONFIRMED for v, _ in verdicts.values())
    counts["tracks_rejected"] = sum(v == REJECTED_TRACK for v, _ in verdicts.values())
    was_accepted = boxes["band"].to_numpy() == ACCEPT
    counts["accepted_rejected"] = int((was_accepted & (out["provenance"].to_numpy() == REJECTED)).sum())
    counts["accepted_relabelled"] = int((out["provenance"].to_numpy() == RELABELLED).sum())
    return out, counts
