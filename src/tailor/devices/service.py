"""The device engine's service layer, shared by the CLI and the API.

``fit_homes`` turns the event log into one :class:`~tailor.devices.model.HomeModel` per home
under ``DIR/homes/``, with ``DIR/index.json`` mapping every device to its home.
:class:`DevicesService` answers from that folder: a device's schedule for the next hours, a
home's insights, and the household's settings (bounds, setback, modes), which live in the
store's meta table so every server process sees the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tailor.devices.data import PURPOSE, DeviceDataError, read_device_events
from tailor.devices.features import slot_of_week
from tailor.devices.model import FEATURES, HomeModel, HomeSettings
from tailor.devices.policy import DecisionParams
from tailor.devices.quality import clean
from tailor.events.privacy import may_use

__all__ = [
    "MAX_HOURS",
    "DevicesService",
    "fit_homes",
    "load_settings",
    "may_personalize",
    "save_settings",
]

logger = logging.getLogger(__name__)

MAX_HOURS = 7 * 24
INDEX_FILE = "index.json"
_SETTINGS_KEY = "devices.settings."


def _folder_name(home_id: str) -> str:
    """A file-system-safe, stable folder name for a (pseudonymized) home id."""
    return hashlib.sha256(home_id.encode()).hexdigest()[:24]


def fit_homes(
    store: Any,
    model_dir: str | Path,
    *,
    slot_minutes: int = 15,
    timezone: str = "UTC",
    max_gap: str = "1h",
    start: datetime | None = None,
    end: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Fit every consenting home's model from the store into ``model_dir`` (atomically).

    Returns a summary: homes fitted, homes skipped with the reason, the data-quality report.
    """
    readings, adjustments = read_device_events(store, start=start, end=end)
    target = Path(model_dir)
    if (
        target.exists()
        and not (target / INDEX_FILE).is_file()
        and (not target.is_dir() or any(target.iterdir()))
    ):
        raise ValueError(
            f"model: {target} exists and is not a devices model folder; choose an empty or "
            "new folder"
        )
    grids, report = clean(readings, freq=f"{slot_minutes}min", max_gap=max_gap)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    index: dict[str, Any] = {"homes": {}, "devices": {}, "slot_minutes": slot_minutes}
    skipped: dict[str, str] = {
        str(home): "no telemetry, only adjustments; send its readings (indoor_temp, motion)"
        for home in sorted(set(adjustments["home_id"]) - set(grids))
    }
    try:
        for number, (home_id, grid) in enumerate(sorted(grids.items()), start=1):
            home_adjustments = adjustments[adjustments["home_id"] == home_id]
            settings = load_settings(store, home_id)
            try:
                model = HomeModel(
                    slot_minutes=slot_minutes, timezone=timezone, settings=settings
                ).fit(grid, home_adjustments, home_id=home_id)
            except ValueError as exc:
                skipped[home_id] = str(exc)
                logger.warning("home %s not fitted: %s", home_id, exc)
            else:
                folder = _folder_name(home_id)
                model.save(staging / "homes" / folder)
                index["homes"][home_id] = folder
                devices = readings.loc[readings["home_id"] == home_id, "device_id"].unique()
                for device in (*devices, *home_adjustments["device_id"].unique()):
                    index["devices"][str(device)] = home_id
            if progress is not None:
                progress(number, len(grids))
        if not index["homes"]:
            # An empty folder would replace the models being served with nothing.
            reasons = "; ".join(f"{home}: {why}" for home, why in skipped.items())
            raise DeviceDataError(f"no home could be fitted ({reasons}); {target} is unchanged")
        index["fitted_at"] = datetime.now(UTC).isoformat()
        index["quality"] = report.to_dict()
        (staging / INDEX_FILE).write_text(json.dumps(index, indent=1, default=str))
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {
        "homes": len(index["homes"]),
        "devices": len(index["devices"]),
        "skipped": skipped,
        "quality": report.to_dict(),
    }


def _swap_in(staging: Path, target: Path) -> None:
    """Move the old folder aside, then the new one in: a server reading it sees one or the
    other for all but the instant between two renames, never a half-deleted folder."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def may_personalize(store: Any, home_id: str) -> bool:
    """Personalization consent for a household: what the API's serving state answers, for
    the CLI."""
    return may_use(store, home_id, PURPOSE)


def load_settings(store: Any, home_id: str) -> HomeSettings:
    """The household's saved settings, or the defaults."""
    text = store.get_meta(_SETTINGS_KEY + home_id)
    if not text:
        return HomeSettings()
    return HomeSettings(**json.loads(text))


