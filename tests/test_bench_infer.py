"""`visem-pl bench infer --json`: the contract scripts rely on, on a tiny run (no timing is asserted).

Run from a folder without round-0 weights, it must time an untrained model and say so: at the top
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
