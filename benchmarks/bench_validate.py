"""Time `validate` on a real-size VISEM-Tracking tree.

Without `--root` it first builds the label-faithful replica of all 20 annotated videos from the
real `sperm_counts_per_frame.csv` (29,370 frames, 29,196 label files in each of labels/ and
labels_ftid/, 656,335 boxes) into a temporary folder, then times:

- `validate` with the structural JPEG check (the default, what `visem-pl validate` runs);
- optionally `validate --deep` (full JPEG decode) on the first `--deep-videos` videos, next to
  the structural check on the same subset.

Prints one JSON object (seconds, label files/s, label lines/s) and a one-line table.
The page cache is warm (the tree was just written or is read more than once): these are
CPU-bound figures, not cold-disk ones.

    .venv/bin/python benchmarks/bench_validate.py [--root PATH] [--deep-videos 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from visem_pl.tasks.dataset.reader import locate
from visem_pl.tasks.dataset.replica import build_replica
from visem_pl.tasks.dataset.validate import validate


def _timed(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _rates(seconds: float, summary: dict) -> dict:
    files = 2 * summary["label_files"]  # labels/ and labels_ftid/
    lines = 2 * sum(summary["boxes"].values())
    return {
        "seconds": round(seconds, 3),
        "images": summary["images"],
        "label_files": files,
        "label_lines": lines,
        "label_files_per_s": round(files / seconds),
        "label_lines_per_s": round(lines / seconds),
        "images_per_s": round(summary["images"] / seconds),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, help="Existing tree to time (default: build the 20-video replica).")
    ap.add_argument("--workdir", type=Path, default=None, help="Where the temporary replica goes.")
    ap.add_argument("--deep-videos", type=int, default=2, help="Videos to time with --deep (0: skip).")
    ap.add_argument("--repeat", type=int, default=1, help="Runs per measurement; the best is kept.")
    ap.add_argument("--keep", action="store_true", help="Keep the temporary replica.")
    args = ap.parse_args(argv)

    result: dict = {"python": platform.python_version(), "cpus": os.cpu_count()}
    tmp = None
    if args.root is None:
        tmp = Path(tempfile.mkdtemp(prefix="visem-bench-", dir=args.workdir))
        root = tmp / "visem"
        t0 = time.perf_counter()
        expected = build_replica(root)
        result["build_replica_seconds"] = round(time.perf_counter() - t0, 3)
    else:
        root, expected = args.root, None
    try:
        result["root"] = str(root)
        seconds, report = _timed(lambda: validate(root), args.repeat)
        if report.problems:
            raise SystemExit(f"{root} is not valid: {report.problems[0]}")
        if expected is not None and report.summary != expected:
            raise SystemExit(f"summary {report.summary} differs from the replica's {expected}")
        result["summary"] = report.summary
        result["validate"] = _rates(seconds, report.summary)

        if args.deep_videos > 0:
            ds = locate(root)
            subset = replace(
                ds, videos=dict(list(ds.videos.items())[: args.deep_videos]), all_clips=[], odd_clip_files=[]
            )
            result["subset_videos"] = list(subset.videos)
            s_sec, s_rep = _timed(lambda: validate(root, dataset=subset), args.repeat)
            d_sec, d_rep = _timed(lambda: validate(root, deep=True, dataset=subset), args.repeat)
            if s_rep.problems or d_rep.problems:
                raise SystemExit(f"subset is not valid: {(s_rep.problems or d_rep.problems)[0]}")
            result["subset_structural"] = _rates(s_sec, s_rep.summary)
            result["subset_deep"] = _rates(d_sec, d_rep.summary)
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print(json.dumps(result, indent=2))
    v = result["validate"]
    line = (
        f"validate: {v['images']:,} frames, {v['label_files']:,} label files, {v['label_lines']:,} lines "
        f"in {v['seconds']:.2f} s = {v['label_files_per_s']:,} files/s, {v['label_lines_per_s']:,} lines/s"
    )
    if "subset_deep" in result:
        s, d = result["subset_structural"], result["subset_deep"]
        line += (
            f" | videos {result['subset_videos']}: structural {s['seconds']:.2f} s, "
            f"--deep {d['seconds']:.2f} s ({d['images_per_s']:,} frames/s)"
        )
    print(line)
    return result


if __name__ == "__main__":
    main()
