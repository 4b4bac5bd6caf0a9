"""CVAT: YOLO zips out (pre-annotations) and back (the experts' answers); layouts in docs/EXCHANGE.md."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import yaml

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.validate import parse_box
from visem_pl.tasks.review.store import Answers

YOLO11 = "YOLO 1.1"
ULTRALYTICS = "Ultralytics YOLO Detection 1.0"
ZIP_NAMES = {YOLO11: "cvat_yolo_1.1.zip", ULTRALYTICS: "cvat_ultralytics_yolo_detection_1.0.zip"}
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip entries without wall-clock times: same input, same bytes


def _write(zf: zipfile.ZipFile, name: str, text: str) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, text)


def write_zip(path: Path | str, labels: dict[str, str], flavour: str) -> None:
    """`labels`: item -> YOLO label text (our class ids, which are the names' order)."""
    names = layout.CLASS_NAMES
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        if flavour == YOLO11:
            _write(zf, "obj.names", "".join(f"{n}\n" for n in names))
            _write(zf, "obj.data", f"classes = {len(names)}\ntrain = train.txt\nnames = obj.names\nbackup = backup/\n")
            _write(zf, "train.txt", "".join(f"obj_train_data/{item}.jpg\n" for item in labels))
            for item, text in labels.items():
                _write(zf, f"obj_train_data/{item}.txt", text)
        elif flavour == ULTRALYTICS:
            data = {"path": "./", "train": "train.txt", "names": dict(enumerate(names))}
            _write(zf, "data.yaml", yaml.safe_dump(data, sort_keys=False))
            _write(zf, "train.txt", "".join(f"images/train/{item}.jpg\n" for item in labels))
            for item, text in labels.items():
                _write(zf, f"labels/train/{item}.txt", text)
        else:
            raise ValueError(f"unknown CVAT flavour {flavour!r}; known: {list(ZIP_NAMES)}")
    Path(path).write_bytes(buf.getvalue())


_YOLO11_LABEL = re.compile(r"^obj_[^/]+_data/([^/]+)\.txt$")
_ULTRA_LABEL = re.compile(r"^labels/[^/]+/([^/]+)\.txt$")


def _names_yolo11(zf: zipfile.ZipFile) -> list[str]:
    return [ln.strip() for ln in zf.read("obj.names").decode("utf-8").splitlines() if ln.strip()]


def _names_ultralytics(zf: zipfile.ZipFile) -> list[str]:
    names = (yaml.safe_load(zf.read("data.yaml").decode("utf-8")) or {}).get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    return [str(n) for n in names or []]


def parse_zip(path: Path | str) -> tuple[Answers, str | None]:
    """A zip exported back from CVAT -> (answers per item, the flavour found)."""
    out = Answers()
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        out.problems.append(("-", f"{path}: not a readable zip ({exc})"))
        return out, None
    with zf:
        members = set(zf.namelist())
        if "obj.names" in members:
            flavour, names, pattern, lists = YOLO11, _names_yolo11(zf), _YOLO11_LABEL, re.compile(r"^[^/]+\.txt$")
        elif "data.yaml" in members:
            flavour, names, pattern, lists = (
                ULTRALYTICS,
                _names_ultralytics(zf),
                _ULTRA_LABEL,
                re.compile(r"^[^/]+\.txt$"),
            )
        else:
            out.problems.append(
                (
                    "-",
                    f"{path}: neither obj.names (YOLO 1.1) nor data.yaml "
                    f"(Ultralytics YOLO Detection 1.0) at the zip's root",
                )
            )
            return out, None
        # Class ids of the file -> ours, by name.
        to_ours = {k: layout.CLASS_NAMES.index(n) for k, n in enumerate(names) if n in layout.CLASS_NAMES}
        listed = []
        for name in sorted(members):
            if lists.match(name) and name not in ("obj.names",):
                for line in zf.read(name).decode("utf-8").splitlines():
                    if line.strip():
                        listed.append(Path(line.strip()).stem)
        answered = set()
        for name in sorted(members):
            m = pattern.match(name)
            if not m:
                continue
            item = m.group(1)
            answered.add(item)
            boxes, bad = [], False
            for n, line in enumerate(zf.read(name).decode("utf-8").splitlines(), start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 5:
                    out.problems.append((item, f"{name}:{n}: expected 5 fields (class cx cy w h), got {len(fields)}"))
                    bad = True
                    continue
                try:
                    k = int(fields[0])
                except ValueError:
                    k = -1
                if k not in to_ours:
                    label = names[k] if 0 <= k < len(names) else fields[0]
                    out.problems.append(
                        (item, f"{name}:{n}: unknown label '{label}' (known: {', '.join(layout.CLASS_NAMES)})")
                    )
                    bad = True
                    continue
                parsed = parse_box([str(to_ours[k]), *fields[1:]])
                if isinstance(parsed, str):
                    out.problems.append((item, f"{name}:{n}: coordinates out of range or invalid: {parsed}"))
                    bad = True
                else:
                    boxes.append(parsed)
            if not bad:
                out.boxes.append((item, boxes))
        out.unanswered = [i for i in dict.fromkeys(listed) if i not in answered]
    return out, flavour
