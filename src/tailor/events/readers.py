"""Reading CSV, JSONL and Parquet files into Arrow, keeping each record's line number.

Clean files take Arrow's multi-threaded readers. A file those readers refuse (ragged rows,
mixed JSON types, a huge line, bad UTF-8, a cut-off last record) is read again line by line,
so every broken record is reported with its own line number instead of failing the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from tailor.errors import ImportFormatError

FileFormat = Literal["csv", "jsonl", "parquet"]
_SUFFIXES: dict[str, FileFormat] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass
class SourceData:
    """A file's records as Arrow (or a Parquet file read in place) plus what could not be
    parsed at all.

    ``arrow`` has a ``_row`` column: the record's 1-based position among parsed records.
    ``record_lines`` maps it to the line (CSV, JSONL) or row (Parquet) a person looks up.

    A Parquet file is not loaded: ``parquet`` names it and DuckDB scans it where it lies, in
    parallel and a column at a time, so a file far larger than memory imports and no pass
    waits for a full copy into Arrow (which costs more than all of the validation). Its
    Arrow rows are read only when a quarantine report needs them (:attr:`table`).
    """

    arrow: pa.Table | None
    format: FileFormat
    unit: Literal["line", "row"]
    record_lines: np.ndarray | None = None
    structural_rejects: list[tuple[int, str, str]] = field(default_factory=list)
    parquet: Path | None = None
    _metadata: pq.FileMetaData | None = None

    @property
    def table(self) -> pa.Table:
        if self.arrow is None:
            assert self.parquet is not None
            self.arrow = _with_rows(_read_parquet_table(self.parquet))
        return self.arrow

    @property
    def schema(self) -> pa.Schema:
        """The file's columns (without ``_row``)."""
        if self.arrow is None and self._metadata is not None:
            return self._metadata.schema.to_arrow_schema()
        schema = self.table.schema
        index = schema.get_field_index("_row")
        return schema.remove(index) if index >= 0 else schema

    @property
    def num_rows(self) -> int:
        if self.arrow is None and self._metadata is not None:
            return self._metadata.num_rows
        return self.table.num_rows

    def null_count(self, name: str) -> int | None:
        """Missing values in a column, or None where the file does not say (Parquet without
        statistics): callers then treat the column as filled."""
        if self.arrow is not None or self._metadata is None:
            return self.table.column(name).null_count
        metadata, total = self._metadata, 0
        leaves = [i for i in range(metadata.num_columns) if metadata.schema.column(i).path == name]
        if len(leaves) != 1:
            return None
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(leaves[0]).statistics
            if stats is None or not stats.has_null_count:
                return None
            total += stats.null_count
        return total

    def scan_sql(self) -> str | None:
        """A DuckDB table expression reading the Parquet file with ``_row``, if it is one."""
        if self.parquet is None:
            return None
        path = "'" + str(self.parquet).replace("'", "''") + "'"
        return (
            "SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS _row "
            f"FROM read_parquet({path}, file_row_number = true)"
        )

    def lines_of(self, rows: np.ndarray) -> np.ndarray:
        if self.record_lines is None:
            return rows
        return self.record_lines[rows - 1]


def detect_format(path: Path, declared: str | None = None) -> FileFormat:
    if declared:
        if declared not in ("csv", "jsonl", "parquet"):
            raise ImportFormatError(f"unknown format {declared!r}; use csv, jsonl or parquet")
        return declared  # type: ignore[return-value]
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ImportFormatError(
            f"{path.name}: cannot tell the format from the suffix {path.suffix!r}; "
            "use .csv, .jsonl or .parquet, or pass --format"
        )
    return fmt


def read_source(
    path: Path,
    fmt: FileFormat,
    *,
    max_record_bytes: int,
    text_columns: frozenset[str] = frozenset(),
) -> SourceData:
    """Read a file; ``text_columns`` are kept as written (JSON readers would otherwise turn
    timestamps into zone-less values and lose their offsets)."""
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImportFormatError(f"{path}: the file is empty (0 bytes); nothing was imported")
    if fmt == "parquet":
        return _read_parquet(path)
    if fmt == "csv":
        return _read_csv(path, max_record_bytes)
    return _read_jsonl(path, max_record_bytes, text_columns)


def _with_rows(table: pa.Table) -> pa.Table:
    return table.append_column("_row", pa.array(np.arange(1, table.num_rows + 1), pa.int64()))


def _read_parquet(path: Path) -> SourceData:
    """Check that the file is Parquet (its footer comes last, so a cut-off file fails here)
    and read its metadata; the rows stay in the file."""
    try:
        metadata = pq.ParquetFile(path).metadata
        names = metadata.schema.to_arrow_schema().names
    except (pa.ArrowInvalid, OSError) as exc:
        raise ImportFormatError(
            f"{path.name}: cannot read it as Parquet ({exc}); is the file complete?"
        ) from exc
    if "_row" in names or "file_row_number" in names:
        raise ImportFormatError(
            f"{path.name}: the column names _row and file_row_number are reserved; rename them"
        )
    return SourceData(None, "parquet", "row", parquet=path, _metadata=metadata)


