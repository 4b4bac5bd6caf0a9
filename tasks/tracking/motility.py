"""CASA kinematics of each track and the WHO (5th edition) motility classes of a clip.

Definitions (Mortimer's consensus, as OpenCASA implements them; docs/MOTILITY.md):
- VCL: curvilinear path length / time; VSL: first-to-last distance / time; VAP: length of the
  average path (a centred moving average of `vap_window` samples) / time;
- LIN = VSL/VCL, STR = VSL/VAP, WOB = VAP/VCL;
- ALH: 2 x the mean of the local maxima of the head's distance from the average path;
- BCF: crossings of the average path by the head's path, per second.

Sampling: kinematics depend on the sampling rate, so every track is sampled every `frame_step`
video frames (default 3: a default round's infer stride, about 16 Hz at 50 fps) whatever the
stride it was made at; a round at stride 1 or 3 gives the same numbers from the same boxes. The
stride must divide `frame_step`. At 16 Hz, VCL reads lower than a 50-60 Hz CASA's and ALH / BCF
are aliased (flagellar beats of 10-20 Hz need `frame_step: 1`, i.e. `infer.stride: 1`); the classes
use VAP, STR and VSL, which sampling changes little.

Classes (thresholds in params.yaml `motility`, their sources in docs/MOTILITY.md): progressive if
VAP >= `progressive_vap_um_s` and STR >= `progressive_str` (WHO: progression "regardless of speed";
5 um/s is the 6th edition's lower bound of slow progression); otherwise immotile if VCL <
`immotile_vcl_um_s` (the head moves no more than a still head's measured position noise); otherwise
non-progressive. Tracks shorter than `min_track_s` are not classified, nor tracks whose detected boxes
have a mean confidence below `min_track_conf`: what the detector is unsure of all along is mostly not a
sperm in focus (a defocused cell, debris), and such objects sit still, so they would be counted immotile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PR, NP, IM = "progressive", "non_progressive", "immotile"
CLASSES = (PR, NP, IM)
KINEMATICS = ("vcl", "vsl", "vap", "lin", "str", "wob", "alh", "bcf")


@dataclass(frozen=True)
class MotilityConfig:
    um_per_px: float = 0.5  # the synthetic twin's stated calibration; real VISEM publishes none (docs)
    frame_step: int = 3  # video frames between samples (the infer stride must divide it)
    vap_window: int = 5  # samples in the average path's centred moving average (odd)
    min_track_s: float = 0.3  # shorter tracks are not classified
    # Tracks whose detected boxes' mean confidence is lower are not classified (0: every track). Boxes
    # without a confidence (truth boxes, true paths) are not subject to it.
    min_track_conf: float = 0.5
    progressive_vap_um_s: float = 5.0
    progressive_str: float = 0.8
    immotile_vcl_um_s: float = 5.0
    workers: int = 0  # processes for the clips' kinematics (0: one per core; 1: in this process); same outputs
    # Seconds of each clip, from its start, that `infer` also runs at every frame and `track` links for motility
    # (0: the whole clip); None: motility reads the round's own tracks, at the infer stride.
    window_s: float | None = None

    def __post_init__(self):
        if self.window_s is not None and self.window_s < 0:
            raise ValueError(f"motility.window_s must be >= 0 (0: the whole clip) or null, got {self.window_s}")
        if self.vap_window < 3 or self.vap_window % 2 == 0:
            raise ValueError(f"motility.vap_window must be odd and >= 3, got {self.vap_window}")
        if self.frame_step < 1 or self.um_per_px <= 0:
            raise ValueError("motility.frame_step must be >= 1 and motility.um_per_px > 0")
        if not 0.0 <= self.min_track_conf <= 1.0:
            raise ValueError(f"motility.min_track_conf must be in [0, 1], got {self.min_track_conf}")
        if self.workers < 0:
            raise ValueError(f"motility.workers must be >= 0 (0: one per core), got {self.workers}")


def kinematics(xy_um: np.ndarray, dt: float, window: int) -> dict:
    """CASA kinematics of one path (N x 2 positions in micrometres, one every `dt` seconds)."""
    n = len(xy_um)
    out = dict.fromkeys(KINEMATICS, np.nan)
    if n < window + 1:
        return out
    steps = np.linalg.norm(np.diff(xy_um, axis=0), axis=1)
    duration = (n - 1) * dt
    vcl = steps.sum() / duration
    vsl = np.linalg.norm(xy_um[-1] - xy_um[0]) / duration
    kernel = np.ones(window) / window
    avg = np.stack([np.convolve(xy_um[:, k], kernel, mode="valid") for k in (0, 1)], 1)
    vap = np.linalg.norm(np.diff(avg, axis=0), axis=1).sum() / ((len(avg) - 1) * dt)
    # The head's signed distance from the average path, at the samples the average covers.
    half = window // 2
    raw = xy_um[half : n - half]
    tangent = np.gradient(avg, axis=0)
    norm = np.linalg.norm(tangent, axis=1)
    norm[norm == 0] = 1.0
    dev = raw - avg
    signed = (tangent[:, 0] * dev[:, 1] - tangent[:, 1] * dev[:, 0]) / norm
    dist = np.abs(signed)
    peaks = (dist[1:-1] > dist[:-2]) & (dist[1:-1] >= dist[2:])
    alh = 2 * dist[1:-1][peaks].mean() if peaks.any() else 0.0
    crossings = np.count_nonzero(np.diff(np.sign(signed[signed != 0])) != 0)
    bcf = crossings / ((len(signed) - 1) * dt) if len(signed) > 1 else 0.0
    out.update(vcl=vcl, vsl=vsl, vap=vap, alh=alh, bcf=bcf)
    out["lin"] = vsl / vcl if vcl > 0 else np.nan
    out["str"] = vsl / vap if vap > 0 else np.nan
    out["wob"] = vap / vcl if vcl > 0 else np.nan
    return out


def classify(k: dict, cfg: MotilityConfig) -> str:
    if k["vap"] >= cfg.progressive_vap_um_s and k["str"] >= cfg.progressive_str:
        return PR
    if k["vcl"] < cfg.immotile_vcl_um_s:
        return IM
    return NP


def track_kinematics(
    tracks: pd.DataFrame, width: int, height: int, fps: float, stride: int, cfg: MotilityConfig, id_col: str = "track"
) -> pd.DataFrame:
    """One row per track: its kinematics, the mean confidence of its detected boxes (`conf`, NaN without
    confidences) and class (None: too short, or less confident than `cfg.min_track_conf`), from boxes sampled
    every `cfg.frame_step` frames (frames not on that grid are left out; missing samples are interpolated)."""
    if fps <= 0:
        raise ValueError(f"frame rate {fps} is not positive")
    if cfg.frame_step % stride:
        raise ValueError(f"the tracks' stride {stride} does not divide motility.frame_step {cfg.frame_step}")
    dt = cfg.frame_step / fps
    rows = []
    on_grid = tracks[tracks["frame"] % cfg.frame_step == 0]
    if "conf" in tracks.columns:  # over every detected box of the track, on the grid or not
        detected = tracks[tracks["source"] == "detected"] if "source" in tracks.columns else tracks
        confidence = detected.groupby(id_col)["conf"].mean()
    else:
        confidence = pd.Series(dtype=float)
    for tid, g in on_grid.groupby(id_col, sort=True):
        g = g.sort_values("frame").drop_duplicates("frame")
        grid = np.arange(g["frame"].iloc[0], g["frame"].iloc[-1] + 1, cfg.frame_step)
        f = g["frame"].to_numpy()
        x = np.interp(grid, f, g["cx"].to_numpy(np.float64) * width) * cfg.um_per_px
        y = np.interp(grid, f, g["cy"].to_numpy(np.float64) * height) * cfg.um_per_px
        k = kinematics(np.stack([x, y], 1), dt, cfg.vap_window)
        seconds = (len(grid) - 1) * dt
        conf = float(confidence.get(tid, np.nan))
        unsure = not np.isnan(conf) and conf < cfg.min_track_conf
        cls = classify(k, cfg) if seconds >= cfg.min_track_s and not np.isnan(k["vap"]) and not unsure else None
        rows.append({id_col: tid, "seconds": seconds, "conf": conf, **k, "class": cls})
    return pd.DataFrame(rows, columns=[id_col, "seconds", "conf", *KINEMATICS, "class"])


def shares(per_track: pd.DataFrame) -> dict:
    """{pr, np, im} in percent of the classified tracks, and how many there were."""
    done = per_track.dropna(subset=["class"])
    n = len(done)
    pct = {c: (100.0 * float((done["class"] == c).sum()) / n if n else None) for c in CLASSES}
    return {"tracks": n, "pr": pct[PR], "np": pct[NP], "im": pct[IM]}
