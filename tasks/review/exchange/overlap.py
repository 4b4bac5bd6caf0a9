"""Several experts' answers to one frame (Label Studio's overlap): which answer the review queue takes.

Label Studio can show a task to several annotators, each leaving an annotation (agreement checks). A task's
candidates are its annotations that were not skipped (`was_cancelled`), narrowed to those marked ground
truth (`ground_truth`) where one is, as Label Studio's own reviewers mark the answer that counts. One
candidate is the answer; between several, params.yaml `review.multiple_annotations` decides:

- `latest`: the most recently updated (else created) annotation, the later id on a tie.
- `refuse`: the import is refused, naming the item and how many annotations it has.
- `agree`: the boxes the annotators agree on. Each annotator's boxes are matched, greedily by IoU, to groups
  started by the earlier annotators' boxes (same class, IoU >= 0.5 with the box that started the group, one
  box per annotator a group). A group drawn by more than half of the annotators is kept (as the mean of its
  boxes), one drawn by fewer than half is outvoted and dropped, and one drawn by exactly half (with two
  annotators: a box only one of them drew, or the same cell in two classes) is a disagreement: the item is
  not taken as reviewed but goes back to the review queue, with the reason recorded. So two annotators must
  agree on every box; with three, each box is settled by a 2-of-3 vote.

Whatever the rule, the agreement of every pair of annotators of an item is measured (F1 of their boxes,
matched one to one by class and IoU >= 0.5) and kept in the queue store for `visem-pl review status`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from itertools import combinations

import numpy as np

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.labels import Box
from visem_pl.tasks.training.metrics import box_iou, xywhn_to_xyxy
from visem_pl.tasks.workspace.errors import ConfigError

LATEST, REFUSE, AGREE = "latest", "refuse", "agree"
RULES = (LATEST, REFUSE, AGREE)
# How an item's answer was chosen, as the queue store records it: one candidate (`single`), the annotation
# marked ground truth among others (`ground_truth`), or one of RULES between several candidates.
SINGLE, GROUND_TRUTH = "single", "ground_truth"
MATCH_IOU = 0.5


@dataclass(frozen=True)
class ImportConfig:
    """The import's part of params.yaml `review:` (the rest is the queue's and the simulated expert's)."""

    multiple_annotations: str = LATEST


IMPORT_KEYS = tuple(f.name for f in fields(ImportConfig))


def import_config(ws) -> ImportConfig:
    """params.yaml `review.multiple_annotations`; the default where the workspace has no params.yaml (a queue
    folder used on its own, `--store`), a ConfigError naming the file and key for a value not in RULES."""
    from pathlib import Path

    from visem_pl.tasks.review.expert import REVIEW_KEYS
    from visem_pl.tasks.review.priority import QueueConfig
    from visem_pl.tasks.workspace.paths import PARAMS_FILE

    if Path(ws.params_file) == Path(PARAMS_FILE) and not ws.params_path.exists():
        return ImportConfig()
    cfg = ws.section("review", ImportConfig, drop=REVIEW_KEYS + tuple(f.name for f in fields(QueueConfig)))
    if cfg.multiple_annotations not in RULES:
        raise ConfigError(
            [
                f"{ws.params_path} review.multiple_annotations: must be one of {', '.join(RULES)}, "
                f"not {cfg.multiple_annotations!r}"
            ]
        )
    return cfg


@dataclass
class Annotation:
    """One annotator's answer to one task, its regions already read as boxes."""

    id: int | None
    annotator: str
    boxes: list[Box]
    when: datetime | None  # updated_at, else created_at
    ground_truth: bool = False


@dataclass
class Choice:
    """What the queue takes from one task's candidates."""

    boxes: list[Box] | None  # the answer; None: not taken (refused, or back to the queue)
    rule: str  # SINGLE, GROUND_TRUTH or one of RULES
    taken_from: list[str]  # whose answer it is (agree: every candidate's)
    annotators: list[str]  # every non-cancelled annotation's annotator, in time order
    agreement: list[dict] = field(default_factory=list)  # [{"annotators": [a, b], "f1": x}] per pair
    requeue: str | None = None  # why the item goes back to the queue (agree)
    refused: str | None = None  # why the import is refused (refuse)

    @property
    def reviewer(self) -> str:
        """The queue store's one name per item (several: joined by ", ")."""
        return ", ".join(self.taken_from)