def save_settings(store: Any, home_id: str, settings: HomeSettings) -> None:
    store.set_meta(_SETTINGS_KEY + home_id, json.dumps(settings.to_dict()))


class DevicesService:
    """Answers for the homes fitted into one folder.

    Home models are loaded on first use and kept; :meth:`reload_if_changed` picks up a
    re-fit (a rewritten ``index.json``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._index = self._read_index()
        self._models: dict[str, HomeModel] = {}

    def _read_index(self) -> dict[str, Any]:
        path = self.folder / INDEX_FILE
        try:
            index = json.loads(path.read_text())
            if not isinstance(index.get("homes"), dict) or not isinstance(
                index.get("devices"), dict
            ):
                raise ValueError("homes/devices missing")
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{self.folder}: not a devices model folder ({exc}); write one with "
                "`tailor devices fit --model DIR`"
            ) from None
        self._signature = path.stat().st_mtime_ns
        return index

    def reload_if_changed(self) -> bool:
        try:
            changed = (self.folder / INDEX_FILE).stat().st_mtime_ns != self._signature
        except OSError:
            return False
        if changed:
            self._index = self._read_index()
            self._models = {}
        return changed

    def forget(self, homes: list[str]) -> None:
        """Erased households: their models stop answering at once (the next fit leaves them
        out, as their events are gone)."""
        for home in homes:
            self._index["homes"].pop(home, None)
            self._models.pop(home, None)
        gone = set(homes)
        self._index["devices"] = {d: h for d, h in self._index["devices"].items() if h not in gone}

    @property
    def homes(self) -> list[str]:
        return sorted(self._index["homes"])

    def home_of(self, device_id: str) -> str | None:
        """The home (pseudonym) of a device (pseudonym), if it was fitted."""
        return self._index["devices"].get(device_id)

    def model(self, home_id: str) -> HomeModel | None:
        folder = self._index["homes"].get(home_id)
        if folder is None:
            return None
        if home_id not in self._models:
            self._models[home_id] = HomeModel.load(self.folder / "homes" / folder)
        return self._models[home_id]

    def schedule(
        self,
        home_id: str,
        settings: HomeSettings,
        *,
        start: datetime,
        hours: int = 24,
        personalized: bool = True,
    ) -> dict[str, Any]:
        """The plan for the next ``hours``: one entry per change of setpoint or of
        its reason, with why."""
        if not 1 <= hours <= MAX_HOURS:
            raise ValueError(f"hours: {hours}; use 1 to {MAX_HOURS}")
        model = self.model(home_id)
        if model is None:
            raise KeyError(home_id)
        model = model.with_settings(settings)
        params = model.params_with_modes()
        step = pd.Timedelta(minutes=params.slot_minutes)
        first = pd.Timestamp(start).tz_convert("UTC").floor(step)
        index = pd.date_range(first, periods=int(hours * 60 / params.slot_minutes), freq=step)
        slots = slot_of_week(index, params.slot_minutes, params.timezone)
        if not personalized or params.mode == "off":
            planned = np.clip(model.base_program_[slots], settings.lower_c, settings.upper_c)
            reasons = ["your own program: personalization is off"] * len(index)
        else:
            expected = params.expected_occupied[slots]
            planned = np.clip(
                np.where(expected, params.comfort[slots], params.unoccupied_target[slots]),
                params.lower_c,
                params.upper_c,
            )
            modes = settings.modes
            learned = (
                model.base_program_ if modes["schedule"] == "off" else model.schedule_.table_
            )[slots]
            into_absence = _coasts_into_absence(model, params, settings)
            reasons = [
                _reason(
                    model, params, when, int(slot), bool(exp), value, wanted, settings, into_absence
                )
                for when, exp, slot, value, wanted in zip(
                    index, expected, slots, planned, learned, strict=True
                )
            ]
        entries = []
        for when, value, reason in zip(index, planned, reasons, strict=True):
            value = round(float(value), 2)
            # One entry per change of setpoint or of its reason (coasting into the bedtime
            # setting, then the bedtime habit itself, may share a value).
            if entries and (entries[-1]["setpoint_c"], entries[-1]["why"]) == (value, reason):
                continue
            entries.append({"from": when.isoformat(), "setpoint_c": value, "why": reason})
        return {
            "mode": "off" if not personalized else params.mode,
            "personalized": personalized and params.mode != "off",
            "suggestion": params.mode == "suggest",
            "bounds_c": [settings.lower_c, settings.upper_c],
            "slot_minutes": params.slot_minutes,
            "timezone": params.timezone,
            "model_version": params.version,
            "changes": entries,
        }

    def insights(self, home_id: str, settings: HomeSettings) -> dict[str, Any]:
        model = self.model(home_id)
        if model is None:
            raise KeyError(home_id)
        insights = model.with_settings(settings).insights()
        insights["devices"] = sorted(d for d, h in self._index["devices"].items() if h == home_id)
        insights["learned_schedule"] = _weekly(model)
        return insights


def _reason(
    model: HomeModel,
    params: DecisionParams,
    when: pd.Timestamp,
    slot: int,
    expected: bool,
    planned: float,
    wanted: float,
    settings: HomeSettings,
    into_absence: np.ndarray,
) -> str:
    # ``wanted`` is the learned schedule's value (the program's while the schedule is off);
    # compared inside the bounds, so that a bound is not taken for coasting.
    bounded = min(max(wanted, settings.lower_c), settings.upper_c)
    if expected and planned < bounded - 0.01:
        if into_absence[slot]:
            return (
                "coasting into eco: the home is usually empty soon, so the heating stops "
                "early; it stays within your comfort tolerance until then"
            )
        return (
            "coasting: the heating stops early before the next lower setting, and the home "
            "stays within your comfort tolerance until then"
        )
    if expected and abs(bounded - wanted) > 0.01:
        side = "upper" if wanted > bounded else "lower"
        return (
            f"{round(planned, 2):g} °C: your {side} bound (the schedule would hold "
            f"{round(wanted, 2):g} °C now)"
        )
    if expected and settings.modes["schedule"] == "off":
        return f"{round(planned, 2):g} °C from your own program: the learned schedule is off"
    if expected:
        return model.explain_slot(when)
    if params.preheating[slot]:  # the modes' parameters: none with pre-heating off
        return "pre-heating: the home is usually occupied soon and needs time to warm up"
    if settings.modes["away"] == "off":
        return "the home is usually empty now, but the setback while away is off"
    return "eco: the home is usually empty now (it returns to comfort when someone is home)"


def _coasts_into_absence(
    model: HomeModel, params: DecisionParams, settings: HomeSettings
) -> np.ndarray:
    """Per slot of the week: whether a coasting stretch through it ends where the home is
    usually empty (before leaving) rather than at a lower setting while someone is home
    (bedtime). One backward pass over two weeks, so a stretch may wrap past Sunday night."""
    schedule = np.clip(model.schedule_.table_, settings.lower_c, settings.upper_c)
    coasting = params.comfort < schedule - 0.01
    flags = np.zeros(params.n_slots, dtype=bool)
    ends_empty = False
    for slot in reversed(range(2 * params.n_slots)):
        slot %= params.n_slots
        if not params.expected_occupied[slot]:
            ends_empty = True
        elif not coasting[slot]:
            ends_empty = False  # the stretch ends at the schedule's own setting
        flags[slot] = ends_empty
    return flags


def _weekly(model: HomeModel) -> dict[str, list[float]]:
    """The learned comfort table by day, for the dashboard's chart."""
    n_day = 1440 // model.slot_minutes
    table = model.schedule_.table_.reshape(7, n_day)
    days = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    return {day: [round(float(v), 2) for v in table[i]] for i, day in enumerate(days)}


def settings_with(current: HomeSettings, changes: dict[str, Any]) -> HomeSettings:
    """``current`` with ``changes`` (bounds, away_c, modes) applied and validated."""
    modes = dict(current.modes)
    for feature, mode in (changes.get("modes") or {}).items():
        if feature == "all":
            modes = dict.fromkeys(FEATURES, mode)
        else:
            modes[feature] = mode
    values = {
        name: changes[name] if changes.get(name) is not None else getattr(current, name)
        for name in ("lower_c", "upper_c", "away_c")
    }
    if not all(math.isfinite(v) for v in values.values()):
        raise ValueError("bounds: finite temperatures required")
    return HomeSettings(**values, modes=modes)
