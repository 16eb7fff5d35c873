"""Evidently, imported in one place.

Evidently 0.7's legacy test module imports `pandas.core.dtypes.common.infer_dtype_from_object`,
which pandas 3 removed; importing Evidently then fails although nothing tlflow uses calls it (only
the legacy column-type test does). It is put back, as pandas 2 defined it (the scalar type of a
dtype), before Evidently is imported.
"""

from __future__ import annotations

import pandas as pd
import pandas.core.dtypes.common as pandas_common


def _scalar_type(dtype: object) -> type:
    return pd.api.types.pandas_dtype(dtype).type


if not hasattr(pandas_common, "infer_dtype_from_object"):
    pandas_common.infer_dtype_from_object = _scalar_type

from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.metrics import DriftedColumnsCount, ValueDrift  # noqa: E402

__all__ = ["DataDefinition", "Dataset", "DriftedColumnsCount", "Report", "ValueDrift"]
