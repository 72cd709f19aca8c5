"""Errors a user can act on. Each message says what went wrong and what to do next."""


class TailorError(Exception):
    """Base class for errors shown to users without a traceback."""


class ConfigError(TailorError):
    """A setting from ``tailor.toml`` or a ``TAILOR_...`` environment variable is invalid."""


class SecretKeyError(TailorError):
    """The pseudonymization key is missing, malformed or not the store's key."""


class StoreError(TailorError):
    """The store cannot be opened or used."""


class ImportRejectedError(TailorError):
    """An import file has rows that fail validation; nothing was written."""

    def __init__(self, message: str, rejects: list[tuple[int, str]], total_rejected: int):
        super().__init__(message)
        self.rejects = rejects
        self.total_rejected = total_rejected


class ImportFormatError(TailorError):
    """An import file cannot be read at all (format, encoding, mapping)."""


class StoreUnavailable(StoreError):
    """The store failed while writing (e.g. the database went away); nothing is acknowledged.

    Retrying with the same ``event_id``s is safe: each is stored once.
    """
