"""Interactions from a CSV or Parquet file with named columns (what a shop exports)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from tailor.recommend.interactions import InteractionLog, epoch_ms


def read_interactions(
    path: str | Path,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    weight_col: str | None = None,
) -> InteractionLog:
    """One interaction per row: a user, an item, a time (a timestamp, or an epoch number in
    seconds or milliseconds, told apart by size) and an optional confidence weight (>= 0).
    Errors name the file, the option and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        parquet = path.suffix.lower() in (".parquet", ".pq")
        table = pq.read_table(path) if parquet else pa_csv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from exc
    if table.num_rows == 0:
        raise ValueError(f"{path}: the file holds no interactions")
    options = {"user-col": user_col, "item-col": item_col, "time-col": time_col}
    if weight_col is not None:
        options["weight-col"] = weight_col
    for option, column in options.items():
        if column not in table.column_names:
            raise ValueError(
                f"--{option} {column!r} is not a column of {path.name} "
                f"(it has: {', '.join(table.column_names)})"
            )
    times = table[time_col]
    if pa.types.is_timestamp(times.type):
        times = epoch_ms(times)
    elif not (pa.types.is_integer(times.type) or pa.types.is_floating(times.type)):
        raise ValueError(
            f"--time-col {time_col!r} holds {times.type}, not times: use a timestamp or "
            "a number (epoch) column"
        )
    if times.null_count:
        raise ValueError(f"--time-col {time_col!r} has {times.null_count} empty rows")
    epoch = np.asarray(times.to_numpy(zero_copy_only=False), dtype=np.float64)
    # Numbers are epoch seconds or milliseconds: a number below 1e11 in ms would be before
    # March 1973, so such files are taken to count seconds (MovieLens does).
    numeric = not pa.types.is_timestamp(table[time_col].type)
    if numeric and len(epoch) and np.nanmax(np.abs(epoch)) < 1e11:
        epoch = epoch * 1000.0
    weights = None
    if weight_col:
        weights = np.asarray(table[weight_col].to_numpy(zero_copy_only=False), float)
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise ValueError(
                f"--weight-col {weight_col!r} must hold finite numbers >= 0 in every row"
            )
    try:
        return InteractionLog.from_arrays(
            table[user_col].cast(pa.string()).to_numpy(zero_copy_only=False),
            table[item_col].cast(pa.string()).to_numpy(zero_copy_only=False),
            times=epoch.astype(np.int64),
            weights=weights,
        )
    except (ValueError, pa.ArrowInvalid) as exc:
        raise ValueError(f"{path}: {exc}") from exc
