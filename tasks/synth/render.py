"""Phase-contrast look: illumination, cell and debris drawing, defocus layers, noise.

Objects are drawn as intensity masks (dark core / bright halo, as in positive phase
contrast) on three focus layers that are blurred by different amounts, then added to a
smooth, slowly drifting illumination field with signal-dependent sensor noise.
"""

from __future__ import annotations

import cv2
import numpy as np

from visem_pl.tasks.dataset.layout import IMAGE_HEIGHT as H
from visem_pl.tasks.dataset.layout import IMAGE_WIDTH as W

SHIFT = 4  # cv2 sub-pixel drawing: coordinates in 1/16 px keep slow motion smooth
FP = 1 << SHIFT
AA = cv2.LINE_AA
SHARP, SOFT, BLURRED = 1, 2, 3
LAYER_SIGMA = {SHARP: 0.75, SOFT: 1.6, BLURRED: 3.8}
TAIL_POINTS = 14


def sample_look(rng: np.random.Generator, kind: str) -> dict:
    """Per-cell appearance; `kind` is sperm, pinhead or cluster_member."""
    if kind == "pinhead":
        r = rng.uniform(2.3, 3.2)
        a, b = r, r * rng.uniform(0.85, 1.0)
        tail_len = rng.choice([0.0, rng.uniform(4.0, 10.0)])
        core = rng.uniform(90, 130)
    else:
        a, b = rng.uniform(4.5, 5.5), rng.uniform(3.0, 3.5)
        tail_len = rng.uniform(40.0, 50.0)
        core = rng.uniform(55, 95)
    return {
        "a": a,
        "b": b,
        "core": core,
        "halo": rng.uniform(22, 42),
        "halo_w": rng.uniform(1.2, 2.2),
        "mid": rng.uniform(1.2, 1.5),
        "tail": rng.uniform(26, 44),
        "tail_len": tail_len,
        "mid_len": rng.uniform(6.0, 8.0),
        "tail_amp": rng.uniform(3.5, 6.0),
        "wavelength": tail_len * rng.uniform(0.7, 1.1) + 1e-6,
        "static_amp": rng.uniform(1.0, 3.5),
    }


def tail_points(x, y, heading, phase, look: dict, beating: bool) -> np.ndarray:
    """Fixed-point polyline (..., TAIL_POINTS, 2): a travelling sine wave whose amplitude
    grows along the tail, attached to the back of the head."""
    L = look["tail_len"]
    s = np.linspace(0.0, L, TAIL_POINTS)
    amp = look["tail_amp"] if beating else look["static_amp"]
    env = amp * (s / max(L, 1e-6)) ** 1.4
    lat = env * np.sin(2 * np.pi * s / look["wavelength"] - np.asarray(phase)[..., None])
    back = -(look["a"] * 0.9 + s)
    c, sn = np.cos(heading)[..., None], np.sin(heading)[..., None]
    px = np.asarray(x)[..., None] + back * c - lat * sn
    py = np.asarray(y)[..., None] + back * sn + lat * c
    return np.rint(np.stack([px, py], axis=-1) * FP).astype(np.int32)


