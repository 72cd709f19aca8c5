"""API keys: scoped, optionally held to one tenant, stored as hashes only.

A token reads ``tlr_<key_id>_<secret>``. The key id is public: it names the key in
``tailor keys list``, in logs and in the rate limiter. The secret is shown once, when the key
is created; the keys file keeps only its SHA-256, and is readable by its owner only (0600).

Scopes
    ``ingest`` sends events, ``recommend`` asks for recommendations, ``admin`` manages models
    and keys. **``admin`` implies the other two**: an operator key that cannot read what it
    manages is a nuisance, not a safeguard. Give each client the narrowest scope it needs.
Tenants
    A key with a tenant (a shop) reaches that tenant only. A key without one reaches every
    tenant, whatever its scopes: that suits a single-shop install and an operator's key;
    give every per-shop client a tenant.

One process writes the file (``tailor keys``, through :meth:`KeyRing.save`); a server
follows it with :meth:`KeyRing.reload_if_changed`, so new and revoked keys take effect
without a restart.

Examples
--------
>>> import tempfile, pathlib
>>> ring = KeyRing(pathlib.Path(tempfile.mkdtemp()) / "api_keys.json")
>>> key, token = ring.create(name="shop site", scopes=["recommend"], tenant="shop-1",
...                          rate_per_s=50.0, burst=100)
>>> ring.authenticate(token) == key, key.allows("recommend"), key.allows("ingest")
(True, True, False)
>>> key.may_access("shop-1"), key.may_access("shop-2")
(True, False)
>>> ring.authenticate(token[:-1] + "x") is None
True
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import stat
import tempfile
import threading
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from tailor.errors import TailorError

logger = logging.getLogger(__name__)

Scope = Literal["ingest", "recommend", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
"""Every scope, in the order the help lists them."""

TOKEN_PREFIX = "tlr_"
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}", re.ASCII)
"""A tenant name: lower-case letters, digits, ``_`` and ``-``, at most 63 characters."""

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"  # no "_": it separates the token's parts
_ID_LENGTH = 12
_SECRET_BYTES = 32
_KEY_ID = re.compile(rf"[a-z0-9]{{{_ID_LENGTH}}}", re.ASCII)
# token_urlsafe(32) gives 43 characters; the range leaves room to change the length later.
_TOKEN = re.compile(rf"tlr_([a-z0-9]{{{_ID_LENGTH}}})_([A-Za-z0-9_-]{{32,128}})", re.ASCII)
_MAX_TOKEN_CHARS = 200
_MAX_NAME_CHARS = 100
_FILE_FORMAT = "tailor-api-keys"
_FILE_VERSION = 1


class KeyFileError(TailorError):
    """The keys file cannot be read, parsed or written; the message names the file."""


class KeyValidationError(ValueError):
    """A key's setting is invalid; :attr:`field` names it (``scopes``, ``tenant``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ApiKey:
    """What the API knows about a key: never its secret, nor the secret's hash.

    Attributes
    ----------
    key_id : str
        Public identifier, the middle part of the token.
    name : str
        Who or what uses the key, for people reading ``tailor keys list``.
    scopes : frozenset of str
        Granted scopes; ``admin`` implies every scope (see :meth:`allows`).
    tenant : str or None
        The one tenant the key reaches, or None for every tenant.
    rate_per_s, burst : float, int
        The key's token bucket: sustained requests per second and the most at once.
    created_at : datetime
        When the key was created (UTC).
    revoked : bool
        A revoked key authenticates no request and is allowed nothing.
    """

    key_id: str
    name: str
    scopes: frozenset[str]
    tenant: str | None
    rate_per_s: float
    burst: int
    created_at: datetime
    revoked: bool = False

    def allows(self, scope: str) -> bool:
        """Whether the key grants ``scope``; ``admin`` grants every scope.

        Raises
        ------
        ValueError
            If ``scope`` is not one of :data:`SCOPES`: a misspelt scope in a route must fail
            its first test, not quietly deny every key but an admin's.
        """
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; scopes are {', '.join(SCOPES)}")
        return not self.revoked and (scope in self.scopes or "admin" in self.scopes)

    def may_access(self, tenant: str) -> bool:
        """Whether the key may read or write ``tenant``'s data (a key without tenant: any)."""
        return not self.revoked and (self.tenant is None or self.tenant == tenant)


