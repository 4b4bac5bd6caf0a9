"""Head trajectories for the three WHO motility classes.

Every model returns per-frame head centre (x, y) in pixels, body heading (rad, the
direction the head points) and flagellar beat phase (rad), plus the kinematic parameters
that generated them, so the truth can say what a motility estimator should recover.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PROGRESSIVE, NON_PROGRESSIVE, IMMOTILE = "progressive", "non_progressive", "immotile"
MOTILITIES = (PROGRESSIVE, NON_PROGRESSIVE, IMMOTILE)
TWO_PI = 2.0 * np.pi


@dataclass
class Motion:
    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    phase: np.ndarray
    beating: bool  # False: tail frozen (immotile)
    params: dict = field(default_factory=dict)


def _ou(rng: np.random.Generator, n: int, sigma: float, pull: float) -> np.ndarray:
    """Mean-reverting jitter around 0 (Brownian motion held near a point by the glass)."""
    noise = rng.normal(0.0, sigma, n)
    out = np.empty(n)
    acc = 0.0
    keep = 1.0 - pull
    for i in range(n):
        acc = acc * keep + noise[i]
        out[i] = acc
    return out


def progressive(rng, n, x0, y0, heading0, fps, um_per_px, drift) -> Motion:
    """Persistent swimming along a slowly turning heading with lateral head wobble."""
    t = np.arange(n)
    vap_um_s = rng.uniform(25.0, 70.0)
    bcf_hz = rng.uniform(10.0, 20.0)
    alh_amp_px = rng.uniform(1.0, 3.0)  # lateral amplitude; CASA ALH = 2x this
    turn = rng.normal(0.0, 0.25) / fps  # persistent curvature (rad/frame)
    dheading = turn + rng.normal(0.0, 0.01, n)
    dheading[0] = 0.0
    heading = heading0 + np.cumsum(dheading)
    v = vap_um_s / um_per_px / fps
    surge = 1.0 + 0.08 * np.sin(TWO_PI * t / (fps * rng.uniform(1.0, 3.0)) + rng.uniform(0, TWO_PI))
    step = v * surge
    px = x0 + np.concatenate(([0.0], np.cumsum(step[:-1] * np.cos(heading[:-1])))) + drift[0] * t
    py = y0 + np.concatenate(([0.0], np.cumsum(step[:-1] * np.sin(heading[:-1])))) + drift[1] * t
    phase = rng.uniform(0, TWO_PI) + TWO_PI * bcf_hz / fps * t
    lateral = alh_amp_px * np.sin(phase)
    x = px - np.sin(heading) * lateral
    y = py + np.cos(heading) * lateral
    # The head yaws with each beat, which is what makes the wobble visible on the head.
    body = heading + 0.18 * np.cos(phase)
    return Motion(
        x,
        y,
        body,
        phase,
        True,
        {
            "model": "swim",
            "vap_um_s": vap_um_s,
            "bcf_hz": bcf_hz,
            "alh_um": 2 * alh_amp_px * um_per_px,
            "turn_rad_s": turn * fps,
            "radius_um": np.nan,
        },
    )


def non_progressive(rng, n, x0, y0, heading0, fps, um_per_px, drift) -> Motion:
    """Circling on a small radius, or beating in place; no net progression either way."""
    t = np.arange(n)
    bcf_hz = rng.uniform(8.0, 18.0)
    phase = rng.uniform(0, TWO_PI) + TWO_PI * bcf_hz / fps * t
    wander_x = _ou(rng, n, 0.06, 0.01) + drift[0] * t
    wander_y = _ou(rng, n, 0.06, 0.01) + drift[1] * t
    if rng.random() < 0.6:
        radius = rng.uniform(4.0, 14.0)
        vcl_um_s = rng.uniform(12.0, 40.0)
        omega = vcl_um_s / um_per_px / fps / radius * rng.choice([-1.0, 1.0])
        theta = heading0 - np.sign(omega) * np.pi / 2 + omega * t
        wob = rng.uniform(0.3, 1.2) * np.sin(phase)
        x = x0 + radius * np.cos(theta) + wander_x + np.cos(theta) * wob
        y = y0 + radius * np.sin(theta) + wander_y + np.sin(theta) * wob
        heading = theta + np.sign(omega) * np.pi / 2 + 0.2 * np.cos(phase)
        model, radius_um = "circle", radius * um_per_px
    else:
        vcl_um_s = np.nan
        heading = heading0 + np.cumsum(rng.normal(0, 0.01, n)) + 0.3 * np.cos(phase)
        wob = rng.uniform(0.5, 1.5) * np.sin(phase)
        x = x0 + wander_x - np.sin(heading) * wob
        y = y0 + wander_y + np.cos(heading) * wob
        model, radius_um = "in_place", np.nan
    return Motion(
        x,
        y,
        heading,
        phase,
        True,
        {
            "model": model,
            "vap_um_s": np.nan,
            "bcf_hz": bcf_hz,
            "alh_um": np.nan,
            "turn_rad_s": np.nan,
            "radius_um": radius_um,
            "vcl_set_um_s": vcl_um_s,
        },
    )


def immotile(rng, n, x0, y0, heading0, fps, um_per_px, drift, jitter: float = 0.12) -> Motion:
    """Brownian jitter only; the tail keeps one frozen bend."""
    t = np.arange(n)
    x = x0 + _ou(rng, n, jitter, 0.05) + drift[0] * t
    y = y0 + _ou(rng, n, jitter, 0.05) + drift[1] * t
    heading = heading0 + _ou(rng, n, 0.004, 0.02)
    phase = np.full(n, rng.uniform(0, TWO_PI))
    return Motion(
        x,
        y,
        heading,
        phase,
        False,
        {
            "model": "brownian",
            "vap_um_s": 0.0,
            "bcf_hz": 0.0,
            "alh_um": 0.0,
            "turn_rad_s": np.nan,
            "radius_um": np.nan,
        },
    )


MODELS = {PROGRESSIVE: progressive, NON_PROGRESSIVE: non_progressive, IMMOTILE: immotile}


def measured_kinematics(x: np.ndarray, y: np.ndarray, fps: float, um_per_px: float) -> dict:
    """CASA VCL/VSL/LIN over a visible stretch of a track (what an estimator could see)."""
    if len(x) < 2:
        return {"vcl_um_s": np.nan, "vsl_um_s": np.nan, "lin": np.nan}
    dur = (len(x) - 1) / fps
    vcl = float(np.hypot(np.diff(x), np.diff(y)).sum()) * um_per_px / dur
    vsl = float(np.hypot(x[-1] - x[0], y[-1] - y[0])) * um_per_px / dur
    return {"vcl_um_s": vcl, "vsl_um_s": vsl, "lin": vsl / vcl if vcl > 0 else np.nan}
