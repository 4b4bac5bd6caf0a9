"""One self-contained HTML page of a workspace's rounds: the table, the curves, the review and sample frames.

Everything is inside the file (figures as base64 PNG or JPEG, no script, no web font, no link out), so it
opens offline and can be mailed. It reads only what the stages wrote; nothing is recomputed but the
frames it draws (decoded from the clips) and what the review changed (read back from the queue store).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.report import CAPTION, COLUMNS, collect, fmt, notes, rows
from visem_pl.tasks.workspace.io import write_text
from visem_pl.tasks.workspace.paths import Workspace

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 16px 40px; color: #222; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 36px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.caption, .note { color: #555; font-size: 13px; max-width: 1100px; }
.headline { font-size: 17px; background: #f6f8fa; border-left: 4px solid #1f77b4; padding: 8px 12px; }
.gallery { display: flex; flex-wrap: wrap; gap: 8px; } .gallery figure { margin: 0; }
.gallery img { width: 380px; } figure img { max-width: 100%; }
nav a { margin-right: 12px; }
"""
BAND_ORDER = ("accept", "accept_after_review", "review", "reject", "accept+review", "accept_confidence_only")


def _img(data: bytes, alt: str, fmt_: str = "png") -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/{fmt_};base64,{base64.b64encode(data).decode()}">'


def _table(header: list[str], body: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    lines = ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in body]
    return f"<table><tr>{head}</tr>{''.join(lines)}</table>"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def headline(data: dict) -> str:
    """The latest round in one sentence: fitness, against the round before and the labels-only control."""
    rounds = list(data["rounds"].values())
    if not rounds:
        return "No round has been scored yet: run `dvc repro`."
    last = rounds[-1]
    text = f"Round {last['round']}: validation fitness {fmt(last.get('fitness'))}"
    if len(rounds) > 1 and last.get("fitness") is not None and rounds[-2].get("fitness") is not None:
        text += f" ({last['fitness'] - rounds[-2]['fitness']:+.3f} over round {rounds[-2]['round']})"
    if last.get("control_fitness") is not None and last.get("fitness") is not None:
        gain = last["fitness"] - last["control_fitness"]
        verdict = "the pseudo-labels paid" if gain > 0 else "the pseudo-labels did not pay"
        text += f"; labels-only control {fmt(last['control_fitness'])}, {gain:+.3f}: {verdict}"
    pseudo = [r for r in rounds if r.get("accepted_boxes") is not None]
    if pseudo:
        p = pseudo[-1]
        text += f". Round {p['round']} accepted {fmt(p['accepted_boxes'])} pseudo-label boxes"
        if p.get("accepted_precision") is not None:
            text += f" (precision {fmt(p['accepted_precision'])}, recall {fmt(p['accepted_recall'])} against the truth)"
    return text + "."


def _bands_section(ws: Workspace, n: int, figures) -> list[str]:
    paths = ws.round(n)
    out = []
    hist = paths.confidence_histogram
    bands = _read_json(paths.metrics / "pseudo.json").get("bands", {})
    if hist.exists():
        out.append(f"<h3>Confidence of round {n}'s boxes, with the bands</h3>")
        out.append(_img(figures.confidence_histograms(pd.read_csv(hist), bands), f"round {n} confidence histograms"))
    quality = _read_json(paths.metrics / "quality.json")
    after = _read_json(paths.metrics / "merge.json").get("accept_after_review")
    if quality.get("truth") and after:  # merge@N's record: what merge teaches once the review judged the tracks
        quality = {**quality, "accept_after_review": after}
    if quality.get("truth"):
        body = []
        for band in (b for b in BAND_ORDER if b in quality):
            for name in (*layout.CLASS_NAMES, "all"):
                q = quality[band][name]
                body.append([band, name, fmt(q["precision"]), fmt(q["recall"]), f"{q['boxes']:,}", f"{q['truth']:,}"])
        out.append(
            '<p class="note">Each band\'s boxes against the synthetic truth (IoU >= 0.5, every scored frame): '
            "precision, and recall of the truth's boxes. accept_confidence_only: what confidence alone "
            "would have accepted (without the temporal rule); accept_after_review: the accepted boxes merge keeps "
            "once the experts' answers judged the tracks through the reviewed frames.</p>"
        )
        out.append(_table(["band", "class", "precision", "recall", "boxes", "truth boxes"], body))
    return out


def _review_section(ws: Workspace, n: int, figures, boxes: Path) -> list[str]:
    """The queue's items per state and reviewer, and what the review did to the model's `boxes` (the
    round's boxes.parquet, of which only the reviewed frames are read)."""
    from visem_pl.tasks.review.changes import review_summary
    from visem_pl.tasks.review.store import QueueStore, merged_items

    paths = ws.round(n)
    experts = QueueStore(paths.review_folder)
    store = experts if experts.exists() else QueueStore(paths.reviewed / "queue")
    if not store.exists():
        return []
    summary = review_summary(store, boxes, merged_items(paths.merged / "frames.csv"))
    who = "the experts' queue store" if store is experts else "the simulated expert's queue store"
    out = [
        f"<h3>Review queue of round {n}</h3>",
        f'<p class="note">From {html.escape(who)} ({html.escape(str(store.root))}). What the review did: each '
        "box the model showed is kept (same class, IoU >= 0.5 with an answer box), fixed (moved, resized or "
        "reclassed) or deleted; answer boxes on nothing shown were added.</p>",
        _img(figures.review_bars(summary), f"round {n} review queue"),
        _table(["reviewer", "frames reviewed"], [[k, v] for k, v in sorted(summary["reviewers"].items())]),
    ]
    return out


