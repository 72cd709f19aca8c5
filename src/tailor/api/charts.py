"""Markup for the dashboard (:mod:`tailor.api.dashboard`): number formats, inline SVG charts
and the HTML building blocks (page shell with its style sheet, tables, sections).

Charts are drawn on the server as plain SVG elements, so the page needs no script, font or
CDN and works on an offline server and under a ``default-src 'none'`` content security
policy. Every text that reaches the markup passes :func:`esc`: labels are version ids,
feature names, arm names and messages, some of which users chose.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

PALETTE = ("#2166ac", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#555")
MARKED = "#c62828"
BAND = "#e6f0e0"
"""Shaded x ranges behind a line chart's lines (when the home was expected occupied)."""
WIDTH = 560
PLOT_HEIGHT = 190
LEFT, RIGHT, TOP = 70, 18, 40
NONE = "–"

Format = Callable[[float], str]


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def fmt_rate(value: float | None) -> str:
    """A share as a percentage: ``0.1234`` → ``12.34%``."""
    return NONE if value is None else f"{value * 100:.2f}%"


def fmt_number(value: float | None) -> str:
    """Counts with thousands separators, other figures to 4 significant digits."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) >= 1e-3 else f"{value:.3g}"


def fmt_money(value: float | None) -> str:
    return NONE if value is None else f"{value:,.2f}"


def fmt_time(value: str | datetime | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM UTC``; text that is no time is shown as is."""
    if value is None:
        return NONE
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round axis values from at or below ``low`` to at or above ``high``."""
    if not high > low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _frame(testid: str, title: str, height: int, body: list[str], extra: str = "") -> str:
    return (
        f'<svg class="chart" data-testid="{esc(testid)}" role="img" aria-label="{esc(title)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}"{extra}>'
        f'<text class="title" x="{WIDTH / 2}" y="20" text-anchor="middle">{esc(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def _y_axis(values: list[float], y_of: Callable[[float], float], label: str, fmt: Format) -> list:
    right = WIDTH - RIGHT
    out = [
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + PLOT_HEIGHT}"/>',
        f'<text class="label" transform="translate(14 {TOP + PLOT_HEIGHT / 2}) rotate(-90)" '
        f'text-anchor="middle">{esc(label)}</text>',
    ]
    for value in values:
        y = y_of(value)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{esc(fmt(value))}</text>"
        )
    return out


def _scale(low: float, high: float, out_low: float, out_high: float) -> Callable[[float], float]:
    span = (high - low) or 1.0
    return lambda v: out_low + (v - low) / span * (out_high - out_low)


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float | None]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    testid: str,
    y_format: Format,
    x_format: Format,
    from_zero: bool = True,
    markers: bool = True,
    bands: Sequence[tuple[float, float]] = (),
    band_label: str = "",
) -> str:
    """One line per series of (x, y) points (x: e.g. epoch seconds), from a zero baseline,
    with a marker and a tooltip per point and a legend below.

    For long time series: ``from_zero=False`` fits the y axis to the values (temperatures),
    ``markers=False`` draws the lines alone (a week of 15-minute slots would be thousands of
    markers), a point whose y is None or NaN breaks its line (a gap in the readings), and
    ``bands`` are x ranges shaded behind the lines, named ``band_label`` in the legend."""
    points = [(x, y) for line in series.values() for x, y in line if _finite(y)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    if x0 == x1:  # a single snapshot: centre it
        x0, x1 = x0 - 1800, x1 + 1800
    y_ticks = ticks(min(0.0, min(ys)) if from_zero else min(ys), max(ys))
    x_of = _scale(x0, x1, LEFT + 8, WIDTH - RIGHT - 8)
    y_of = _scale(y_ticks[0], y_ticks[-1], TOP + PLOT_HEIGHT, TOP)
    bottom = TOP + PLOT_HEIGHT
    body = []
    for start, stop in bands:
        if stop < x0 or start > x1:
            continue
        left, right = x_of(max(start, x0)), x_of(min(stop, x1))
        body.append(
            f'<rect class="band" x="{left:.1f}" y="{TOP}" width="{max(right - left, 0.5):.1f}" '
            f'height="{PLOT_HEIGHT}" fill="{BAND}"/>'
        )
    body += _y_axis(y_ticks, y_of, y_label, y_format)
    body.append(
        f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/>'
    )
    for k in range(4):
        x = x0 + (x1 - x0) * k / 3
        anchor = ("start", "middle", "middle", "end")[k]
        body.append(
            f'<text class="tick" x="{x_of(x):.1f}" y="{bottom + 16}" text-anchor="{anchor}">'
            f"{esc(x_format(x))}</text>"
        )
    body.append(
        f'<text class="label" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{bottom + 34}" '
        f'text-anchor="middle">{esc(x_label)}</text>'
    )
    legend_y = bottom + 54
    for i, (name, line) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        end = "/>" if markers else f"><title>{esc(name)}</title></polyline>"
        for run in _runs(sorted(line, key=lambda p: p[0])):
            coords = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in run)
            body.append(
                f'<polyline class="series" data-series="{esc(name)}" points="{coords}" '
                f'fill="none" stroke="{color}" stroke-width="2"{end}'
            )
        for x, y in line if markers else ():
            if not _finite(y):
                continue
            body.append(
                f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="3" fill="{color}">'
                f"<title>{esc(name)}: {esc(y_format(y))} at {esc(x_format(x))}</title></circle>"
            )
        ly = legend_y + 16 * i
        body.append(
            f'<rect x="{LEFT}" y="{ly - 9}" width="12" height="10" fill="{color}"/>'
            f'<text class="legend" x="{LEFT + 18}" y="{ly}">{esc(short(name, 60))}</text>'
        )
    rows = len(series)
    if bands and band_label:
        ly = legend_y + 16 * rows
        body.append(
            f'<rect x="{LEFT}" y="{ly - 9}" width="12" height="10" fill="{BAND}" stroke="#bbb"/>'
            f'<text class="legend" x="{LEFT + 18}" y="{ly}">{esc(short(band_label, 60))}</text>'
        )
        rows += 1
    return _frame(testid, title, legend_y + 16 * rows, body)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _runs(line: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """The stretches of ``line`` between missing values (None or NaN)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in line:
        if _finite(y):
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    marked: bool = False
    """Drawn in red with ``marked_label`` above (a drifted feature)."""


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    x_label: str,
    y_label: str,
    testid: str,
    value_format: Format,
    references: Sequence[tuple[float, str]] = (),
    marked_label: str = "",
) -> str:
    """Vertical bars from zero, each with its value above it; a bar without a value keeps
    its slot and says n/a. ``references``: dashed lines (thresholds), named in a legend
    below, as are the marked bars: labels inside the plot would collide with the bars'."""
    values = [b.value for b in bars if b.value is not None]
    top = max([*values, *(r[0] for r in references), 0.0])
    y_ticks = ticks(min([0.0, *values]), top if top > 0 else 1.0)
    y_of = _scale(y_ticks[0], y_ticks[-1], TOP + PLOT_HEIGHT, TOP)
    bottom = TOP + PLOT_HEIGHT
    body = _y_axis(y_ticks, y_of, y_label, value_format)
    legend = []
    for value, label in references:
        y = y_of(value)
        body.append(
            f'<line class="reference" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
        )
        legend.append(('<line class="reference" x1="{x}" y1="{y}" x2="{x2}" y2="{y}"/>', label))
    if marked_label and any(b.marked for b in bars):
        swatch = f'<rect x="{{x}}" y="{{top}}" width="18" height="10" fill="{MARKED}"/>'
        legend.append((swatch, marked_label))
    slot = (WIDTH - RIGHT - LEFT) / max(len(bars), 1)
    width = min(slot * 0.6, 70)
    zero = y_of(0.0)
    for i, bar in enumerate(bars):
        centre = LEFT + slot * (i + 0.5)
        body.append(
            f'<text class="tick" x="{centre:.1f}" y="{bottom + 16}" text-anchor="middle">'
            f"<title>{esc(bar.label)}</title>{esc(short(bar.label, max(int(slot / 7), 4)))}</text>"
        )
        if bar.value is None:
            body.append(
                f'<text class="tick" x="{centre:.1f}" y="{zero - 6:.1f}" '
                'text-anchor="middle">n/a</text>'
            )
            continue
        y = y_of(bar.value)
        shown = value_format(bar.value)
        note = f" ({marked_label})" if bar.marked and marked_label else ""
        body.append(
            f'<rect class="bar" data-label="{esc(bar.label)}" x="{centre - width / 2:.1f}" '
            f'y="{min(y, zero):.1f}" width="{width:.1f}" height="{max(abs(zero - y), 1):.1f}" '
            f'fill="{MARKED if bar.marked else PALETTE[0]}">'
            f"<title>{esc(bar.label)}: {esc(shown)}{esc(note)}</title></rect>"
            f'<text class="value" x="{centre:.1f}" y="{min(y, zero) - 5:.1f}" '
            f'text-anchor="middle">{esc(shown)}</text>'
        )
    body.append(
        f'<line class="axis" x1="{LEFT}" y1="{zero:.1f}" x2="{WIDTH - RIGHT}" y2="{zero:.1f}"/>'
        f'<text class="label" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{bottom + 36}" '
        f'text-anchor="middle">{esc(x_label)}</text>'
    )
    x = LEFT
    for sample, label in legend:
        y = bottom + 56
        body.append(
            sample.format(x=x, x2=x + 18, y=y - 4, top=y - 9)
            + f'<text class="legend" x="{x + 24}" y="{y}">{esc(label)}</text>'
        )
        x += 24 + 7 * len(label) + 20
    return _frame(testid, title, bottom + (66 if legend else 46), body)


