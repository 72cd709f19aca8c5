"""What every dataset loader and simulator returns, and where the public data lives."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from tailor.events.table import conform_entities, conform_events


@dataclass
class Dataset:
    """Events and entities ready for :func:`tailor.events.importer.import_dataset`.

    ``events`` follows :data:`tailor.events.columns.EVENT_SCHEMA` with *raw* (not yet
    pseudonymized) subject, session and device ids and no ``received_at``: tailor's import
    path pseudonymizes and stamps them. Entity tables follow ``ENTITIES[kind].schema``.
    """

    name: str
    events: pa.Table
    users: pa.Table | None = None
    items: pa.Table | None = None
    devices: pa.Table | None = None
    citation: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events = conform_events(self.events)
        for kind in ("users", "items", "devices"):
            table = getattr(self, kind)
            if table is not None:
                setattr(self, kind, conform_entities(kind, table))

    def entities(self) -> dict[str, pa.Table]:
        return {k: t for k in ("users", "items", "devices") if (t := getattr(self, k)) is not None}


class DataNotFoundError(FileNotFoundError):
    pass


def data_dir() -> Path:
    """The folder of public datasets: ``$TAILOR_DATA``, else ``../shared/data`` beside the
    project root (found from the current directory upwards, then from this package)."""
    if env := os.environ.get("TAILOR_DATA"):
        return Path(env)
    here = Path.cwd().resolve()
    candidates = [p / ".." / "shared" / "data" for p in (here, *here.parents)]
    package_root = Path(__file__).resolve().parents[3]
    candidates.append(package_root / ".." / "shared" / "data")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return (here / ".." / "shared" / "data").resolve()


def dataset_path(*parts: str) -> Path:
    """A file or folder below :func:`data_dir`, with an error that says how to fix a miss."""
    path = data_dir().joinpath(*parts)
    if not path.exists():
        raise DataNotFoundError(
            f"{path} not found. Set TAILOR_DATA to the folder holding the public datasets "
            f"(see README, 'Datasets')."
        )
    return path
