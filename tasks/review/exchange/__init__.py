"""Hand a round's review queue to experts and take their answers back (Label Studio, CVAT).

`export_queue` writes one batch under the store's `exports/` (or `out`): frame images decoded
from the clips, plus the format's files; `import_answers` reads an expert's file, checks it
against the queue and imports it all or nothing (`QueueStore.apply`). A Label Studio task
several experts annotated is answered as params.yaml `review.multiple_annotations` says
(`overlap.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.labels import yolo_text
from visem_pl.tasks.dataset.reader import Clip
from visem_pl.tasks.inference.clips import frames_at
from visem_pl.tasks.pseudo.bands import BOX_COLUMNS, REJECT
from visem_pl.tasks.review.store import Answers, QueueStore, utc_now
from visem_pl.tasks.workspace.io import atomic_path, write_json, write_text

LABELSTUDIO, CVAT = "labelstudio", "cvat"
FORMATS = (LABELSTUDIO, CVAT)


def write_frames(clips: list[Clip], items: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """JPEG of each item's frame (decoded from its clip) as `out_dir/<item>.jpg`."""
    known = {c.name: c for c in clips}
    written = {}
    for clip, rows in items.groupby("clip", sort=True):
        if clip not in known:
            raise ValueError(f"queue item(s) {list(rows['item'])[:3]} name clip '{clip}' that is not in the dataset")
        wanted = dict(zip(rows["frame"].astype(int), rows["item"]))
        for index, frame in frames_at(known[clip].path, wanted):
            ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise ValueError(f"{known[clip].path}:0: frame {index} cannot be encoded")
            path = out_dir / f"{wanted[index]}.jpg"
            with atomic_path(path) as tmp:
                tmp.write_bytes(jpg.tobytes())
            written[path.stem] = path
    return written


def boxes_by_item(boxes: pd.DataFrame | Path, items: list[str]) -> dict[str, pd.DataFrame]:
    """The model's accept + review boxes of each item (the pre-annotations), by confidence. `boxes`: the
    round's boxes, or its boxes.parquet, of which only the items' frames are read (`BoxFile.items`)."""
    if not isinstance(boxes, pd.DataFrame):
        from visem_pl.tasks.pseudo.boxfile import BoxFile

        boxes = BoxFile(boxes).items(items)
    shown = boxes[boxes["band"] != REJECT]
    out = {}
    wanted = set(items)
    for (clip, frame), g in shown.groupby(["clip", "frame"]):
        key = layout.frame_item(clip, frame)
        if key in wanted:
            out[key] = g.sort_values("conf", ascending=False, kind="stable").reset_index(drop=True)
    return out


def write_labelstudio_batch(
    folder: Path,
    store: QueueStore,
    todo: list[str],
    boxes: pd.DataFrame | Path,
    clips: list[Clip],
    round_n: int,
    batch: str,
    images: bool = True,
) -> list[dict]:
    """One Label Studio batch in `folder`: frame images, tasks.json (the model's boxes as predictions)
    and labelling_config.xml; returns the tasks. File exports and live pushes write the same files."""
    from visem_pl.tasks.review.exchange import labelstudio

    queue = store.queue().set_index("item").loc[todo].reset_index()
    if images:
        write_frames(clips, queue, folder / "images")
    tasks = labelstudio.build_tasks(
        queue.to_dict("records"),
        boxes_by_item(boxes, todo),
        lambda item: f"/data/local-files/?d=images/{item}.jpg",
        model_version=f"round-{round_n}",
        batch=batch,
    )
    write_json(folder / "tasks.json", tasks)
    write_text(folder / "labelling_config.xml", labelstudio.labelling_config())
    return tasks


def export_queue(
    store: QueueStore,
    fmt: str,
    boxes: pd.DataFrame | Path,
    clips: list[Clip],
    round_n: int,
    out: Path | str | None = None,
    when: str | None = None,
    images: bool = True,
) -> dict:
    """Export every item not reviewed yet as one batch; returns {batch, dir, items, files}. `boxes`: the
    round's boxes or its boxes.parquet (`boxes_by_item`: only the exported frames' boxes are read)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {list(FORMATS)}")
    when = when or utc_now()
    todo = store.to_export()
    if not todo:
        return {"batch": None, "dir": None, "items": 0, "files": []}
    batch = store.new_batch(fmt, when)
    folder = Path(out) / batch if out is not None else store.exports / batch
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    if fmt == LABELSTUDIO:
        write_labelstudio_batch(folder, store, todo, boxes, clips, round_n, batch, images=images)
        files = ["tasks.json", "labelling_config.xml"]
    else:
        if images:
            write_frames(clips, store.queue().set_index("item").loc[todo].reset_index(), folder / "images")
        preds = boxes_by_item(boxes, todo)
        from visem_pl.tasks.review.exchange import cvat

        labels = {}
        for item in todo:
            g = preds.get(item)
            labels[item] = yolo_text([] if g is None else g[BOX_COLUMNS].itertuples(index=False))
        for flavour, name in cvat.ZIP_NAMES.items():
            cvat.write_zip(folder / name, labels, flavour)
            files.append(name)
    store.record_export(batch, fmt, todo, when, folder)
    return {"batch": batch, "dir": str(folder), "items": len(todo), "files": files}


def detect_format(path: Path | str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return LABELSTUDIO
    if suffix == ".zip":
        return CVAT
    raise ValueError(f"{path}: cannot tell the format from the name (.json = labelstudio, .zip = cvat); pass --format")


def read_answers(path: Path | str, fmt: str, rule: str = "latest", reviewer: str | None = None) -> Answers:
    """The file's answers; a Label Studio task with several annotations answered as `rule` says, its
    annotators named by the export or, where it names none, `reviewer` (labelstudio.annotators_of)."""
    if fmt == LABELSTUDIO:
        from visem_pl.tasks.review.exchange import labelstudio

        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return Answers(problems=[("-", f"{path}: not a readable JSON file ({exc})")])
        return labelstudio.parse_export(data, rule=rule, fallback=reviewer)
    if fmt == CVAT:
        from visem_pl.tasks.review.exchange import cvat

        return cvat.parse_zip(path)[0]
    raise ValueError(f"unknown format {fmt!r}; known: {list(FORMATS)}")


def import_answers(
    store: QueueStore,
    path: Path | str,
    reviewer: str,
    fmt: str | None = None,
    replace: bool = False,
    when: str | None = None,
    rule: str = "latest",
) -> dict:
    """Check an expert's file against the queue and import it all or nothing (ImportRefused lists
    every problem with its item id, and nothing is changed); `rule`: params.yaml
    review.multiple_annotations."""
    fmt = fmt or detect_format(path)
    answers = read_answers(path, fmt, rule=rule, reviewer=reviewer)
    return {"format": fmt, **store.apply(answers, path, reviewer, fmt, replace=replace, when=when)}


def check_answers(store: QueueStore, path: Path | str, fmt: str | None = None, rule: str = "latest") -> list[str]:
    """Every reason `import_answers` would refuse this file, without importing anything."""
    path = Path(path)
    if not path.is_file():
        return [f"{path}: no such file"]
    try:
        fmt = fmt or detect_format(path)
        return store.check(read_answers(path, fmt, rule=rule))
    except ValueError as exc:
        return [str(exc)]
