"""Keyed pseudonymization of subject, session, device and home ids (HMAC-SHA256).

The key lives outside the store (a file or ``TAILOR_SECRET_KEY``). The store keeps only a
fingerprint of it, so a wrong key is refused instead of silently splitting every person in two.
Each id namespace gets its own derived message prefix: the same raw string used as a subject
id and as a device id yields unrelated pseudonyms.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tailor.errors import SecretKeyError

PSEUDONYM_HEX_CHARS = 32
"""128 bits of the HMAC: collision-free at any realistic number of people (RFC 2104 sec. 5)."""
MIN_KEY_BYTES = 32
KEY_ENV = "TAILOR_SECRET_KEY"


class Pseudonymizer:
    """Maps raw ids to stable pseudonyms under a secret key.

    Parameters
    ----------
    key : bytes
        At least 32 random bytes.

    Examples
    --------
    >>> p = Pseudonymizer(b"k" * 32)
    >>> p.pseudonymize("subject", "alice") == p.pseudonymize("subject", "alice")
    True
    >>> p.pseudonymize("subject", "alice") == p.pseudonymize("device", "alice")
    False
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise SecretKeyError(
                f"the secret key has {len(key)} bytes; at least {MIN_KEY_BYTES} are needed. "
                "Create one with `tailor init` or `python -c 'import secrets; "
                "print(secrets.token_hex(32))'`."
            )
        self._key = key

    hex_chars = PSEUDONYM_HEX_CHARS

    def pads(self) -> tuple[bytes, bytes]:
        """HMAC's inner and outer padded keys (RFC 2104), for computing it in SQL."""
        key = hashlib.sha256(self._key).digest() if len(self._key) > 64 else self._key
        key = key.ljust(64, b"\0")
        return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)

    @property
    def fingerprint(self) -> str:
        """Identifies the key without revealing it (stored in the store's metadata)."""
        return hmac.new(self._key, b"tailor/key-fingerprint", hashlib.sha256).hexdigest()[:16]

    def pseudonymize(self, namespace: str, raw: str) -> str:
        digest = hmac.digest(self._key, f"{namespace}\x1f{raw}".encode(), "sha256")
        return digest.hex()[:PSEUDONYM_HEX_CHARS]

    def pseudonymize_many(self, namespace: str, raws: Iterable[str]) -> list[str]:
        key, prefix = self._key, f"{namespace}\x1f".encode()
        return [
            hmac.digest(key, prefix + raw.encode(), "sha256").hex()[:PSEUDONYM_HEX_CHARS]
            for raw in raws
        ]

    def pseudonymize_array(self, namespace: str, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Pseudonymize a string column, hashing each distinct value once (nulls stay null)."""
        return pseudonymize_column(self.pseudonymize_many, namespace, values)


def pseudonymize_column(
    pseudonymize_many: Callable[[str, list[str]], list[str]],
    namespace: str,
    values: pa.Array | pa.ChunkedArray,
) -> pa.Array:
    """A string column through ``pseudonymize_many``, each distinct value once (nulls stay
    null); shared by :class:`Pseudonymizer` and the API's cache in front of it."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.null_count == len(values):
        return pa.nulls(len(values), pa.string())
    encoded = pc.dictionary_encode(values)
    mapped = pa.array(pseudonymize_many(namespace, encoded.dictionary.to_pylist()), pa.string())
    return pc.take(mapped, encoded.indices)


def generate_key() -> str:
    return secrets.token_hex(32)


def _decode_key(text: str, origin: str) -> bytes:
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode()
    if len(key) < MIN_KEY_BYTES:
        raise SecretKeyError(
            f"the secret key from {origin} is too short ({len(key)} bytes, need "
            f"{MIN_KEY_BYTES}): use 64 hex characters, e.g. from `tailor init`."
        )
    return key


def load_key(key_file: Path, env_value: str | None = None) -> bytes:
    """The pseudonymization key from ``TAILOR_SECRET_KEY`` or ``key_file``.

    Never generates one: a missing key is an error that says how to provide it.
    """
    env_value = env_value if env_value is not None else os.environ.get(KEY_ENV)
    if env_value:
        return _decode_key(env_value, KEY_ENV)
    if key_file.is_file():
        return _decode_key(key_file.read_text(encoding="utf-8"), str(key_file))
    raise SecretKeyError(
        f"no pseudonymization key: set {KEY_ENV} or create {key_file}. For a new store run "
        "`tailor init`, which creates both; for an existing store use the key it was created "
        "with (ids pseudonymized under another key would no longer match)."
    )


def write_new_key(key_file: Path) -> bytes:
    """Create a key file readable only by its owner; refuses to overwrite an existing one."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    text = generate_key()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    return bytes.fromhex(text)


def may_use(store, pseudonym: str, purpose: str) -> bool:
    """Whether a subject's data may be used for ``purpose`` now: not erased, and the latest
    consent record for it is a grant (or there is none and the purpose is opt-out). Checked
    per request: a revocation or erasure takes effect at once, whatever was computed before."""
    if store.is_erased(pseudonym):
        return False
    records = [r for r in store.consent_records(pseudonym) if r.purpose == purpose]
    if records:
        return bool(records[-1].granted)
    return purpose in getattr(store, "opt_out_purposes", frozenset())