def _gallery(ws: Workspace, n: int, figures, boxes, top: int, random: int, seed: int) -> list[str]:
    """The queue's highest-priority frames and a few random scored frames, the round's `boxes` (a `BoxFile`
    of its boxes.parquet) drawn: of the file, only the (clip, frame) pairs and the drawn frames are read."""
    from visem_pl.tasks.dataset.truth import truth_for
    from visem_pl.tasks.inference.clips import frames_at
    from visem_pl.tasks.review.queue import read_queue

    paths = ws.round(n)
    picks = []
    if paths.queue_csv.exists():
        queue = read_queue(paths.queue_csv).sort_values("priority", ascending=False, kind="stable")
        picks += [
            (c, int(f), f"review priority {p:.2f}")
            for c, f, p in queue[["clip", "frame", "priority"]].head(top).to_numpy()
        ]
    scored = boxes.scored_frames()
    scored = scored[~scored.set_index(["clip", "frame"]).index.isin([(c, f) for c, f, _ in picks])]
    if len(scored):
        rng = np.random.default_rng(seed)
        chosen = scored.iloc[np.sort(rng.choice(len(scored), size=min(random, len(scored)), replace=False))]
        picks += [(c, int(f), "random frame") for c, f in chosen.to_numpy()]
    if not picks:
        return []
    truth = truth_for(ws.data_root())
    clips = {c.name: c for c in ws.clips()}
    figures_html = []
    boxes = boxes.frames((c, f) for c, f, _ in picks)  # only the drawn frames' boxes are read
    for clip, wanted in pd.DataFrame(picks, columns=["clip", "frame", "why"]).groupby("clip", sort=False):
        if clip not in clips:
            continue
        why = dict(zip(wanted["frame"], wanted["why"]))
        for frame, image in frames_at(clips[clip].path, why):
            b = boxes[(boxes["clip"] == clip) & (boxes["frame"] == frame)]
            gt = truth.frame(clip, frame).rename(columns={"class": "cls"}) if truth is not None else None
            title = f"{clip} frame {frame}: {why[frame]}"
            data = figures.frame_boxes(image, b[b["band"] == "accept"], b[b["band"] == "review"], gt, title)
            figures_html.append(f"<figure>{_img(data, title, 'jpeg')}</figure>")
    legend = (
        "accepted boxes solid, review-band boxes dashed"
        + (", truth thin" if truth is not None else "")
        + "; sperm red, cluster green, small or pinhead blue"
    )
    return [
        f"<h3>Frames of round {n}'s clips</h3>",
        f'<p class="note">{legend}.</p>',
        f'<div class="gallery">{"".join(figures_html)}</div>',
    ]