class Canvas:
    """Dark and bright masks per focus layer; composed onto the illumination field."""

    def __init__(self) -> None:
        self.dark = {k: np.zeros((H, W), np.uint8) for k in LAYER_SIGMA}
        self.bright = {k: np.zeros((H, W), np.uint8) for k in LAYER_SIGMA}
        self.used = set()

    def clear(self) -> None:
        for k in self.used:
            self.dark[k].fill(0)
            self.bright[k].fill(0)
        self.used.clear()

    def sperm(self, layer, cx, cy, angle_deg, tail, look, alpha) -> None:
        """cx, cy fixed-point ints; tail fixed-point (P, 2) or None."""
        self.used.add(layer)
        dark, bright = self.dark[layer], self.bright[layer]
        a, b = look["a"], look["b"]
        hw = look["halo_w"]
        cv2.ellipse(
            bright,
            (cx, cy),
            (int((a + hw) * FP), int((b + hw) * FP)),
            angle_deg,
            0,
            360,
            int(look["halo"] * alpha),
            -1,
            AA,
            SHIFT,
        )
        cv2.ellipse(
            dark, (cx, cy), (int(a * FP), int(b * FP)), angle_deg, 0, 360, int(look["core"] * alpha), -1, AA, SHIFT
        )
        if tail is not None and look["tail_len"] > 0:
            n_mid = max(2, int(round(look["mid_len"] / look["tail_len"] * (TAIL_POINTS - 1))) + 1)
            cv2.polylines(dark, [tail], False, int(look["tail"] * alpha), 1, AA, SHIFT)
            # The midpiece is the same thin line, only denser.
            cv2.polylines(dark, [tail[:n_mid]], False, int(look["tail"] * look["mid"] * alpha), 1, AA, SHIFT)

    def blob(self, layer, poly, dark_v, bright_v) -> None:
        self.used.add(layer)
        cv2.fillPoly(self.dark[layer], [poly], int(dark_v), AA, SHIFT)
        if bright_v > 0:
            cv2.polylines(self.bright[layer], [poly], True, int(bright_v), 2, AA, SHIFT)

    def droplet(self, layer, cx, cy, r, bright_v, rim_v) -> None:
        self.used.add(layer)
        cv2.circle(self.bright[layer], (cx, cy), int(r * FP), int(bright_v), -1, AA, SHIFT)
        cv2.circle(self.dark[layer], (cx, cy), int((r + 0.8) * FP), int(rim_v), 1, AA, SHIFT)

    def compose(self, base: np.ndarray) -> np.ndarray:
        out = base.copy()
        for k in sorted(self.used):
            delta = cv2.subtract(self.bright[k], self.dark[k], dtype=cv2.CV_16S)
            delta = cv2.GaussianBlur(delta, (0, 0), LAYER_SIGMA[k])
            out = cv2.add(out, delta, dtype=cv2.CV_32F)
        return out


def _dust(rng: np.random.Generator) -> np.ndarray:
    """Out-of-focus dust on the optics: faint static rings and spots."""
    layer = np.zeros((H, W), np.float32)
    for _ in range(int(rng.integers(3, 10))):
        c = (int(rng.uniform(0, W) * FP), int(rng.uniform(0, H) * FP))
        r = rng.uniform(8, 40)
        v = float(rng.uniform(2, 7) * rng.choice([-1, 1]))
        if rng.random() < 0.5:
            cv2.circle(layer, c, int(r * FP), v, -1, cv2.LINE_8, SHIFT)
        else:
            cv2.circle(layer, c, int(r * FP), v, max(1, int(r / 5)), cv2.LINE_8, SHIFT)
    return cv2.GaussianBlur(layer, (0, 0), 3.0)


def _smooth_field(rng: np.random.Generator, cells: tuple[int, int]) -> np.ndarray:
    small = rng.normal(0.0, 1.0, cells).astype(np.float32)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)


class Illumination:
    """Uneven, vignetted, slowly drifting background plus sensor noise."""

    def __init__(self, rng: np.random.Generator, fps: float) -> None:
        level = rng.uniform(125.0, 170.0)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        cx, cy = W / 2 + rng.normal(0, 60), H / 2 + rng.normal(0, 45)
        r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (0.5 * np.hypot(W, H)) ** 2
        vignette = 1.0 - rng.uniform(0.08, 0.22) * r2
        base = level * vignette * (1.0 + 0.05 * _smooth_field(rng, (4, 5)))
        self.base = (base + _dust(rng)).astype(np.float32)
        self.drift = (level * 0.03 * _smooth_field(rng, (3, 4))).astype(np.float32)
        self.drift_period = fps * rng.uniform(8.0, 25.0)
        self.drift_phase = rng.uniform(0, 2 * np.pi)
        self.flicker = rng.uniform(0.002, 0.008)
        self.read_noise = rng.uniform(1.8, 3.2)
        self.shot_gain = rng.uniform(0.03, 0.07)
        # The camera is a colour one: a faint per-video tint, applied by lookup (fast).
        ramp = np.arange(256, dtype=np.float32)
        self.lut_b = np.clip(np.rint(ramp * rng.uniform(0.96, 1.0)), 0, 255).astype(np.uint8)
        self.lut_r = np.clip(np.rint(ramp * rng.uniform(0.97, 1.01)), 0, 255).astype(np.uint8)
        self.bank = rng.normal(0.0, 1.0, (H + 64, W + 64)).astype(np.float32)
        self.rng = rng

    def background(self, t: int) -> np.ndarray:
        w = float(np.sin(2 * np.pi * t / self.drift_period + self.drift_phase))
        gain = 1.0 + self.flicker * float(np.sin(0.7 * t))
        return cv2.addWeighted(self.base, gain, self.drift, w, 0.0)

    def finish(self, img: np.ndarray) -> np.ndarray:
        oy, ox = self.rng.integers(0, 64, 2)
        noise = self.bank[oy : oy + H, ox : ox + W]
        sd = cv2.sqrt(cv2.add(img * self.shot_gain, self.read_noise**2))
        img = cv2.add(img, cv2.multiply(noise, sd))
        gray = cv2.convertScaleAbs(img)
        return cv2.merge((cv2.LUT(gray, self.lut_b), gray, cv2.LUT(gray, self.lut_r)))


def sample_debris(rng: np.random.Generator, n: int) -> list[dict]:
    """Unlabelled non-sperm objects: irregular blobs, specks and bright droplets."""
    out = []
    for _ in range(n):
        kind = rng.choice(["blob", "speck", "droplet"], p=[0.4, 0.35, 0.25])
        d = {
            "kind": kind,
            "x": rng.uniform(-20, W + 20),
            "y": rng.uniform(-20, H + 20),
            "layer": int(rng.choice([SHARP, SOFT, BLURRED], p=[0.45, 0.3, 0.25])),
        }
        if kind == "blob":
            # Smooth irregular outline: a few low harmonics on the radius.
            ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
            wobble = sum(rng.uniform(0, 0.25) * np.cos(h * ang + rng.uniform(0, 2 * np.pi)) for h in (2, 3, 5))
            r = rng.uniform(2.0, 11.0) * (1 + wobble)
            d["shape"] = np.stack([r * np.cos(ang), r * np.sin(ang) * rng.uniform(0.5, 1.0)], 1)
            d["dark"], d["bright"] = rng.uniform(25, 80), rng.uniform(0, 30)
        elif kind == "speck":
            k = 5
            r = rng.uniform(0.8, 2.2)
            ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
            d["shape"] = np.stack([r * np.cos(ang), r * np.sin(ang)], 1)
            d["dark"], d["bright"] = rng.uniform(30, 90), 0.0
        else:
            d["r"] = rng.uniform(2.0, 7.0)
            d["bright_v"], d["rim"] = rng.uniform(30, 75), rng.uniform(20, 60)
        out.append(d)
    return out


def draw_debris(canvas: Canvas, debris: list[dict], dx: float, dy: float) -> None:
    for d in debris:
        # Wrap on a canvas larger than the frame so drifting debris re-enters off-screen.
        x = (d["x"] + dx + 30) % (W + 60) - 30
        y = (d["y"] + dy + 30) % (H + 60) - 30
        if d["kind"] == "droplet":
            canvas.droplet(d["layer"], int(x * FP), int(y * FP), d["r"], d["bright_v"], d["rim"])
        else:
            poly = np.rint((d["shape"] + (x, y)) * FP).astype(np.int32)
            canvas.blob(d["layer"], poly, d["dark"], d["bright"])
