"""The CDNOW summaries the papers' figures were computed on (skipped without the shared data)."""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pacsv
import pytest

from tailor.datasets.base import DataNotFoundError, dataset_path


def _published(name: str) -> dict[str, np.ndarray]:
    try:
        path = dataset_path("cdnow", name)
    except DataNotFoundError as exc:
        pytest.skip(f"public dataset not available: {exc}")
    table = pacsv.read_csv(path)
    return {c: table[c].to_numpy().astype(float) for c in table.column_names}


@pytest.fixture(scope="session")
def cdnow_summary() -> dict[str, np.ndarray]:
    """frequency, recency, T of the 2,357 customers of the 1/10 sample (39 weeks)."""
    return _published("cdnow_customers_summary.csv")


@pytest.fixture(scope="session")
def cdnow_spend() -> dict[str, np.ndarray]:
    """x and zbar (mean repeat spend) of the same customers."""
    return _published("cdnow_customers_summary_with_transactions.csv")
