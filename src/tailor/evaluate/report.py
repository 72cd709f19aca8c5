"""An offline evaluation as one self-contained HTML page plus its JSON twin.

The page works offline and without JavaScript: every chart is inline SVG drawn here (no
plotting library, no fonts or scripts fetched), and every piece of text from the data (model
names, parameters) is escaped. The JSON twin holds the same figures in plain types, so a
script or a notebook can read what a person reads.

The module is generic on purpose: :mod:`tailor.evaluate` sits below the engines, so it takes
plain dicts, or any objects with the attributes listed in :func:`write_report`, and never
imports an engine.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["bar_chart", "histogram", "html_page", "line_chart", "report_data", "write_report"]

PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#7F7F7F",
    "#000000",
)
"""Okabe and Ito's colour-blind safe palette: one colour per model, the same in every chart."""

METRICS = (
    ("ndcg", "nDCG", True),
    ("map", "MAP", True),
    ("precision", "precision", True),
    ("recall", "recall", True),
    ("hit_rate", "hit rate", True),
    ("mrr", "MRR", True),
    ("coverage", "coverage", False),
    ("novelty", "novelty", False),
)
"""(key, label, higher is better) of the metrics table. Coverage and novelty describe the
lists rather than score them, so their highest value is not marked as the best."""

PROTOCOLS = {
    "random": "a random 25% of each user's interactions are held out as the test",
    "temporal": "the latest 20% of all interactions in time are held out as the test "
    "(the model predicts the future from the past, as in production)",
    "leave-last-out": "each user's latest interaction is held out as the test",
}

