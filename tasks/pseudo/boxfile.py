"""Reading a round's boxes.parquet a clip or a few frames at a time.

`filter` writes boxes.parquet one row group per clip (`bands.filter_round`): every box of every clip, about
13 M rows at 502 real-length clips, too many to hold in pandas. The stages after it read what they need
from it here: one clip's boxes at a time (`BoxFile.get`, `BoxFile.clips`), the boxes of a few frames
(`BoxFile.frames`), or the distinct (clip, frame) pairs (`BoxFile.scored_frames`). Each gives the rows
`pd.read_parquet` would give for them, in the file's order, with the same columns and dtypes. A file
written otherwise (a row group holding several clips, a clip over several row groups) reads the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from visem_pl.tasks.dataset import layout


class BoxFile:
    """A boxes.parquet read by row groups. `columns`: the columns to read (those the file lacks are left
    out; `clip` and `frame` are always read), None: all."""

    def __init__(self, path: Path | str, columns: list[str] | None = None):
        self.path = Path(path)
        self.file = pq.ParquetFile(self.path)
        names = self.file.schema_arrow.names
        if columns is not None:
            wanted = ["clip", "frame", *columns]
            columns = [c for c in names if c in wanted]
        self.columns = columns
        self._groups: dict[str, list[int]] | None = None
        self._single: set[int] = set()  # row groups holding one clip only
        self._cached: tuple[int | None, pd.DataFrame | None] = (None, None)

    def empty(self) -> pd.DataFrame:
        """No rows, the columns and dtypes of the file's rows."""
        table = self.file.schema_arrow.empty_table()
        return (table.select(self.columns) if self.columns is not None else table).to_pandas()

    def row_groups(self) -> dict[str, list[int]]:
        """{clip: the row groups holding its boxes}, clips in the order the file first holds them. A row
        group's clip is its statistics' (min = max) where written, else its clip column's values."""
        if self._groups is None:
            meta = self.file.metadata
            k = meta.schema.names.index("clip")
            groups: dict[str, list[int]] = {}
            for i in range(meta.num_row_groups):
                if meta.row_group(i).num_rows == 0:
                    continue
                stats = meta.row_group(i).column(k).statistics
                if stats is not None and stats.has_min_max and stats.min == stats.max:
                    names = [str(stats.min)]
                else:
                    clip = self.file.read_row_group(i, columns=["clip"]).column("clip").to_pandas()
                    names = [str(c) for c in pd.unique(clip)]
                if len(names) == 1:
                    self._single.add(i)
                for name in names:
                    groups.setdefault(name, []).append(i)
            self._groups = groups
        return self._groups

    def _read(self, i: int) -> pd.DataFrame:
        if self._cached[0] != i:  # the last row group read is kept: one row group of several clips reads once
            self._cached = (None, None)
            self._cached = (i, self.file.read_row_group(i, columns=self.columns).to_pandas())
        return self._cached[1]

    def _rows(self, i: int, clip: str) -> pd.DataFrame:
        rows = self._read(i)
        return rows if i in self._single else rows[rows["clip"] == clip]

    def get(self, clip: str) -> pd.DataFrame | None:
        """The clip's boxes in the file's order (index 0..n-1), None when it has none."""
        groups = self.row_groups().get(clip)
        if not groups:
            return None
        parts = [self._rows(i, clip) for i in groups]
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)

    def clips(self) -> Iterator[tuple[str, pd.DataFrame]]:
        """(clip, its boxes) for every clip with boxes, in the file's order."""
        for clip in list(self.row_groups()):
            yield clip, self.get(clip)

    def frames(self, frames: Iterable[tuple[str, int]]) -> pd.DataFrame:
        """The boxes of `frames` [(clip, frame)], clip by clip in the file's order (index 0..n-1); only their clips
        are read."""
        wanted: dict[str, set[int]] = {}
        for clip, frame in frames:
            wanted.setdefault(str(clip), set()).add(int(frame))
        parts = []
        for clip in self.row_groups():  # the file's order
            if clip in wanted:
                rows = self.get(clip)
                parts.append(rows[rows["frame"].isin(wanted[clip])])
        if not parts:
            return self.empty()
        return pd.concat(parts, ignore_index=True)

    def items(self, items: Iterable[str]) -> pd.DataFrame:
        """The boxes of frame items (`layout.frame_item`), as `frames`."""
        return self.frames(layout.split_item(item) for item in items)

    def scored_frames(self) -> pd.DataFrame:
        """The distinct (clip, frame) rows of the file in their first row's order, as
        `pd.read_parquet(path, columns=["clip", "frame"]).drop_duplicates()` gives them (index 0..n-1)."""
        parts = []
        for i in range(self.file.metadata.num_row_groups):
            rows = self.file.read_row_group(i, columns=["clip", "frame"]).to_pandas()
            parts.append(rows.drop_duplicates())
        if not parts:
            return self.file.schema_arrow.empty_table().select(["clip", "frame"]).to_pandas()
        return pd.concat(parts, ignore_index=True).drop_duplicates().reset_index(drop=True)
