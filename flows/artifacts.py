"""What a round leaves in the Prefect UI: its report (markdown) and the table of every round."""

from __future__ import annotations

from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from visem_pl.tasks.report import COLUMNS, collect, fmt, notes, rows
from visem_pl.tasks.reporting.page import headline, write_report
from visem_pl.tasks.workspace.paths import Workspace


def round_markdown(n: int, data: dict, page: dict | None = None) -> str:
    """The round's headline, the table of every round and, when written, a link to the HTML report."""
    by = {r["round"]: r for r in data["rounds"].values()}
    row, prev = by[n], by.get(n - 1)
    gain = (
        f" ({row['fitness'] - prev['fitness']:+.3f} over round {n - 1})"
        if prev and row.get("fitness") is not None and prev.get("fitness") is not None
        else ""
    )
    lines = [
        f"# Round {n}",
        "",
        f"Validation (fixed videos): mAP50 {fmt(row['mAP50'])}, mAP50-95 {fmt(row['mAP50-95'])}, "
        f"fitness {fmt(row['fitness'])}{gain}.",
        f"Pseudo-labels: {fmt(row['accepted_boxes'])} boxes accepted, {fmt(row['review_items'])} frames "
        f"queued for review.",
        f"Accepted boxes against the synthetic truth: precision {fmt(row['accepted_precision'])}, "
        f"recall {fmt(row['accepted_recall'])} (`-` on real data: no truth).",
        "",
        f"**{headline(data)}**",
        "",
    ]
    if page is not None:
        url = Path(page["path"]).resolve().as_uri()
        lines += [
            f"HTML round report (curves, bands, review, frames, tracks; one offline file, "
            f"{page['bytes'] / 1e6:.1f} MB): [{page['path']}]({url})",
            "",
        ]
    lines += [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(data)]
    below = notes(data)
    if below:
        lines += ["", *below]
    if n > 0:
        lines += [
            "",
            f"Versioned as git tag `round-{n}` with `dvc.lock`; `dvc metrics diff round-{n - 1} round-{n}` "
            "compares it with the round before.",
        ]
    return "\n".join(lines)


def publish_round(workspace: Path, n: int) -> dict:
    """The round's markdown report, linking the HTML round report it writes (Workspace.report_html), and the
    per-round metrics table (keys round-N-report, pseudo-label-rounds: each new version shows up under the same
    key in the UI)."""
    data = collect(Workspace(Path(workspace)))
    create_table_artifact(
        key="pseudo-label-rounds",
        table=[{k: r.get(k) for k, _ in COLUMNS} for r in data["rounds"].values()],
        description="Per-round validation metrics and pseudo-label counts",
    )
    ws = Workspace(Path(workspace))
    page = write_report(ws, ws.report_html)
    create_markdown_artifact(
        key=f"round-{n}-report",
        markdown=round_markdown(n, data, page),
        description=f"Round {n} of the pseudo-labelling loop",
    )
    return data["rounds"].get(str(n), {})
