"""Pseudonymization, the key, and erasure/consent as seen through the import path."""

from __future__ import annotations

import hashlib
import hmac

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailor.config import Settings
from tailor.errors import SecretKeyError
from tailor.events.erasure import (
    erase,
    parse_duration,
    register_erasure_hook,
    unregister_erasure_hook,
)
from tailor.events.importer import _hmac_sql, import_table
from tailor.events.privacy import Pseudonymizer, load_key, write_new_key
from tailor.workspace import open_workspace
from tests.conftest import consent, events_table, view


def test_pseudonym_is_truncated_hmac_sha256_with_namespace():
    key = bytes(range(32))
    p = Pseudonymizer(key)
    expected = hmac.new(key, b"subject\x1falice", hashlib.sha256).hexdigest()[:32]
    assert p.pseudonymize("subject", "alice") == expected
    assert p.pseudonymize("device", "alice") != expected
    assert Pseudonymizer(bytes(32)).pseudonymize("subject", "alice") != expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=20),
    st.binary(min_size=32, max_size=100),
)
def test_sql_hmac_equals_python_reference(raws, key):
    p = Pseudonymizer(key)
    con = duckdb.connect()
    con.register("t", pa.table({"x": pa.array(raws, pa.string())}))
    got = [r[0] for r in con.execute(f"SELECT {_hmac_sql(p, 'subject', 'x')} FROM t").fetchall()]
    assert got == p.pseudonymize_many("subject", raws)
    assert p.pseudonymize_array("subject", pa.array(raws)).to_pylist() == got


def test_key_loading_never_invents_a_key(tmp_path):
    with pytest.raises(SecretKeyError, match="no pseudonymization key"):
        load_key(tmp_path / "missing.key", env_value="")
    with pytest.raises(SecretKeyError, match="too short"):
        load_key(tmp_path / "x", env_value="abcd")
    path = tmp_path / "k" / "secret.key"
    key = write_new_key(path)
    assert load_key(path, env_value="") == key
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_new_key(path)


def test_workspace_refuses_missing_store_and_wrong_key(tmp_path, monkeypatch):
    monkeypatch.delenv("TAILOR_SECRET_KEY", raising=False)
    settings = Settings(store=str(tmp_path / "s.duckdb"), secret_key_file=tmp_path / "key")
    with pytest.raises(SecretKeyError, match="run `tailor init` first"):
        open_workspace(settings)
    with open_workspace(settings, create=True) as ws:
        fingerprint = ws.pseudonymizer.fingerprint
    (tmp_path / "key").unlink()
    with pytest.raises(SecretKeyError, match="no pseudonymization key"):
        open_workspace(settings)
    other = Settings(
        store=str(tmp_path / "s.duckdb"), secret_key_file=tmp_path / "key", secret_key="ab" * 32
    )
    with pytest.raises(SecretKeyError, match=f"created with \\(fingerprint {fingerprint}\\)"):
        open_workspace(other)


def test_raw_ids_never_reach_the_store(store, pseudonymizer):
    raw = {"subject": "alice@example.com", "session": "sess-RAW-1", "device": "dev-RAW-1"}
    table = events_table(
        {
            "event_id": "t1",
            "event_type": "telemetry",
            "subject_id": raw["subject"],
            "occurred_at": "2024-01-01T00:00:00Z",
            "device_id": raw["device"],
            "metric": "t",
            "value": 1.0,
            "context": {"session_id": raw["session"]},
        }
    )
    import_table(store, table, pseudonymizer=pseudonymizer)
    import_table(
        store,
        pa.table(
            {"device_id": [raw["device"]], "owner_id": [raw["subject"]], "home_id": ["home-RAW"]}
        ),
        pseudonymizer=pseudonymizer,
        entity="devices",
    )
    dump = repr(store.read_events(purpose=None).to_pylist()) + repr(
        store.read_entities("devices").to_pylist()
    )
    for value in [*raw.values(), "home-RAW"]:
        assert value not in dump
    assert pseudonymizer.pseudonymize("subject", raw["subject"]) in dump


def test_erasure_runs_hooks_and_reimport_cannot_resurrect(store, pseudonymizer):
    batch = events_table(
        view("e1", "bob"), view("e2", "carol"), consent("c1", "bob", True, "2024-01-01T00:00:00Z")
    )
    import_table(store, batch, pseudonymizer=pseudonymizer)
    seen = []
    register_erasure_hook("test-cache", lambda subject, s: seen.append(subject))
    register_erasure_hook("test-broken", lambda subject, s: 1 / 0)
    try:
        bob = pseudonymizer.pseudonymize("subject", "bob")
        report = erase(store, bob)
    finally:
        unregister_erasure_hook("test-cache")
        unregister_erasure_hook("test-broken")
    assert seen == [bob]
    assert report.hooks["test-cache"] == "ok" and report.hooks["test-broken"].startswith("failed")
    assert not report.complete
    again = import_table(store, batch, pseudonymizer=pseudonymizer)
    assert again.erased_skipped == 2 and again.written == 0
    subjects = set(store.read_events(purpose=None).column("subject_id").to_pylist())
    assert bob not in subjects and pseudonymizer.pseudonymize("subject", "carol") in subjects


def test_revoked_consent_keeps_subject_out_of_engine_queries(store, pseudonymizer):
    import_table(
        store,
        events_table(
            consent("c1", "dan", True, "2024-01-01T00:00:00Z"),
            view("v1", "dan"),
            consent("c2", "eve", True, "2024-01-01T00:00:00Z"),
            view("v2", "eve"),
            consent("c3", "eve", False, "2024-03-01T00:00:00Z"),
        ),
        pseudonymizer=pseudonymizer,
    )
    usable = store.read_events(purpose="personalization", event_types=["view"])
    assert usable.column("subject_id").to_pylist() == [pseudonymizer.pseudonymize("subject", "dan")]


@pytest.mark.parametrize(("text", "hours"), [("36h", 36), ("2d", 48), ("1w", 168)])
def test_parse_duration(text, hours):
    assert parse_duration(text).total_seconds() == hours * 3600


@pytest.mark.parametrize("text", ["", "0d", "10", "3y", "-1d"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
