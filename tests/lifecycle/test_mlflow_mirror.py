"""The MLflow mirror of the registry: a run per version, alias tags, and never a failed
registration because of it. The mirror does not depend on the store, so DuckDB only."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import pytest

from tailor.lifecycle import mlflow_mirror, registry
from tailor.store import open_store
from tests.lifecycle.test_registry import artifact


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "store.duckdb"))
    yield s
    s.close()


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh SQLite tracking store, named in TAILOR_MLFLOW_TRACKING_URI."""
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv(registry.MLFLOW_URI, uri)
    return uri


def runs(uri: str, engine: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(f"tailor-{engine}")
    return experiment, client.search_runs([experiment.experiment_id])


def test_a_registered_version_becomes_an_mlflow_run(store, tmp_path, tracking_uri):
    created_at = datetime(2024, 5, 1, tzinfo=UTC)
    version = registry.register(
        store, "recommend", artifact(tmp_path / "v1", "one"), version="ease-v1",
        config={"model": "ease", "params": {"l2": 500, "fit": True}, "notes": "x" * 7000},
        data_window={"from": None, "to": "2024-05-01", "rows": 1000},
        metrics={"ndcg@10": 0.48, "users": 12, "ill": float("nan")}, created_at=created_at,
    )  # fmt: skip

    experiment, found = runs(tracking_uri, "recommend")
    assert experiment.name == "tailor-recommend" and len(found) == 1
    run = found[0]
    assert run.info.run_name == "ease-v1" and run.info.status == "FINISHED"
    assert run.info.start_time == int(created_at.timestamp() * 1000)
    assert run.data.params == {
        "config.model": "ease",
        "config.params.l2": "500",
        "config.params.fit": "true",
        "config.notes": "x" * 6000,  # MLflow's param value limit
        "data_window.from": "null",
        "data_window.to": "2024-05-01",
        "data_window.rows": "1000",
    }
    # '@' is no MLflow name character; NaN is no point to plot (the registry keeps both)
    assert run.data.metrics == {"ndcg_10": 0.48, "users": 12.0}
    assert registry.get(store, "recommend", "ease-v1").metrics["ndcg@10"] == 0.48
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("tailor.")}
    assert tags == {
        "tailor.version": "ease-v1",
        "tailor.engine": "recommend",
        "tailor.artifact_sha256": version.artifact_sha256,
        "tailor.artifact": version.artifact,
    }


def test_alias_moves_tag_the_engines_experiment(store, tmp_path, tracking_uri):
    for name in ("v1", "v2"):
        registry.register(store, "audience", artifact(tmp_path / name, name), version=name)
    registry.promote(store, "audience", "v1", by="ann", reason="first")
    registry.promote(store, "audience", "v2", by="ann", reason="better")
    registry.promote(store, "audience", "v2", alias="candidate", by="ci", reason="new")
    experiment, found = runs(tracking_uri, "audience")
    assert sorted(r.info.run_name for r in found) == ["v1", "v2"]
    assert experiment.tags["tailor.alias.production"] == "v2"
    assert experiment.tags["tailor.alias.candidate"] == "v2"

    registry.rollback(store, "audience", by="bob", reason="CTR fell")
    experiment, _ = runs(tracking_uri, "audience")
    assert experiment.tags["tailor.alias.production"] == "v1"


@pytest.mark.parametrize(
    "broken",
    [
        "bogus://ann:secret@nowhere/db",  # no such scheme; the password stays out of the log
        "sqlite:///{tmp}/a-file/mlflow.db",  # a folder MLflow cannot create
    ],
)
def test_a_broken_tracking_uri_warns_and_keeps_the_registration(
    store, tmp_path, tracking_uri, monkeypatch, caplog, broken
):
    (tmp_path / "a-file").write_text("not a folder")
    uri = broken.format(tmp=tmp_path)
    monkeypatch.setenv(registry.MLFLOW_URI, uri)
    with caplog.at_level(logging.WARNING, logger="tailor.lifecycle.registry"):
        registry.register(store, "recommend", artifact(tmp_path / "m", "x"), version="v1")
        assert registry.promote(store, "recommend", "v1", by="ann", reason="first") is None

    assert [v.version for v in registry.versions(store)] == ["v1"]
    assert registry.aliases(store) == {("recommend", "production"): "v1"}
    warnings = [r.getMessage() for r in caplog.records if r.name == "tailor.lifecycle.registry"]
    assert len(warnings) == 2
    assert all(mlflow_mirror.shown(uri) in w for w in warnings)
    assert not any("secret" in w for w in warnings)


@pytest.mark.parametrize("unset", [None, ""])
def test_without_the_variable_nothing_is_mirrored(store, tmp_path, monkeypatch, caplog, unset):
    calls = []

    def refuse(*args):
        calls.append(args)
        raise AssertionError("mirrored without TAILOR_MLFLOW_TRACKING_URI")

    if unset is None:
        monkeypatch.delenv(registry.MLFLOW_URI, raising=False)
    else:
        monkeypatch.setenv(registry.MLFLOW_URI, unset)
    monkeypatch.setattr(mlflow_mirror, "mirror_version", refuse)
    monkeypatch.setattr(mlflow_mirror, "mirror_alias", refuse)
    with caplog.at_level(logging.WARNING, logger="tailor.lifecycle.registry"):
        registry.register(store, "devices", artifact(tmp_path / "m", "x"), version="v1")
        registry.promote(store, "devices", "v1", by="ann", reason="first")
    assert calls == [] and caplog.records == []
    assert registry.resolve(store, "devices", "production").version == "v1"


def test_without_the_extra_mirroring_names_it(store, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    model = registry.ModelVersion("budget", "v1", datetime(2024, 5, 1, tzinfo=UTC), "/m", "ab")
    with pytest.raises(
        RuntimeError, match=r"needs the mlflow extra: pip install 'tailor\[mlflow\]'"
    ):
        mlflow_mirror.mirror_version("sqlite:///mlflow.db", model)
    with pytest.raises(RuntimeError, match="needs the mlflow extra"):
        mlflow_mirror.mirror_alias("sqlite:///mlflow.db", "budget", "production", "v1")

    # ... and a registry asked to mirror without it registers all the same, with a warning
    monkeypatch.setenv(registry.MLFLOW_URI, f"sqlite:///{tmp_path}/mlflow.db")
    with caplog.at_level(logging.WARNING, logger="tailor.lifecycle.registry"):
        registry.register(store, "budget", artifact(tmp_path / "m", "x"), version="v1")
    assert [v.version for v in registry.versions(store, "budget")] == ["v1"]
    assert "tailor[mlflow]" in caplog.text
    assert not (tmp_path / "mlflow.db").exists()


def test_names_and_uris_as_mlflow_and_logs_take_them():
    assert mlflow_mirror.mlflow_name("ndcg@10") == "ndcg_10"
    assert mlflow_mirror.mlflow_name("hit rate/k:5") == "hit rate_k_5"
    assert mlflow_mirror.mlflow_name("..") == "_.."
    assert mlflow_mirror.mlflow_name("") == "_"
    assert mlflow_mirror.shown("postgresql://ann:s3cret@db:5432/mlflow") == (
        "postgresql://ann:***@db:5432/mlflow"
    )
    assert mlflow_mirror.shown("sqlite:///mlruns.db") == "sqlite:///mlruns.db"
