"""Handing a round's review queue to experts and taking their answers back.

What `visem-pl review status|export|import|push|pull|simulate` and the Prefect round's review
wait do, as plain functions: each raises `Refused` (lines naming what is wrong) for bad input
and changes nothing then.
"""

from __future__ import annotations

import json
from pathlib import Path

from visem_pl.tasks.review.queue import queue_status, read_queue
from visem_pl.tasks.review.store import ImportRefused, QueueStore, merged_items, who_answered
from visem_pl.tasks.workspace.errors import Refused
from visem_pl.tasks.workspace.paths import Workspace


def require_reviewer(reviewer: str | None) -> str:
    """The reviewer's name, recorded per item; an import without one is refused."""
    name = (reviewer or "").strip()
    if not name:
        raise Refused(["reviewer: name who reviewed (--reviewer NAME); it is recorded per item"])
    return name


def multiple_annotations(ws: Workspace) -> str:
    """params.yaml review.multiple_annotations: how a frame several experts answered is taken (overlap.py)."""
    from visem_pl.tasks.review.exchange.overlap import import_config

    return import_config(ws).multiple_annotations


def store_of(ws: Workspace, n: int, store: Path | None = None) -> QueueStore:
    """The experts' queue store of round n (`review/round-N/` unless another folder is given), with an
    import a crash interrupted finished or undone (logged as a warning saying which)."""
    st = QueueStore(store if store is not None else ws.round(n).review_folder)
    if st.exists():
        st.recover()
    return st


def current_dataset(ws: Workspace) -> str | None:
    """The id of the workspace's dataset; None where there is none to compare a store with (a store
    given by path, used outside a workspace)."""
    from visem_pl.tasks.dataset.reader import DatasetNotFound
    from visem_pl.tasks.workspace.errors import ConfigError

    try:
        return ws.dataset_id()
    except (ConfigError, DatasetNotFound):
        return None


def answering_store(ws: Workspace, n: int, store: Path | None, first: str) -> QueueStore:
    """The store answers go into; refused when no queue was handed out yet (`first` says how) or when it
    was made for another dataset."""
    st = store_of(ws, n, store)
    if not st.exists():
        raise Refused([f"{st.root}: no review queue here; {first} first (`visem-pl review {first} --round {n} ...`)"])
    st.check_dataset(current_dataset(ws))
    return st


def opened_store(ws: Workspace, n: int, store: Path | None = None) -> QueueStore:
    """The store, started from the queue `filter` wrote when nobody has opened it yet; refused when it
    was made for another dataset."""
    paths = ws.round(n)
    st = store_of(ws, n, store)
    dataset = current_dataset(ws)
    if not st.exists():
        if not paths.queue_csv.exists():
            raise Refused([f"{paths.queue_csv}: no review queue for round {n}; run `dvc repro filter@{n}` first"])
        st.init(read_queue(paths.queue_csv), n, dataset)
    st.check_dataset(dataset)
    return st


def status(ws: Workspace, n: int, store: Path | None = None) -> dict:
    """Items per state (pending, exported, reviewed, merged), per clip, what is left, the reviewers: items per
    annotator, their agreement where several answered one frame, the items sent back to the queue."""
    paths = ws.round(n)
    candidates = [store] if store is not None else [paths.review_folder, paths.reviewed / "queue"]
    found = next((QueueStore(c) for c in candidates if QueueStore(c).exists()), None)
    if found is not None:
        found.recover()
        where, data = str(found.root), found.status(merged_items(paths.merged / "frames.csv"))
        try:  # status only reads: it shows an old dataset's store, saying so, where the others refuse it
            found.check_dataset(current_dataset(ws))
        except Refused as exc:
            data["warning"] = exc.lines[0]
    elif store is None and paths.queue_csv.exists():
        where, data = str(paths.queue_csv), {**who_answered({}), **queue_status(read_queue(paths.queue_csv))}
    else:
        raise Refused(
            [
                f"round {n}: no review queue yet (looked for {', '.join(map(str, candidates))} and "
                f"{paths.queue_csv}); run `dvc repro filter@{n}` first"
            ]
        )
    return {"round": n, "queue": where, **data}


