"""A server started with a registry alias serves the version it names and follows promotions
and rollbacks; a missing alias serves the fallback and says why."""

from __future__ import annotations

from pathlib import Path

from tailor.api.state import ServingState
from tailor.lifecycle import registry
from tests.api._serving import save_model, workspace


def test_the_server_follows_its_alias(tmp_path: Path):
    ws = workspace(tmp_path)
    try:
        first = save_model(ws, tmp_path / "m1", model="itemknn")
        second = save_model(ws, tmp_path / "m2", model="ease")
        v1 = registry.register(ws.store, "recommend", tmp_path / "m1", version=first.version)
        v2 = registry.register(ws.store, "recommend", tmp_path / "m2", version=second.version)
        registry.promote(ws.store, "recommend", v1.version, by="ann", reason="first")

        serving = ServingState(ws, model_alias="production", poll_interval_s=None)
        serving.start()
        try:
            assert serving.current().version == v1.version and not serving.current().fallback
            assert serving.reload_if_changed() is False  # nothing moved

            registry.promote(ws.store, "recommend", v2.version, by="ann", reason="better")
            assert serving.reload_if_changed() is True
            assert serving.current().version == v2.version and serving.alias_version == v2.version

            registry.rollback(ws.store, "recommend", by="bob", reason="CTR fell")
            assert serving.reload_if_changed() is True
            assert serving.current().version == v1.version
        finally:
            serving.close()
    finally:
        ws.close()


def test_a_missing_alias_serves_the_fallback_and_says_why(tmp_path: Path):
    ws = workspace(tmp_path)
    try:
        serving = ServingState(ws, model_alias="production", poll_interval_s=None)
        serving.start()
        try:
            loaded = serving.current()
            assert loaded.fallback and "no alias 'production'" in loaded.reason
            assert "tailor models promote" in loaded.reason
        finally:
            serving.close()
    finally:
        ws.close()
