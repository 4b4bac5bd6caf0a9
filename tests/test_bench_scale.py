"""`visem-pl bench scale --json`: every post-inference stage of a round runs on drawn detections and is
measured; the merge keeps its bound. Sizes are tiny here (no cost is asserted: benchmarks print, tests
check the contract)."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
from helpers.project import BIN, left

STAGES = ["track", "motility", "filter", "review answer", "merge", "quality", "review export", "crops", "report"]


def test_bench_scale_measures_every_stage(tmp_path):
    argv = [str(BIN / "visem-pl"), "bench", "scale", "--json", "--clips", "2", "--clips", "3", "--frames", "60"]
    proc = subprocess.run(argv + ["--workdir", str(tmp_path / "work")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=left(900))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)  # stdout is the JSON alone
    assert [r["clips"] for r in results] == [2, 3]
    for r in results:
        assert list(r["stages"]) == STAGES
        for name, stage in r["stages"].items():
            assert stage["seconds"] > 0 and stage["peak_rss_mb"] > 0, name
        added = {name: stage["dvc_bytes_added"] for name, stage in r["stages"].items()}
        assert all(added[s] > 0 for s in ("track", "filter", "review answer", "merge")), added
        assert all(added[s] == 0 for s in ("quality", "review export", "crops", "report")), added  # not DVC-cached
        assert r["dvc_bytes_added"] == sum(added.values())
        assert r["total_seconds"] >= max(s["seconds"] for s in r["stages"].values())
        assert r["scored_frames"] == r["clips"] * 20 and r["boxes"] > r["scored_frames"]  # 60 frames at stride 3
        folder = tmp_path / "work" / f"clips-{r['clips']}"
        assert len(list((folder / "data/rounds/round-0/predictions").glob("*.parquet"))) == r["clips"]
        frames = pd.read_csv(folder / "data/rounds/round-0/merged/frames.csv")
        pseudo = frames[frames["source"] == "pseudo"]["image"].str.extract(r"/([0-9]+_[0-9]+_[0-9]+)_frame_")[0]
        assert 0 < len(pseudo) and pseudo.value_counts().max() <= 16 and pseudo.nunique() == r["clips"]
        assert r["merged_frames"]["pseudo"] == len(pseudo)
