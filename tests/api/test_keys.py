"""API keys: tokens, hashes on disk, scopes, tenants, reloads, malformed input."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailor.api.keys import (
    SCOPES,
    ApiKey,
    KeyFileError,
    KeyRing,
    KeyValidationError,
)
from tailor.errors import TailorError

LIMITS = {"rate_per_s": 10.0, "burst": 20}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "api_keys.json"


@pytest.fixture
def ring(path: Path) -> KeyRing:
    return KeyRing.load(path)


def _parts(token: str) -> tuple[str, str]:
    prefix, key_id, secret = token.split("_", 2)
    assert prefix == "tlr"
    return key_id, secret


# -- tokens -------------------------------------------------------------------------------


def test_token_round_trip_through_the_file(ring: KeyRing, path: Path) -> None:
    key, token = ring.create(name="site", scopes=["recommend"], tenant="shop-1", **LIMITS)
    ring.save()
    key_id, secret = _parts(token)
    assert key_id == key.key_id and len(key_id) == 12 and len(secret) >= 43

    reloaded = KeyRing.load(path)
    assert reloaded.authenticate(token) == key
    assert reloaded.get(key.key_id) == key
    assert key.scopes == frozenset({"recommend"}) and key.tenant == "shop-1"
    assert key.created_at.tzinfo is not None


def test_tokens_differ_every_time(ring: KeyRing) -> None:
    tokens = {ring.create(name=f"k{i}", scopes=["ingest"], **LIMITS)[1] for i in range(50)}
    assert len(tokens) == 50
    assert len({_parts(t)[0] for t in tokens}) == 50
    assert len(ring) == 50


def test_wrong_secret_fails(ring: KeyRing) -> None:
    _, token = ring.create(name="site", scopes=["ingest"], **LIMITS)
    key_id, secret = _parts(token)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert ring.authenticate(f"tlr_{key_id}_{flipped}") is None
    assert ring.authenticate(f"tlr_{key_id}_{secret[:-1]}") is None
    assert ring.authenticate(f"tlr_{key_id}_{secret}x") is None


def test_secret_of_another_key_fails(ring: KeyRing) -> None:
    _, first = ring.create(name="a", scopes=["ingest"], **LIMITS)
    _, second = ring.create(name="b", scopes=["ingest"], **LIMITS)
    (id_a, secret_a), (id_b, secret_b) = _parts(first), _parts(second)
    assert ring.authenticate(f"tlr_{id_a}_{secret_b}") is None
    assert ring.authenticate(f"tlr_{id_b}_{secret_a}") is None


def test_unknown_key_id_fails(ring: KeyRing) -> None:
    _, token = ring.create(name="site", scopes=["ingest"], **LIMITS)
    _, secret = _parts(token)
    assert ring.authenticate(f"tlr_zzzzzzzzzzzz_{secret}") is None
    assert KeyRing(ring.path).authenticate(token) is None  # an empty ring knows no key


def test_revoked_key_fails_and_is_allowed_nothing(ring: KeyRing, path: Path) -> None:
    key, token = ring.create(name="site", scopes=["admin"], **LIMITS)
    revoked = ring.revoke(key.key_id)
    assert ring.authenticate(token) is None
    assert revoked.revoked and not revoked.allows("admin") and not revoked.may_access("shop")
    ring.save()
    assert KeyRing.load(path).authenticate(token) is None
    assert KeyRing.load(path).get(key.key_id) == revoked  # kept, so its id stays known
    assert ring.revoke(key.key_id) == revoked  # again: no change


def test_revoking_an_unknown_id_names_the_field(ring: KeyRing) -> None:
    with pytest.raises(KeyValidationError, match=r"^key_id: no key 'nope'") as info:
        ring.revoke("nope")
    assert info.value.field == "key_id"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "tlr_",
        "tlr__",
        "Bearer tlr_abcdefghijkl_" + "a" * 43,
        "tlr_abcdefghijkl_" + "a" * 43 + "\n",
        "tlr_ABCDEFGHIJKL_" + "a" * 43,
        "tlr_abcdefghijk_" + "a" * 43,
        "tlr_abcdefghijkl_" + "a" * 31,
        "tlr_abcdefghijkl_" + "a" * 10_000,
        "tlr_abcdefghijkl_" + "é" * 43,
        "xyz_abcdefghijkl_" + "a" * 43,
    ],
)
def test_malformed_tokens_fail_quietly(ring: KeyRing, token: str) -> None:
    ring.create(name="site", scopes=["ingest"], **LIMITS)
    assert ring.authenticate(token) is None


def test_non_string_tokens_fail_quietly(ring: KeyRing) -> None:
    for token in (None, b"tlr_x", 42, ["tlr_"]):
        assert ring.authenticate(token) is None  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_any_text_never_raises(text: str) -> None:
    assert _shared_ring().authenticate(text) is None


@settings(max_examples=100, deadline=None)
@given(secret=st.from_regex(r"[A-Za-z0-9_-]{32,128}", fullmatch=True))
def test_the_right_key_id_with_any_other_secret_fails(secret: str) -> None:
    ring = _shared_ring()
    key_id, real = _parts(_SHARED["token"])
    assert ring.authenticate(f"tlr_{key_id}_{secret}") is (
        ring.get(key_id) if secret == real else None
    )


_SHARED: dict = {}


def _shared_ring() -> KeyRing:
    # Hypothesis runs a test body many times; one ring serves them all.
    if not _SHARED:
        ring = KeyRing("unused.json")
        _SHARED["token"] = ring.create(name="site", scopes=["ingest"], **LIMITS)[1]
        _SHARED["ring"] = ring
    return _SHARED["ring"]


# -- the file -----------------------------------------------------------------------------


def test_file_is_private_and_holds_no_secret(ring: KeyRing, path: Path) -> None:
    _, token = ring.create(name="site", scopes=["ingest", "recommend"], **LIMITS)
    ring.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    key_id, secret = _parts(token)
    assert secret not in text and token not in text
    assert hashlib.sha256(secret.encode()).hexdigest() in text
    assert key_id in text
    assert not [p.name for p in path.parent.iterdir() if p != path]  # no temporary file left


def test_save_tightens_a_file_others_could_read(
    ring: KeyRing, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ring.create(name="site", scopes=["ingest"], **LIMITS)
    ring.save()
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="tailor.api.keys"):
        again = KeyRing.load(path)
    assert "chmod 600" in caplog.text
    again.create(name="other", scopes=["ingest"], **LIMITS)
    again.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_file_is_an_empty_ring(path: Path) -> None:
    ring = KeyRing.load(path)
    assert ring.list() == [] and len(ring) == 0
    assert not path.exists()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{", "not valid JSON"),
        ("[]", "format"),
        ('{"format": "tailor-api-keys", "version": 2, "keys": []}', "version 2"),
        ('{"format": "tailor-api-keys", "version": 1, "keys": {}}', "must be a list"),
    ],
)
def test_malformed_file_names_the_file_and_what_to_do(path: Path, content: str, why: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(KeyFileError) as info:
        KeyRing.load(path)
    message = str(info.value)
    assert str(path) in message and "tailor keys create" in message
    assert isinstance(info.value, TailorError)
    if why != "not valid JSON":
        assert why in message


def _saved_record(ring: KeyRing, path: Path) -> dict:
    ring.create(name="site", scopes=["ingest"], **LIMITS)
    ring.save()
    return json.loads(path.read_text())


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"revokd": True}, "fields"),  # a misspelt field must not leave a key in force
        ({"scopes": ["read"]}, "scopes: unknown scope"),
        ({"scopes": "ingest"}, "scopes must be a list"),
        ({"tenant": "Shop 1"}, "tenant"),
        ({"rate_per_s": 0}, "rate_per_s"),
        ({"burst": True}, "burst"),
        ({"revoked": "no"}, "revoked must be true or false"),
        ({"secret_sha256": "00"}, "secret_sha256"),
        ({"created_at": "2024-01-01T00:00:00"}, "time zone"),
        ({"key_id": "short"}, "bad key_id"),
    ],
)
def test_bad_records_are_refused(ring: KeyRing, path: Path, change: dict, why: str) -> None:
    document = _saved_record(ring, path)
    document["keys"][0].update(change)
    path.write_text(json.dumps(document))
    with pytest.raises(KeyFileError, match=why):
        KeyRing.load(path)


def test_duplicate_key_ids_are_refused(ring: KeyRing, path: Path) -> None:
    document = _saved_record(ring, path)
    document["keys"].append(document["keys"][0])
    path.write_text(json.dumps(document))
    with pytest.raises(KeyFileError, match="appears twice"):
        KeyRing.load(path)


def test_save_refuses_to_overwrite_a_file_changed_since_read(path: Path) -> None:
    first, second = KeyRing.load(path), KeyRing.load(path)
    _, token_a = first.create(name="a", scopes=["ingest"], **LIMITS)
    first.save()
    second.create(name="b", scopes=["ingest"], **LIMITS)
    with pytest.raises(KeyFileError, match="changed since it was read"):
        second.save()
    assert KeyRing.load(path).authenticate(token_a) is not None  # "a" was not lost


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    ring = KeyRing.load(blocker / "api_keys.json")
    ring.create(name="a", scopes=["ingest"], **LIMITS)
    with pytest.raises(KeyFileError, match="cannot write the API keys file"):
        ring.save()


# -- reloading ----------------------------------------------------------------------------


def test_reload_picks_up_revocation_and_new_keys(path: Path) -> None:
    cli = KeyRing.load(path)
    old, old_token = cli.create(name="old", scopes=["ingest"], **LIMITS)
    cli.save()
    server = KeyRing.load(path)
    assert server.authenticate(old_token) == old
    assert server.reload_if_changed(min_interval_s=0) is False  # nothing changed

    cli = KeyRing.load(path)
    cli.revoke(old.key_id)
    _, new_token = cli.create(name="new", scopes=["recommend"], **LIMITS)
    cli.save()
    assert server.authenticate(old_token) is not None  # not reloaded yet
    assert server.reload_if_changed(min_interval_s=0) is True
    assert server.authenticate(old_token) is None
    assert server.authenticate(new_token) is not None


def test_reload_looks_at_most_once_per_interval(path: Path) -> None:
    server = KeyRing.load(path)
    assert server.reload_if_changed(min_interval_s=3600) is False  # first look: no file yet
    cli = KeyRing.load(path)
    _, token = cli.create(name="new", scopes=["ingest"], **LIMITS)
    cli.save()
    assert server.reload_if_changed(min_interval_s=3600) is False  # too soon to look again
    assert server.authenticate(token) is None
    assert server.reload_if_changed(min_interval_s=0) is True
    assert server.authenticate(token) is not None


def test_a_broken_file_keeps_the_last_keys(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cli = KeyRing.load(path)
    _, token = cli.create(name="site", scopes=["ingest"], **LIMITS)
    cli.save()
    server = KeyRing.load(path)
    path.write_text("{ half a file")
    with caplog.at_level(logging.ERROR, logger="tailor.api.keys"):
        assert server.reload_if_changed(min_interval_s=0) is False
    assert "previous keys stay in force" in caplog.text
    assert server.authenticate(token) is not None


def test_deleting_the_file_revokes_every_key(path: Path) -> None:
    cli = KeyRing.load(path)
    _, token = cli.create(name="site", scopes=["ingest"], **LIMITS)
    cli.save()
    server = KeyRing.load(path)
    path.unlink()
    assert server.reload_if_changed(min_interval_s=0) is True
    assert server.authenticate(token) is None


def test_authenticate_while_reloading_from_threads(path: Path) -> None:
    cli = KeyRing.load(path)
    _, token = cli.create(name="site", scopes=["ingest"], **LIMITS)
    cli.save()
    server = KeyRing.load(path)
    failures: list[object] = []
    stop = threading.Event()

    def check() -> None:
        while not stop.is_set():
            if server.authenticate(token) is None:
                failures.append("rejected")
            time.sleep(0)  # let the writer have the GIL too

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for i in range(15):
        writer = KeyRing.load(path)
        writer.create(name=f"extra{i}", scopes=["ingest"], **LIMITS)
        writer.save()
        server.reload_if_changed(min_interval_s=0)
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(server) == 16


# -- scopes, tenants, validation ----------------------------------------------------------


def test_scopes_and_admin_implies_all(ring: KeyRing) -> None:
    ingest, _ = ring.create(name="a", scopes=["ingest"], **LIMITS)
    assert ingest.allows("ingest") and not ingest.allows("recommend")
    assert not ingest.allows("admin")
    admin, _ = ring.create(name="b", scopes=["admin"], **LIMITS)
    assert all(admin.allows(scope) for scope in SCOPES)
    single, _ = ring.create(name="c", scopes="recommend", **LIMITS)
    assert single.scopes == frozenset({"recommend"})


def test_a_misspelt_scope_in_a_route_fails_loudly(ring: KeyRing) -> None:
    admin, _ = ring.create(name="b", scopes=["admin"], **LIMITS)
    with pytest.raises(ValueError, match="unknown scope 'recomend'"):
        admin.allows("recomend")


def test_tenants(ring: KeyRing) -> None:
    shop, _ = ring.create(name="a", scopes=["recommend"], tenant="shop-1", **LIMITS)
    everywhere, _ = ring.create(name="b", scopes=["recommend"], **LIMITS)
    assert shop.may_access("shop-1") and not shop.may_access("shop-2")
    assert not shop.may_access("")
    assert everywhere.may_access("shop-1") and everywhere.may_access("shop-2")


@pytest.mark.parametrize(
    ("settings_", "field"),
    [
        ({"scopes": []}, "scopes"),
        ({"scopes": ["ingest", "read"]}, "scopes"),
        ({"tenant": "Shop"}, "tenant"),
        ({"tenant": "-shop"}, "tenant"),
        ({"tenant": "shop 1"}, "tenant"),
        ({"tenant": "a" * 64}, "tenant"),
        ({"tenant": "shop\n"}, "tenant"),
        ({"tenant": ""}, "tenant"),
        ({"rate_per_s": 0}, "rate_per_s"),
        ({"rate_per_s": -1.0}, "rate_per_s"),
        ({"rate_per_s": float("nan")}, "rate_per_s"),
        ({"rate_per_s": float("inf")}, "rate_per_s"),
        ({"burst": 0}, "burst"),
        ({"burst": 2.5}, "burst"),
        ({"name": "  "}, "name"),
        ({"name": "line\nforged"}, "name"),
        ({"name": "x" * 101}, "name"),
    ],
)
def test_bad_settings_name_the_field(ring: KeyRing, settings_: dict, field: str) -> None:
    arguments = {"name": "site", "scopes": ["ingest"], "tenant": None, **LIMITS, **settings_}
    with pytest.raises(ValueError, match=f"^{field}: ") as info:
        ring.create(**arguments)
    assert isinstance(info.value, KeyValidationError) and info.value.field == field
    assert len(ring) == 0


def test_longest_tenant_name_is_allowed(ring: KeyRing) -> None:
    key, _ = ring.create(name="a", scopes=["ingest"], tenant="a" + "_-9" * 20 + "zz", **LIMITS)
    assert len(key.tenant or "") == 63


# -- nothing secret in text ---------------------------------------------------------------


def test_repr_shows_no_secret_or_hash(ring: KeyRing) -> None:
    key, token = ring.create(name="site", scopes=["ingest"], **LIMITS)
    _, secret = _parts(token)
    digest = hashlib.sha256(secret.encode()).hexdigest()
    for text in (repr(key), str(key), repr(ring), str(ring), repr(ring.list())):
        assert secret not in text and digest not in text
    assert not hasattr(key, "secret_sha256")
    assert isinstance(key, ApiKey)


def test_reload_log_holds_no_secret(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = KeyRing.load(path)
    cli = KeyRing.load(path)
    _, token = cli.create(name="site", scopes=["ingest"], **LIMITS)
    cli.save()
    with caplog.at_level(logging.DEBUG):
        server.reload_if_changed(min_interval_s=0)
        server.authenticate(token[:-1] + "x")
    _, secret = _parts(token)
    assert "reloaded" in caplog.text
    assert secret not in caplog.text
    assert hashlib.sha256(secret.encode()).hexdigest() not in caplog.text
    assert os.path.basename(path) in caplog.text
