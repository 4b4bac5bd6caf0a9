"""Label Studio: tasks JSON with predictions out, the JSON export of a project back in.

Tasks: `data.image` (a local-files URL), `data.item`, `data.clip`, `data.frame`, `data.batch` (Label
Studio keeps every `data` key, so they come back in its export), and one prediction per task:
`model_version` = the round, `score` = the mean box confidence, `result` = one `rectanglelabels`
region per box with x, y, width, height in percent of the original 640x480 image and the box's
`score`. The export read back is Label Studio's full "JSON" export: a list of tasks, each with
`annotations[].result` in the same region format.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.labels import Box
from visem_pl.tasks.dataset.validate import parse_box, txt_of
from visem_pl.tasks.review.exchange import overlap
from visem_pl.tasks.review.store import Answers

FROM_NAME, TO_NAME = "label", "image"
COLOURS = ("red", "green", "blue")  # the paper's colours: sperm red, cluster green, pinhead blue
EPS = 1e-3  # percent (0.006 px): float32 noise of a box touching the image edge


def labelling_config() -> str:
    labels = "\n".join(
        f"    <Label value={quoteattr(n)} background={quoteattr(c)}/>" for n, c in zip(layout.CLASS_NAMES, COLOURS)
    )
    return (
        f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
        f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" strokeWidth="1">\n{labels}\n'
        f"  </RectangleLabels>\n</View>\n"
    )


def box_to_region(
    cls: int, cx: float, cy: float, w: float, h: float, score: float | None = None, region_id: str = ""
) -> dict:
    region = {
        "id": region_id,
        "type": "rectanglelabels",
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "original_width": layout.IMAGE_WIDTH,
        "original_height": layout.IMAGE_HEIGHT,
        "image_rotation": 0,
        "value": {
            "x": (cx - w / 2) * 100.0,
            "y": (cy - h / 2) * 100.0,
            "width": w * 100.0,
            "height": h * 100.0,
            "rotation": 0,
            "rectanglelabels": [layout.CLASS_NAMES[int(cls)]],
        },
    }
    if score is not None:
        region["score"] = float(score)
    return region


def build_tasks(rows: Iterable[dict], boxes_by_item: dict, image_url, model_version: str, batch: str) -> list[dict]:
    """One task per queue row (`item`, `clip`, `frame`); `boxes_by_item[item]` has columns cls, cx, cy,
    w, h, conf (the model's accept + review boxes); `image_url(item)` is the task's image."""
    tasks = []
    for row in rows:
        item = row["item"]
        boxes = boxes_by_item.get(item)
        result = (
            []
            if boxes is None
            else [
                box_to_region(b.cls, b.cx, b.cy, b.w, b.h, score=b.conf, region_id=f"p{k}")
                for k, b in enumerate(boxes.itertuples())
            ]
        )
        score = float(sum(r["score"] for r in result) / len(result)) if result else 0.0
        tasks.append(
            {
                "data": {
                    "image": image_url(item),
                    "item": item,
                    "clip": row["clip"],
                    "frame": int(row["frame"]),
                    "batch": batch,
                },
                "predictions": [{"model_version": model_version, "score": score, "result": result}],
            }
        )
    return tasks


def region_to_box(region: dict) -> Box | str:
    """A `rectanglelabels` region -> (cls, cx, cy, w, h) normalised, or why it cannot be one."""
    value = region.get("value") or {}
    names = value.get("rectanglelabels") or []
    if len(names) != 1:
        return f"region {region.get('id', '?')}: expected one label, got {names}"
    if names[0] not in layout.CLASS_NAMES:
        return f"region {region.get('id', '?')}: unknown label '{names[0]}' (known: {', '.join(layout.CLASS_NAMES)})"
    try:
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
    except (KeyError, TypeError, ValueError):
        return f"region {region.get('id', '?')}: x, y, width and height must be numbers"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return f"region {region.get('id', '?')}: x, y, width and height must be finite"
    if float(value.get("rotation") or 0) != 0:
        return f"region {region.get('id', '?')}: rotated boxes are not supported"
    if x < -EPS or y < -EPS or x + w > 100 + EPS or y + h > 100 + EPS or w <= 0 or h <= 0:
        return (
            f"region {region.get('id', '?')}: coordinates out of range (x={txt_of(x)}, y={txt_of(y)}, "
            f"width={txt_of(w)}, height={txt_of(h)} percent; the box must lie inside the image)"
        )
    cls = layout.CLASS_NAMES.index(names[0])
    fields = [str(cls)] + [
        repr(min(1.0, max(0.0, v))) for v in ((x + w / 2) / 100, (y + h / 2) / 100, w / 100, h / 100)
    ]
    parsed = parse_box(fields)
    return parsed if not isinstance(parsed, str) else f"region {region.get('id', '?')}: {parsed}"


def user_name(completed_by, users: dict[int, str]) -> str | None:
    """Who an annotation's `completed_by` is: the e-mail (else the name) where the export carries the user
    (an object, as exports made with annotator details do), else the e-mail `users` gives for its id (a live
    pull asks the server); None where neither says (then the importer names them, `annotators_of`)."""
    if isinstance(completed_by, dict):
        email = str(completed_by.get("email") or "").strip()
        if email:
            return email
        name = " ".join(str(completed_by.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
        if name:
            return name
        completed_by = completed_by.get("id")
    if isinstance(completed_by, int) and not isinstance(completed_by, bool):
        return users.get(completed_by)
    return None


def user_id(completed_by):
    return completed_by.get("id") if isinstance(completed_by, dict) else completed_by


def annotators_of(data: list, users: dict[int, str], fallback: str | None):
    """`completed_by` -> the annotator recorded per item. A user neither the export nor the server names is
    `fallback` (the `--reviewer` of a file import) where the file holds one such user, the usual export of
    one expert; with several (overlap, exported without annotator details) each is `labelstudio-user-<id>`,
    as one name for all would hide who disagreed with whom."""
    unnamed = {
        str(user_id(a.get("completed_by")))
        for task in data
        if isinstance(task, dict)
        for a in task.get("annotations") or []
        if isinstance(a, dict) and not a.get("was_cancelled") and user_name(a.get("completed_by"), users) is None
    }

    def name(completed_by) -> str:
        known = user_name(completed_by, users)
        if known is not None:
            return known
        if fallback and len(unnamed) <= 1:
            return fallback
        uid = user_id(completed_by)
        return f"labelstudio-user-{uid}" if uid is not None else "unknown-annotator"

    return name


def parse_export(
    data: list[dict], rule: str = overlap.LATEST, users: dict[int, str] | None = None, fallback: str | None = None
) -> Answers:
    """Label Studio's JSON export -> answers per item (complete labels), with every problem found. A task
    with several annotations is answered as `rule` says (tasks/review/exchange/overlap.py); `users` (id ->
    e-mail) and `fallback` name the annotators (`annotators_of`)."""
    out = Answers()
    if not isinstance(data, list):
        out.problems.append(("-", "a Label Studio JSON export is a list of tasks"))
        return out
    if rule not in overlap.RULES:
        raise ValueError(f"review.multiple_annotations must be one of {', '.join(overlap.RULES)}, not {rule!r}")
    name = annotators_of(data, users or {}, fallback)
    batches = set()
    for k, task in enumerate(data):
        d = task.get("data") if isinstance(task, dict) else None
        item = d.get("item") if isinstance(d, dict) else None
        if not item:
            out.problems.append((f"task[{k}]", "no data.item: not a task exported by visem-pl"))
            continue
        if d.get("batch"):
            batches.add(d["batch"])
        # A skipped annotation (`was_cancelled`) is no answer: the expert saw the frame and did not label it.
        given = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not given:
            out.unanswered.append(item)
            continue
        if len(given) > 1:
            out.rule = rule
        read, bad = [], False
        for a in given:
            boxes = []
            for region in a.get("result") or []:
                if region.get("type") != "rectanglelabels":
                    continue  # e.g. a comment or a relation: not a box
                parsed = region_to_box(region)
                if isinstance(parsed, str):
                    # With several annotations, say whose region is wrong.
                    whose = f"annotation {a.get('id', '?')} by {name(a.get('completed_by'))}: "
                    out.problems.append((item, (whose if len(given) > 1 else "") + parsed))
                    bad = True
                else:
                    boxes.append(parsed)
            stamps = {key: a.get(key) for key in ("updated_at", "created_at") if a.get(key) is not None}
            unreadable = [key for key, v in stamps.items() if overlap.parse_time(v) is None]
            if unreadable and len(given) > 1:  # which annotation is the latest must not be guessed
                key = unreadable[0]
                out.problems.append((item, f"annotation {a.get('id', '?')}: {key} {stamps[key]!r} is not a time"))
                bad = True
            when = overlap.parse_time(a.get("updated_at")) or overlap.parse_time(a.get("created_at"))
            aid = a.get("id") if isinstance(a.get("id"), int) else None
            read.append(overlap.Annotation(aid, name(a.get("completed_by")), boxes, when, bool(a.get("ground_truth"))))
        if bad:
            continue
        choice = overlap.choose(read, rule, task_id=task.get("id"))
        if choice.refused:
            out.problems.append((item, choice.refused))
            continue
        out.who[item] = {
            "reviewer": choice.reviewer,
            "taken_from": choice.taken_from,
            "annotators": choice.annotators,
            "rule": choice.rule,
            "agreement": choice.agreement,
        }
        if choice.requeue:
            out.requeued.append((item, choice.requeue))
        else:
            out.boxes.append((item, choice.boxes))
    if len(batches) > 1:
        out.problems.append(("-", f"tasks of several exports in one file: {sorted(batches)}"))
    elif batches:
        out.batch = batches.pop()
    return out


def annotation(result: list[dict], completed_by, when: str, k: int) -> dict:
    """An annotation as Label Studio's JSON export writes it."""
    return {
        "id": k,
        "completed_by": completed_by,
        "result": result,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": when,
        "updated_at": when,
        "lead_time": 0.0,
    }
