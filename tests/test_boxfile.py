"""BoxFile reads boxes.parquet a clip or a few frames at a time, giving what pd.read_parquet gives for them."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from visem_pl.tasks.pseudo.boxfile import BoxFile


def _boxes(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for clip in ("1_0_30", "1_30_60", "2_0_30"):
        n = int(rng.integers(20, 40))
        parts.append(
            pd.DataFrame(
                {
                    "clip": clip,
                    "frame": np.sort(rng.integers(0, 12, n)).astype(np.int64),
                    "cls": rng.integers(0, 3, n).astype(np.int8),
                    "cx": rng.random(n).astype(np.float32),
                    "band": rng.choice(["accept", "review", "reject"], n),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("layout", ["per_clip", "mixed"])
def test_reads_as_read_parquet(tmp_path, layout):
    boxes, path = _boxes(), tmp_path / "boxes.parquet"
    if layout == "per_clip":  # as filter writes it: one row group per clip
        with pq.ParquetWriter(path, pa.Table.from_pandas(boxes, preserve_index=False).schema) as writer:
            for _, g in boxes.groupby("clip", sort=True):
                writer.write_table(pa.Table.from_pandas(g, preserve_index=False))
    else:  # row groups of several clips, a clip over several row groups
        boxes.to_parquet(path, index=False, row_group_size=17)
    whole = pd.read_parquet(path)
    bf = BoxFile(path)
    assert list(bf.row_groups()) == list(whole["clip"].unique())
    for clip, g in whole.groupby("clip", sort=False):
        pd.testing.assert_frame_equal(bf.get(clip), g.reset_index(drop=True))
    assert bf.get("9_0_30") is None
    pd.testing.assert_frame_equal(pd.concat([g for _, g in bf.clips()], ignore_index=True), whole)
    pd.testing.assert_frame_equal(bf.scored_frames(), whole[["clip", "frame"]].drop_duplicates().reset_index(drop=True))
    wanted = {("1_30_60", int(whole["frame"].iloc[-1])), ("2_0_30", 3), ("9_0_30", 1)}
    on = [(c, int(f)) in wanted for c, f in zip(whole["clip"], whole["frame"])]
    pd.testing.assert_frame_equal(bf.frames(wanted), whole[on].reset_index(drop=True))
    pd.testing.assert_frame_equal(bf.items(["9_0_30_frame_1"]), whole.iloc[:0].reset_index(drop=True))
    assert list(BoxFile(path, columns=["band", "absent"]).get("2_0_30")) == ["clip", "frame", "band"]
