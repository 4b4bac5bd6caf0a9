"""The report's figures, drawn with matplotlib (Agg: no display, no fonts fetched) and returned as image bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from visem_pl.tasks.dataset import layout  # noqa: E402

# The dataset paper's colours: sperm red, cluster green, small or pinhead blue.
CLASS_COLOURS = dict(zip(layout.CLASS_NAMES, ("#d62728", "#2ca02c", "#1f77b4")))
MOTILITY_COLOURS = {"progressive": "#d62728", "non_progressive": "#ff7f0e", "immotile": "#7f7f7f"}
DPI = 80


def encode(fig, fmt: str = "png") -> bytes:
    """The figure as PNG (plots) or JPEG (video frames: a tenth of the bytes); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(
        buf, format=fmt, dpi=DPI, bbox_inches="tight", **({"pil_kwargs": {"quality": 85}} if fmt == "jpeg" else {})
    )
    plt.close(fig)
    return buf.getvalue()


def over_rounds(rows: list[dict]) -> bytes:
    """Fitness, mAP@0.5 and mAP@0.5:0.95 per class (and overall) against the round number."""
    metrics = (("fitness", "fitness"), ("mAP50", "mAP@0.5"), ("mAP50-95", "mAP@0.5:0.95"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharex=True)
    rounds = [r["round"] for r in rows]
    for ax, (key, title) in zip(axes, metrics):
        ax.plot(rounds, [r.get(key) for r in rows], "k-o", label="all classes", lw=2)
        for name in layout.CLASS_NAMES:
            values = [(r.get("per_class") or {}).get(name, {}).get(key) for r in rows]
            ax.plot(rounds, [np.nan if v is None else v for v in values], "-o", color=CLASS_COLOURS[name], label=name)
        if key == "fitness":
            control = [r.get("control_fitness") for r in rows]
            if any(v is not None for v in control):
                ax.plot(rounds, [np.nan if v is None else v for v in control], "k--s", label="labels only (control)")
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.set_xticks(rounds)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    return encode(fig)


def pr_curves(curves: dict[int, pd.DataFrame]) -> bytes:
    """Per class, the validation precision-recall curve (IoU 0.5, the envelope mAP@0.5 integrates) of each round."""
    fig, axes = plt.subplots(1, len(layout.CLASS_NAMES), figsize=(12, 3.6), sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes, layout.CLASS_NAMES):
        for k, (n, table) in enumerate(sorted(curves.items())):
            if name in table:
                ap = float(np.trapezoid(table[name], table["recall"]))
                ax.plot(
                    table["recall"],
                    table[name],
                    color=cmap(k / max(1, len(curves) - 1)),
                    label=f"round {n} (AP50 {ap:.3f})",
                )
        ax.set_title(name, color=CLASS_COLOURS[name])
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("precision")
    return encode(fig)


def confidence_histograms(hist: pd.DataFrame, bands: dict) -> bytes:
    """Per class, the round's boxes by confidence (log scale), the reject / review / accept bands shaded."""
    fig, axes = plt.subplots(1, len(layout.CLASS_NAMES), figsize=(12, 3.2))
    width = float(hist["conf"].iloc[1] - hist["conf"].iloc[0]) if len(hist) > 1 else 0.02
    for ax, name in zip(axes, layout.CLASS_NAMES):
        ax.bar(hist["conf"], hist[name], width=width, align="edge", color=CLASS_COLOURS[name], alpha=0.85)
        band = bands.get(name)
        if band:
            ax.axvspan(0, band["low"], color="#999999", alpha=0.15, label="reject", zorder=0)
            ax.axvspan(band["low"], band["high"], color="#ff7f0e", alpha=0.15, label="review", zorder=0)
            ax.axvspan(band["high"], 1, color="#2ca02c", alpha=0.12, label="accept", zorder=0)
            for x in (band["low"], band["high"]):
                ax.axvline(x, color="k", lw=1, ls="--")
        ax.set_yscale("symlog", linthresh=1)
        ax.set_xlim(0, 1)
        ax.set_title(f"{name} ({int(hist[name].sum()):,} boxes)", color=CLASS_COLOURS[name])
        ax.set_xlabel("confidence")
    axes[0].set_ylabel("boxes")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # above the panels: inside one it hides the bars
        fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, 1.06))
    return encode(fig)


