"""A queue store: one round's review queue and its lifecycle in a folder (docs/REVIEW_QUEUE.md).

queue.csv, state.json (per item: pending, exported, reviewed; reviewer, time, batches, import; and, from
each import, `annotators` (every expert who answered the frame), `taken_from` (whose answer the label is),
`rule` (how it was chosen among them), `agreement` (F1 per pair of annotators) and, for an item sent back
to the queue because they disagreed, `requeued` (why, when, which import)), exports/<batch>/, imports/
(every file as it came back) and labels/<item>.txt (the answers). "merged" is derived from the round's
merged training set, never stored. Stores written before those per-item keys existed read the same: every
reader takes them with a default.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from visem_pl.tasks.dataset.labels import Box, yolo_text
from visem_pl.tasks.review.queue import EXPORTED, MERGED, PENDING, QUEUE_FILE, REVIEWED, STATES, read_queue, write_queue
from visem_pl.tasks.workspace.errors import Refused
from visem_pl.tasks.workspace.io import file_sha256, write_json, write_text


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(when: str) -> str:
    """`2024-05-01T10:20:30Z` -> `20240501T102030Z` (for file names)."""
    return re.sub(r"[-:]", "", when)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unnamed"


@dataclass
class Answers:
    """What an expert's file says, before it is checked against the queue."""

    boxes: list[tuple[str, list[Box]]] = field(default_factory=list)  # (item, complete labels), file order
    problems: list[tuple[str, str]] = field(default_factory=list)  # (item, what is wrong)
    unanswered: list[str] = field(default_factory=list)  # items in the file without an answer
    batch: str | None = None  # the export the file answers, if known
    # Who answered each item, where the file says (Label Studio): {reviewer, taken_from, annotators, rule,
    # agreement} (tasks/review/exchange/overlap.py); an item not here was answered by whoever imports the file.
    who: dict[str, dict] = field(default_factory=dict)
    # Items the file answers but the queue does not take: the annotators disagree (review.multiple_annotations
    # agree), so the item goes back to the queue to be reviewed again; (item, why).
    requeued: list[tuple[str, str]] = field(default_factory=list)
    # The review.multiple_annotations rule the answers were read with, where a task had several annotations
    # (None: one each, so any rule reads the file the same).
    rule: str | None = None


class ImportRefused(Refused):
    """An expert's file that cannot be imported; `problems` lists every reason by item."""

    def __init__(self, problems: list[str]):
        super().__init__(problems)
        self.problems = problems


# The name `review pull` gives the export it downloads (tasks/review/exchange/live.py), a temporary file: an
# interrupted pull is redone by pulling again, not by importing that file.
PULLED_PREFIX = "labelstudio-project-"


class QueueStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    queue_csv = property(lambda self: self.root / QUEUE_FILE)
    state_json = property(lambda self: self.root / "state.json")
    labels = property(lambda self: self.root / "labels")
    exports = property(lambda self: self.root / "exports")
    imports = property(lambda self: self.root / "imports")
    # An import in progress: written before the first label changes, removed after state.json (the commit
    # point). Left behind by a crash, it says how to put the store back as it was (`recover`).
    journal = property(lambda self: self.root / "import.journal.json")

    def exists(self) -> bool:
        return self.state_json.exists()

    def init(self, queue: pd.DataFrame, round_n: int, dataset: str | None = None) -> None:
        """Start the lifecycle from a queue (every item pending) of the dataset `dataset` (its id); a second
        call with the same queue does nothing, with another queue it refuses (answers belong to the queue
        they were given for)."""
        if self.exists():
            self.check_dataset(dataset)
            if list(self.queue()["item"]) != list(queue["item"]):
                raise ValueError(
                    f"{self.queue_csv}:0: holds another queue than the one given "
                    f"({len(self.queue())} vs {len(queue)} items); move the folder away to start over"
                )
            return
        write_queue(queue, self.queue_csv)
        write_text(self.root / ".gitignore", "exports/*/images/\n")
        self.labels.mkdir(parents=True, exist_ok=True)
        state = {
            "round": int(round_n),
            "dataset": dataset,
            "exports": [],
            "imports": [],
            "items": {
                item: {"state": PENDING, "reviewer": None, "reviewed_at": None, "exports": [], "import": None}
                for item in queue["item"]
            },
        }
        self.save(state)

    def check_dataset(self, dataset: str | None) -> None:
        """Refuse a store made for another dataset (tasks/dataset/identity.py): its frames and answers are
        that dataset's, even where clip names are the same. A store that recorded none, or no `dataset`
        to compare with, is taken as is."""
        made_for = self.state().get("dataset")
        if None not in (made_for, dataset) and made_for != dataset:
            raise Refused(
                [
                    f"{self.root}: this review queue was made for another dataset (id {made_for}; data.root "
                    f"names dataset {dataset} now), so its frames and answers are not this dataset's; move the "
                    f"folder away (e.g. to {self.root.name}.old) and review the new queue"
                ]
            )

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
        # Relative to the store when inside it: state.json is committed and read on other machines.
        try:
            where = Path(where).resolve().relative_to(self.root.resolve())
        except ValueError:
            pass
        state["exports"].append(
            {"batch": batch, "format": fmt, "created_at": when, "path": str(where), "items": list(items)}
        )
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
        for item in [i for i, _ in answers.boxes] + [i for i, _ in answers.requeued]:
            counts[item] = counts.get(item, 0) + 1
        problems += [f"{item}: answered {n} times in the file (duplicate)" for item, n in counts.items() if n > 1]
        problems += [
            f"{item}: not an item of this round's queue (unknown frame)"
            for item in dict.fromkeys(list(counts) + answers.unanswered)
            if item not in known
        ]
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
        # An item the file answers wrongly (a bad region, several annotations refused) is named for that, not
        # also as missing.
        answered |= {item for item, _ in answers.problems}
        missing = [i for i in dict.fromkeys(list(expected) + answers.unanswered) if i in known and i not in answered]
        problems += [f"{item}: missing from the file (no answer)" for item in missing]
        if not replace:
            for item, boxes in answers.boxes:
                if item in known and known[item]["state"] == REVIEWED and counts[item] == 1:
                    if (self.labels / f"{item}.txt").read_text() != yolo_text(boxes):
                        problems.append(
                            f"{item}: already reviewed by {known[item]['reviewer']} with another answer "
                            f"(use --replace to overwrite)"
                        )
            for item, why in answers.requeued:
                if item in known and known[item]["state"] == REVIEWED and counts[item] == 1:
                    problems.append(
                        f"{item}: already reviewed by {known[item]['reviewer']}, but now {why} "
                        f"(use --replace to put it back in the review queue)"
                    )
        return problems

    def apply(
        self,
        answers: Answers,
        original: Path | str,
        reviewer: str,
        fmt: str,
        replace: bool = False,
        when: str | None = None,
    ) -> dict:
        """Check, then import all or nothing: labels, the archived original, the states. `reviewer`: who
        imports (the archived file's name, the import's record, and each item's reviewer where the file does
        not say who answered it, `answers.who`)."""
        original = Path(original)
        digest = file_sha256(original)
        self.recover()
        state = self.state()
        for done in state["imports"]:
            # The same file read the same way: nothing new. Read with another rule it may answer otherwise.
            if done["sha256"] == digest and done.get("rule") == answers.rule:
                return {"imported": 0, "changed": 0, "requeued": 0, "unchanged": True, "file": done["file"]}
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
        # What every label the import may write held before (None: no file), so that a kill at any point
        # before state.json is saved can be undone by the next command.
        previous = {}
        for item in [i for i, _ in answers.boxes] + [i for i, _ in answers.requeued]:
            path = self.labels / f"{item}.txt"
            previous[item] = path.read_text() if path.exists() else None
        rel = archived.relative_to(self.root).as_posix()
        write_json(self.journal, {"file": rel, "sha256": digest, "source": original.name, "started_at": when,
                                  "previous": previous})  # fmt: skip
        shutil.copyfile(original, archived)
        changed, requeued = [], []
        for item, boxes in answers.boxes:
            path = self.labels / f"{item}.txt"
            text = yolo_text(boxes)
            entry = state["items"][item]
            who = answers.who.get(item) or {"reviewer": reviewer, "taken_from": [reviewer], "annotators": [reviewer],
                                            "rule": "single"}  # fmt: skip
            seen = {"annotators": who["annotators"], "agreement": who.get("agreement") or []}
            if entry["state"] == REVIEWED and path.exists() and path.read_text() == text:
                # The same answer: it stays whose it was (reviewer, taken_from, rule), but who answered since
                # (an annotator who agreed), where the file says, is kept for the agreement `status` shows.
                if item in answers.who:
                    entry.update(seen)
                continue
            write_text(path, text)
            entry.update({"state": REVIEWED, "reviewer": who["reviewer"], "reviewed_at": when, "import": archived.name,
                          "taken_from": who["taken_from"], "rule": who["rule"], **seen})  # fmt: skip
            entry.pop("requeued", None)
            changed.append(item)
        for item, why in answers.requeued:
            # The annotators disagree: not an answer. The item goes back to the queue (a label an earlier
            # import wrote is removed, as --replace allowed) and the next export or push hands it out again.
            entry, who = state["items"][item], answers.who[item]
            (self.labels / f"{item}.txt").unlink(missing_ok=True)
            entry.update(
                {
                    "state": EXPORTED if entry["exports"] else PENDING,
                    "reviewer": None,
                    "reviewed_at": None,
                    "import": None,
                    "taken_from": [],
                    "annotators": who["annotators"],
                    "rule": who["rule"],
                    "agreement": who.get("agreement") or [],
                    "requeued": {"reason": why, "at": when, "import": archived.name},
                }
            )
            requeued.append(item)
        state["imports"].append(
            {
                "file": rel,
                "sha256": digest,
                "reviewer": reviewer,
                "imported_at": when,
                "format": fmt,
                "source": original.name,
                "batch": answers.batch,
                "items": [i for i, _ in answers.boxes],
                "changed": changed,
                "requeued": requeued,
                "rule": answers.rule,
            }
        )
        self.save(state)  # the commit point
        self.journal.unlink()
        return {
            "imported": len(answers.boxes),
            "changed": len(changed),
            "requeued": len(requeued),
            "unchanged": False,
            "file": rel,
        }

    def recover(self) -> str | None:
        """Finish or undo an import a crash interrupted, and say which (None when there was none).

        state.json is the commit point: if it lists the journal's file, the import is complete and only
        the journal is left to remove; otherwise every label the import may have written is put back as it
        was and its archived copy removed, so the store is exactly as before the import."""
        if not self.journal.exists():
            for tmp in self.root.glob(f".{self.journal.name}.*.tmp"):  # killed while writing the journal
                tmp.unlink(missing_ok=True)
            return None
        journal = json.loads(self.journal.read_text())
        done = any(i["file"] == journal["file"] and i["sha256"] == journal["sha256"] for i in self.state()["imports"])
        if not done:
            for item, text in journal["previous"].items():
                path = self.labels / f"{item}.txt"
                if text is None:
                    path.unlink(missing_ok=True)
                else:
                    write_text(path, text)
            (self.root / journal["file"]).unlink(missing_ok=True)
        for tmp in [*self.labels.glob(".*.tmp"), *self.root.glob(".*.tmp")]:  # atomic writes cut short
            tmp.unlink(missing_ok=True)
        self.journal.unlink()
        source, started = journal["source"], journal["started_at"]
        message = (
            f"{self.root}: the import of {source} started {started} was interrupted after it was recorded; "
            f"it is complete"
            if done
            else f"{self.root}: the import of {source} started {started} was interrupted; it was undone and "
            f"the store is as before it: "
            + (
                "run `visem-pl review pull` again"  # the file was the pull's download, gone with it
                if source.startswith(PULLED_PREFIX)
                else f"import {source} again"
            )
        )
        logging.getLogger(__name__).warning(message)
        return message

    def copy_labels(self, items: list[str], out_dir: Path) -> None:
        """The answers of `items` into `out_dir/labels/` (what the review stage hands to merge)."""
        labels = Path(out_dir) / "labels"
        if labels.exists():
            shutil.rmtree(labels)
        labels.mkdir(parents=True)
        for item in items:
            shutil.copyfile(self.labels / f"{item}.txt", labels / f"{item}.txt")

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
        return {
            "items": len(queue),
            "states": per_state,
            "clips": per_clip,
            "left": left,
            **who_answered(items),
        }


