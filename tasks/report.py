"""The per-round table a lab looks at: did this round's model and pseudo-labels get better?

`collect` reads every round's small metric files; `COLUMNS` and `fmt` are how the table is shown,
in the terminal (`visem-pl report`) and in the Prefect UI's artifacts alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from visem_pl.tasks.workspace.io import write_csv, write_json
from visem_pl.tasks.workspace.paths import Workspace

# (key in a round's row, column title)
COLUMNS = (
    ("round", "round"),
    ("mAP50", "mAP50"),
    ("mAP50-95", "mAP50-95"),
    ("fitness", "fitness"),
    ("control_fitness", "labels only"),
    ("accepted_boxes", "accepted"),
    ("review_items", "review"),
    ("accepted_precision", "acc. P"),
    ("accepted_recall", "acc. R"),
    ("tracking_idf1", "IDF1"),
    ("motility_mae_pp", "motil. MAE"),
)
CAPTION = (
    "fitness = 0.1 mAP50 + 0.9 mAP50-95 on the validation videos; labels only = the previous round's model "
    "trained as long as this round on the labelled frames alone (`visem-pl control`), what this round must beat "
    "for its pseudo-labels to have paid; accepted = pseudo-label boxes kept, "
    "review = frames queued for experts, acc. P/R = precision/recall of the accepted boxes against the "
    "synthetic truth (IoU >= 0.5); IDF1 = the round's tracks against the truth, or on real data the "
    "validation videos' against their labels (docs/TRACKING.md); motil. MAE = mean error of the PR/NP/IM "
    "shares per clip against the simulated cells, or per participant against the lab's values, in "
    "percentage points (docs/MOTILITY.md)"
)


# The row keys each metric file of a round gives (control.json: of the round before).
SOURCES = {
    "eval": ("mAP50", "mAP50-95", "fitness", "precision", "recall"),
    "control": ("control_fitness",),
    "pseudo": ("accepted_boxes", "review_items"),
    "quality": ("accepted_precision", "accepted_recall"),
    "track": ("tracking_idf1",),
    "motility": ("motility_mae_pp",),
}
STALE_MARK = "*"


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def staleness(record: dict | None, current: dict) -> str | None:
    """Why a metric file's `computed_from` record (Workspace.computed_from) is not the workspace's now,
    or None when it is."""
    if record is None:
        return "it records nothing of the weights and data it was computed from"
    reasons = []
    if record.get("weights_sha256") != current["weights_sha256"]:
        reasons.append("the round's weights changed since" if current["weights_sha256"] else "the weights are gone")
    if record.get("dataset") != current["dataset"]:
        reasons.append("data.root names another dataset now")
    return " and ".join(reasons) or None


def _current(ws: Workspace):
    """round -> what its metrics should have been computed from now (each weights file hashed once)."""
    from functools import cache

    from visem_pl.tasks.workspace.io import file_sha256

    try:
        dataset = ws.dataset_id()
    except (OSError, ValueError, KeyError):  # data.root missing or unreadable: nothing is current
        dataset = None

    @cache
    def current(n: int) -> dict:
        weights = ws.round(n).weights
        return {"weights_sha256": file_sha256(weights) if weights.exists() else None, "dataset": dataset}

    return current


def collect(ws: Workspace) -> dict:
    """{"rounds": {"N": {round, mAP50, mAP50-95, fitness, precision, recall, accepted_boxes, review_items,
    accepted_precision, accepted_recall, tracking_idf1, motility_mae_pp, per_class}}, "latest": the last round's
    entry}.

    Rounds are keyed by number (not listed) so `dvc metrics diff` can compare them by name.
    """
    found = (ws.metrics / "rounds").glob("round-*")
    numbers = sorted(int(m.group(1)) for p in found if (m := re.fullmatch(r"round-(\d+)", p.name)))
    current = _current(ws)
    rounds = []
    for n in numbers:
        metrics = ws.round(n).metrics
        files = {name: _read(metrics / f"{name}.json") for name in SOURCES if name != "control"}
        files["control"] = _read(ws.round(n - 1).metrics / "control.json") if n > 0 else None
        left_out = (_read(metrics / "infer.json") or {}).get("bad_clips") or {}
        stale = {}
        for name, record in files.items():
            why = record and staleness(record.get("computed_from"), current(n - 1 if name == "control" else n))
            if why:
                stale.update({key: f"{name}.json: {why}" for key in SOURCES[name]})
        ev, q, st = files["eval"] or {}, files["quality"] or {}, files["pseudo"] or {}
        # Against the synthetic truth where there is one, else (real data) against the validation
        # videos' labelled track ids and the lab's motility values.
        track = files["track"] or {}
        tr = track.get("tracking") or (track.get("validation") or {}).get("tracking") or {}
        mot = files["motility"] or {}
        mae = mot.get("mae_pp") or mot.get("mae_pp_lab") or {}
        maes = [mae[k] for k in ("pr", "np", "im") if mae.get(k) is not None]
        overall = ev.get("overall", {})
        control = files["control"] or {}
        accepted = q.get("accept", {}).get("all", {}) if q.get("truth") else {}
        row = {
            "round": n,
            "mAP50": overall.get("mAP50"),
            "mAP50-95": overall.get("mAP50-95"),
            "fitness": overall.get("fitness"),
            "control_fitness": control.get("overall", {}).get("fitness"),
            "precision": overall.get("precision"),
            "recall": overall.get("recall"),
            "accepted_boxes": sum(st["accept"].values()) if "accept" in st else None,
            "review_items": st.get("review_items"),
            "accepted_precision": accepted.get("precision"),
            "accepted_recall": accepted.get("recall"),
            "tracking_idf1": tr.get("idf1"),
            "motility_mae_pp": round(sum(maes) / len(maes), 1) if maes else None,
            # Per class, for the plots (and `dvc metrics diff`): {name: {fitness, mAP50, mAP50-95}}.
            "per_class": {
                name: {k: m.get(k) for k in ("fitness", "mAP50", "mAP50-95")}
                for name, m in (ev.get("per_class") or {}).items()
            },
        }
        # Keys whose file was computed from other weights or data than the workspace's now, and why.
        row["stale"] = {k: v for k, v in stale.items() if row.get(k) is not None}
        if left_out:  # clips inference could not decode (on_bad_clip: skip): {clip: reason}
            row["bad_clips"] = left_out
        rounds.append(row)
    return {"rounds": {str(r["round"]): r for r in rounds}, "latest": rounds[-1] if rounds else {}}


def report_stage(ws: Workspace, out: Path | None = None, plot: Path | None = None) -> dict:
    """The table of every round in the workspace; also written to `out` (a DVC metric) when given, and
    fitness and mAP per class by round to `plot` (a CSV for `dvc plots`)."""
    data = collect(ws)
    if out is not None:
        write_json(out, data)
    if plot is not None:
        write_csv(plot, rounds_plot(data))
    return data


def rounds_plot(data: dict) -> pd.DataFrame:
    """One row per round: round, fitness, mAP50, mAP50-95, the labels-only control's fitness, and the
    same three per class (`fitness_sperm`, ...)."""
    table = []
    for row in data["rounds"].values():
        entry = {k: row.get(k) for k in ("round", "fitness", "mAP50", "mAP50-95", "control_fitness")}
        for name, m in row["per_class"].items():
            entry.update({f"{k}_{name}": v for k, v in m.items()})
        table.append(entry)
    return pd.DataFrame(table)


PERCENTAGE_POINTS = {"motility_mae_pp"}


def fmt(v, key: str = "") -> str:
    """One cell: `-` for nothing, three decimals for a ratio, one for percentage points, thousands
    separated for a count."""
    if v is None:
        return "-"
    if key in PERCENTAGE_POINTS:
        return f"{v:.1f}"
    return f"{v:.3f}" if isinstance(v, float) else f"{v:,}"


def rows(data: dict) -> list[list[str]]:
    """The table's cells, one list per round, in `COLUMNS` order; a stale value marked `STALE_MARK`."""
    return [
        [fmt(row.get(k), k) + (STALE_MARK if k in row.get("stale", {}) else "") for k, _ in COLUMNS]
        for row in data["rounds"].values()
    ]


def notes(data: dict) -> list[str]:
    """The lines under the table: stale figures (`stale_notes`), then clips a round left out."""
    lines = stale_notes(data)
    for row in data["rounds"].values():
        bad = row.get("bad_clips") or {}
        if bad:
            lines.append(f"round {row['round']}: {len(bad)} clip(s) left out (data.on_bad_clip: skip), not decodable:")
            lines += [f"  {clip}: {why}" for clip, why in sorted(bad.items())]
    return lines


def stale_notes(data: dict) -> list[str]:
    """One line per round and metric file that is stale: what the mark in the table means."""
    notes = []
    for row in data["rounds"].values():
        for why in sorted(set(row.get("stale", {}).values())):
            notes.append(
                f"{STALE_MARK} round {row['round']}, {why}: not this workspace's result; `dvc repro` redoes it"
            )
    return notes
