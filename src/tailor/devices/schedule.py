"""The preferred setpoint schedule, learned from the occupants' manual adjustments.

A learning thermostat (Nest's "Auto-Schedule") watches people turn the dial and turns the
habits into a schedule. Three rules make that trustworthy, and this module follows them:

1. **A change must repeat to count.** Adjustments are grouped by day type (weekday or
   weekend by default) and time of day; a group becomes a schedule rule only when it happened
   on at least ``min_days`` different days *and* on at least ``min_share`` of the days of that
   type in the learning window. A guest's one-off evening at 23 °C never becomes a habit.
2. **The latest expressed wish holds until the next one.** A rule's setpoint stays in force
   until the next rule, as a learned schedule does, not merely until the device's next
   program change: people set 18 °C as they go to bed and sleep at 18 °C, even though the
   program drops to 16 °C at 23:00 while they cannot object.
3. **Silence is consent only when someone was there to object.** A change point of the
   device's own program survives learning if the household was typically active (moving
   about, from the motion sensors) while its value stood and did not adjust; one that held
   while they slept or were out carries no evidence and gives way to the learned rules.
   Without activity data every program point the occupants did not contradict is kept.

Every rule keeps its evidence so the schedule explains itself: "you lowered it to 18 °C
around 22:40 on 4 of the last 5 weekdays".
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from tailor.devices.features import DEFAULT_SLOT_MINUTES, local_index, slots_per_week

__all__ = ["DAY_TYPES", "ScheduleRule", "SetpointSchedule", "change_points", "describe_rule"]

logger = logging.getLogger(__name__)

DayTypes = Literal["weekday_weekend", "daily", "single"]
DAY_TYPES: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "weekday_weekend": (("weekday", (0, 1, 2, 3, 4)), ("weekend", (5, 6))),
    "daily": tuple(
        (name, (day,))
        for day, name in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    ),
    "single": (("day", (0, 1, 2, 3, 4, 5, 6)),),
}
"""How days are pooled: the name of each day type and its days (0 = Monday)."""
_PLURAL = {"day": "days", "weekday": "weekdays", "weekend": "weekend days"}


@dataclass(frozen=True)
class ScheduleRule:
    """One learned change: from ``minute`` of a ``day_type`` day on, the home wants ``value_c``."""

    day_type: str
    minute: int
    """Minutes after local midnight (the median time of the adjustments behind it)."""
    value_c: float
    direction: Literal["raised", "lowered", "set"]
    support_days: int
    """Distinct days the adjustment was made on."""
    days_of_type: int
    """Days of this type in the learning window."""
    recent_support: int
    """Of the last ``recent_days`` days of this type, on how many it was made."""
    recent_days: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def describe_rule(rule: ScheduleRule) -> str:
    """The rule in the household's words: "you lowered it to 18 °C around 22:40 on ..."."""
    clock = f"{rule.minute // 60:02d}:{rule.minute % 60:02d}"
    verb = {"raised": "raised it to", "lowered": "lowered it to", "set": "set it to"}
    days = _PLURAL.get(rule.day_type, f"{rule.day_type}s")
    return (
        f"you {verb[rule.direction]} {rule.value_c:g} °C around {clock} on "
        f"{rule.recent_support} of the last {rule.recent_days} {days}"
    )


def change_points(table_day: np.ndarray) -> list[tuple[int, float]]:
    """(slot, value) where a one-day table changes value (the first slot always counts)."""
    points = [(0, float(table_day[0]))]
    for slot in range(1, len(table_day)):
        if abs(table_day[slot] - table_day[slot - 1]) > 1e-9:
            points.append((slot, float(table_day[slot])))
    return points


class SetpointSchedule:
    """Learn a home's preferred setpoint per slot of the week from its manual adjustments.

    Parameters
    ----------
    slot_minutes : int
        Length of a schedule slot; must divide a day.
    day_types : {"weekday_weekend", "daily", "single"}
        How days are pooled before looking for repeated adjustments.
    window_minutes : int
        Adjustments closer than this in time of day (on days of one type) are the same habit.
    min_days : int
        A habit must have been shown on at least this many distinct days ("more than one day").
    min_share : float
        ... and on at least this share of the learning window's days of that type.
    value_tolerance_c : float
        Adjustments of one time group further apart than this in value are different habits.
    active_threshold : float
        Typical activity (motion probability) above which the household counts as awake and
        at home, able to object to a program change.
    recent_days : int
        How many recent days of a type an explanation counts over.

    Attributes
    ----------
    rules_ : list of ScheduleRule
    table_ : ndarray of shape (slots_per_week,)
        The learned preferred setpoint per slot of the week (slot 0 = Monday 00:00 local).
    learned_day_types_ : set of str
        Day types with at least one learned rule; the others follow the program.
    rejected_ : int
        Adjustment groups that did not repeat enough to count (one-offs).

    Examples
    --------
    >>> import pandas as pd
    >>> days = pd.date_range("2026-01-05 22:40", periods=5, freq="D", tz="UTC")
    >>> adj = pd.DataFrame({"ts": days, "value": 18.0, "previous_value": 20.0})
    >>> schedule = SetpointSchedule().fit(adj, start=days[0].floor("D"), end=days[-1].ceil("D"))
    >>> describe_rule(schedule.rules_[0])
    'you lowered it to 18 °C around 22:40 on 5 of the last 5 weekdays'
    """

    def __init__(
        self,
        *,
        slot_minutes: int = DEFAULT_SLOT_MINUTES,
        day_types: DayTypes = "weekday_weekend",
        window_minutes: int = 45,
        min_days: int = 2,
        min_share: float = 0.25,
        value_tolerance_c: float = 1.0,
        active_threshold: float = 0.3,
        recent_days: int = 5,
    ) -> None:
        self.slot_minutes = slot_minutes
        self.day_types = day_types
        self.window_minutes = window_minutes
        self.min_days = min_days
        self.min_share = min_share
        self.value_tolerance_c = value_tolerance_c
        self.active_threshold = active_threshold
        self.recent_days = recent_days

    def _validate(self) -> None:
        slots_per_week(self.slot_minutes)
        if self.day_types not in DAY_TYPES:
            raise ValueError(
                f"day_types must be one of {sorted(DAY_TYPES)}, got {self.day_types!r}"
            )
        if not 0 < self.window_minutes <= 240:
            raise ValueError(f"window_minutes must be in (0, 240], got {self.window_minutes}")
        if self.min_days < 1:
            raise ValueError(f"min_days must be at least 1, got {self.min_days}")
        if not 0.0 <= self.min_share <= 1.0:
            raise ValueError(f"min_share must be in [0, 1], got {self.min_share}")
        if self.value_tolerance_c <= 0:
            raise ValueError(f"value_tolerance_c must be positive, got {self.value_tolerance_c}")
        if self.recent_days < 1:
            raise ValueError(f"recent_days must be at least 1, got {self.recent_days}")

    def fit(
        self,
        adjustments: pd.DataFrame,
        *,
        start: pd.Timestamp,
        end: pd.Timestamp,
        program: np.ndarray | None = None,
        activity: np.ndarray | None = None,
        timezone: str = "UTC",
    ) -> SetpointSchedule:
        """Learn the rules and the weekly table.

        Parameters
        ----------
        adjustments : DataFrame
            ``ts`` (UTC), ``value`` (new setpoint, °C) and optionally ``previous_value``.
        start, end : Timestamp
            The learning window (days of each type in it set ``min_share``'s denominator).
        program : ndarray of shape (slots_per_week,), optional
            The device's own program, kept where the household did not object. Without one, a
            day type with no learned rule gets :data:`DEFAULT_PROGRAM` values.
        activity : ndarray of shape (slots_per_week,), optional
            Typical probability that the household is active (motion) in each slot.
        timezone : str
            The home's IANA time zone: habits follow its wall clock.
        """
        self._validate()
        n_slots = slots_per_week(self.slot_minutes)
        for name, array in (("program", program), ("activity", activity)):
            if array is not None and np.shape(array) != (n_slots,):
                raise ValueError(
                    f"{name} must have one value per slot ({n_slots}), got {np.shape(array)}"
                )
        missing = {"ts", "value"} - set(adjustments.columns)
        if missing:
            raise ValueError(f"adjustments lack column(s) {sorted(missing)}; need ts and value")
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        if end <= start:
            raise ValueError(f"the learning window must end after it starts ({start} .. {end})")
        values = pd.to_numeric(adjustments["value"], errors="coerce")
        if not np.isfinite(values.to_numpy(dtype=float)).all():
            bad = int(np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))[0])
            raise ValueError(f"adjustment row {bad}: value is not a finite number")

        frame = _local_adjustments(adjustments, start, end, timezone)
        day_counts = _days_per_type(start, end, timezone, self.day_types)
        rules: list[ScheduleRule] = []
        self.rejected_ = 0
        for day_type, weekdays in DAY_TYPES[self.day_types]:
            of_type = frame[frame["weekday"].isin(weekdays)]
            recent_dates = _recent_dates(start, end, timezone, weekdays, self.recent_days)
            for group in self._groups(of_type):
                rule = self._rule(group, day_type, day_counts[day_type], recent_dates)
                if rule is None:
                    self.rejected_ += 1
                else:
                    rules.append(rule)
        # Two rules with one value in a row are kept both: a program change may lie between
        # them (the household re-asserting 19.5 °C after the program dropped to 16 °C).
        self.rules_ = sorted(rules, key=lambda r: (r.day_type, r.minute))
        self.learned_day_types_ = {rule.day_type for rule in self.rules_}
        base = (
            np.asarray(program, dtype=float)
            if program is not None
            else default_program(self.slot_minutes)
        )
        self.table_ = self._table(base, activity, program is not None)
        self.timezone_ = timezone
        logger.info(
            "learned %d schedule rule(s) from %d adjustment(s); %d one-off group(s) ignored",
            len(self.rules_),
            len(frame),
            self.rejected_,
        )
        return self

    def _groups(self, frame: pd.DataFrame) -> list[pd.DataFrame]:
        """Adjustments of one day type grouped by time of day, then split by value."""
        if frame.empty:
            return []
        frame = frame.sort_values("minute")
        gaps = np.diff(frame["minute"].to_numpy()) > self.window_minutes / 2
        time_group = np.concatenate([[0], np.cumsum(gaps)])
        groups = []
        for _, by_time in frame.groupby(time_group):
            # Within a day, only the last adjustment of the group is the household's final
            # answer: 20 -> 21 -> 21.5 within minutes is one wish for 21.5.
            final = by_time.sort_values("ts").groupby("date").tail(1).sort_values("value")
            value_gaps = np.diff(final["value"].to_numpy()) > self.value_tolerance_c
            value_group = np.concatenate([[0], np.cumsum(value_gaps)])
            groups.extend(part for _, part in final.groupby(value_group))
        return groups

    def _rule(
        self, group: pd.DataFrame, day_type: str, days_of_type: int, recent: set
    ) -> ScheduleRule | None:
        support = int(group["date"].nunique())
        if support < self.min_days or support < self.min_share * max(days_of_type, 1):
            return None
        value = float(np.median(group["value"]))
        previous = group["previous_value"].dropna()
        direction: Literal["raised", "lowered", "set"] = "set"
        if len(previous):
            before = float(np.median(previous))
            direction = "raised" if value > before else "lowered" if value < before else "set"
        return ScheduleRule(
            day_type=day_type,
            minute=round(float(np.median(group["minute"]))),
            value_c=round(value, 2),
            direction=direction,
            support_days=support,
            days_of_type=days_of_type,
            recent_support=int(group["date"].isin(recent).sum()),
            recent_days=len(recent),
        )

    def _table(
        self, program: np.ndarray, activity: np.ndarray | None, has_program: bool
    ) -> np.ndarray:
        """The weekly table: learned rules, plus the program points nobody could object to."""
        n_day = 1440 // self.slot_minutes
        table = program.copy()
        weekday_type = {day: name for name, days in DAY_TYPES[self.day_types] for day in days}
        # Change points on a week-long timeline: (minute of week, value, rule index or -1).
        points: list[tuple[int, float, int]] = []
        for day in range(7):
            day_type = weekday_type[day]
            day_rules = [r for r in self.rules_ if r.day_type == day_type]
            program_day = program[day * n_day : (day + 1) * n_day]
            if not day_rules:
                # Nothing learned for this kind of day: the program stands, as it is.
                points.extend(
                    (day * 1440 + slot * self.slot_minutes, value, -1)
                    for slot, value in change_points(program_day)
                    if slot > 0 or has_program
                )
                continue
            program_points = change_points(program_day)
            rule_slots = [r.minute // self.slot_minutes for r in day_rules]
            for number, (slot, value) in enumerate(program_points):
                minute = slot * self.slot_minutes
                if slot == 0 and abs(value - program[(day * n_day - 1) % len(program)]) < 1e-9:
                    continue  # midnight is not a change unless the program changes there
                next_program = [p[0] for p in program_points[number + 1 :]]
                next_rule = [s for s in rule_slots if s > slot]
                stop = min(next_program + next_rule, default=n_day)
                if next_rule and stop == min(next_rule):
                    # The segment ends in the household's own change: the slots just before
                    # it are them reacting, not accepting.
                    stop = max(slot + 1, stop - self.window_minutes // self.slot_minutes)
                if self._objected(minute, day_rules) or not self._accepted(
                    day * n_day + slot, day * n_day + stop, activity
                ):
                    continue
                points.append((day * 1440 + minute, value, -1))
            points.extend(
                (day * 1440 + rule.minute, rule.value_c, self.rules_.index(rule))
                for rule in day_rules
            )
        self.source_ = np.full(len(table), -1)
        if not points:
            return table
        points.sort()
        # A slot takes the last change at or before its middle; the week wraps around.
        middles = np.arange(len(table)) * self.slot_minutes + self.slot_minutes / 2
        minutes = np.array([p[0] for p in points], dtype=float)
        values = np.array([p[1] for p in points])
        sources = np.array([p[2] for p in points])
        position = np.searchsorted(minutes, middles, side="right") - 1
        # Position -1 wraps to the last point of the week.
        self.source_ = sources[position]
        return values[position]

    def _objected(self, minute: int, day_rules: list[ScheduleRule]) -> bool:
        """Did a learned habit sit right around this program change (the household's answer)?"""
        return any(abs(rule.minute - minute) <= self.window_minutes for rule in day_rules)

    def _accepted(self, start: int, stop: int, activity: np.ndarray | None) -> bool:
        """Was the household typically up and about while this program value stood (slots
        ``start`` to ``stop`` of the week, on average), and so able to object, and did not?"""
        if activity is None:
            return True
        idx = np.arange(start, max(stop, start + 1)) % len(activity)
        return bool(np.nanmean(activity[idx]) >= self.active_threshold)

    def predict(self, index: pd.DatetimeIndex) -> np.ndarray:
        """The learned preferred setpoint at each timestamp."""
        from tailor.devices.features import slot_of_week

        slots = slot_of_week(index, self.slot_minutes, self.timezone_)
        return self.table_[slots]

    def explain(self, when: pd.Timestamp) -> str:
        """Why the schedule wants what it wants at ``when``."""
        from tailor.devices.features import slot_of_week

        slot = int(slot_of_week(pd.DatetimeIndex([when]), self.slot_minutes, self.timezone_)[0])
        value = float(self.table_[slot])
        source = int(self.source_[slot]) if hasattr(self, "source_") else -1
        if source >= 0:
            return f"{value:g} °C because {describe_rule(self.rules_[source])}"
        if not self.rules_:
            return f"{value:g} °C from the program: no repeated adjustment learned yet"
        return f"{value:g} °C from the program, which the household has not changed"


DEFAULT_DAY_C = 20.0
DEFAULT_NIGHT_C = 17.0


def default_program(slot_minutes: int = DEFAULT_SLOT_MINUTES) -> np.ndarray:
    """The sensible default with no data: 20 °C from 07:00 to 23:00, 17 °C at night."""
    n_day = 1440 // slot_minutes
    minutes = (np.arange(slots_per_week(slot_minutes)) % n_day) * slot_minutes
    return np.where((minutes >= 7 * 60) & (minutes < 23 * 60), DEFAULT_DAY_C, DEFAULT_NIGHT_C)


def _local_adjustments(
    adjustments: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, timezone: str
) -> pd.DataFrame:
    ts = pd.DatetimeIndex(pd.to_datetime(adjustments["ts"], utc=True))
    inside = (ts >= start) & (ts < end)
    local = local_index(ts[inside], timezone)
    previous = (
        adjustments["previous_value"][inside]
        if "previous_value" in adjustments
        else pd.Series(np.nan, index=adjustments.index[inside])
    )
    return pd.DataFrame(
        {
            "ts": ts[inside],
            "value": adjustments["value"][inside].to_numpy(dtype=float),
            "previous_value": pd.to_numeric(previous, errors="coerce").to_numpy(dtype=float),
            "minute": local.hour * 60 + local.minute,
            "weekday": local.day_of_week,
            "date": local.date,
        }
    )


def _local_dates(start: pd.Timestamp, end: pd.Timestamp, timezone: str) -> pd.DatetimeIndex:
    local = local_index(pd.DatetimeIndex([start, end]), timezone)
    first = local[0].normalize()
    last = (local[1] - pd.Timedelta(microseconds=1)).normalize()
    return pd.date_range(first.tz_localize(None), last.tz_localize(None), freq="D")


def _days_per_type(start, end, timezone: str, day_types: str) -> dict[str, int]:
    dates = _local_dates(start, end, timezone)
    return {
        name: int(np.isin(dates.day_of_week, days).sum()) for name, days in DAY_TYPES[day_types]
    }


def _recent_dates(start, end, timezone: str, weekdays: tuple[int, ...], count: int) -> set:
    dates = _local_dates(start, end, timezone)
    of_type = dates[np.isin(dates.day_of_week, weekdays)]
    return {d.date() for d in of_type[-count:]}
