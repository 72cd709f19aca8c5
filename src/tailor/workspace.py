"""Opening a store with its pseudonymization key: the one place the CLI and the API share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tailor.config import Settings, get_settings
from tailor.errors import SecretKeyError
from tailor.events.privacy import KEY_ENV, Pseudonymizer, load_key, write_new_key
from tailor.store import Store, is_postgres_url, open_store

FINGERPRINT = "key_fingerprint"


@dataclass
class Workspace:
    settings: Settings
    store: Store
    pseudonymizer: Pseudonymizer

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _opt_out(settings: Settings) -> list[str]:
    return [p for p, mode in settings.privacy.consent_default.items() if mode == "opt-out"]


def open_workspace(settings: Settings | None = None, *, create: bool = False) -> Workspace:
    """The configured store and key, checked against each other.

    ``create=True`` (``tailor init``) makes a key file when there is none and no
    ``TAILOR_SECRET_KEY``. Otherwise a missing key is an error and so is a key whose
    fingerprint differs from the one the store recorded at creation.
    """
    settings = settings or get_settings()
    store_url = settings.store
    is_new = not is_postgres_url(store_url) and (
        store_url != ":memory:" and not Path(store_url).exists()
    )
    if not create and is_new:
        raise SecretKeyError(
            f"no store at {store_url}: run `tailor init` first (it creates the store and its "
            "pseudonymization key)"
        )
    try:
        key = load_key(settings.secret_key_file, settings.secret_key)
    except SecretKeyError:
        if not create or settings.secret_key:
            raise
        key = write_new_key(settings.secret_key_file)
    pseudonymizer = Pseudonymizer(key)
    store = open_store(store_url, opt_out_purposes=_opt_out(settings))
    recorded = store.get_meta(FINGERPRINT)
    if recorded is None:
        if store.count_events() and not create:
            store.close()
            raise SecretKeyError(
                "this store holds events but no key fingerprint; run `tailor init` with the "
                "key it was written with"
            )
        store.set_meta(FINGERPRINT, pseudonymizer.fingerprint)
    elif recorded != pseudonymizer.fingerprint:
        store.close()
        raise SecretKeyError(
            f"the pseudonymization key (fingerprint {pseudonymizer.fingerprint}) is not the one "
            f"this store was created with (fingerprint {recorded}): ids would no longer match. "
            f"Set {KEY_ENV} or {settings.secret_key_file} to the original key."
        )
    return Workspace(settings, store, pseudonymizer)
