"""Event timestamps: ``_utc`` takes the fast path on pydantic's own zones and must still give
exactly what ``astimezone(UTC)`` gives, with the same refusals naming the field."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter, ValidationError

from tailor.events.ingest import validate_batch
from tailor.events.schema import _utc, parse_event
from tests.conftest import view


def _reference(value: datetime) -> datetime | None:
    """The former definition: astimezone, then an aware comparison (None: refused)."""
    if value.tzinfo is None or value.utcoffset() is None:
        return None
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        return None
    return None if value < datetime(1970, 1, 1, tzinfo=UTC) else value


def _ours(value: datetime) -> datetime | None:
    try:
        return _utc(value)
    except ValueError:
        return None


def test_utc_agrees_with_astimezone_on_every_kind_of_zone():
    parse = TypeAdapter(datetime).validate_json
    rnd = random.Random(7)
    for _ in range(3000):
        year = rnd.choice([1, 1969, 1970, 1971, 2024, 9999])
        wall = datetime(
            year,
            rnd.randint(1, 12),
            rnd.randint(1, 28),
            rnd.randint(0, 23),
            rnd.randint(0, 59),
            rnd.randint(0, 59),
            rnd.randint(0, 999_999),
        )
        if year in (1969, 1970) and rnd.random() < 0.5:  # around the 1970 boundary
            wall = datetime(
                year,
                12 if year == 1969 else 1,
                31 if year == 1969 else 1,
                rnd.randint(0, 23),
                rnd.randint(0, 59),
            )
        kind = rnd.choice(["utc", "fixed", "zoneinfo", "pydantic"])
        minutes = rnd.randint(-23 * 60, 23 * 60)
        if kind == "utc":
            value = wall.replace(tzinfo=UTC)
        elif kind == "fixed":
            value = wall.replace(tzinfo=timezone(timedelta(minutes=minutes)))
        elif kind == "zoneinfo":
            zone = ZoneInfo(rnd.choice(["Europe/London", "America/New_York", "Asia/Kolkata"]))
            value = wall.replace(tzinfo=zone, fold=rnd.randint(0, 1))
        else:  # pydantic's own TzInfo, as JSON bodies give
            sign = "+" if minutes >= 0 else "-"
            offset = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
            value = parse(f'"{wall.isoformat()}{offset if rnd.random() < 0.7 else "Z"}"')
        expected, got = _reference(value), _ours(value)
        assert (expected is None) == (got is None), value
        if expected is not None:
            assert got == expected and got.tzinfo is UTC and got.fold == expected.fold, value
            assert got.isoformat() == expected.isoformat()


@pytest.mark.parametrize(
    ("stamp", "ok"),
    [
        ("1970-01-01T00:00:00Z", True),
        ("1969-12-31T23:59:59.999999Z", False),
        ("1970-01-01T00:30:00+01:00", False),  # 1969-12-31T23:30Z
        ("1969-12-31T23:30:00-01:00", True),  # 1970-01-01T00:30Z
        ("9999-12-31T23:00:00-05:00", False),  # past year 9999 in UTC
    ],
)
def test_1970_and_9999_boundaries_follow_utc(stamp, ok):
    event = view("e1", "u", at=stamp)
    if ok:
        assert parse_event(event).occurred_at.tzinfo is UTC
    else:
        with pytest.raises(ValidationError, match="occurred_at"):
            parse_event(event)


def test_refusals_name_the_field():
    raw = [
        view("e0", "u", at="2024-05-01T10:00:00"),
        view("e1", "u", at="1969-06-01T00:00:00Z"),
        view("e2", "u", at="9999-12-31T23:00:00-05:00"),
    ]
    _, rejected = validate_batch(raw, max_events=10)
    reasons = [r.reason for r in rejected]
    assert (
        reasons[0]
        == "events[0].occurred_at: timestamp needs a time zone (e.g. 2024-05-01T10:00:00Z)"
    )
    assert reasons[1] == "events[1].occurred_at: timestamp is before 1970-01-01"
    assert reasons[2] == "events[2].occurred_at: timestamp is after 9999-12-31 in UTC"


def test_offsets_are_converted_to_utc():
    event = parse_event(view("e1", "u", at="2024-05-01T12:30:00.5+02:30"))
    assert event.occurred_at == datetime(2024, 5, 1, 10, 0, 0, 500_000, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC
