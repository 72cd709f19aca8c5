"""Lift tests: experiments that measured what a change of a channel's spend did to the target.

A media-mix model learns from how spend and the target moved together. Channels whose
budgets move together, or that are always on and saturated, look alike to it, and their
credit can be split almost any way. An experiment breaks the tie: a geo holdout that turned a
channel off, or a test that raised its spend, measured the change in the target directly.
Each test adds a term to the likelihood (as PyMC-Marketing's ``add_lift_test_measurements``
does): the measured change ``delta_y`` is Normal around what the model's curve predicts for
moving the spend per period from ``x`` to ``x + delta_x``, with the test's standard error
``sigma``. The curve is applied to spend without carry-over: a test runs long enough for the
adstock to settle (normalized adstock of a constant spend is that spend).

A CSV holds one test per row, in the data's units, per period::

    channel,x,delta_x,delta_y,sigma
    search,12000,-12000,-96.5,12.0      # search switched off: 96.5 fewer conversions a week
    social,3000,1500,4.1,1.5            # social's spend raised by half
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tailor.budget.data import MediaDataError, csv_records, parse_number

__all__ = ["COLUMNS", "MAX_TESTS", "LiftTests", "read_lift_tests"]

COLUMNS = ("channel", "x", "delta_x", "delta_y", "sigma")
MAX_TESTS = 1_000


@dataclass(frozen=True)
class LiftTests:
    """Lift tests, one entry per test (see the module docstring for the meaning).

    channel : the channel each test moved (a name among the model's channels).
    x : spend per period before the test, >= 0.
    delta_x : the change of spend per period during the test, non-zero, ``x + delta_x >= 0``.
    delta_y : the measured change of the target per period.
    sigma : the standard error of ``delta_y``, > 0.
    """

    channel: tuple[str, ...]
    x: np.ndarray
    delta_x: np.ndarray
    delta_y: np.ndarray
    sigma: np.ndarray

    def __post_init__(self) -> None:
        arrays = {}
        for name in COLUMNS[1:]:
            value = np.asarray(getattr(self, name), dtype=float).reshape(-1)
            object.__setattr__(self, name, value)
            arrays[name] = value
        object.__setattr__(self, "channel", tuple(str(c) for c in self.channel))
        n = len(self.channel)
        if any(len(v) != n for v in arrays.values()):
            raise MediaDataError(
                "lift tests: channel, x, delta_x, delta_y and sigma must have one entry per test"
            )
        if n > MAX_TESTS:
            raise MediaDataError(f"lift tests: {n} tests; at most {MAX_TESTS} are accepted")
        for i in range(n):
            problem = _problem(*(v[i] for v in arrays.values()))
            if problem:
                raise MediaDataError(f"lift test {i + 1} ({self.channel[i]}): {problem}")

    def __len__(self) -> int:
        return len(self.channel)

    def codes(self, channels: Sequence[str]) -> np.ndarray:
        """Each test's channel as its position in ``channels``.

        Raises
        ------
        MediaDataError
            naming a test whose channel is not among ``channels``.
        """
        position = {name: c for c, name in enumerate(channels)}
        unknown = sorted({c for c in self.channel if c not in position})
        if unknown:
            raise MediaDataError(
                f"lift tests: channel(s) {', '.join(map(repr, unknown))} are not in the data; "
                f"its channels are {', '.join(channels)}"
            )
        return np.asarray([position[c] for c in self.channel], dtype=np.int64)

    def to_json(self) -> list[dict[str, float | str]]:
        return [
            {"channel": self.channel[i], **{k: float(getattr(self, k)[i]) for k in COLUMNS[1:]}}
            for i in range(len(self))
        ]

    @classmethod
    def from_json(cls, rows: Sequence[dict]) -> LiftTests:
        return cls(
            channel=tuple(r["channel"] for r in rows),
            **{k: np.asarray([r[k] for r in rows], dtype=float) for k in COLUMNS[1:]},
        )


def _problem(x: float, delta_x: float, delta_y: float, sigma: float) -> str | None:
    """What is wrong with one test's numbers, or None."""
    if not all(np.isfinite(v) for v in (x, delta_x, delta_y, sigma)):
        return "every value must be a finite number"
    if x < 0:
        return "x (spend per period before the test) must be >= 0"
    if delta_x == 0:
        return "delta_x is 0; a test changes the spend"
    if x + delta_x < 0:
        return "x + delta_x is negative; a channel switched off has delta_x = -x"
    if sigma <= 0:
        return "sigma (the standard error of delta_y) must be > 0"
    return None


def read_lift_tests(path: str | Path, *, target_scale: float = 1.0) -> LiftTests:
    """Lift tests from a CSV with the columns ``channel,x,delta_x,delta_y,sigma`` (any order,
    other columns ignored). ``target_scale`` divides ``delta_y`` and ``sigma`` as it divides
    the target of the data (e.g. 1000 for data kept in thousands).

    Raises
    ------
    MediaDataError
        naming the file and the row (or column) at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaDataError(f"{path}: no such file")
    if not (np.isfinite(target_scale) and target_scale > 0):
        raise MediaDataError(f"target_scale: {target_scale} must be a positive number")
    try:
        with csv_records(path, COLUMNS) as reader:
            channels, values = [], []
            for line, record in enumerate(reader, 2):
                if line - 1 > MAX_TESTS:
                    raise MediaDataError(f"{path.name}: more than {MAX_TESTS} lift tests")
                channel = (record["channel"] or "").strip()
                if not channel:
                    raise MediaDataError(f"{path.name} row {line}, channel: empty")
                row = [parse_number(record[c], f"{path.name} row {line}, {c}") for c in COLUMNS[1:]]
                problem = _problem(*row)
                if problem:
                    raise MediaDataError(f"{path.name} row {line} ({channel}): {problem}")
                channels.append(channel)
                values.append(row)
    except UnicodeDecodeError as exc:
        raise MediaDataError(f"{path.name}: not a UTF-8 text CSV ({exc.reason})") from None
    if not values:
        raise MediaDataError(f"{path.name}: no lift tests in the file")
    table = np.asarray(values, dtype=float)
    return LiftTests(
        channel=tuple(channels),
        x=table[:, 0],
        delta_x=table[:, 1],
        delta_y=table[:, 2] / target_scale,
        sigma=table[:, 3] / target_scale,
    )
