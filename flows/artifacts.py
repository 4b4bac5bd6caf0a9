"""What a round leaves in the Prefect UI: its report (markdown) and the table of every round."""
from __future__ import annotations

from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

COLUMNS = ("round", "mAP50", "mAP50-95", "fitness", "precision", "recall", "accepted_boxes", "review_items",
           "accepted_precision", "accepted_recall")


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def round_markdown(n: int, rows: list[dict]) -> str:
    by = {r["round"]: r for r in rows}
    row, prev = by[n], by.get(n - 1)
    lines = [f"# Round {n}", "",
             f"Validation (fixed videos): mAP50 {_fmt(row['mAP50'])}, mAP50-95 {_fmt(row['mAP50-95'])}, "
             f"fitness {_fmt(row['fitness'])}"
             + (f" ({row['fitness'] - prev['fitness']:+.3f} over round {n - 1})"
                if prev and row.get("fitness") is not None and prev.get("fitness") is not None else "") + ".",
             f"Pseudo-labels: {_fmt(row['accepted_boxes'])} boxes accepted, {_fmt(row['review_items'])} frames "
             f"queued for review.",
             f"Accepted boxes against the synthetic truth: precision {_fmt(row['accepted_precision'])}, "
             f"recall {_fmt(row['accepted_recall'])} (`-` on real data: no truth).", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    lines += ["", f"Versioned as git tag `round-{n}` with `dvc.lock`; `dvc metrics diff round-{n - 1} round-{n}` "
                  "compares it with the round before." if n > 0 else ""]
    return "\n".join(lines)


def publish_round(workspace: Path, n: int) -> dict:
    """The round's markdown report and the per-round metrics table (keys round-N-report,
    pseudo-label-rounds: each new version shows up under the same key in the UI)."""
    from tasks.report import collect

    rows = list(collect(Path(workspace) / "metrics")["rounds"].values())
    create_table_artifact(key="pseudo-label-rounds", table=[{c: r.get(c) for c in COLUMNS} for r in rows],
                          description="Per-round validation metrics and pseudo-label counts")
    create_markdown_artifact(key=f"round-{n}-report", markdown=round_markdown(n, rows),
                             description=f"Round {n} of the pseudo-labelling loop")
    return next((r for r in rows if r["round"] == n), {})
