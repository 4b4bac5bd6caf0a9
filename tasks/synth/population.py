"""Who is in the field when: a population that follows per-frame target counts.

Per class, the number of labelled (in-focus, head inside the frame) objects equals the
target of every frame. Changes happen the way they do under a microscope: progressive
cells swim out across the border and new ones swim in; surplus cells drift out of focus
(rendered blurred, unlabelled) and either come back into focus under the same track id
or fade away; other newcomers come into focus where they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from visem_pl.tasks.dataset.layout import IMAGE_HEIGHT as H
from visem_pl.tasks.dataset.layout import IMAGE_WIDTH as W

from . import motion as mo
from .render import BLURRED, SHARP, SOFT, sample_look

SPERM, CLUSTER, PINHEAD = 0, 1, 2
HIDE_MAX = 40  # frames an out-of-focus cell may stay hidden before it is gone
FADE_EMPTY = 4  # frames to vanish when the real frame had no object at all
FOCUS_IN = 6  # frames of blurred approach before a newcomer is sharp and labelled
DISTRACTOR = -1


@dataclass
class Cell:
    idx: int
    cls: int  # 0/1/2, or DISTRACTOR (strongly defocused sperm, never labelled)
    motility: str
    t0: int
    motion: mo.Motion
    look: dict
    box_w: float
    box_h: float
    focus: int
    members: list | None = None  # cluster: [(dx, dy, heading, phase0, dphase, look)]
    end: int = 0
    hidden_since: int | None = None
    label: np.ndarray = field(default=None)
    layer: np.ndarray = field(default=None)
    alpha: np.ndarray = field(default=None)
    born: str = "init"

    def pos(self, t: int) -> tuple[float, float]:
        i = t - self.t0
        return self.motion.x[i], self.motion.y[i]


def inside(x: float, y: float) -> bool:
    return 0.0 <= x < W and 0.0 <= y < H


class Population:
    def __init__(self, rng, n, fps, um_per_px, shares, drift, n_distractors) -> None:
        self.rng, self.n, self.fps, self.um = rng, n, fps, um_per_px
        self.shares = np.asarray(shares, float) / np.sum(shares)
        self.drift = drift
        self.cells: list[Cell] = []
        self.active: dict[int, list[Cell]] = {SPERM: [], CLUSTER: [], PINHEAD: []}
        self.n_distractors = n_distractors
        self.distractors: list[Cell] = []

    # -- creation -------------------------------------------------------------------
    def _new(self, cls, t, t0, x, y, heading, motility, focus, born) -> Cell:
        rng = self.rng
        n = self.n - t0
        if cls == CLUSTER:
            m = mo.immotile(rng, n, x, y, heading, self.fps, self.um, self.drift, jitter=0.08)
            box_w, box_h = max(40.0, rng.normal(58, 5)), max(36.0, rng.normal(52, 5))
            members = []
            for _ in range(int(rng.integers(3, 7))):
                # Agglutinated heads overlap around the middle of the box.
                dx = float(np.clip(rng.normal(0, box_w / 6), -(box_w / 2 - 9), box_w / 2 - 9))
                dy = float(np.clip(rng.normal(0, box_h / 6), -(box_h / 2 - 8), box_h / 2 - 8))
                # Heads stick together, tails point outwards.
                hd = np.arctan2(-dy, -dx) + rng.normal(0, 0.5)
                beats = rng.random() < 0.6
                members.append(
                    (
                        dx,
                        dy,
                        hd,
                        rng.uniform(0, 2 * np.pi),
                        2 * np.pi * rng.uniform(6, 15) / self.fps if beats else 0.0,
                        sample_look(rng, "sperm"),
                    )
                )
            look = {}
        else:
            m = mo.MODELS[motility](rng, n, x, y, heading, self.fps, self.um, self.drift)
            look = sample_look(rng, "pinhead" if cls == PINHEAD else "sperm")
            members = None
            if cls == PINHEAD:
                base = rng.normal(21, 1.5)
            else:
                base = rng.normal(23, 2)
            box_w = max(12.0, base + rng.normal(0, 1))
            box_h = max(12.0, base + rng.normal(0, 1))
        cell = Cell(len(self.cells), cls, motility, t0, m, look, box_w, box_h, focus, members, end=self.n, born=born)
        cell.label = np.zeros(n, bool)
        cell.layer = np.zeros(n, np.int8)
        cell.alpha = np.zeros(n, np.float32)
        self.cells.append(cell)
        return cell

    def _motility(self, cls) -> str:
        if cls == CLUSTER:
            return mo.IMMOTILE
        return mo.MOTILITIES[int(self.rng.choice(3, p=self.shares))]

    def _free_spot(self, t, margin, cls) -> tuple[float, float]:
        rng = self.rng
        others = [(*c.pos(t), c.cls) for cs in self.active.values() for c in cs if c.hidden_since is None]
        for _ in range(12):
            x, y = rng.uniform(margin, W - margin), rng.uniform(margin, H - margin)
            # Keep newcomers off other heads, and clusters well apart from anything.
            if all((x - ox) ** 2 + (y - oy) ** 2 > (40 if CLUSTER in (cls, oc) else 14) ** 2 for ox, oy, oc in others):
                break
        return x, y

    def spawn(self, cls, t) -> Cell:
        rng = self.rng
        motility = self._motility(cls)
        focus = SHARP if rng.random() < (0.9 if cls == CLUSTER else 0.75) else SOFT
        if t > 0 and motility == mo.PROGRESSIVE and rng.random() < 0.7:
            # Swim in across a border: head just inside, heading inwards, tail outside.
            for _ in range(20):
                side = int(rng.integers(4))
                inset = rng.uniform(0.3, 2.5)
                along = rng.uniform(0.05, 0.95)
                x, y, inward = [
                    (inset, along * H, 0.0),
                    (W - inset, along * H, np.pi),
                    (along * W, inset, np.pi / 2),
                    (along * W, H - inset, -np.pi / 2),
                ][side]
                cell = self._new(cls, t, t, x, y, inward + rng.uniform(-0.9, 0.9), motility, focus, "border")
                if inside(*cell.pos(t)):
                    return cell
                self.cells.pop()
        pre = 0 if t == 0 else min(t, FOCUS_IN)
        margin = 30.0 if cls == CLUSTER else 14.0
        for attempt in range(50):
            x, y = self._free_spot(t, margin + 3 * pre, cls)
            if attempt == 49:  # never seen; keeps the count exact whatever happens
                motility, x, y = (mo.IMMOTILE, W / 2, H / 2)
            cell = self._new(
                cls, t, t - pre, x, y, rng.uniform(-np.pi, np.pi), motility, focus, "init" if t == 0 else "focus"
            )
            if inside(*cell.pos(t)):
                break
            self.cells.pop()
        for j in range(pre):
            cell.layer[j] = BLURRED if j < pre // 2 else SOFT
            cell.alpha[j] = 0.3 + 0.6 * j / pre
        return cell

    def _distractor(self, t) -> Cell:
        rng = self.rng
        motility = mo.MOTILITIES[int(rng.choice(3, p=[0.5, 0.2, 0.3]))]
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        cell = self._new(SPERM, t, t, x, y, rng.uniform(-np.pi, np.pi), motility, BLURRED, "distractor")
        cell.cls = DISTRACTOR
        cell.look["core"] *= rng.uniform(0.5, 0.9)
        return cell

    # -- the controller -------------------------------------------------------------
    def run(self, targets: np.ndarray, labelled: np.ndarray) -> list[Cell]:
        rng = self.rng
        for t in range(self.n):
            for cls in (SPERM, CLUSTER, PINHEAD):
                kept = []
                for c in self.active[cls]:
                    if not inside(*c.pos(t)):
                        c.end = t
                    elif c.hidden_since is not None and (
                        t - c.hidden_since >= (HIDE_MAX if labelled[t] else FADE_EMPTY)
                    ):
                        c.end = t
                    else:
                        kept.append(c)
                self.active[cls] = kept
                shown = [c for c in kept if c.hidden_since is None]
                want = int(targets[t, cls])
                if len(shown) > want:
                    for j in rng.choice(len(shown), len(shown) - want, replace=False):
                        shown[j].hidden_since = t
                elif len(shown) < want:
                    need = want - len(shown)
                    hidden = sorted(
                        (c for c in kept if c.hidden_since is not None), key=lambda c: (-c.hidden_since, c.idx)
                    )
                    for c in hidden[:need]:
                        c.hidden_since = None
                    for _ in range(need - len(hidden[:need])):
                        self.active[cls].append(self.spawn(cls, t))
                for c in self.active[cls]:
                    i = t - c.t0
                    if c.hidden_since is None:
                        c.label[i], c.layer[i], c.alpha[i] = True, c.focus, 1.0
                    else:
                        c.layer[i] = BLURRED
                        c.alpha[i] = max(0.1, 0.8 - 0.02 * (t - c.hidden_since))
            self._run_distractors(t, labelled[t])
        return self.cells

    def _run_distractors(self, t, labelled_frame) -> None:
        kept = [c for c in self.distractors if inside(*c.pos(t))]
        for c in self.distractors:
            if c not in kept:
                c.end = t
        while len(kept) < self.n_distractors:
            kept.append(self._distractor(t))
        self.distractors = kept
        for c in kept:
            i = t - c.t0
            # "No object at all" frames stay empty of sperm, even blurred ones.
            c.layer[i], c.alpha[i] = BLURRED, (0.75 if labelled_frame else 0.0)
