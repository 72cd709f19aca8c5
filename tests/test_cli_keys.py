"""``tailor keys create/list/revoke`` end to end, on a keys file in a temporary folder."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from tailor.api.keys import KeyRing
from tests._cli import tailor


def create(*args: str) -> str:
    result = tailor("keys", "create", *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.mark.parametrize("command", [["keys"], ["keys", "create"], ["keys", "revoke"]])
def test_keys_commands_explain_themselves(command: list[str]) -> None:
    result = tailor(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_create_prints_the_token_once_and_keeps_its_hash(workdir: Path) -> None:
    result = tailor(
        "keys", "create", "--name", "shop site", "--scope", "recommend", "--scope", "ingest",
        "--tenant", "shop-1", "--rate", "5", "--burst", "10",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("tlr_") and "\n" not in token  # the token alone on stdout
    assert result.output.count(token) == 1  # shown once, nowhere else
    assert "shown only this once" in result.stderr
    assert "Authorization: Bearer" in result.stderr

    path = workdir / ".tailor" / "api_keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = token.split("_", 2)[2]
    text = path.read_text()
    assert secret not in text and hashlib.sha256(secret.encode()).hexdigest() in text

    key = KeyRing.load(path).authenticate(token)
    assert key is not None and key.name == "shop site" and key.tenant == "shop-1"
    assert key.scopes == {"recommend", "ingest"}
    assert (key.rate_per_s, key.burst) == (5.0, 10)


def test_create_takes_its_defaults_from_the_settings(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_file = workdir / "elsewhere" / "keys.json"
    monkeypatch.setenv("TAILOR_API__KEYS_FILE", str(keys_file))
    monkeypatch.setenv("TAILOR_API__DEFAULT_RATE_PER_S", "7.5")
    token = create("--name", "ops", "--scope", "admin")
    key = KeyRing.load(keys_file).authenticate(token)
    assert key is not None and (key.rate_per_s, key.burst) == (7.5, 400) and key.tenant is None
    assert not (workdir / ".tailor").exists()


def test_list_shows_keys_but_no_secret(workdir: Path) -> None:
    first = create("--name", "site", "--scope", "recommend", "--tenant", "shop-1")
    create("--name", "ops", "--scope", "admin")
    result = tailor("keys", "list")
    assert result.exit_code == 0, result.output
    key_id, secret = first.split("_", 2)[1:]
    text = (workdir / ".tailor" / "api_keys.json").read_text()
    digest = json.loads(text)["keys"][0]["secret_sha256"]
    assert key_id in result.output and "shop-1" in result.output and "ops" in result.output
    assert "(all)" in result.output
    assert secret not in result.output and digest not in result.output


def test_list_without_keys_says_how_to_create_one(workdir: Path) -> None:
    result = tailor("keys", "list")
    assert result.exit_code == 0
    assert "tailor keys create" in result.output


def test_revoke(workdir: Path) -> None:
    token = create("--name", "site", "--scope", "ingest")
    key_id = token.split("_", 2)[1]
    result = tailor("keys", "revoke", key_id)
    assert result.exit_code == 0, result.output
    assert f"revoked key {key_id}" in result.output
    path = workdir / ".tailor" / "api_keys.json"
    ring = KeyRing.load(path)
    assert ring.authenticate(token) is None
    assert ring.get(key_id).revoked  # type: ignore[union-attr]
    assert "yes" in tailor("keys", "list").output

    again = tailor("keys", "revoke", key_id)
    assert again.exit_code == 0 and "already revoked" in again.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--name", "x", "--scope", "read"], "--scope: unknown scope(s) read"),
        (["--name", "x", "--scope", "ingest", "--tenant", "Shop One"], "--tenant:"),
        (["--name", "x", "--scope", "ingest", "--rate", "0"], "--rate:"),
        (["--name", "x", "--scope", "ingest", "--burst", "0"], "--burst:"),
        (["--name", " ", "--scope", "ingest"], "--name:"),
    ],
)
def test_create_errors_name_the_option(workdir: Path, args: list[str], says: str) -> None:
    result = tailor("keys", "create", *args)
    assert result.exit_code == 1
    assert says in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert not (workdir / ".tailor" / "api_keys.json").exists()


def test_revoke_an_unknown_key_says_where_to_look(workdir: Path) -> None:
    create("--name", "site", "--scope", "ingest")
    result = tailor("keys", "revoke", "nosuchkey123")
    assert result.exit_code == 1
    assert "tailor keys list" in " ".join(result.stderr.split())


def test_a_broken_keys_file_is_a_clear_error(workdir: Path) -> None:
    path = workdir / ".tailor" / "api_keys.json"
    path.parent.mkdir()
    path.write_text("{ not json")
    for command in (["list"], ["create", "--name", "x", "--scope", "ingest"], ["revoke", "x"]):
        result = tailor("keys", *command)
        assert result.exit_code == 1, command
        message = " ".join(result.stderr.split())
        assert "not a valid API keys file" in message and "Traceback" not in result.output
    assert path.read_text() == "{ not json"  # left as it was