def _tracks_section(ws: Workspace, n: int, figures, max_clips: int) -> list[str]:
    """One frame per clip (the first `max_clips` clips) with its tracks as trails, and the motility table."""
    from visem_pl.tasks.inference.clips import frames_at
    from visem_pl.tasks.tracking.clips import read_tracks
    from visem_pl.tasks.tracking.stages import motility_config

    paths = ws.round(n)
    # The tracks motility measured (and whose ids motility.csv holds): each clip's window, or the round's
    folder = paths.motility_tracks if motility_config(ws).window_s is not None else paths.tracks
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return []
    motility_csv = paths.data / "motility.csv"
    per_track = pd.read_csv(motility_csv) if motility_csv.exists() else pd.DataFrame(columns=["clip", "track", "class"])
    clips = {c.name: c for c in ws.clips()}
    out = [
        f"<h3>Tracks of round {n}</h3>",
        f'<p class="note">One frame of each of the first {min(max_clips, len(files))} of {len(files)} clips, '
        "every track's path drawn over it, coloured by its motility class (WHO).</p>",
    ]
    shown = []
    for path in files[:max_clips]:
        clip = path.stem
        if clip not in clips:
            continue
        tracks, _ = read_tracks(path)
        frames = sorted(tracks["frame"].unique()) if len(tracks) else [0]
        middle = int(frames[len(frames) // 2])
        classes = per_track[per_track["clip"] == clip].dropna(subset=["class"])
        cls_of = dict(zip(classes["track"].astype(int), classes["class"]))
        ((_, image),) = frames_at(clips[clip].path, [middle])
        title = f"{clip}: {tracks['track'].nunique() if len(tracks) else 0} tracks"
        shown.append(f"<figure>{_img(figures.frame_trails(image, tracks, cls_of, title), title, 'jpeg')}</figure>")
    out.append(f'<div class="gallery">{"".join(shown)}</div>')
    out += _motility(ws, n, figures)
    return out


def _motility(ws: Workspace, n: int, figures) -> list[str]:
    """The PR / NP / IM shares per participant beside the lab's, and per clip beside the simulated cells'."""
    from visem_pl.tasks.dataset.clinical import motility as lab_motility
    from visem_pl.tasks.dataset.reader import locate

    result = _read_json(ws.round(n).metrics / "motility.json")
    if not result.get("participants"):
        return []
    try:
        lab = lab_motility(locate(ws.data_root())).set_index("ID")
    except FileNotFoundError:
        lab = None
    names = {"pr": "progressive", "np": "non_progressive", "im": "immotile"}
    body, pairs = [], []
    for p in result["participants"]:
        ref = {
            k: (float(lab.at[p["participant"], v]) if lab is not None and p["participant"] in lab.index else None)
            for k, v in names.items()
        }
        ref = {k: (None if v is None or np.isnan(v) else v) for k, v in ref.items()}
        pairs.append({**{f"{k}_pred": p.get(k) for k in names}, **{f"{k}_ref": ref[k] for k in names}})
        body.append(
            [
                p["participant"],
                p["clips"],
                p.get("tracks", "-"),
                *(f"{fmt(p.get(k), 'motility_mae_pp')} / {fmt(ref[k], 'motility_mae_pp')}" for k in names),
            ]
        )
    out = [
        "<h3>Motility (CASA) per participant</h3>",
        '<p class="note">Shares of the classified tracks in percent, ours / the lab\'s (semen analysis CSV); '
        f"calibration {result.get('um_per_px')} um/px, one position every {result.get('frame_step')} video frames "
        "(docs/MOTILITY.md). On the synthetic twin the lab's values are the simulated cells' shares of the "
        "whole participant, of which the clips see a sample.</p>",
        _table(["participant", "clips", "tracks", "progressive", "non-progressive", "immotile"], body),
    ]
    table = pd.DataFrame(pairs, dtype="float64")
    both = [table[[f"{k}_pred", f"{k}_ref"]].notna().all(axis=1).any() for k in names]
    if lab is not None and any(both):
        out.append(_img(figures.motility_scatter(table, "the lab's value"), f"round {n} motility against the lab"))
    return out


def render(ws: Workspace, gallery_top: int = 4, gallery_random: int = 3, track_clips: int = 4, seed: int = 0) -> str:
    """The page's HTML."""
    from visem_pl.tasks.pseudo.boxfile import BoxFile
    from visem_pl.tasks.reporting import figures

    data = collect(ws)
    rounds = list(data["rounds"].values())
    pseudo = [r["round"] for r in rounds if ws.round(r["round"]).boxes.exists()]
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>visem-pl round report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Pseudo-labelling rounds</h1>",
        f'<p class="note">Workspace {html.escape(str(ws.root.resolve()))}, dataset {html.escape(str(ws.data_root()))}; '
        f"written {when} by <code>visem-pl report --html</code>.</p>",
        f'<p class="headline">{html.escape(headline(data))}</p>',
        '<nav><a href="#rounds">Rounds</a><a href="#curves">Precision-recall</a>'
        + "".join(f'<a href="#round-{n}">Round {n} pseudo-labels</a>' for n in pseudo)
        + "</nav>",
        '<h2 id="rounds">Rounds</h2>',
        _table([title for _, title in COLUMNS], rows(data)),
        f'<p class="caption">{html.escape(CAPTION)}.</p>',
        *(f'<p class="note">{html.escape(line)}</p>' for line in notes(data)),
    ]
    if rounds:
        parts.append(_img(figures.over_rounds(rounds), "fitness and mAP per class over rounds"))
    curves = {
        r["round"]: pd.read_csv(ws.round(r["round"]).pr_curve) for r in rounds if ws.round(r["round"]).pr_curve.exists()
    }
    if curves:
        parts += [
            '<h2 id="curves">Precision-recall on the validation videos</h2>',
            '<p class="note">Per class, each round\'s precision envelope against recall at IoU 0.5 '
            "(the curve mAP@0.5 is the area under).</p>",
            _img(figures.pr_curves(curves), "precision-recall curves per class and round"),
        ]
    for n in pseudo:
        parts.append(f'<h2 id="round-{n}">Round {n}: pseudo-labels, review and tracks</h2>')
        parts += _bands_section(ws, n, figures)
        parts += _review_section(ws, n, figures, ws.round(n).boxes)
        boxes = BoxFile(ws.round(n).boxes)  # the frames it draws, not every box of the round
        parts += _gallery(ws, n, figures, boxes, gallery_top, gallery_random, seed)
        parts += _tracks_section(ws, n, figures, track_clips)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(ws: Workspace, out: Path | str, **options) -> dict:
    """Write the page to `out` (atomically); {"path", "bytes", "images"}."""
    page = render(ws, **options)
    write_text(out, page)
    return {"path": str(out), "bytes": len(page.encode()), "images": page.count("<img ")}