def validate_key_settings(
    *,
    name: str,
    scopes: Iterable[str] | str,
    tenant: str | None,
    rate_per_s: float,
    burst: int,
) -> tuple[str, frozenset[str], str | None, float, int]:
    """Check a key's settings; return them normalized (name stripped, scopes a frozenset).

    Raises
    ------
    KeyValidationError
        A ``ValueError`` whose message starts with, and whose ``field`` is, the bad setting.
    """
    if not isinstance(name, str) or not name.strip():
        raise KeyValidationError("name", "give the key a name, such as the client that uses it")
    name = name.strip()
    # Names are printed in tables and logs: a control character could forge a log line.
    if len(name) > _MAX_NAME_CHARS or not name.isprintable():
        raise KeyValidationError(
            "name", f"at most {_MAX_NAME_CHARS} printable characters, got {name[:120]!r}"
        )
    granted = frozenset((scopes,) if isinstance(scopes, str) else scopes)
    if not granted:
        raise KeyValidationError("scopes", f"give at least one of {', '.join(SCOPES)}")
    unknown = sorted(str(s) for s in granted if s not in SCOPES)
    if unknown:
        raise KeyValidationError(
            "scopes", f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}"
        )
    if tenant is not None and (not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant)):
        raise KeyValidationError(
            "tenant",
            f"{tenant!r} is not a tenant name: lower-case letters, digits, '_' and '-', "
            "starting with a letter or digit, at most 63 characters",
        )
    if (
        isinstance(rate_per_s, bool)
        or not isinstance(rate_per_s, int | float)
        or not math.isfinite(rate_per_s)
        or rate_per_s <= 0
    ):
        raise KeyValidationError(
            "rate_per_s", f"requests per second must be a number > 0, got {rate_per_s!r}"
        )
    if isinstance(burst, bool) or not isinstance(burst, int) or burst <= 0:
        raise KeyValidationError("burst", f"must be a whole number > 0, got {burst!r}")
    return name, granted, tenant, float(rate_per_s), burst


def _hash_secret(secret: str) -> bytes:
    # The secret is 256 random bits, not a password a person chose: no dictionary or
    # brute force reaches it, so a slow salted hash (bcrypt, argon2) would buy nothing and
    # cost tens of milliseconds per request. One SHA-256 is as strong as the secret itself.
    return hashlib.sha256(secret.encode("ascii")).digest()


