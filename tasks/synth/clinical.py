"""The five clinical CSVs, one row per synthesised participant.

Values are plausible draws (ranges of a male-fertility cohort), except two columns that
are tied to the video so that they can be checked against it: the motility percentages
are the realised shares of the simulated sperm, and the concentration follows the mean
number of sperm in the field of view.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from visem_pl.tasks.dataset import layout

from .ids import rng_for
from .motion import MOTILITIES

NOT_REPORTED = "Not reported"


def largest_remainder(counts: list[int] | np.ndarray, total: int = 100) -> list[int]:
    """Integer percentages of `counts` that sum exactly to `total`."""
    c = np.asarray(counts, float)
    if c.sum() <= 0:
        raise ValueError("no counts to turn into percentages")
    raw = c / c.sum() * total
    out = np.floor(raw).astype(int)
    order = sorted(range(len(c)), key=lambda i: (-(raw[i] - out[i]), i))
    for i in order[: total - out.sum()]:
        out[i] += 1
    return out.tolist()


def motility_percentages(tally: dict[str, int], shares: tuple[float, float, float]) -> list[int]:
    counts = [tally.get(m, 0) for m in MOTILITIES]
    if sum(counts) == 0:  # no sperm simulated (e.g. scale=0): fall back on the drawn shares
        counts = [s * 1e6 for s in shares]
    return largest_remainder(counts)


def _n(rng, mu, sd, lo, hi, nd=2):
    v = round(float(np.clip(rng.normal(mu, sd), lo, hi)), nd)
    return int(v) if nd == 0 else v


def participant_row(rng, vid):
    row = [vid, int(rng.integers(1, 11)), _n(rng, 28, 5, 18, 45, 1), int(rng.integers(19, 56))]
    for j in (1, 2):  # the real file sometimes lacks a value
        if rng.random() < 0.12:
            row[j] = NOT_REPORTED
    return row


def semen_row(rng, vid, pct, concentration):
    volume = _n(rng, 3.2, 1.2, 0.6, 7.5, 1)
    normal = _n(rng, 6, 3, 0, 20, 0)
    head = _n(rng, 85, 8, 50, 100, 0)
    mid = _n(rng, 25, 10, 2, 70, 0)
    tail = _n(rng, 15, 8, 1, 50, 0)
    droplet = _n(rng, 2, 2, 0, 15, 0)
    tzi = round(1 + (head + mid + tail + droplet) / 100 * rng.uniform(0.45, 0.65), 2)
    return [
        vid,
        round(concentration, 1),
        round(concentration * volume, 1),
        volume,
        _n(rng, 70, 12, 20, 98, 0),
        normal,
        head,
        mid,
        tail,
        droplet,
        tzi,
        *pct,
        _n(rng, 10, 4, 2, 30, 1),
        _n(rng, 15, 8, 2, 60, 1),
    ]


def hormones_row(rng, vid):
    return [
        vid,
        _n(rng, 30, 20, 1, 120),
        _n(rng, 16, 5, 4, 35),
        _n(rng, 0.09, 0.03, 0.03, 0.2, 3),
        _n(rng, 30, 12, 8, 80, 1),
        _n(rng, 4, 2.5, 0.5, 15, 1),
        _n(rng, 4, 1.8, 0.8, 12, 1),
        _n(rng, 190, 70, 30, 400, 0),
        _n(rng, 35, 18, 3, 100, 1),
    ]


def fatty_rows(rng, vid, n_cols, kind):
    # Percent of total fatty acids: a few major ones, the rest minor.
    major = {"serum": {1: 23, 3: 7, 4: 20, 5: 22, 6: 28}, "sperm": {2: 20, 5: 16, 7: 11, 9: 8, 21: 30}}[kind]
    vals = [_n(rng, major.get(j, 0.8), major.get(j, 0.8) * 0.2, 0.01, 60, 2) for j in range(n_cols)]
    return [vid, *vals]


def write_clinical(root: Path, seed: int, participants: list[dict]) -> None:
    """participants: dicts with vid, pct (3 ints), concentration, sorted by vid."""
    rows: dict[str, list] = {name: [] for name in layout.CLINICAL_CSVS}
    for p in participants:
        vid = p["vid"]
        rows[layout.PARTICIPANT_CSV].append(participant_row(rng_for(seed, "clin-part", vid), vid))
        rows[layout.SEMEN_CSV].append(semen_row(rng_for(seed, "clin-semen", vid), vid, p["pct"], p["concentration"]))
        rows[layout.HORMONES_CSV].append(hormones_row(rng_for(seed, "clin-horm", vid), vid))
        for name, kind in ((layout.FA_SERUM_CSV, "serum"), (layout.FA_SPERM_CSV, "sperm")):
            n_cols = len(layout.CLINICAL_HEADERS[name]) - 1
            rows[name].append(fatty_rows(rng_for(seed, "clin-" + kind, vid), vid, n_cols, kind))
    for name, header in layout.CLINICAL_HEADERS.items():
        with open(root / name, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            for r in rows[name]:
                assert len(r) == len(header), (name, len(r), len(header))
                w.writerow(r)