def review_bars(summary: dict) -> bytes:
    """The queue's items per state, and what the reviews did to the model's boxes."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 2.6))
    states = summary["states"]
    left.barh(list(states), list(states.values()), color="#1f77b4")
    left.set_title("queue items per state")
    left.invert_yaxis()
    changes = summary["changes"]
    right.barh(list(changes), list(changes.values()), color=["#2ca02c", "#ff7f0e", "#d62728", "#9467bd"])
    right.set_title(f"what the review did ({summary['frames']} frames)")
    right.invert_yaxis()
    for ax, values in ((left, states.values()), (right, changes.values())):
        for y, v in enumerate(values):
            ax.text(v, y, f" {v}", va="center", fontsize=9)
        ax.set_xlim(0, max(1, *values) * 1.2)
    return encode(fig)


def motility_scatter(pairs: pd.DataFrame, against: str) -> bytes:
    """Predicted vs reference PR / NP / IM shares (percent), one point per participant or clip, identity drawn."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.5))
    for ax, (key, name) in zip(axes, (("pr", "progressive"), ("np", "non_progressive"), ("im", "immotile"))):
        ok = pairs[[f"{key}_pred", f"{key}_ref"]].dropna()
        ax.plot([0, 100], [0, 100], "k:", lw=1)
        ax.scatter(ok[f"{key}_ref"], ok[f"{key}_pred"], color=MOTILITY_COLOURS[name], s=18)
        mae = (ok[f"{key}_pred"] - ok[f"{key}_ref"]).abs().mean() if len(ok) else float("nan")
        ax.set_title(f"{name.replace('_', '-')}: MAE {mae:.1f} pp (n={len(ok)})")
        ax.set_xlabel(f"{against} (%)")
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
        ax.set_aspect("equal")
    axes[0].set_ylabel("from the round's tracks (%)")
    return encode(fig)


def frame_boxes(
    image: np.ndarray, accepted: pd.DataFrame, review: pd.DataFrame, truth: pd.DataFrame | None, title: str
) -> bytes:
    """A video frame (BGR) with the model's accepted boxes solid, its review-band boxes dashed and the
    truth thin, coloured by class; boxes are normalised cx, cy, w, h."""
    h, w = image.shape[:2]
    fig, ax = plt.subplots(figsize=(w / 100, h / 100))
    ax.imshow(image[:, :, ::-1])
    for boxes, style in (
        (truth, dict(lw=0.8, ls="-")),
        (review, dict(lw=1.4, ls="--")),
        (accepted, dict(lw=1.6, ls="-")),
    ):
        if boxes is None:
            continue
        for b in boxes.itertuples():
            colour = CLASS_COLOURS[layout.CLASS_NAMES[int(b.cls)]]
            x0, y0 = (b.cx - b.w / 2) * w, (b.cy - b.h / 2) * h
            ax.add_patch(Rectangle((x0, y0), b.w * w, b.h * h, fill=False, edgecolor=colour, **style))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return encode(fig, "jpeg")


def frame_trails(image: np.ndarray, tracks: pd.DataFrame, classes: dict[int, str], title: str) -> bytes:
    """A video frame (BGR) with every track's path drawn as a trail, coloured by its motility class."""
    h, w = image.shape[:2]
    fig, ax = plt.subplots(figsize=(w / 100, h / 100))
    ax.imshow(image[:, :, ::-1])
    for track, g in tracks.sort_values("frame").groupby("track"):
        colour = MOTILITY_COLOURS.get(classes.get(int(track), ""), "#17becf")
        ax.plot(g["cx"] * w, g["cy"] * h, "-", color=colour, lw=1.3, alpha=0.9)
        ax.plot(g["cx"].iloc[-1] * w, g["cy"].iloc[-1] * h, "o", color=colour, ms=2.5)
    handles = [plt.Line2D([], [], color=c, label=n.replace("_", "-")) for n, c in MOTILITY_COLOURS.items()]
    handles.append(plt.Line2D([], [], color="#17becf", label="not classified (short)"))
    ax.legend(handles=handles, fontsize=6, loc="lower right", framealpha=0.7)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return encode(fig, "jpeg")
