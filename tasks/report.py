"""The per-round table a lab looks at: did this round's model and pseudo-labels get better?

`collect` reads every round's small metric files; `COLUMNS` and `fmt` are how the table is shown,
in the terminal (`visem-pl report`) and in the Prefect UI's artifacts alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from visem_pl.tasks.workspace.io import write_json
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


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def collect(ws: Workspace) -> dict:
    """{"rounds": {"N": {round, mAP50, mAP50-95, fitness, precision, recall, accepted_boxes, review_items,
    accepted_precision, accepted_recall, tracking_idf1, motility_mae_pp}}, "latest": the last round's entry}.

    Rounds are keyed by number (not listed) so `dvc metrics diff` can compare them by name.
    """
    found = (ws.metrics / "rounds").glob("round-*")
    numbers = sorted(int(m.group(1)) for p in found if (m := re.fullmatch(r"round-(\d+)", p.name)))
    rounds = []
    for n in numbers:
        metrics = ws.round(n).metrics
        ev = _read(metrics / "eval.json") or {}
        q = _read(metrics / "quality.json") or {}
        st = _read(metrics / "pseudo.json") or {}
        # Against the synthetic truth where there is one, else (real data) against the validation
        # videos' labelled track ids and the lab's motility values.
        track = _read(metrics / "track.json") or {}
        tr = track.get("tracking") or (track.get("validation") or {}).get("tracking") or {}
        mot = _read(metrics / "motility.json") or {}
        mae = mot.get("mae_pp") or mot.get("mae_pp_lab") or {}
        maes = [mae[k] for k in ("pr", "np", "im") if mae.get(k) is not None]
        overall = ev.get("overall", {})
        control = (_read(ws.round(n - 1).metrics / "control.json") or {}) if n > 0 else {}
        accepted = q.get("accept", {}).get("all", {}) if q.get("truth") else {}
        rounds.append(
            {
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
            }
        )
    return {"rounds": {str(r["round"]): r for r in rounds}, "latest": rounds[-1] if rounds else {}}


def report_stage(ws: Workspace, out: Path | None = None) -> dict:
    """The table of every round in the workspace; also written to `out` (a DVC metric) when given."""
    data = collect(ws)
    if out is not None:
        write_json(out, data)
    return data


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
    """The table's cells, one list per round, in `COLUMNS` order."""
    return [[fmt(row.get(k), k) for k, _ in COLUMNS] for row in data["rounds"].values()]