@dataclass(frozen=True)
class Interval:
    label: str
    point: float
    low: float
    high: float
    significant: bool = False


def interval_chart(
    rows: Sequence[Interval], *, title: str, x_label: str, testid: str, value_format: Format
) -> str:
    """One row per estimate: its interval as a line, the estimate as a dot and its value at
    the right, a line at zero (no difference), and a legend of the two colours."""
    left, right, row_height = 180, WIDTH - RIGHT - 56, 26
    x_ticks = ticks(min(0.0, *(r.low for r in rows)), max(0.0, *(r.high for r in rows)), 4)
    x_of = _scale(x_ticks[0], x_ticks[-1], left, right)
    bottom = TOP + row_height * len(rows) + 6
    body = [f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>']
    for value in x_ticks:
        x = x_of(value)
        body.append(
            f'<line class="{"zero" if value == 0 else "grid"}" x1="{x:.1f}" y1="{TOP - 4}" '
            f'x2="{x:.1f}" y2="{bottom}"/>'
            f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">'
            f"{esc(value_format(value))}</text>"
        )
    for i, row in enumerate(rows):
        y = TOP + row_height * i + row_height / 2
        color = PALETTE[1] if row.significant else PALETTE[0]
        summary = f"{value_format(row.point)} [{value_format(row.low)}, {value_format(row.high)}]"
        body.append(
            f'<text class="tick" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{esc(short(row.label, 28))}</text>"
            f'<line class="interval" x1="{x_of(row.low):.1f}" y1="{y:.1f}" '
            f'x2="{x_of(row.high):.1f}" y2="{y:.1f}" stroke="{color}" stroke-width="3"/>'
            f'<circle cx="{x_of(row.point):.1f}" cy="{y:.1f}" r="4.5" fill="{color}">'
            f"<title>{esc(row.label)}: {esc(summary)}</title></circle>"
            f'<text class="value" x="{WIDTH - RIGHT}" y="{y + 4:.1f}" text-anchor="end">'
            f"{esc(value_format(row.point))}</text>"
        )
    body.append(
        f'<text class="label" x="{(left + right) / 2}" y="{bottom + 34}" '
        f'text-anchor="middle">{esc(x_label)}</text>'
    )
    for k, (color, text) in enumerate(
        ((PALETTE[1], "significant at 5%"), (PALETTE[0], "not significant"))
    ):
        x = left + 150 * k
        body.append(
            f'<circle cx="{x + 5}" cy="{bottom + 50}" r="4.5" fill="{color}"/>'
            f'<text class="legend" x="{x + 14}" y="{bottom + 54}">{text}</text>'
        )
    return _frame(testid, title, bottom + 64, body)


# --- HTML ------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#1d2733;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:center}
header h1{font-size:18px;margin:0}header .meta{flex:1;opacity:.85}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(600px,1fr));gap:16px;padding:16px}
section{background:#fff;border-radius:6px;padding:12px 16px;box-shadow:0 1px 2px #0002;min-width:0}
section.wide{grid-column:1/-1}h2{font-size:16px;margin:4px 0 10px}h3{font-size:14px;margin:12px 0 0}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#fafafa}.empty,.note{color:#666}.bad{color:#c62828;font-weight:600}
.good{color:#2e7d32}.badge{background:#e3ecf7;border-radius:3px;padding:0 4px;margin-right:3px}
.charts{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}svg.chart{max-width:100%;height:auto}
svg .title{font-size:14px;font-weight:600}svg .tick{font-size:11px;fill:#444}
svg .label,svg .legend{font-size:12px;fill:#222}svg .value{font-size:11px;fill:#111}
svg .grid{stroke:#e8e8e8}svg .axis{stroke:#888}svg .zero{stroke:#333}
svg .reference{stroke:#999;stroke-dasharray:4 3}
form.login{max-width:360px;margin:60px auto;background:#fff;padding:20px;border-radius:6px}
form.login input{width:100%;box-sizing:border-box;margin:4px 0 12px;padding:6px}
"""
TIMES = {"at", "created_at", "moved_at", "started_at", "last_finished", "next_run_at"}
SHARES = {"ctr", "conversion", "coverage"}
MONEY = {"revenue", "revenue_per_session"}
Column = str | tuple[str, Callable[[dict[str, Any]], str]]


def html_page(title: str, body: str, refresh: bool = False) -> str:
    meta = '<meta http-equiv="refresh" content="60">' if refresh else ""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}</body></html>"
    )


def html_cell(key: str, value: Any) -> str:
    """A value as escaped HTML, formatted by what its key names."""
    if key in TIMES:
        return esc(fmt_time(value))
    if key in SHARES:
        return esc(fmt_rate(value))
    if key in MONEY:
        return esc(fmt_money(value))
    if isinstance(value, dict):
        return "<br>".join(f"{esc(k)}: {html_cell(k, v)}" for k, v in value.items())
    if isinstance(value, int | float) or value is None:
        return esc(fmt_number(value))
    return esc(value)


def html_table(testid: str, items: list[dict[str, Any]], columns: list[Column]) -> str:
    """A table with a column per key (its value formatted by :func:`html_cell`) or per
    (header, function of the item returning HTML)."""
    named = [c if isinstance(c, tuple) else (c.replace("_", " "), c) for c in columns]
    head = "".join(f"<th>{esc(header)}</th>" for header, _ in named)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{get(item) if callable(get) else html_cell(get, item.get(get))}</td>"
            for _, get in named
        )
        + "</tr>"
        for item in items
    )
    return (
        f'<table data-testid="{testid}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def html_section(testid: str, title: str, body: str, wide: bool = False) -> str:
    kind = ' class="wide"' if wide else ""
    return f'<section data-testid="{testid}"{kind}><h2>{esc(title)}</h2>{body}</section>'


def html_empty(testid: str, text: str) -> str:
    return f'<p class="empty" data-testid="{testid}">{esc(text)}</p>'


def clock(x: float) -> str:
    return f"{datetime.fromtimestamp(x, UTC):%m-%d %H:%M}"
