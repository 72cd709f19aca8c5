"""Column mappings (``--map map.toml``): how a file's columns become tailor's columns.

```toml
[columns]          # tailor column = column in the file
event_id = "Invoice"
subject_id = "Customer ID"
[constants]        # tailor column = one value for every row
event_type = "purchase"
[values.country]   # translate values; unlisted values pass unchanged; "" means null
"United Kingdom" = "GB"
[options]
timezone = "Europe/London"        # zone of timestamps written without an offset
timestamp_format = "%Y-%m-%d %H:%M:%S"  # strptime format instead of ISO 8601
epoch_unit = "s"                  # numeric timestamps are epoch seconds (or "ms", "us")
number_lines = true               # rows sharing an event_id get line = 0, 1, ... in file order
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tailor.errors import ImportFormatError

EpochUnit = Literal["s", "ms", "us"]
_OPTIONS = {"timezone", "timestamp_format", "epoch_unit", "number_lines"}
_SECTIONS = {"columns", "constants", "values", "options"}


@dataclass(frozen=True)
class ColumnMapping:
    columns: dict[str, str] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    values: dict[str, dict[str, str | None]] = field(default_factory=dict)
    timezone: str | None = None
    timestamp_format: str | None = None
    epoch_unit: EpochUnit | None = None
    number_lines: bool = False

    def check_targets(self, allowed: tuple[str, ...], what: str) -> None:
        """Every mapped target must be a column of ``what``."""
        for section, names in (
            ("columns", self.columns),
            ("constants", self.constants),
            ("values", self.values),
        ):
            unknown = sorted(set(names) - set(allowed))
            if unknown:
                raise ImportFormatError(
                    f"map [{section}]: {', '.join(unknown)} not a column of {what}; "
                    f"known columns: {', '.join(allowed)}"
                )
        both = sorted(set(self.columns) & set(self.constants))
        if both:
            raise ImportFormatError(
                f"map: {', '.join(both)} given in both [columns] and [constants]; keep one"
            )


def load_mapping(path: Path) -> ColumnMapping:
    """Read and check a mapping file; errors name the section and key to fix."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ImportFormatError(f"mapping file {path} not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ImportFormatError(f"{path}: not valid TOML: {exc}") from exc
    return mapping_from_dict(data, origin=str(path))


def mapping_from_dict(data: dict[str, Any], *, origin: str = "map") -> ColumnMapping:
    unknown = sorted(set(data) - _SECTIONS)
    if unknown:
        raise ImportFormatError(
            f"{origin}: unknown section(s) {', '.join(unknown)}; expected "
            f"{', '.join(sorted(_SECTIONS))}"
        )
    columns = data.get("columns", {})
    if not all(isinstance(v, str) and v for v in columns.values()):
        raise ImportFormatError(f"{origin}: [columns] values must be file column names")
    constants = data.get("constants", {})
    values = data.get("values", {})
    for target, table in values.items():
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise ImportFormatError(f"{origin}: [values.{target}] must map strings to strings")
    values = {t: {k: (v or None) for k, v in table.items()} for t, table in values.items()}
    options = data.get("options", {})
    bad = sorted(set(options) - _OPTIONS)
    if bad:
        raise ImportFormatError(
            f"{origin}: unknown option(s) {', '.join(bad)}; expected {', '.join(sorted(_OPTIONS))}"
        )
    timezone = options.get("timezone")
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ImportFormatError(f"{origin}: unknown timezone {timezone!r}") from exc
    unit = options.get("epoch_unit")
    if unit not in (None, "s", "ms", "us"):
        raise ImportFormatError(f"{origin}: epoch_unit must be 's', 'ms' or 'us', not {unit!r}")
    number_lines = options.get("number_lines", False)
    if not isinstance(number_lines, bool):
        raise ImportFormatError(f"{origin}: number_lines must be true or false")
    return ColumnMapping(
        columns=dict(columns),
        constants=dict(constants),
        values=values,
        timezone=timezone,
        timestamp_format=options.get("timestamp_format"),
        epoch_unit=unit,
        number_lines=number_lines,
    )
