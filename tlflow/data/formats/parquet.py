"""parquet: the wanted columns as text, rows numbered from 1."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pandas as pd

from tlflow.data.formats.common import DataError, column_position, missing_column, to_str


def read_parquet(
    path: Path | BinaryIO, source: str, wanted: list[str], optional: list[str]
) -> tuple[list[str], dict[str, list], list[int]]:
    """Columns by name, cells as text (`to_str`); `DataError` for an unreadable file or a missing
    column of `wanted`."""
    try:
        df = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises many types for a corrupt file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{source}: cannot read parquet: {first}") from None
    names = [str(c) for c in df.columns]
    columns: dict[str, list] = {}
    for key in [*wanted, *optional]:
        if key not in names:
            if key in optional:
                continue
            raise missing_column(source, key, names, len(names))
        columns[key] = [to_str(v) for v in df.iloc[:, column_position(source, key, names)].tolist()]
    return names, columns, list(range(1, len(df) + 1))
