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


def parse_export(data: list[dict]) -> Answers:
    """Label Studio's JSON export -> answers per item (complete labels), with every problem found."""
    out = Answers()
    if not isinstance(data, list):
        out.problems.append(("-", "a Label Studio JSON export is a list of tasks"))
        return out
    batches = set()
    for k, task in enumerate(data):
        d = task.get("data") if isinstance(task, dict) else None
        item = d.get("item") if isinstance(d, dict) else None
        if not item:
            out.problems.append((f"task[{k}]", "no data.item: not a task exported by visem-pl"))
            continue
        if d.get("batch"):
            batches.add(d["batch"])
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if not annotations:
            out.unanswered.append(item)
            continue
        if len(annotations) > 1:
            out.problems.append((item, f"{len(annotations)} annotations on one task; keep one"))
            continue
        boxes, bad = [], False
        for region in annotations[0].get("result") or []:
            if region.get("type") != "rectanglelabels":
                continue  # e.g. a comment or a relation: not a box
            parsed = region_to_box(region)
            if isinstance(parsed, str):
                out.problems.append((item, parsed))
                bad = True
            else:
                boxes.append(parsed)
        if not bad:
            out.boxes.append((item, boxes))
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
