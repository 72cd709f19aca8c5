"""The model registry: every fitted model of every engine, and the aliases that serve them.

A version records what was fitted (engine, config), on what (the data window: first and last
event time and row counts), how well (offline metrics), where its files are and their
SHA-256, and when. Aliases (``production``, ``candidate``, or any name) point at versions;
promotion and rollback are alias moves, each one transaction in the store, recorded with
who moved it and why, so the history says which version served when. A server started with
an alias follows it (``tailor serve --model-alias production``). With
``TAILOR_MLFLOW_TRACKING_URI`` set, versions and alias moves are also mirrored to MLflow
(``tailor.lifecycle.mlflow_mirror``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tailor.lifecycle import mlflow_mirror
from tailor.store.base import Store

ENGINES = ("recommend", "audience", "budget", "devices")
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
VERSION_LENGTH = 128
MLFLOW_URI = "TAILOR_MLFLOW_TRACKING_URI"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelVersion:
    engine: str
    version: str
    created_at: datetime
    artifact: str
    artifact_sha256: str
    config: dict[str, Any] = field(default_factory=dict)
    data_window: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def _of(cls, row: tuple) -> ModelVersion:
        engine, version, created_at, artifact, sha256, record = row
        described = json.loads(record)
        return cls(engine, version, created_at, artifact, sha256, **described)


@dataclass(frozen=True)
class AliasMove:
    version: str
    previous: str | None
    moved_at: datetime
    moved_by: str
    reason: str


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


def _check_alias(alias: str) -> None:
    if not ALIAS.match(alias):
        raise ValueError(
            f"alias {alias!r}: lower-case letters, digits, '-' or '_', starting with a letter, "
            "at most 32 characters"
        )


def _check_version(version: str) -> None:
    if not version or len(version) > VERSION_LENGTH or not version.isprintable():
        shown = version if len(version) <= 40 else version[:40] + "..."
        raise ValueError(
            f"version {shown!r}: 1 to {VERSION_LENGTH} printable characters "
            "(see `tailor models list`)"
        )


def _mirror(write: Callable[[str], object]) -> None:
    """Pass the tracking URI to ``write`` when ``TAILOR_MLFLOW_TRACKING_URI`` is set. Called
    after the store write: the store is the registry and MLflow a copy, so a failing mirror
    (no extra, unreachable server) is a warning, never a failed or undone registration."""
    uri = os.environ.get(MLFLOW_URI)
    if not uri:
        return
    try:
        write(uri)
    except Exception as exc:
        shown = mlflow_mirror.shown
        log.warning("MLflow mirror to %s failed: %s", shown(uri), shown(str(exc)))


def artifact_hash(path: str | Path) -> str:
    """SHA-256 over a file, or over a folder's files (relative names and contents, in name
    order), so a changed, added or removed file changes it."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{path} holds no files to register")
    for file in files:
        name = file.relative_to(path).as_posix() if path.is_dir() else file.name
        digest.update(name.encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def register(
    store: Store,
    engine: str,
    artifact: str | Path,
    *,
    version: str | None = None,
    config: dict[str, Any] | None = None,
    data_window: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    created_at: datetime | None = None,
) -> ModelVersion:
    """Record a fitted model's files as a new version (default name:
    ``{engine}-{UTC time}-{first 6 hex of the hash}``)."""
    _check_engine(engine)
    path = Path(artifact)
    if not path.exists():
        raise ValueError(f"{path} does not exist: save the model before registering it")
    sha256 = artifact_hash(path)
    created_at = created_at or datetime.now(UTC)
    version = version or f"{engine}-{created_at:%Y%m%dT%H%M%SZ}-{sha256[:6]}"
    _check_version(version)
    described = {
        "config": config or {},
        "data_window": data_window or {},
        "metrics": metrics or {},
    }
    record = json.dumps(described, default=str, sort_keys=True)
    store.add_model_version(engine, version, created_at, str(path.resolve()), sha256, record)
    model = ModelVersion(engine, version, created_at, str(path.resolve()), sha256,
                         **json.loads(record))  # fmt: skip
    _mirror(lambda uri: mlflow_mirror.mirror_version(uri, model))
    return model


def versions(store: Store, engine: str | None = None) -> list[ModelVersion]:
    if engine is not None:
        _check_engine(engine)
    return [ModelVersion._of(row) for row in store.model_versions(engine)]


def get(store: Store, engine: str, version: str) -> ModelVersion:
    _check_version(version)
    for found in versions(store, engine):
        if found.version == version:
            return found
    raise ValueError(f"{engine} has no version {version!r} (see `tailor models list`)")


def resolve(store: Store, engine: str, alias: str) -> ModelVersion:
    """The version ``alias`` points at."""
    _check_engine(engine)
    for _, name, version, _ in store.model_aliases(engine):
        if name == alias:
            return get(store, engine, version)
    raise ValueError(
        f"{engine} has no alias {alias!r}: promote a version first "
        f"(`tailor models promote {engine} VERSION --alias {alias}`)"
    )


def aliases(store: Store, engine: str | None = None) -> dict[tuple[str, str], str]:
    """(engine, alias) → version."""
    return {(e, a): v for e, a, v, _ in store.model_aliases(engine)}


def promote(
    store: Store, engine: str, version: str, *, alias: str = "production", by: str, reason: str
) -> str | None:
    """Point ``alias`` at ``version``; returns the version it pointed at before."""
    _check_engine(engine)
    _check_alias(alias)
    _check_version(version)
    if not by.strip() or not reason.strip():
        raise ValueError("say who moves the alias and why (by, reason): the history keeps it")
    previous = store.move_alias(
        engine, alias, version, moved_at=datetime.now(UTC), moved_by=by, reason=reason
    )
    _mirror(lambda uri: mlflow_mirror.mirror_alias(uri, engine, alias, version))
    return previous


def history(store: Store, engine: str, alias: str) -> list[AliasMove]:
    _check_engine(engine)
    return [AliasMove(*row) for row in store.alias_moves(engine, alias)]


def rollback(store: Store, engine: str, *, alias: str = "production", by: str, reason: str) -> str:
    """Point ``alias`` back at the version it pointed at before its last move; returns it."""
    moves = history(store, engine, alias)
    if not moves or moves[-1].previous is None:
        raise ValueError(f"{engine}'s alias {alias!r} has no earlier version to roll back to")
    target = moves[-1].previous
    promote(store, engine, target, alias=alias, by=by, reason=f"rollback: {reason}")
    return target


def verify(model: ModelVersion) -> bool:
    """Whether the files are still the ones registered."""
    try:
        return artifact_hash(model.artifact) == model.artifact_sha256
    except (OSError, ValueError):
        return False
