"""The clinical CSV files (participant data, semen analysis, ...): read as UTF-8 with their real headers.

The headers carry non-ASCII characters ("kg/m²", "x10⁶", "Müllerian") and a space after each
comma, so they are always read as UTF-8 with `skipinitialspace`, never with the locale's encoding.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from visem_pl.tasks.dataset import layout
from visem_pl.tasks.dataset.reader import Dataset

MOTILITY_NAMES = ("progressive", "non_progressive", "immotile")


def read_clinical(path: Path | str) -> pd.DataFrame:
    """One clinical CSV as a DataFrame with its exact header; `ID` is an int column.

    Values stay as read (strings such as `Not reported` are kept). For a file with one of the
    five real names, every real column must be present.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, encoding="utf-8", skipinitialspace=True, dtype=str, keep_default_na=False)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}:0: not UTF-8 ({exc.reason}); the real headers contain '²' and '⁶'") from exc
    df.columns = [str(c).strip() for c in df.columns]
    expected = layout.CLINICAL_HEADERS.get(path.name)
    if expected is not None:
        missing = [c for c in expected if c not in df.columns]
        if missing:
            raise ValueError(f"{path}:1: missing column(s) {missing}")
    if "ID" not in df.columns:
        raise ValueError(f"{path}:1: no 'ID' column")
    ids = pd.to_numeric(df["ID"].str.strip(), errors="coerce")
    if ids.isna().any():
        line = int(ids.isna().to_numpy().nonzero()[0][0]) + 2
        raise ValueError(f"{path}:{line}: ID '{df['ID'][ids.isna()].iloc[0]}' is not a participant number")
    df["ID"] = ids.astype(int)
    return df


def motility(dataset: Dataset) -> pd.DataFrame:
    """ID, progressive, non_progressive, immotile (% of sperm, WHO) from the semen analysis CSV.

    Values that are not numbers (e.g. `Not reported`) become NaN.
    """
    path = dataset.csvs.get(layout.SEMEN_CSV)
    if path is None:
        raise FileNotFoundError(f"{dataset.top}: no {layout.SEMEN_CSV} found")
    df = read_clinical(path)
    out = pd.DataFrame({"ID": df["ID"]})
    for name, col in zip(MOTILITY_NAMES, layout.MOTILITY_COLS):
        out[name] = pd.to_numeric(df[col].str.strip(), errors="coerce")
    return out.sort_values("ID", ignore_index=True)
