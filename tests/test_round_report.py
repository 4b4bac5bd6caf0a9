"""The round report as a person sees it: the HTML page of the two-round pipeline project opened in a real
headless Chromium, and the same curves through `dvc plots` (the field's own viewer)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from helpers.browser import render
from helpers.project import run

from visem_pl.tasks.dataset import layout


@pytest.fixture(scope="module")
def page(pipeline_rounds, pipeline_workspace, tmp_path_factory):
    """`visem-pl report --html` run in the project as a user runs it; (path, what it printed)."""
    out = tmp_path_factory.mktemp("report") / "round-report.html"
    done = run(["visem-pl", "report", "--html", str(out)], pipeline_workspace)
    return out, done


def test_the_page_is_one_offline_file_with_every_section(page, pipeline_workspace):
    path, done = page
    text = path.read_text()
    # The path is the last thing printed (make demo ends with it), on stderr so --json stays clean.
    assert done.stderr.strip().splitlines()[-1].startswith(f"HTML round report: {path.resolve()}")
    # Nothing is fetched when it opens: no script, no stylesheet or font link, every image inline.
    assert "<script" not in text and "<link" not in text and "@import" not in text and "url(" not in text
    sources = re.findall(r'<img [^>]*src="([^"]{0,40})', text)
    assert sources and all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in sources)
    for heading in (
        'id="rounds"',
        'id="curves"',
        'id="round-0"',
        "Confidence of round 0",
        "Review queue of round 0",
        "Frames of round 0",
        "Tracks of round 0",
        "Motility (CASA) per participant",
    ):
        assert heading in text, heading
    # Both rounds in the table, with the headline naming the latest and its labels-only control.
    report = json.loads((pipeline_workspace / "metrics/report.json").read_text())
    assert "Round 1: validation fitness" in text and "labels-only control" in text
    assert text.count("<tr><td>0</td>") == 1 and text.count("<tr><td>1</td>") == 1
    assert f"{report['rounds']['1']['fitness']:.3f}" in text
    # The pseudo-label table has merge@0's row beside quality@0's: what merge teaches after the review's verdicts.
    after = json.loads((pipeline_workspace / "metrics/rounds/round-0/merge.json").read_text())["accept_after_review"]
    boxes = f"{after['all']['boxes']:,}"
    assert re.search(rf"<tr><td>accept_after_review</td><td>all</td><td>[^<]*</td><td>[^<]*</td><td>{boxes}</td>", text)


def test_the_review_section_reads_back_what_the_expert_did(page, pipeline_workspace):
    """The page's counts come from the queue store (as for real experts); the simulated expert logged its own."""
    from visem_pl.tasks.review.changes import review_summary
    from visem_pl.tasks.review.store import QueueStore
    from visem_pl.tasks.workspace.paths import Workspace

    paths = Workspace(pipeline_workspace).round(0)
    logged = json.loads((paths.reviewed / "stats.json").read_text())
    summary = review_summary(QueueStore(paths.reviewed / "queue"), pd.read_parquet(paths.boxes))
    assert summary["changes"] == {k: logged[k] for k in ("kept", "fixed", "deleted", "added")}
    assert summary["frames"] == logged["items"] and summary["reviewers"] == {"simulated-expert": logged["items"]}
    text = page[0].read_text()
    assert f"<td>simulated-expert</td><td>{logged['items']}</td>" in text


def test_the_page_renders_in_chromium_with_every_figure(page, browser, tmp_path):
    shot = tmp_path / "report.png"
    seen = render(page[0], shot, executable=browser)
    assert seen.ok, seen.report()
    assert not seen.console_errors and not seen.page_errors and not seen.remote_requests
    # Every figure loaded: the over-rounds and PR plots, the band histograms, the review bars, 7 gallery frames
    # (4 by priority, 3 random), a trail frame per tracked clip.
    assert len(seen.images) >= 12 and not seen.broken_images
    assert not seen.blank
    assert seen.title == "visem-pl round report" and "Precision-recall on the validation videos" in seen.text


def test_dvc_plots_show_and_diff_the_rounds(pipeline_rounds, pipeline_workspace):
    ws = pipeline_workspace
    shown = json.loads(run(["dvc", "plots", "show", "--json"], ws).stdout)["data"]
    pr = [p for p in shown if p.startswith("metrics/plots/pr_curve")]
    assert sorted(pr) == ["metrics/plots/pr_curve/round-0.csv", "metrics/plots/pr_curve/round-1.csv"]
    assert "metrics/plots/confidence/round-0.csv" in shown and "metrics/plots/fitness_by_round.csv" in shown
    # Every class of the PR curve is drawn, from the file evaluate wrote.
    values = shown["metrics/plots/pr_curve/round-0.csv"][0]["content"]["data"]["values"]
    assert {v["field"] for v in values} == set(layout.CLASS_NAMES) and len(values) == 101 * 3
    # Between the two tagged rounds: round 1's curve exists only at the second tag, the fitness table grows.
    diff = json.loads(run(["dvc", "plots", "diff", "round-0", "round-1", "--json"], ws).stdout)["data"]
    fitness = diff["metrics/plots/fitness_by_round.csv"][0]
    assert set(fitness["revisions"]) == {"round-0", "round-1"}
    rows = {(v["rev"], v["round"]) for v in fitness["content"]["data"]["values"]}
    assert rows == {("round-0", "0"), ("round-1", "0"), ("round-1", "1")}
    assert diff["metrics/plots/pr_curve/round-1.csv"][0]["revisions"] == ["round-1"]
    # The CSV is what report.json says, round by round.
    table = pd.read_csv(ws / "metrics/plots/fitness_by_round.csv")
    report = json.loads((ws / "metrics/report.json").read_text())
    assert list(table["round"]) == [0, 1]
    assert table["fitness"].tolist() == [report["rounds"][k]["fitness"] for k in ("0", "1")]