HISTOGRAM_BINS = 10
_BEST_ROW = ' class="best"'
_TOP_CELL = ' class="top"'

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.92rem; }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.params { text-align: left; font-family: ui-monospace, monospace; font-size: 0.8rem; }
tr.best { background: #e8f4ea; font-weight: 600; }
td.top { text-decoration: underline; }
.note { background: #f5f7fa; border-left: 4px solid #0072B2; padding: 0.5rem 0.9rem; }
.grid { display: flex; flex-wrap: wrap; gap: 1rem; }
.legend span { margin-right: 1.1rem; white-space: nowrap; }
.swatch { display: inline-block; width: 0.9rem; height: 0.9rem; margin-right: 0.3rem;
          vertical-align: -0.1rem; }
dt { font-weight: 600; } dd { margin: 0 0 0.5rem 1.2rem; }
svg text { font-family: system-ui, sans-serif; }
"""


def write_report(
    figures: Mapping[str, Any],
    reports: Mapping[str, Any],
    html_path: str | Path,
    json_path: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write the evaluation as an HTML page and a JSON file holding the same figures.

    Parameters
    ----------
    figures : mapping
        The JSON-able summary of the evaluation: ``protocol``, ``k``, ``data`` (sizes such
        as users, items, interactions, train, validation, test), ``models`` ({name: {metric:
        value}} with ``ndcg``, ``map``, ... and ``fit_s``), ``best`` (a model name),
        ``tuned`` ({name: parameters}) and ``validation_ndcg`` ({name: value or None}).
    reports : mapping
        {model name: report}, each a mapping or an object with ``trials`` (a sequence of
        objects or mappings with ``params``, ``ndcg`` and ``fit_s``: the tuning trials on
        the validation split), ``curve`` ({"k": [...], "ndcg": [...], "recall": [...], ...})
        and ``per_user_ndcg`` (one test nDCG per evaluated user, or None). A model missing
        here is still shown in the summary table, without curves or trials.
    html_path : str or Path
        The page to write; missing parent folders are created.
    json_path : str or Path, optional
        The JSON twin; defaults to ``html_path`` with the suffix ``.json``.

    Returns
    -------
    tuple of Path
        The HTML and JSON paths written.

    Raises
    ------
    ValueError
        If ``figures`` lacks ``models`` or names no model, or ``html_path`` and
        ``json_path`` are the same file.
    """
    html_path = Path(html_path)
    json_path = Path(json_path) if json_path is not None else html_path.with_suffix(".json")
    if html_path.resolve() == json_path.resolve():
        raise ValueError(f"the HTML report and its JSON twin would both be {html_path}")
    data = report_data(figures, reports)
    page = _page(data)
    for path in (html_path, json_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(page, encoding="utf-8")
    # allow_nan=False: a NaN would make the twin unreadable by strict JSON parsers.
    json_path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return html_path, json_path


def report_data(figures: Mapping[str, Any], reports: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON twin's content: ``figures`` plus ``curves``, ``trials`` and ``per_user_ndcg``
    (a summary and histogram per model), in plain Python types only.

    Raises
    ------
    ValueError
        If ``figures`` has no ``models`` entry or it names no model.
    """
    models = figures.get("models")
    if not isinstance(models, Mapping) or not models:
        raise ValueError("figures['models'] must map at least one model name to its metrics")
    data = _plain(dict(figures))
    data.setdefault("generated", datetime.now(UTC).isoformat(timespec="seconds"))
    data["curves"] = {}
    data["trials"] = {}
    data["per_user_ndcg"] = {}
    for name, report in reports.items():
        name = str(name)
        curve = _field(report, "curve")
        if curve:
            data["curves"][name] = _plain(dict(curve))
        trials = _field(report, "trials") or []
        data["trials"][name] = [
            {
                "params": _plain(_field(trial, "params") or {}),
                "ndcg": _plain(_field(trial, "ndcg")),
                "fit_s": _plain(_field(trial, "fit_s")),
            }
            for trial in trials
        ]
        per_user = _field(report, "per_user_ndcg")
        if per_user is not None:
            data["per_user_ndcg"][name] = _distribution(per_user)
    return data


# --- plain types --------------------------------------------------------------------------


def _field(source: Any, name: str, default: Any = None) -> Any:
    """``source[name]`` for a mapping, ``source.name`` for an object (reports come as both)."""
    if isinstance(source, Mapping):
        return source.get(name, default)
    return getattr(source, name, default)


def _plain(value: Any) -> Any:
    """``value`` as JSON types: NumPy scalars and arrays unwrapped, NaN and inf as None."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(
        f"cannot write {value!r} ({type(value).__name__}) to the JSON report: figures must "
        "hold numbers, strings, lists and dicts"
    )


def _distribution(values: Any) -> dict[str, Any]:
    """Summary and histogram of per-user nDCG (which lies in [0, 1])."""
    scores = np.asarray(values, dtype=np.float64).ravel()
    scores = scores[np.isfinite(scores)]
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    if scores.size == 0:
        return {"users": 0, "histogram": {"edges": edges.tolist(), "counts": [0] * HISTOGRAM_BINS}}
    counts, _ = np.histogram(np.clip(scores, 0.0, 1.0), bins=edges)
    q1, median, q3 = np.quantile(scores, [0.25, 0.5, 0.75])
    return {
        "users": int(scores.size),
        "mean": round(float(scores.mean()), 4),
        "median": round(float(median), 4),
        "q1": round(float(q1), 4),
        "q3": round(float(q3), 4),
        "zero_share": round(float((scores == 0).mean()), 4),
        "histogram": {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()},
    }


# --- the page -----------------------------------------------------------------------------


def write_page(page: str, figures: Mapping[str, Any], path: str | Path) -> tuple[Path, Path]:
    """Write an engine's HTML ``page`` to ``path`` (.html) and ``figures`` to its JSON twin
    beside it; returns both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    twin = path.with_suffix(".json")
    twin.write_text(json.dumps(figures, indent=1, default=str))
    path.write_text(page, encoding="utf-8")
    return path, twin


def escape(value: Any) -> str:
    """``value`` as text safe inside HTML (names and ids come from users' data)."""
    return html.escape(str(value), quote=True)


_e = escape


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _page(data: dict[str, Any]) -> str:
    models = list(data["models"])
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(models)}
    k = data.get("k", "k")
    title = f"Recommendation engine: offline evaluation ({data.get('protocol', '?')} split)"
    sections = [
        f"<h1>{_e(title)}</h1>",
        _summary(data),
        _metrics_table(data),
        _bars_section(data, colours),
        _curves_section(data, colours),
        _distribution_section(data, colours),
        _trials_section(data, colours),
        _how_to_read(k),
    ]
    return html_page(title, sections)


def html_page(title: str, sections: Sequence[str]) -> str:
    """A self-contained page: the title (escaped here) and ready HTML sections."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


def _summary(data: dict[str, Any]) -> str:
    protocol = str(data.get("protocol", ""))
    k = data.get("k")
    best = data.get("best")
    sizes = data.get("data") or {}
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(f'{value:,}' if isinstance(value, int) else value)}"
        "</td></tr>"
        for name, value in sizes.items()
    )
    best_line = ""
    if best in data["models"]:
        best_ndcg = data["models"][best].get("ndcg")
        best_line = (
            f"<p>Best model on the test split: <strong>{_e(best)}</strong> "
            f"(nDCG@{_e(k)} {_number(best_ndcg)}).</p>"
        )
    chosen = data.get("chosen")
    if chosen in data["models"]:
        best_line += (
            f"\n<p>Chosen for serving: <strong>{_e(chosen)}</strong>, the best on validation "
            "(the test split only scores; <code>--save-model</code> saves this one).</p>"
        )
    how = PROTOCOLS.get(protocol, "see the protocol's documentation")
    window = data.get("data_window") or {}
    if window:
        span = ""
        if window.get("first_event") and window.get("last_event"):
            span = f", events from {window['first_event']} to {window['last_event']}"
        best_line += f"\n<p>Data: {_e(window.get('source', 'unnamed'))}{_e(span)}.</p>"
    return (
        "<h2>Summary</h2>\n"
        f"<p>Protocol <strong>{_e(protocol)}</strong>: {_e(how)}. Every model was tuned on a "
        "validation split carved out of the training interactions by the same protocol, "
        "refitted on all training interactions with its best setting, and scored once on "
        f"the test interactions at cut-off k = {_e(k)}. Generated {_e(data.get('generated'))}."
        "</p>\n"
        f"{best_line}\n"
        f"<table><tr><th>data</th><th>rows</th></tr>{rows}</table>"
    )


def _metrics_table(data: dict[str, Any]) -> str:
    models = data["models"]
    k = data.get("k")
    shown = [m for m in METRICS if any(m[0] in figures for figures in models.values())]
    # The best value of each ranking metric is underlined, so a model that wins on recall but
    # not on nDCG is visible too.
    tops = {
        key: max(
            (f.get(key) for f in models.values() if isinstance(f.get(key), (int, float))),
            default=None,
        )
        for key, _, better in shown
        if better
    }
    head = "".join(f"<th>{_e(label)}@{_e(k)}</th>" for key, label, _ in shown if key in tops)
    head += "".join(f"<th>{_e(label)}</th>" for key, label, _ in shown if key not in tops)
    head += "<th>validation nDCG</th><th>fit (s)</th><th>tuned parameters</th>"
    ordered = [key for key, _, _ in shown if key in tops] + [
        key for key, _, _ in shown if key not in tops
    ]
    body = []
    for name, figures in models.items():
        cells = []
        for key in ordered:
            value = figures.get(key)
            top = key in tops and value is not None and value == tops[key]
            cells.append(f"<td{_TOP_CELL if top else ''}>{_number(value)}</td>")
        validation = (data.get("validation_ndcg") or {}).get(name)
        params = (data.get("tuned") or {}).get(name)
        cells.append(f"<td>{_number(validation)}</td>")
        cells.append(f"<td>{_number(figures.get('fit_s'), 2)}</td>")
        cells.append(f'<td class="params">{_e(json.dumps(params, sort_keys=True))}</td>')
        best = _BEST_ROW if name == data.get("best") else ""
        body.append(f"<tr{best}><td>{_e(name)}</td>{''.join(cells)}</tr>")
    return (
        "<h2>Test metrics per model</h2>\n"
        "<p>The highlighted row is the best model by test nDCG; the best value of each ranking "
        "metric is underlined. Coverage and novelty describe the lists, they do not score "
        "them.</p>\n"
        f"<table><tr><th>model</th>{head}</tr>\n" + "\n".join(body) + "</table>"
    )


def _legend(colours: Mapping[str, str]) -> str:
    items = "".join(
        f'<span><span class="swatch" style="background:{colour}"></span>{_e(name)}</span>'
        for name, colour in colours.items()
    )
    return f'<p class="legend">{items}</p>'


def _bars_section(data: dict[str, Any], colours: Mapping[str, str]) -> str:
    k = data.get("k")
    models = data["models"]
    series = {
        f"nDCG@{k}": [models[name].get("ndcg") or 0.0 for name in models],
        f"MAP@{k}": [models[name].get("map") or 0.0 for name in models],
    }
    series_colours = dict(zip(series, ("#0072B2", "#E69F00"), strict=True))
    chart = bar_chart(
        list(models),
        series,
        series_colours,
        title=f"nDCG@{k} and MAP@{k} on the test split",
        bold=data.get("best"),
    )
    return "<h2>nDCG and MAP per model</h2>\n" + chart + _legend(series_colours)


def _curves_section(data: dict[str, Any], colours: Mapping[str, str]) -> str:
    curves = data.get("curves") or {}
    if not curves:
        return ""
    charts = []
    for metric, label in (("ndcg", "nDCG@k"), ("recall", "recall@k")):
        series = {
            name: (curve["k"], curve[metric])
            for name, curve in curves.items()
            if metric in curve and "k" in curve
        }
        if series:
            charts.append(line_chart(series, colours, title=f"{label} by cut-off k", x_label="k"))
    return (
        "<h2>Metrics by cut-off k</h2>\n<p>How each model's test nDCG and recall grow with "
        "the length of the list shown. Lines that cross mean the winner depends on how many "
        "items your page shows.</p>\n"
        f'<div class="grid">{"".join(charts)}</div>' + _legend(colours)
    )


def _distribution_section(data: dict[str, Any], colours: Mapping[str, str]) -> str:
    distributions = data.get("per_user_ndcg") or {}
    if not distributions:
        return ""
    k = data.get("k")
    charts = []
    for name, dist in distributions.items():
        counts = dist["histogram"]["counts"]
        users = max(dist["users"], 1)
        shares = [count / users for count in counts]
        caption = (
            f"{dist['users']:,} users · mean {_number(dist.get('mean'))} · median "
            f"{_number(dist.get('median'))} · {100 * (dist.get('zero_share') or 0):.0f}% at 0"
        )
        charts.append(
            histogram(
                shares,
                dist["histogram"]["edges"],
                colours.get(name, PALETTE[0]),
                title=f"{name}",
                caption=caption,
            )
        )
    return (
        f"<h2>Per-user nDCG@{_e(k)}</h2>\n<p>The share of test users at each level of nDCG. "
        "A mean carried by a few users who score high while most score 0 is a different "
        "model from one that is a little right for everyone.</p>\n"
        f'<div class="grid">{"".join(charts)}</div>'
    )


def _trials_section(data: dict[str, Any], colours: Mapping[str, str]) -> str:
    trials = {name: rows for name, rows in (data.get("trials") or {}).items() if rows}
    if not trials:
        return ""
    k = data.get("k")
    parts = [
        "<h2>Tuning trials</h2>",
        '<p class="note">Tuning used the validation split only: each setting was fitted on '
        "the training interactions minus the validation part and scored there. The test "
        "interactions chose nothing; they were scored once, with the best setting.</p>",
    ]
    for name, rows in trials.items():
        scores = [row["ndcg"] if row["ndcg"] is not None else 0.0 for row in rows]
        best = max(range(len(scores)), key=scores.__getitem__)
        parts.append(f"<h3>{_e(name)}: {len(rows)} settings tried</h3>")
        parts.append(
            dot_chart(
                scores,
                best,
                colours.get(name, PALETTE[0]),
                title=f"{name}: validation nDCG@{k} per trial (best ringed)",
                labels=[json.dumps(row["params"], sort_keys=True) for row in rows],
            )
        )
        body = "".join(
            f"<tr{_BEST_ROW if i == best else ''}><td>{i + 1}</td>"
            f"<td>{_number(row['ndcg'])}</td><td>{_number(row['fit_s'], 2)}</td>"
            f'<td class="params">{_e(json.dumps(row["params"], sort_keys=True))}</td></tr>'
            for i, row in enumerate(rows)
        )
        parts.append(
            f"<details><summary>all {len(rows)} trials</summary><table><tr><th>trial</th>"
            f"<th>validation nDCG@{_e(k)}</th><th>fit (s)</th><th>parameters</th></tr>"
            f"{body}</table></details>"
        )
    return "\n".join(parts)


def _how_to_read(k: Any) -> str:
    terms = (
        (
            f"nDCG@{k}",
            "how high the held-out items rank in the top k, discounted by position "
            "and divided by the best possible; 1 is a perfect ranking. The headline figure.",
        ),
        (f"MAP@{k}", "mean average precision: rewards putting all held-out items early."),
        (
            f"precision@{k} / recall@{k}",
            "the share of the k items that were held out / the "
            "share of held-out items that made the top k.",
        ),
        ("hit rate", "the share of users with at least one held-out item in their top k."),
        ("MRR", "the mean of 1 / rank of the first hit."),
        (
            "coverage",
            "the share of the catalogue that appears in anyone's top k: low coverage "
            "means everyone sees the same items.",
        ),
        (
            "novelty",
            "the mean self-information (−log₂ popularity share) of recommended items: "
            "higher means less obvious items.",
        ),
        (
            "validation nDCG",
            "the tuning score of the chosen setting on the validation split: "
            "far above the test figure hints at overfitting the validation data.",
        ),
    )
    items = "".join(f"<dt>{_e(name)}</dt><dd>{_e(text)}</dd>" for name, text in terms)
    return (
        "<h2>How to read this report</h2>\n"
        "<p>The figures measure how well each model recovers interactions it was not shown. "
        "They rank models against each other on this data; they do not predict the lift of "
        "an online test. Small differences between models are within the spread of the "
        "per-user chart: treat them as ties. Prefer the temporal protocol when your data has "
        "meaningful times: it is the one that matches production.</p>\n"
        f"<dl>{items}</dl>"
    )


# --- inline SVG charts --------------------------------------------------------------------

_W, _H = 520, 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 14, 40, 44


def _ticks(top: float, count: int = 5) -> tuple[float, list[float]]:
    """A round upper bound at least ``top`` and evenly spaced round ticks from 0 to it."""
    if not math.isfinite(top) or top <= 0:
        return 1.0, [i / count for i in range(count + 1)]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    upper = step * math.ceil(top / step - 1e-9)
    return upper, [step * i for i in range(round(upper / step) + 1)]


def _tick_label(value: float) -> str:
    return f"{value:.3g}"


def _frame(title: str, upper: float, ticks: Sequence[float], width: int, height: int) -> str:
    """Title, horizontal grid lines and y tick labels of a chart."""
    plot_h = height - _TOP - _BOTTOM
    parts = [
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13" '
        f'font-weight="600">{_e(title)}</text>'
    ]
    for tick in ticks:
        y = _TOP + plot_h * (1 - tick / upper)
        parts.append(
            f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#e2e2e2"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#555">{_tick_label(tick)}</text>'
        )
    parts.append(
        f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}" '
        'stroke="#888"/>'
    )
    return "".join(parts)


def _svg(body: str, title: str, width: int, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">{body}</svg>'
    )


def bar_chart(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    colours: Mapping[str, str],
    *,
    title: str,
    bold: str | None = None,
) -> str:
    """Grouped bars: one group per entry of ``groups``, one bar per series, as inline SVG.

    Parameters
    ----------
    groups : sequence of str
        Group labels (model names), drawn under the groups.
    series : mapping of str to sequence of float
        One value per group for each series.
    colours : mapping of str to str
        The fill of each series.
    title : str
        Drawn above the chart and used as its accessible name.
    bold : str, optional
        A group whose label is drawn bold (the best model).

    Returns
    -------
    str
        The ``<svg>`` element.
    """
    width = max(_W, _LEFT + _RIGHT + 90 * len(groups))
    plot_w, plot_h = width - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    values = [v for row in series.values() for v in row]
    upper, ticks = _ticks(max(values, default=0.0))
    parts = [_frame(title, upper, ticks, width, _H)]
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for g, group in enumerate(groups):
        x0 = _LEFT + g * group_w + group_w * 0.1
        for s, (name, row) in enumerate(series.items()):
            value = float(row[g])
            h = plot_h * value / upper
            x, y = x0 + s * bar_w, _TOP + plot_h - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                f'fill="{colours[name]}"><title>{_e(group)} {_e(name)}: {value:.4f}</title>'
                f'</rect><text x="{x + bar_w / 2 - 1:.1f}" y="{y - 3:.1f}" font-size="10" '
                f'text-anchor="middle" fill="#333">{value:.3f}</text>'
            )
        weight = ' font-weight="700"' if group == bold else ""
        parts.append(
            f'<text x="{_LEFT + (g + 0.5) * group_w:.1f}" y="{_TOP + plot_h + 18}" '
            f'text-anchor="middle" font-size="12"{weight}>{_e(group)}</text>'
        )
    return _svg("".join(parts), title, width, _H)


def _round_step(raw: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``raw``."""
    if raw <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    colours: Mapping[str, str],
    *,
    title: str,
    x_label: str,
) -> str:
    """One line with markers per series of (x values, y values), as inline SVG.

    Parameters
    ----------
    series : mapping of str to (sequence of float, sequence of float)
        The points of each line; hovering a marker shows its series and values.
    colours : mapping of str to str
        The stroke of each series.
    title, x_label : str
        The chart's title (also its accessible name) and the x axis label.

    Returns
    -------
    str
        The ``<svg>`` element.
    """
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    xs = [float(x) for points in series.values() for x in points[0]]
    ys = [float(y) for points in series.values() for y in points[1] if y is not None]
    upper, ticks = _ticks(max(ys, default=0.0))
    x_min, x_max = min(xs, default=0.0), max(xs, default=1.0)
    span = (x_max - x_min) or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return _LEFT + plot_w * (x - x_min) / span, _TOP + plot_h * (1 - y / upper)

    parts = [_frame(title, upper, ticks, _W, _H)]
    # multiples of 5, or of a coarser round step for long series, so labels never overlap
    step = max(5.0, _round_step(span / 10))
    for x in sorted(set(xs)):
        if x in (x_min, x_max) or x % step == 0:
            px, _ = at(x, 0)
            parts.append(
                f'<text x="{px:.1f}" y="{_TOP + plot_h + 15}" text-anchor="middle" '
                f'font-size="11" fill="#555">{_tick_label(x)}</text>'
            )
    parts.append(
        f'<text x="{_LEFT + plot_w / 2}" y="{_H - 8}" text-anchor="middle" '
        f'font-size="12">{_e(x_label)}</text>'
    )
    for name, (x_values, y_values) in series.items():
        points = [
            (at(float(x), float(y)), x, y)
            for x, y in zip(x_values, y_values, strict=False)
            if y is not None
        ]
        colour = colours.get(name, PALETTE[0])
        path = " ".join(f"{px:.1f},{py:.1f}" for (px, py), _, _ in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.extend(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}">'
            f"<title>{_e(name)} at {_tick_label(float(x))}: {float(y):.4f}</title></circle>"
            for (px, py), x, y in points
        )
    return _svg("".join(parts), title, _W, _H)


def histogram(
    shares: Sequence[float],
    edges: Sequence[float],
    colour: str,
    *,
    title: str,
    caption: str = "",
) -> str:
    """Bars of ``shares`` (fractions of users) over the bins delimited by ``edges``.

    Parameters
    ----------
    shares : sequence of float
        The share of users in each bin; ``len(edges) == len(shares) + 1``.
    edges : sequence of float
        Bin edges, increasing.
    colour : str
        The bars' fill.
    title, caption : str
        Drawn above and below the bars.

    Returns
    -------
    str
        The ``<svg>`` element (a small multiple: one per model).
    """
    width, height = 340, 220
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    upper, ticks = _ticks(max(shares, default=0.0), count=4)
    parts = [_frame(title, upper, ticks, width, height)]
    low, high = float(edges[0]), float(edges[-1])
    span = (high - low) or 1.0
    for i, share in enumerate(shares):
        x0 = _LEFT + plot_w * (float(edges[i]) - low) / span
        x1 = _LEFT + plot_w * (float(edges[i + 1]) - low) / span
        h = plot_h * share / upper
        parts.append(
            f'<rect x="{x0 + 1:.1f}" y="{_TOP + plot_h - h:.1f}" width="{x1 - x0 - 2:.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>nDCG {float(edges[i]):.1f}–'
            f"{float(edges[i + 1]):.1f}: {100 * share:.1f}% of users</title></rect>"
        )
    for value in (low, (low + high) / 2, high):
        x = _LEFT + plot_w * (value - low) / span
        parts.append(
            f'<text x="{x:.1f}" y="{_TOP + plot_h + 14}" text-anchor="middle" font-size="11" '
            f'fill="#555">{_tick_label(value)}</text>'
        )
    parts.append(
        f'<text x="{_LEFT + plot_w / 2}" y="{height - 8}" text-anchor="middle" '
        f'font-size="11">{_e(caption)}</text>'
    )
    return _svg("".join(parts), f"{title}: per-user nDCG", width, height)


def dot_chart(
    values: Sequence[float],
    best: int,
    colour: str,
    *,
    title: str,
    labels: Sequence[str] | None = None,
) -> str:
    """One dot per trial (x: trial number, y: value), the ``best`` one ringed, as inline SVG.

    Parameters
    ----------
    values : sequence of float
        The validation score of each trial, in the order tried.
    best : int
        Index of the chosen trial.
    colour : str
        The dots' fill.
    title : str
        Drawn above the chart and used as its accessible name.
    labels : sequence of str, optional
        Shown when hovering a dot (the trial's parameters).

    Returns
    -------
    str
        The ``<svg>`` element.
    """
    n = len(values)
    width = max(_W, _LEFT + _RIGHT + 14 * n)
    plot_w, plot_h = width - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    upper, ticks = _ticks(max(values, default=0.0))
    parts = [_frame(title, upper, ticks, width, _H)]
    step = plot_w / max(n, 1)
    for i, value in enumerate(values):
        x, y = _LEFT + (i + 0.5) * step, _TOP + plot_h * (1 - value / upper)
        label = labels[i] if labels else ""
        tip = f"<title>trial {i + 1}: {value:.4f} {_e(label)}</title>"
        if i == best:
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="none" stroke="#D55E00" '
                f'stroke-width="2.5">{tip}</circle>'
                f'<text x="{x:.1f}" y="{y - 12:.1f}" text-anchor="middle" font-size="11" '
                f'fill="#D55E00">best {value:.4f}</text>'
            )
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">{tip}</circle>')
        if n <= 30 or (i + 1) % 5 == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{_TOP + plot_h + 15}" text-anchor="middle" '
                f'font-size="10" fill="#555">{i + 1}</text>'
            )
    parts.append(
        f'<text x="{_LEFT + plot_w / 2}" y="{_H - 8}" text-anchor="middle" '
        'font-size="12">trial</text>'
    )
    return _svg("".join(parts), title, width, _H)
