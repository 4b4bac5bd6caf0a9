"""`visem-pl bench infer --json` and `bench track --json`: the contracts scripts rely on, on tiny runs
(no timing is asserted).

Run from a folder without round-0 weights, bench infer must time an untrained model and say so: at the top
of its stderr and as `"comparable": false`; stdout must be the JSON alone.
"""

from __future__ import annotations

import json
import subprocess

from helpers.project import BIN, left


def test_bench_infer_json_contract(tmp_path):
    proc = subprocess.run(
        [str(BIN / "visem-pl"), "bench", "infer", "--json", "--frames", "8", "--timed-clips", "1", "--repeat", "1"]
        + ["--limit-seconds", "0.02", "--no-extras", "--device", "cpu"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=left(600),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert proc.stderr.lstrip().startswith("NOT COMPARABLE") and result["comparable"] is False
    assert set(result["ratios"]) >= {"ours_over_naive", "ours_over_limit"}
    fps = result["throughput_fps"]
    assert all(fps[k] > 0 for k in ("naive", "ours", "ours_warm", "limit"))
    # The limit is the fastest of every configuration timed, the chosen one among them.
    assert fps["limit"] == max(result["limits"].values()) and fps["limit_config"] in result["limits"]
    assert result["chosen"]["label"] in result["limits"]
    assert {r["label"] for r in result["trial"]} <= set(result["limits"]), "the limit covers every trial candidate"
    assert result["machine"]["cores"] >= 1 and "flags" in result["machine"]


def test_bench_track_json_contract(tmp_path):
    """`visem-pl bench track --json` on a tiny run: every method scored on the truth boxes at both
    strides and timed; without round-0 weights the end-to-end part is skipped, and it says so."""
    from visem_pl.tasks.tracking.link import METHODS

    names = {m for m in METHODS if m != "trackpy"} | {"trackpy", "trackpy+predictor"}

    proc = subprocess.run(
        [str(BIN / "visem-pl"), "bench", "track", "--json", "--clips", "1", "--frames", "30", "--repeat", "1"]
        + ["--long-frames", "60"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=left(600),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert {(r["method"], r["stride"]) for r in result["tracker_alone"]} == {(m, s) for m in names for s in (1, 3)}
    assert all(0 < r["idf1"] <= 1 and r["clips"] == 1 for r in result["tracker_alone"])
    assert result["end_to_end"] is None and "models/round-0/weights.pt" in result["note"]
    assert {(r["method"], r["stride"]) for r in result["speed"]} == {(m, s) for m in names for s in (1, 3)}
    assert all(r["frames"] == 60 // r["stride"] and r["seconds"] > 0 for r in result["speed"])
