"""Settings: one `tailor.toml` plus `TAILOR_...` environment overrides (pydantic-settings)."""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tailor.errors import ConfigError

ConsentDefault = Literal["opt-in", "opt-out"]


class PrivacySettings(BaseModel):
    consent_default: dict[str, ConsentDefault] = Field(
        default_factory=lambda: {
            "personalization": "opt-in",
            "analytics": "opt-in",
            "advertising": "opt-in",
        },
        description=(
            "How a subject with no consent record counts for each purpose: 'opt-in' excludes "
            "them (the default, privacy first), 'opt-out' includes them."
        ),
    )


class ImportSettings(BaseModel):
    max_record_bytes: int = Field(
        default=1_048_576, gt=0, description="Longest accepted line/record of an import file."
    )
    batch_rows: int = Field(default=500_000, gt=0, description="Rows written per batch.")


class ApiSettings(BaseModel):
    keys_file: Path = Field(
        default=Path(".tailor/api_keys.json"),
        description="JSON file of the API keys (hashes only, mode 0600); `tailor keys` edits it.",
    )
    max_batch_events: int = Field(
        default=1000, gt=0, description="Most events one ingest request may carry."
    )
    max_body_bytes: int = Field(
        default=1_048_576, gt=0, description="Largest accepted request body, in bytes."
    )
    ingest_processes: int = Field(
        default=0,
        ge=0,
        le=64,
        description=(
            "Helper processes that read, validate and pseudonymize POST /v1/events bodies "
            "beside each server process; 0 does it in the server's threads. With 1 or more "
            "the event writer no longer waits for that work's interpreter lock: set it on a "
            "server that ingests heavily (see the README's serving benchmark)."
        ),
    )
    max_k: int = Field(default=100, gt=0, description="Most recommendations one request may ask.")
    default_rate_per_s: float = Field(
        default=200.0, gt=0, description="Requests per second a new key may make, sustained."
    )
    default_burst: int = Field(
        default=400, gt=0, description="Requests a new key may make at once before its rate bites."
    )
    opentelemetry: bool = Field(
        default=False,
        description=(
            "Let FastAPI's native OpenTelemetry report to the providers you configured. Off "
            "by default: its spans carry request paths, and those hold raw user ids; the "
            "Prometheus metrics at /metrics never do."
        ),
    )


