"""The budget report: one self-contained HTML page (inline SVG charts from
:mod:`tailor.evaluate.report`) and its JSON twin.

It shows the fitted parameters with their intervals and the fit's convergence, each channel's
contribution over time against the actual target, the response curves with the marginal ROI
at the recent spend, the plan against the recent split of spend, and the back-test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tailor.budget.data import MediaData
from tailor.budget.model import MediaMixModel
from tailor.budget.service import describe
from tailor.evaluate.report import PALETTE, bar_chart, html_page, line_chart, write_page
from tailor.evaluate.report import escape as _e

CURVE_POINTS = 21
CURVE_REACH = 2.0
"""Response curves run from 0 to this many times a channel's largest spend per period."""


def budget_figures(
    model: MediaMixModel,
    data: MediaData,
    *,
    plan: dict[str, Any] | None = None,
    backtest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the page shows, in plain types (the JSON twin). ``plan`` and ``backtest``
    are :func:`~tailor.budget.service.make_plan`'s and
    :func:`~tailor.budget.service.run_backtest`'s answers."""
    from tailor.budget.optimize import response_curves

    contributions = model.contributions(data)
    predicted = model.predict(data)
    response = model.response("mean")
    recent = np.asarray(model.history_, float).mean(axis=0)
    grid = {
        c: np.linspace(0.0, CURVE_REACH * float(data.spend[:, i].max()), CURVE_POINTS)
        for i, c in enumerate(model.channels_)
    }
    curves = response_curves(response, horizon=1, grid=grid, history=model.history_)
    at_recent = response_curves(
        response,
        horizon=1,
        grid={c: np.array([recent[i]]) for i, c in enumerate(model.channels_)},
        history=model.history_,
    )["curves"]
    return {
        "model": describe(model),
        "data": {
            "periods": data.periods,
            "first": str(data.dates[0]),
            "last": str(data.dates[-1]),
            "frequency": data.frequency,
            "target": data.target_name,
            "spend": dict(zip(data.channels, data.spend.sum(axis=0).tolist(), strict=True)),
        },
        "contributions": {
            "dates": [str(d) for d in data.dates],
            "actual": data.target.tolist(),
            "predicted": predicted["mean"].tolist(),
            "baseline": contributions["baseline"].tolist(),
            "channels": {
                c: contributions["mean"][:, i].tolist() for i, c in enumerate(model.channels_)
            },
        },
        "roi": model.roi(data),
        "response_curves": {
            **curves,
            "recent_spend": dict(zip(model.channels_, recent.tolist(), strict=True)),
            "marginal_roi_at_recent": {c: v["marginal_roi"][0] for c, v in at_recent.items()},
        },
        "plan": plan,
        "backtest": backtest,
    }


def write_budget_report(figures: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    """``path`` (.html) and its twin (.json)."""
    return write_page(_page(figures), figures, path)


def _n(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if abs(float(value)) < 1e-9:  # an optimizer's zero (1e-17) reads as zero
        return "0"
    return f"{float(value):,.{digits}g}" if abs(float(value)) < 1e4 else f"{float(value):,.0f}"


def _legend(colours: dict[str, str]) -> str:
    return (
        '<p class="legend">'
        + "".join(
            f'<span><span class="swatch" style="background:{c}"></span>{_e(name)}</span>'
            for name, c in colours.items()
        )
        + "</p>"
    )


def _colours(channels: list[str]) -> dict[str, str]:
    return {c: PALETTE[i % 6] for i, c in enumerate(channels)}


def _page(f: dict[str, Any]) -> str:
    model, data = f["model"], f["data"]
    unit = "week" if data["frequency"] == "W" else "day"
    title = f"Advertising budget: what drives {data['target']}"
    sections = [
        f"<h1>{_e(title)}</h1>",
        f"<p>{data['periods']} {unit}s from {_e(data['first'])} to {_e(data['last'])}, "
        f"channels {_e(', '.join(model['channels']))}. Fitted by "
        f"{'NUTS' if model['method'] == 'nuts' else 'MAP with a Laplace approximation'} in "
        f"{model['fit_seconds']:.1f} s.</p>",
        _parameters(model),
        _lift_tests(model.get("lift_tests") or [], data["target"], unit),
        _contributions(f, unit),
        _curves(f["response_curves"], model["channels"], unit),
        _plan(f["plan"], unit),
        _backtest(f["backtest"], unit),
        '<p class="note">Intervals are 94% highest-density intervals of the posterior '
        "(after MAP: of its Laplace approximation). Contributions and ROI are the model's "
        "estimates, not measurements: check them against experiments where you can.</p>",
    ]
    return html_page(title, sections)


def _parameters(model: dict[str, Any]) -> str:
    problems = model["problems"]
    verdict = (
        '<p class="note">Convergence: ' + _e("; ".join(problems)) + "</p>"
        if problems
        else "<p>Convergence: no problem found ("
        + (
            "every R-hat ≤ 1.01, at least 200 effective draws, no divergence"
            if model["method"] == "nuts"
            else "the optimizer converged and the curvature at the mode is positive"
        )
        + ").</p>"
    )
    nuts = model["method"] == "nuts"
    head = "<tr><th>parameter</th><th>mean</th><th>sd</th><th>94% HDI</th>" + (
        "<th>R-hat</th><th>ESS</th></tr>" if nuts else "</tr>"
    )
    rows = []
    for name, entry in model["summary"].items():
        means = np.atleast_1d(entry["mean"])
        labels = (
            [f"{name}[{c}]" for c in model["channels"]]
            if len(means) == len(model["channels"])
            and name in ("alpha", "theta", "lam", "slope", "beta")
            else [name]
            if len(means) == 1
            else [f"{name}[{i}]" for i in range(len(means))]
        )
        columns = [means, np.atleast_1d(entry["sd"]), *map(np.atleast_1d, entry["hdi"])]
        if nuts:
            columns += [np.atleast_1d(entry["r_hat"]), np.atleast_1d(entry["ess"])]
        for i, label in enumerate(labels):
            cells = f"<td>{_n(columns[0][i])}</td><td>{_n(columns[1][i])}</td>"
            cells += f"<td>[{_n(columns[2][i])}, {_n(columns[3][i])}]</td>"
            if nuts:
                cells += f"<td>{columns[4][i]:.3f}</td><td>{columns[5][i]:.0f}</td>"
            rows.append(f"<tr><td>{_e(label)}</td>{cells}</tr>")
    return (
        "<h2>The fitted model</h2>"
        + verdict
        + "<p>beta: a channel's effect per period at full saturation (target units); lam: the "
        "saturation's curvature per unit of carried-over spend; alpha: the share of a period's "
        "effect carried into the next.</p>" + f"<table>{head}{''.join(rows)}</table>"
    )


def _lift_tests(tests: list[dict[str, Any]], target: str, unit: str) -> str:
    if not tests:
        return ""
    rows = "".join(
        f"<tr><td>{_e(t['channel'])}</td><td>{_n(t['x'])} → {_n(t['x'] + t['delta_x'])}</td>"
        f"<td>{_n(t['measured'])} ± {_n(t['sigma'])}</td><td>{_n(t['model'])}</td>"
        f"<td>[{_n(t['model_lo'])}, {_n(t['model_hi'])}]</td>"
        f"<td class={'bad' if abs(t['z']) > 2 else 'good'}>{t['z']:+.1f}</td></tr>"
        for t in tests
    )
    return (
        "<h2>Lift tests</h2>"
        f"<p>The experiments the fit was calibrated with: the spend per {unit} each moved, the "
        f"change of {_e(target)} per {unit} it measured, and what the fitted curves say the "
        "same change does. z is the gap in the test's standard errors; beyond about 2 the "
        "experiment and the rest of the data disagree.</p>"
        "<table><tr><th>channel</th><th>spend</th><th>measured</th><th>model</th>"
        f"<th>94% interval</th><th>z</th></tr>{rows}</table>"
    )


def _contributions(f: dict[str, Any], unit: str) -> str:
    c = f["contributions"]
    x = list(range(len(c["dates"])))
    colours = {"baseline": PALETTE[6], "actual": PALETTE[7], **_colours(list(c["channels"]))}
    stacked = {"baseline": (x, c["baseline"])}
    running = np.asarray(c["baseline"], float)
    for name, values in c["channels"].items():
        running = running + np.asarray(values, float)
        stacked[f"+ {name}"] = (x, running.tolist())
        colours[f"+ {name}"] = colours[name]
    stacked["actual"] = (x, c["actual"])
    roi_rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_n(r['spend'])}</td><td>{_n(r['contribution'])}</td>"
        f"<td>{_n(r['roi'])}</td><td>[{_n(r['roi_lo'])}, {_n(r['roi_hi'])}]</td></tr>"
        for name, r in f["roi"].items()
    )
    return (
        "<h2>Contributions over time</h2>"
        f"<p>Stacked: the baseline (trend, season, controls), then each channel's contribution "
        f"added on top; the black line is the actual {_e(f['data']['target'])}. The gap between "
        "the top line and the actual is the noise the model does not explain.</p>"
        + _legend({name: colours[name] for name in stacked})
        + line_chart(
            stacked,
            colours,
            title="baseline + channel contributions against the actual target",
            x_label=f"{unit} (0 = {c['dates'][0]})",
        )
        + "<table><tr><th>channel</th><th>spend</th><th>contribution</th><th>ROI</th>"
        f"<th>94% interval</th></tr>{roi_rows}</table>"
    )


def _curves(r: dict[str, Any], channels: list[str], unit: str) -> str:
    colours = _colours(channels)
    curves = r["curves"]
    effect = {c: (curves[c]["spend"], curves[c]["effect"]) for c in channels}
    marginal = {
        c: (curves[c]["spend"], [v if v is not None else 0.0 for v in curves[c]["marginal_roi"]])
        for c in channels
    }
    rows = "".join(
        f"<tr><td>{_e(c)}</td><td>{_n(r['recent_spend'][c])}</td>"
        f"<td>{_n(r['marginal_roi_at_recent'][c])}</td></tr>"
        for c in channels
    )
    return (
        "<h2>Response curves</h2>"
        f"<p>What one {unit}'s spend on a channel brings in, counting its carry-over into the "
        f"following {unit}s (left), and what the next unit of spend brings at each level, the "
        "marginal ROI (right). Where a curve flattens, money is better spent elsewhere.</p>"
        + _legend(colours)
        + '<div class="grid">'
        + line_chart(effect, colours, title="incremental effect", x_label=f"spend per {unit}")
        + line_chart(marginal, colours, title="marginal ROI", x_label=f"spend per {unit}")
        + "</div><table><tr><th>channel</th><th>recent spend per "
        f"{unit}</th><th>marginal ROI there</th></tr>{rows}</table>"
    )


def _plan(plan: dict[str, Any] | None, unit: str) -> str:
    if plan is None:
        return "<h2>The plan</h2><p>No plan was made.</p>"
    channels = plan["channels"]
    reference = plan.get("reference")
    total = sum(plan["per_period"]) or 1.0
    series = {"plan": [v / total for v in plan["per_period"]]}
    colours = {"plan": PALETTE[0], "recent split": PALETTE[6]}
    if reference is not None:
        series = {
            "recent split": [
                v / (sum(reference["per_period"]) or 1.0) for v in reference["per_period"]
            ],
            **series,
        }
    rows = "".join(
        f"<tr><td>{_e(c)}</td>"
        + (f"<td>{_n(reference['per_period'][i])}</td>" if reference else "")
        + f"<td>{_n(plan['per_period'][i])}</td><td>{_n(plan['contributions'][i])}</td>"
        f"<td>{_n(plan['marginal_roi'][i])}</td></tr>"
        for i, c in enumerate(channels)
    )
    uplift = plan.get("uplift")
    versus = (
        f" against {_n(reference['conversions'])} with the recent split of spend ({uplift:+.1%})"
        if reference is not None and uplift is not None
        else ""
    )
    note = f'<p class="note">{_e(plan["note"])}</p>' if plan.get("note") else ""
    return (
        "<h2>The plan against the recent split</h2>"
        f"<p>{_n(plan['spend'])} over {plan['horizon']} {unit}s from "
        f"{_e(plan.get('first_period', ''))}: expected {_n(plan['conversions'])} incremental "
        f"{_e(plan.get('target', 'conversions'))}{versus}; CPA {_n(plan['cpa'])}. Solver status: "
        f"{_e(plan['status'])}.</p>"
        + note
        + _legend({name: colours[name] for name in series})
        + bar_chart(channels, series, colours, title="share of the budget per channel")
        + "<table><tr><th>channel</th>"
        + (f"<th>recent split per {unit}</th>" if reference else "")
        + f"<th>plan per {unit}</th><th>incremental effect</th><th>marginal ROI</th></tr>"
        + rows
        + "</table>"
    )


def _backtest(test: dict[str, Any] | None, unit: str) -> str:
    if test is None:
        return "<h2>Back-test</h2><p>Not run.</p>"
    groups = ["under the model"]
    actual, optimized = [test["predicted_actual"]], [test["predicted_optimized"]]
    if test.get("true_actual") is not None:
        groups.append("under the true response")
        actual.append(test["true_actual"])
        optimized.append(test["true_optimized"])
    lines = [
        f"under the model {test['predicted_uplift']:+.1%}"
        if test["predicted_uplift"] is not None
        else ""
    ]
    if test.get("true_uplift") is not None:
        lines.append(f"under the true response {test['true_uplift']:+.1%}")
    channels = test["channels"]
    spent = {
        "actual": np.asarray(test["actual"], float).sum(axis=0).tolist(),
        "optimized": np.asarray(test["allocations"], float).sum(axis=0).tolist(),
    }
    colours = {"actual": PALETTE[6], "optimized": PALETTE[0]}
    dates = test.get("dates") or []
    since = f" from {_e(dates[0])}" if dates else ""
    return (
        "<h2>Back-test</h2>"
        f"<p>The last {len(test['actual'])} {unit}s{since} replayed: each {unit}'s actual total "
        "spend split by the optimizer (within 0.5 to 1.5 times each channel's recent share), "
        "against the split actually used. Total channel effect, uplift "
        f"{_e(', '.join(x for x in lines if x))}. An uplift under the model alone is what the "
        "model believes; the true response, where known (simulated data), is the test.</p>"
        + _legend(colours)
        + '<div class="grid">'
        + bar_chart(
            groups,
            {"actual": actual, "optimized": optimized},
            colours,
            title="total channel effect of the replayed periods",
        )
        + bar_chart(channels, spent, colours, title="spend per channel over the replay")
        + "</div>"
    )