def _read_parquet_table(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ImportFormatError(
            f"{path.name}: cannot read it as Parquet ({exc}); is the file complete?"
        ) from exc


# --- CSV ------------------------------------------------------------------------------------


def _physical_lines(path: Path, max_bytes: int) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text or None, reason) per physical line, never holding an oversized one."""
    with path.open("rb") as handle:
        number = 0
        while True:
            line = handle.readline(max_bytes + 1)
            if not line:
                return
            number += 1
            if len(line) > max_bytes and not line.endswith(b"\n"):
                while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                yield number, None, f"line is longer than the {max_bytes:,} byte record limit"
                continue
            try:
                yield number, line.decode("utf-8"), ""
            except UnicodeDecodeError as exc:
                yield number, None, f"not valid UTF-8 text (byte {exc.start})"


def _read_csv(path: Path, max_bytes: int) -> SourceData:
    with path.open("rb") as handle:
        head = handle.readline(max_bytes + 1)
    try:
        header = next(csv.reader([head.decode("utf-8-sig")]))
    except (UnicodeDecodeError, StopIteration, csv.Error) as exc:
        raise ImportFormatError(f"{path.name}: the first line is not a CSV header") from exc
    header = [h.strip() for h in header]
    if len(head) > max_bytes or not any(header):
        raise ImportFormatError(f"{path.name}: the first line is not a CSV header")
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise ImportFormatError(f"{path.name}: header repeats column(s) {', '.join(duplicated)}")
    invalid: list[int] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        invalid.append(1)
        return "skip"

    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(
                column_names=header, skip_rows=1, block_size=max(max_bytes, 1 << 20)
            ),
            parse_options=pa_csv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={h: pa.string() for h in header}, strings_can_be_null=True
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return _read_csv_carefully(path, header, max_bytes)
    if invalid:
        return _read_csv_carefully(path, header, max_bytes)
    table = _with_rows(table)
    lines = _csv_record_lines_if_simple(path, table.num_rows)
    return SourceData(table, "csv", "line", record_lines=lines)


def _csv_record_lines_if_simple(path: Path, records: int) -> np.ndarray | None:
    """Record k starts on line k+1 when no value spans lines and no line is blank."""
    newlines = 0
    blank = False
    last = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            newlines += chunk.count(b"\n")
            blank = blank or b"\n\n" in (last[-1:] + chunk) or b"\n\r\n" in (last[-2:] + chunk)
            last = chunk
    lines = newlines + (0 if last.endswith(b"\n") else 1)
    if lines == records + 1 and not blank:
        return np.arange(2, records + 2, dtype=np.int64)
    return _csv_record_lines(path)


def _csv_record_lines(path: Path) -> np.ndarray:
    starts: list[int] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        previous = reader.line_num
        for record in reader:
            if record:
                starts.append(previous + 1)
            previous = reader.line_num
    return np.asarray(starts, dtype=np.int64)


def _read_csv_carefully(path: Path, header: list[str], max_bytes: int) -> SourceData:
    rejects: list[tuple[int, str, str]] = []
    bad_lines: dict[int, str] = {}
    records: list[list[str]] = []
    starts: list[int] = []
    csv.field_size_limit(max(max_bytes, 1 << 17))

    def lines() -> Iterator[str]:
        for number, text, reason in _physical_lines(path, max_bytes):
            if number == 1:
                continue
            if text is None:
                bad_lines[number] = reason
                yield "\n"
            else:
                yield text

    reader = csv.reader(lines())
    previous = 1
    try:
        for record in reader:
            start = previous + 1
            previous = reader.line_num + 1
            if start in bad_lines:
                rejects.append((start, bad_lines.pop(start), ""))
                continue
            if not record or record == [""]:
                continue
            if len(record) != len(header):
                rejects.append(
                    (
                        start,
                        f"expected {len(header)} fields, found {len(record)}",
                        ",".join(record)[:200],
                    )
                )
                continue
            records.append(record)
            starts.append(start)
    except csv.Error as exc:
        rejects.append((previous + 1, f"cannot parse CSV ({exc}); is the file truncated?", ""))
    rejects += [(n, r, "") for n, r in bad_lines.items()]
    columns = list(zip(*records, strict=True)) if records else [() for _ in header]
    table = pa.table(
        {
            h: pa.array([v if v != "" else None for v in col], pa.string())
            for h, col in zip(header, columns, strict=True)
        }
    )
    return SourceData(
        _with_rows(table),
        "csv",
        "line",
        record_lines=np.asarray(starts, dtype=np.int64),
        structural_rejects=sorted(rejects),
    )


# --- JSONL ----------------------------------------------------------------------------------


def _read_jsonl(path: Path, max_bytes: int, text_columns: frozenset[str]) -> SourceData:
    schema = pa.schema([(name, pa.string()) for name in sorted(text_columns)])
    try:
        table = pa_json.read_json(
            path,
            read_options=pa_json.ReadOptions(block_size=max(max_bytes, 1 << 20)),
            parse_options=pa_json.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="infer"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, UnicodeDecodeError):
        return _read_jsonl_carefully(path, max_bytes)
    starts: list[int] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                starts.append(number)
    if len(starts) != table.num_rows:
        return _read_jsonl_carefully(path, max_bytes)
    return SourceData(
        _with_rows(table), "jsonl", "line", record_lines=np.asarray(starts, dtype=np.int64)
    )


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _read_jsonl_carefully(path: Path, max_bytes: int) -> SourceData:
    rejects: list[tuple[int, str, str]] = []
    rows: list[dict[str, object]] = []
    starts: list[int] = []
    for number, text, reason in _physical_lines(path, max_bytes):
        if text is None:
            rejects.append((number, reason, ""))
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            rejects.append(
                (number, f"not valid JSON ({exc.msg}); is the file truncated?", text[:200])
            )
            continue
        if not isinstance(value, dict):
            rejects.append((number, "a line must hold one JSON object", text[:200]))
            continue
        rows.append(value)
        starts.append(number)
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    table = pa.table(
        {n: pa.array([_json_text(r.get(n)) for r in rows], pa.string()) for n in names}
    )
    return SourceData(
        _with_rows(table),
        "jsonl",
        "line",
        record_lines=np.asarray(starts, dtype=np.int64),
        structural_rejects=rejects,
    )