def parse_duration(text: str) -> float:
    """Seconds of a duration written ``30s``, ``15m``, ``6h`` or ``7d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = str(text).strip()
    try:
        value = float(text[:-1])
        unit = units[text[-1]]
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"{text!r} is not a duration: write e.g. 30s, 15m, 6h or 7d") from None
    if not 0 < value < 1e7:
        raise ValueError(f"{text!r}: a duration must be positive")
    return value * unit


Duration = Annotated[str, AfterValidator(lambda text: (parse_duration(text), text)[1])]


class AlertSettings(BaseModel):
    webhook_url: str | None = Field(
        default=None,
        description=(
            "POST each alert as JSON here (Slack-compatible: a 'text' field); alerts are "
            "always logged and kept in the store for the dashboard."
        ),
    )
    min_ctr: float = Field(
        default=0.0, ge=0, le=1, description="Alert when a served version's CTR falls below."
    )
    min_coverage: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Alert when the share of the catalog shown falls below.",
    )
    min_impressions: int = Field(
        default=100, ge=1, description="KPI alerts wait for this many impressions per version."
    )


class LifecycleSettings(BaseModel):
    """What ``tailor worker`` runs and when, and how a retrained model earns promotion."""

    retrain_every: dict[str, Duration] = Field(
        default_factory=lambda: {"recommend": "1d", "audience": "7d"},
        description="Retraining cadence per engine; leave an engine out to never retrain it.",
    )
    experiments_every: Duration = Field(
        default="5m", description="How often canaries step or roll back and bandits learn."
    )
    kpis_every: Duration = Field(default="15m", description="How often KPIs are computed.")
    rescore_every: Duration = Field(
        default="1d",
        description=(
            "How often the production audience model re-scores the customers (P(alive), churn "
            "risk and value move with every day without a purchase, refit or not)."
        ),
    )
    drift_every: Duration = Field(
        default="1h", description="How often event drift is checked (drift triggers retraining)."
    )
    kpi_window: Duration = Field(default="1d", description="The window each KPI snapshot covers.")
    holdout: Duration = Field(
        default="7d", description="The latest events held out to judge a retrained model."
    )
    promotion_metric: str = Field(
        default="ndcg_at_10", description="The offline metric a retrained model must not lose on."
    )
    promotion_tolerance: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Relative loss on the promotion metric still accepted (0.02: 2%).",
    )
    recommend_model: str = Field(
        default="itemknn", description="The algorithm the worker retrains the recommender with."
    )
    model_dir: Path = Field(
        default=Path(".tailor/models"), description="Where retrained models are saved."
    )
    budget_model: Path | None = Field(
        default=None,
        description=(
            "The budget model folder the `replan-budget` job re-fits (MAP, warm-started) on the "
            "ad_spend and ad_result events and plans with; unset, there is no such job."
        ),
    )
    replan_every: Duration = Field(default="7d", description="How often the budget is re-planned.")
    replan_horizon: int = Field(
        default=4, ge=1, le=366, description="Periods (the model's weeks or days) a re-plan covers."
    )
    replan_budget: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Total budget of a re-plan over its horizon; unset, the recent spend per period "
            "times the horizon (the same level, split better)."
        ),
    )
    devices_model: Path | None = Field(
        default=None,
        description=(
            "The home models folder the `refit-devices` job re-fits on the telemetry and "
            "device_adjustment events (what `tailor serve --devices` answers from); unset, "
            "there is no such job."
        ),
    )
    refit_devices_every: Duration = Field(
        default="1d", description="How often every home's habits are re-learned."
    )
    devices_timezone: str = Field(
        default="UTC", description="The homes' IANA time zone for the `refit-devices` job."
    )
    alerts: AlertSettings = AlertSettings()

    @field_validator("retrain_every")
    @classmethod
    def _retrained_engines(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(RETRAINED_ENGINES))
        if unknown:
            raise ValueError(
                f"no retraining job for {', '.join(unknown)}; the engines the worker retrains "
                f"are {', '.join(RETRAINED_ENGINES)}"
            )
        return value


RETRAINED_ENGINES = ("recommend", "audience")


class Settings(BaseSettings):
    """tailor's configuration.

    Read from ``tailor.toml`` in the working directory (or the file named by
    ``TAILOR_CONFIG``), then overridden by environment variables such as
    ``TAILOR_STORE=postgresql://...`` or ``TAILOR_PRIVACY__CONSENT_DEFAULT='{...}'``.
    """

    model_config = SettingsConfigDict(env_prefix="TAILOR_", env_nested_delimiter="__")

    store: str = Field(
        default=".tailor/tailor.duckdb",
        description="A DuckDB file path, or a postgresql:// URL for the production store.",
    )
    secret_key_file: Path = Field(
        default=Path(".tailor/secret.key"),
        description="File holding the pseudonymization key (TAILOR_SECRET_KEY overrides it).",
    )
    secret_key: str | None = Field(default=None, repr=False)
    privacy: PrivacySettings = PrivacySettings()
    imports: ImportSettings = ImportSettings()
    api: ApiSettings = ApiSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()

    @field_validator("store")
    @classmethod
    def _store_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("store must be a DuckDB path or a postgresql:// URL")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = Path(os.environ.get("TAILOR_CONFIG", "tailor.toml"))
        if not path.is_file():
            if "TAILOR_CONFIG" in os.environ:
                raise FileNotFoundError(f"TAILOR_CONFIG names {path}, which does not exist")
            return {}
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from ``tailor.toml`` and the environment; :class:`ConfigError` naming
    each invalid setting, where to set it, and what was given."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_invalid_settings(exc)) from None


def describe_invalid_settings(exc: ValidationError) -> str:
    """One line per invalid setting: its dotted name, the environment variable that sets
    it, pydantic's complaint and the value given."""
    lines = []
    for error in exc.errors(include_url=False):
        name = ".".join(str(part) for part in error["loc"])
        variable = "TAILOR_" + "__".join(str(part).upper() for part in error["loc"])
        given = ""
        if "input" in error and error["type"] != "missing":
            given = f" (got {error['input']!r})"
        lines.append(f"setting {name} ({variable} or tailor.toml): {error['msg']}{given}")
    return "invalid settings:\n" + "\n".join(lines)