def export(ws: Workspace, n: int, fmt: str, out: Path | None = None, store: Path | None = None) -> dict:
    """Every item not reviewed yet as one batch: frame images + Label Studio tasks or CVAT zips."""
    from visem_pl.tasks.review.exchange import FORMATS, export_queue

    if fmt not in FORMATS:
        raise Refused([f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'"])
    st = opened_store(ws, n, store)
    return export_queue(st, fmt, ws.round(n).boxes, ws.clips(), n, out=out)  # only the queued frames' boxes read


def _refused(what: str, exc: ImportRefused, redact=str) -> Refused:
    """Every problem of a refused import, under one line saying what was refused."""
    head = f"{what}: refused, nothing imported ({len(exc.problems)} problem(s)):"
    return Refused([redact(head), *(redact(p) for p in exc.problems)])


def import_file(
    ws: Workspace,
    n: int,
    file: Path,
    reviewer: str,
    fmt: str | None = None,
    replace: bool = False,
    store: Path | None = None,
) -> dict:
    """Check an expert's file against the queue and import it all or nothing. `reviewer` names the items'
    annotators where the file does not (a Label Studio export carrying its users names them)."""
    from visem_pl.tasks.review.exchange import import_answers

    rule = multiple_annotations(ws)
    st = answering_store(ws, n, store, "export")
    reviewer = require_reviewer(reviewer)
    try:
        return import_answers(st, file, reviewer, fmt=fmt, replace=replace, rule=rule)
    except ImportRefused as exc:
        raise _refused(str(file), exc) from None


def check_file(ws: Workspace, n: int, file: Path, store: Path | None = None) -> list[str]:
    """Every reason `import_file` would refuse this file, importing nothing."""
    from visem_pl.tasks.review.exchange import check_answers

    return check_answers(store_of(ws, n, store), file, rule=multiple_annotations(ws))


def push(
    ws: Workspace,
    n: int,
    server,
    document_root: Path | None = None,
    title: str | None = None,
    store: Path | None = None,
) -> dict:
    """A new Label Studio project holding every item not reviewed yet."""
    from visem_pl.tasks.review.exchange.live import LiveError
    from visem_pl.tasks.review.exchange.live import push as live_push

    st = opened_store(ws, n, store)
    try:
        return live_push(st, n, ws.round(n).boxes, ws.clips(), server, document_root=document_root, title=title)
    except (LiveError, ValueError, OSError) as exc:
        raise Refused([server.redact(exc)]) from None


def pull(
    ws: Workspace,
    n: int,
    server,
    reviewer: str | None = None,
    batch: str | None = None,
    replace: bool = False,
    store: Path | None = None,
) -> dict:
    """The Label Studio project's annotations, imported all or nothing. Each item is recorded as answered by
    the Label Studio users who annotated it; `reviewer` is who pulls (None: the API key's user)."""
    from visem_pl.tasks.review.exchange.live import LiveError
    from visem_pl.tasks.review.exchange.live import pull as live_pull

    rule = multiple_annotations(ws)
    st = answering_store(ws, n, store, "push")
    reviewer = require_reviewer(reviewer) if reviewer is not None else None
    try:
        return live_pull(st, server, reviewer, batch=batch, replace=replace, rule=rule)
    except ImportRefused as exc:
        raise _refused(f"Label Studio project of {st.root}", exc, server.redact) from None
    except (LiveError, ValueError, OSError) as exc:
        raise Refused([server.redact(exc)]) from None


def simulate(ws: Workspace, n: int, out: Path, batch: str | None = None, store: Path | None = None) -> dict:
    """Synthetic data: the simulated expert's Label Studio export of an exported batch (default: the latest)."""
    from visem_pl.tasks.dataset.truth import truth_for
    from visem_pl.tasks.review.expert import expert_config, simulated_export
    from visem_pl.tasks.workspace.io import write_json

    truth = truth_for(ws.data_root())
    if truth is None:
        raise Refused([f"{ws.data_root()}: no synthetic truth here; the simulated expert answers synthetic data only"])
    cfg = expert_config(ws)
    st = store_of(ws, n, store)
    exports = [e for e in st.state()["exports"] if e["format"] == "labelstudio"] if st.exists() else []
    if batch is not None:
        exports = [e for e in exports if e["batch"] == batch]
    if not exports:
        raise Refused(
            [
                f"{st.root}: no Label Studio export{' ' + batch if batch else ''} to answer; "
                f"`visem-pl review export --round {n} --format labelstudio` first"
            ]
        )
    tasks_json = st.exports / exports[-1]["batch"] / "tasks.json"
    answers, _ = simulated_export(json.loads(tasks_json.read_text(encoding="utf-8")), truth, cfg)
    write_json(out, answers)
    return {"batch": exports[-1]["batch"], "items": len(answers), "out": str(out)}