def who_answered(items: dict) -> dict:
    """Per annotator, the items they answered and the reviewed items holding their answer; where several
    answered one frame, their agreement (F1 of their boxes, overlap.py), per pair of annotators and over all
    such items; and the items sent back to the queue because they disagreed."""
    per: dict[str, dict[str, int]] = {}
    pairs: dict[tuple[str, str], list[float]] = {}
    overlap_f1, requeued = [], {}
    for item, e in items.items():
        annotators = e.get("annotators") or ([e["reviewer"]] if e.get("reviewer") else [])
        for name in dict.fromkeys(annotators):
            per.setdefault(name, {"answered": 0, "taken": 0})["answered"] += 1
        if e["state"] == REVIEWED and e.get("reviewer"):
            for name in dict.fromkeys(e.get("taken_from") or [e["reviewer"]]):
                per.setdefault(name, {"answered": 0, "taken": 0})["taken"] += 1
        agreement = e.get("agreement") or []
        if agreement:
            overlap_f1.append(sum(p["f1"] for p in agreement) / len(agreement))
            for p in agreement:
                pairs.setdefault(tuple(sorted(p["annotators"])), []).append(p["f1"])
        if e.get("requeued") and e["state"] != REVIEWED:
            requeued[item] = e["requeued"]["reason"]
    return {
        "reviewers": sorted(per),
        "per_reviewer": dict(sorted(per.items())),
        "agreement": {
            "items": len(overlap_f1),
            "mean_f1": round(sum(overlap_f1) / len(overlap_f1), 4) if overlap_f1 else None,
            "pairs": [
                {"annotators": list(k), "items": len(v), "mean_f1": round(sum(v) / len(v), 4)}
                for k, v in sorted(pairs.items())
            ],
        },
        "requeued": requeued,
    }


def merged_items(frames_csv: Path | str) -> set[str]:
    """Items that are reviewed frames of a merged training set (`merged/frames.csv`)."""
    path = Path(frames_csv)
    if not path.exists():
        return set()
    frames = pd.read_csv(path, keep_default_na=False)
    return {Path(p).stem for p in frames.loc[frames["source"] == "reviewed", "image"]}