def parse_time(text) -> datetime | None:
    """Label Studio's `2024-05-02T09:00:00.123456Z` (or None when absent or unreadable)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _order(a: Annotation) -> tuple:
    # Annotations without a time sort first: a time says it is newer than one without.
    return (a.when is not None, a.when.timestamp() if a.when is not None else 0.0, a.id if a.id is not None else -1)


def _xyxy(boxes: list[Box]) -> np.ndarray:
    xywhn = np.array([b[1:] for b in boxes], dtype=np.float64).reshape(-1, 4)
    return xywhn_to_xyxy(xywhn, layout.IMAGE_WIDTH, layout.IMAGE_HEIGHT)


def matches(a: list[Box], b: list[Box], iou: float = MATCH_IOU) -> list[tuple[int, int]]:
    """Pairs (i, j) of a's and b's boxes of the same class at IoU >= `iou`, one to one, highest IoU first."""
    if not a or not b:
        return []
    m = box_iou(_xyxy(a), _xyxy(b))
    same = np.array([[int(x[0]) == int(y[0]) for y in b] for x in a])
    m = np.where(same & (m >= iou), m, -1.0)
    out, used_a, used_b = [], set(), set()
    order = np.argsort(-m, axis=None, kind="stable")
    for flat in order:
        i, j = divmod(int(flat), len(b))
        if m[i, j] < 0:
            break
        if i not in used_a and j not in used_b:
            out.append((i, j))
            used_a.add(i)
            used_b.add(j)
    return out


def f1(a: list[Box], b: list[Box]) -> float:
    """Agreement of two annotators' boxes of one frame: 2 x matched / (boxes of a + boxes of b); two empty
    answers (no object) agree fully."""
    if not a and not b:
        return 1.0
    return 2 * len(matches(a, b)) / (len(a) + len(b))


def pair_agreement(annotations: list[Annotation]) -> list[dict]:
    return [
        {"annotators": [x.annotator, y.annotator], "f1": round(f1(x.boxes, y.boxes), 6)}
        for x, y in combinations(annotations, 2)
    ]


def consensus(answers: list[list[Box]]) -> tuple[list[Box], list[int], int]:
    """The agreed boxes of several annotators' answers (see the module's `agree`): (kept boxes, the
    number of boxes drawn per disputed group, the number of outvoted groups)."""
    n = len(answers)
    groups: list[list[Box]] = []
    for boxes in answers:
        found = matches([g[0] for g in groups], boxes)
        for gi, bi in found:
            groups[gi].append(boxes[bi])
        taken = {bi for _, bi in found}
        groups += [[box] for bi, box in enumerate(boxes) if bi not in taken]
    kept, disputed, dropped = [], [], 0
    for g in groups:
        if 2 * len(g) > n:
            mean = np.array([b[1:] for b in g], dtype=np.float64).mean(axis=0)
            kept.append((int(g[0][0]), *(float(v) for v in mean)))
        elif 2 * len(g) == n:
            disputed.append(len(g))
        else:
            dropped += 1
    return kept, disputed, dropped


def choose(annotations: list[Annotation], rule: str, task_id=None) -> Choice:
    """The answer the queue takes from one task's non-cancelled annotations (at least one)."""
    if rule not in RULES:
        raise ValueError(f"review.multiple_annotations must be one of {', '.join(RULES)}, not {rule!r}")
    annotations = sorted(annotations, key=_order)
    names = [a.annotator for a in annotations]
    agreement = pair_agreement(annotations)
    marked = [a for a in annotations if a.ground_truth]
    candidates = marked or annotations
    if len(candidates) == 1:
        only = candidates[0]
        how = GROUND_TRUTH if len(annotations) > 1 else SINGLE
        return Choice(list(only.boxes), how, [only.annotator], names, agreement)
    if rule == REFUSE:
        which = f"task {task_id}, " if task_id is not None else ""
        kind = "annotations marked ground truth" if marked else "annotations"
        return Choice(
            None,
            REFUSE,
            [a.annotator for a in candidates],
            names,
            agreement,
            refused=(
                f"{len(candidates)} {kind} on one task ({which}by {', '.join(a.annotator for a in candidates)}) "
                f"and params.yaml review.multiple_annotations is refuse: keep one in Label Studio, mark one as "
                f"ground truth, or choose latest or agree"
            ),
        )
    if rule == LATEST:
        last = candidates[-1]
        return Choice(list(last.boxes), LATEST, [last.annotator], names, agreement)
    kept, disputed, dropped = consensus([a.boxes for a in candidates])
    who = [a.annotator for a in candidates]
    if disputed:
        outvoted = f", {dropped} outvoted" if dropped else ""
        return Choice(
            None,
            AGREE,
            who,
            names,
            agreement,
            requeue=(
                f"annotators {', '.join(who)} disagree on {len(disputed)} box(es) (agree on {len(kept)}"
                f"{outvoted}; a box counts when more than half of them drew it, same class, IoU >= {MATCH_IOU})"
            ),
        )
    return Choice(kept, AGREE, who, names, agreement)
