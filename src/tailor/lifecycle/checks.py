"""Input checks the lifecycle's statistics share: a bad value is named by field and row."""

from __future__ import annotations

import numpy as np


def finite_vector(name: str, values: object, *, length: int | None = None) -> np.ndarray:
    """``values`` as a one-dimensional float array of finite numbers (``length`` of them when
    given); otherwise ``ValueError`` naming ``name`` and the first bad row."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if length is not None and len(array) != length:
        raise ValueError(f"{name} has {len(array)} values, expected {length}: one per row")
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{row}] = {float(array[row])!r} must be a finite number")
    return array
