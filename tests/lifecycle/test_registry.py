"""The model registry on both stores: versions, atomic alias moves with history, rollback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tailor.lifecycle import registry


def artifact(folder, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(text)
    (folder / "arrays.npz").write_bytes(text.encode() * 3)
    return folder


def test_register_promote_and_roll_back(store, tmp_path):
    first = registry.register(
        store, "recommend", artifact(tmp_path / "v1", "one"),
        config={"model": "ease", "l2": 500}, data_window={"to": "2024-05-01", "rows": 1000},
        metrics={"ndcg@10": 0.48}, created_at=datetime(2024, 5, 1, tzinfo=UTC),
    )  # fmt: skip
    registry.register(
        store, "recommend", artifact(tmp_path / "v2", "two"), version="ease-v2",
        metrics={"ndcg@10": 0.49}, created_at=datetime(2024, 6, 1, tzinfo=UTC),
    )  # fmt: skip
    assert first.version.startswith("recommend-20240501T000000Z-")
    listed = registry.versions(store, "recommend")
    assert [v.version for v in listed] == [first.version, "ease-v2"]
    assert listed[0].config == {"model": "ease", "l2": 500} and listed[1].metrics["ndcg@10"] == 0.49
    assert registry.verify(listed[0])

    assert registry.promote(store, "recommend", first.version, by="ann", reason="first") is None
    assert registry.promote(store, "recommend", "ease-v2", by="ann", reason="better") == (
        first.version
    )
    registry.promote(store, "recommend", "ease-v2", alias="candidate", by="ci", reason="new")
    assert registry.resolve(store, "recommend", "production").version == "ease-v2"
    assert registry.aliases(store) == {
        ("recommend", "production"): "ease-v2",
        ("recommend", "candidate"): "ease-v2",
    }
    assert registry.rollback(store, "recommend", by="bob", reason="CTR fell") == first.version
    assert registry.resolve(store, "recommend", "production").version == first.version
    moves = registry.history(store, "recommend", "production")
    assert [(m.version, m.previous, m.moved_by) for m in moves] == [
        (first.version, None, "ann"),
        ("ease-v2", first.version, "ann"),
        (first.version, "ease-v2", "bob"),
    ]
    assert moves[-1].reason == "rollback: CTR fell"


def test_a_changed_artifact_no_longer_verifies(store, tmp_path):
    folder = artifact(tmp_path / "m", "x")
    version = registry.register(store, "audience", folder)
    (folder / "model.json").write_text("tampered")
    assert not registry.verify(version)


def test_bad_requests_change_nothing(store, tmp_path):
    folder = artifact(tmp_path / "m", "x")
    registry.register(store, "recommend", folder, version="v1")
    with pytest.raises(ValueError, match="already has a version 'v1'"):
        registry.register(store, "recommend", folder, version="v1")
    with pytest.raises(ValueError, match="unknown engine"):
        registry.register(store, "nope", folder)
    with pytest.raises(ValueError, match="does not exist"):
        registry.register(store, "recommend", tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no files"):
        (tmp_path / "empty").mkdir()
        registry.register(store, "recommend", tmp_path / "empty")
    with pytest.raises(ValueError, match="1 to 128 printable characters"):
        registry.get(store, "recommend", "x" * 5000)
    with pytest.raises(ValueError, match="1 to 128 printable characters"):
        registry.register(store, "recommend", folder, version="v\n2")
    with pytest.raises(ValueError, match="has no version 'v9'"):
        registry.promote(store, "recommend", "v9", by="ann", reason="typo")
    with pytest.raises(ValueError, match="alias 'Prod!'"):
        registry.promote(store, "recommend", "v1", alias="Prod!", by="ann", reason="x")
    with pytest.raises(ValueError, match="who moves the alias and why"):
        registry.promote(store, "recommend", "v1", by=" ", reason="x")
    with pytest.raises(ValueError, match="no earlier version"):
        registry.rollback(store, "recommend", by="ann", reason="x")
    with pytest.raises(ValueError, match="no alias 'production'"):
        registry.resolve(store, "recommend", "production")
    assert registry.aliases(store) == {}
    assert registry.history(store, "recommend", "production") == []
    assert [v.version for v in registry.versions(store)] == ["v1"]