def _signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or rewritten; None when there is no file."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class KeyRing:
    """The API keys of one keys file: create, revoke, list, authenticate.

    Parameters
    ----------
    path : Path
        The keys file. :meth:`load` reads it; a new ring is empty until :meth:`save`.

    Notes
    -----
    Thread-safe: a server authenticates from many threads while one of them reloads.
    Changes made with :meth:`create` and :meth:`revoke` stay in memory until :meth:`save`,
    which refuses to overwrite a file that another process changed since this ring read it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        # key_id -> (key, SHA-256 of its secret): one dict so a reader never sees a key
        # from one version of the file paired with a hash from another.
        self._entries: dict[str, tuple[ApiKey, bytes]] = {}
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._checked_at = -math.inf

    # -- reading the file ---------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | str) -> KeyRing:
        """Read a keys file; a missing file gives an empty ring.

        Raises
        ------
        KeyFileError
            If the file cannot be read or is not a keys file; the message says what to do.
        """
        ring = cls(path)
        try:
            ring._signature = _signature(ring.path)
        except OSError as exc:
            raise KeyFileError(f"cannot read the API keys file {ring.path}: {exc}") from exc
        ring._entries = ring._read()
        return ring

    def reload_if_changed(self, *, min_interval_s: float = 1.0) -> bool:
        """Re-read the file if it changed; look at most once per ``min_interval_s``.

        Cheap enough to call on every request: between looks it only reads the clock, and a
        look is one ``stat``. A file that turns unreadable keeps the keys last read (logged
        once per change); a deleted file leaves no key (deleting it revokes every key).

        Returns
        -------
        bool
            True if the keys were re-read.
        """
        now = time.monotonic()
        if now - self._checked_at < min_interval_s:
            return False
        with self._lock:
            self._checked_at = now
            try:
                current = _signature(self.path)
            except OSError as exc:
                logger.error("API keys not reloaded, the previous keys stay in force: %s", exc)
                return False
            if current == self._signature:
                return False
            self._signature = current
            try:
                entries = self._read()
            except KeyFileError as exc:
                logger.error("API keys not reloaded, the previous keys stay in force: %s", exc)
                return False
            self._entries = entries
        active = sum(not key.revoked for key, _ in entries.values())
        logger.info(
            "API keys reloaded from %s: %d active, %d in all", self.path, active, len(entries)
        )
        return True

    def _read(self) -> dict[str, tuple[ApiKey, bytes]]:
        path = self.path
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(
                f"cannot read the API keys file {path}: {exc}; check that it is a file this "
                "user may read (settings: api.keys_file, TAILOR_API__KEYS_FILE)"
            ) from exc
        with suppress(OSError):
            if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
                logger.warning("%s can be read by other users: run `chmod 600 %s`", path, path)
        try:
            document = json.loads(text)
            return self._parse(document)
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(
                f"{path} is not a valid API keys file ({exc}); restore it from a backup, or "
                "move it away and create new keys with `tailor keys create`"
            ) from exc

    @staticmethod
    def _parse(document: Any) -> dict[str, tuple[ApiKey, bytes]]:
        if not isinstance(document, dict) or document.get("format") != _FILE_FORMAT:
            raise ValueError(f"expected a JSON object with format {_FILE_FORMAT!r}")
        if document.get("version") != _FILE_VERSION:
            raise ValueError(f"version {document.get('version')!r}, expected {_FILE_VERSION}")
        records = document.get("keys")
        if not isinstance(records, list):
            raise ValueError("'keys' must be a list")
        expected = {
            "key_id", "name", "scopes", "tenant", "rate_per_s", "burst",
            "created_at", "revoked", "secret_sha256",
        }  # fmt: skip
        entries: dict[str, tuple[ApiKey, bytes]] = {}
        for n, record in enumerate(records):
            where = f"key #{n + 1}"
            if not isinstance(record, dict) or set(record) != expected:
                # Unknown fields are refused too: a misspelt "revoked" must not leave a
                # key in force.
                got = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise ValueError(f"{where}: fields {got}, expected {sorted(expected)}")
            key_id = record["key_id"]
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise ValueError(f"{where}: bad key_id {key_id!r}")
            where = f"key {key_id}"
            if key_id in entries:
                raise ValueError(f"{where} appears twice")
            if not isinstance(record["scopes"], list):
                raise ValueError(f"{where}: scopes must be a list")
            try:
                name, scopes, tenant, rate, burst = validate_key_settings(
                    name=record["name"],
                    scopes=record["scopes"],
                    tenant=record["tenant"],
                    rate_per_s=record["rate_per_s"],
                    burst=record["burst"],
                )
            except KeyValidationError as exc:
                raise ValueError(f"{where}: {exc}") from None
            digest = record["secret_sha256"]
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(f"{where}: secret_sha256 must be 64 hex digits")
            created = datetime.fromisoformat(record["created_at"])
            if created.tzinfo is None:
                raise ValueError(f"{where}: created_at needs a time zone")
            if not isinstance(record["revoked"], bool):
                raise ValueError(f"{where}: revoked must be true or false")
            key = ApiKey(
                key_id=key_id,
                name=name,
                scopes=scopes,
                tenant=tenant,
                rate_per_s=rate,
                burst=burst,
                created_at=created.astimezone(UTC),
                revoked=record["revoked"],
            )
            entries[key_id] = (key, bytes.fromhex(digest))
        return entries

    # -- changing the keys --------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        scopes: Iterable[Scope] | Scope,
        tenant: str | None = None,
        rate_per_s: float,
        burst: int,
    ) -> tuple[ApiKey, str]:
        """Create a key; return it and its token, the only time the token is available.

        Parameters
        ----------
        name : str
            Who or what uses the key.
        scopes : iterable of {'ingest', 'recommend', 'admin'}
            At least one; ``admin`` implies the others.
        tenant : str, optional
            The one tenant the key may reach; None reaches every tenant.
        rate_per_s : float
            Sustained requests per second, > 0.
        burst : int
            Requests allowed at once, > 0.

        Returns
        -------
        key : ApiKey
        token : str
            ``tlr_<key_id>_<secret>``; call :meth:`save` to keep the key.

        Raises
        ------
        KeyValidationError
            A ``ValueError`` naming the invalid setting.
        """
        name, granted, tenant, rate_per_s, burst = validate_key_settings(
            name=name, scopes=scopes, tenant=tenant, rate_per_s=rate_per_s, burst=burst
        )
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        with self._lock:
            key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
            while key_id in self._entries:  # 36**12 ids: a clash is all but impossible
                key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
            key = ApiKey(
                key_id=key_id,
                name=name,
                scopes=granted,
                tenant=tenant,
                rate_per_s=rate_per_s,
                burst=burst,
                created_at=datetime.now(UTC).replace(microsecond=0),
            )
            self._entries = {**self._entries, key_id: (key, _hash_secret(secret))}
        return key, f"{TOKEN_PREFIX}{key_id}_{secret}"

    def revoke(self, key_id: str) -> ApiKey:
        """Mark a key revoked (kept in the file, so its id stays known); call :meth:`save`.

        Revoking a revoked key changes nothing.

        Raises
        ------
        KeyValidationError
            If no key has this id (``field`` is ``key_id``).
        """
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None:
                raise KeyValidationError(
                    "key_id", f"no key {key_id!r} in {self.path}; `tailor keys list` shows the ids"
                )
            key = replace(entry[0], revoked=True)
            self._entries = {**self._entries, key_id: (key, entry[1])}
        return key

    def save(self) -> None:
        """Write the keys file atomically, readable by its owner only (mode 0600).

        Raises
        ------
        KeyFileError
            If another process changed the file since this ring read it (nothing is
            written: run the command again), or the file cannot be written.
        """
        with self._lock:
            if _signature(self.path) != self._signature:
                raise KeyFileError(
                    f"{self.path} changed since it was read (another `tailor keys` command?); "
                    "nothing was written: run the command again"
                )
            document = {
                "format": _FILE_FORMAT,
                "version": _FILE_VERSION,
                "keys": [
                    {
                        "key_id": key.key_id,
                        "name": key.name,
                        "scopes": [s for s in SCOPES if s in key.scopes],
                        "tenant": key.tenant,
                        "rate_per_s": key.rate_per_s,
                        "burst": key.burst,
                        "created_at": key.created_at.isoformat(),
                        "revoked": key.revoked,
                        "secret_sha256": digest.hex(),
                    }
                    for key, digest in self._entries.values()
                ],
            }
            text = json.dumps(document, indent=2) + "\n"
            try:
                self._write_atomically(text)
            except OSError as exc:
                raise KeyFileError(
                    f"cannot write the API keys file {self.path}: {exc}; check that its folder "
                    "exists and is writable (settings: api.keys_file, TAILOR_API__KEYS_FILE)"
                ) from exc
            self._signature = _signature(self.path)

    def _write_atomically(self, text: str) -> None:
        # A temporary file in the same folder, then os.replace: a reader (the server) sees
        # the old file or the new one, never half of one. mkstemp creates it with mode 0600,
        # so the hashes are never readable by others, not even for a moment.
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        # Best effort: make the rename itself survive a crash (not every file system can).
        with suppress(OSError):
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    # -- using the keys -----------------------------------------------------------------

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key a token belongs to, or None; never raises.

        Looks the key up by id (a dict lookup), then compares the secret's hash in
        constant time. Key ids are public, so answering sooner for an unknown id tells an
        attacker nothing; the comparison of hashes is what must not leak timing.
        """
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
            return None
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        entry = self._entries.get(key_id)
        if entry is None:
            return None
        key, digest = entry
        if not hmac.compare_digest(_hash_secret(secret), digest) or key.revoked:
            return None
        return key

    def get(self, key_id: str) -> ApiKey | None:
        """The key with this id, revoked or not, or None."""
        entry = self._entries.get(key_id)
        return None if entry is None else entry[0]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"KeyRing({str(self.path)!r}, {len(self._entries)} keys)"

    def list(self) -> builtins.list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        return [key for key, _ in self._entries.values()]
