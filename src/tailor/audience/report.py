"""The audience report: one self-contained HTML page (inline SVG charts) and its JSON twin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tailor.audience.lifetime_value import BetaGeo
from tailor.audience.segments import segment_summary
from tailor.evaluate.report import PALETTE, bar_chart, histogram, html_page, line_chart, write_page
from tailor.evaluate.report import escape as _e

VALUE_BINS = 10
TOP_COUNT = 7
"""The fit check groups customers with this many repeat purchases or more."""


def audience_figures(scores: pa.Table, described: dict[str, Any], test: dict | None) -> dict:
    """Everything the page shows, in plain types (the JSON twin)."""
    clv = scores["clv"].to_numpy()
    segments = segment_summary(scores)
    upper = float(np.quantile(clv, 0.99)) if len(clv) else 1.0
    counts, edges = np.histogram(np.clip(clv, 0, upper), bins=VALUE_BINS, range=(0, upper or 1))
    return {
        "as_of": described["as_of"],
        "customers": scores.num_rows,
        "model": {k: described[k] for k in ("bgnbd", "bgnbd_standard_errors", "gammagamma")},
        "clusters": described["clusters"],
        "segments": segments,
        "clv_histogram": {
            "shares": (counts / max(counts.sum(), 1)).round(4).tolist(),
            "edges": edges.round(2).tolist(),
        },
        "fit_check": fit_check(
            scores["frequency"].to_numpy(), scores["tenure_weeks"].to_numpy(), described["bgnbd"]
        ),
        "backtest": test,
        "notes": described.get("notes", []),
    }


def fit_check(frequency: np.ndarray, T: np.ndarray, bgnbd: dict[str, float]) -> dict:
    """Customers per number of repeat purchases, as observed and as the fitted BG/NBD expects
    of a base of these ages (the papers' first check of a fit); the last group is
    ``TOP_COUNT`` or more."""
    model = BetaGeo.from_params(**bgnbd)
    with np.errstate(divide="ignore"):  # T = 0: log 0 in terms that then count for nothing
        shares = [model.probability_of_purchases(k, T) for k in range(TOP_COUNT)]
    expected = [float(p.sum()) for p in shares]
    expected.append(float(len(T) - sum(expected)))
    counts = np.minimum(frequency, TOP_COUNT).astype(int)
    actual = np.bincount(counts, minlength=TOP_COUNT + 1).tolist()
    return {
        "repeat_purchases": [str(k) for k in range(TOP_COUNT)] + [f"{TOP_COUNT}+"],
        "actual": actual,
        "expected": [round(e, 1) for e in expected],
    }


def write_audience_report(figures: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    """``path`` (.html) and its twin (.json)."""
    return write_page(_page(figures), figures, path)


def _page(f: dict[str, Any]) -> str:
    title = f"Customers as of {f['as_of']}: segments, churn risk and lifetime value"
    rows = "".join(
        f"<tr><td>{_e(s['segment'])}</td><td>{s['customers']:,}</td>"
        f"<td>{s['mean_churn_risk']:.1%}</td><td>{s['mean_clv']:,.2f}</td>"
        f"<td>{s['share_of_value']:.1%}</td></tr>"
        for s in f["segments"]
    )
    sections = [
        f"<h1>{_e(title)}</h1>",
        f"<p>{f['customers']:,} customers with analytics consent.</p>",
        "<h2>Segments</h2><table><tr><th>segment</th><th>customers</th><th>mean churn risk</th>"
        f"<th>mean 12-month value</th><th>share of value</th></tr>{rows}</table>",
        bar_chart(
            [s["segment"] for s in f["segments"]],
            {"customers": [s["customers"] for s in f["segments"]]},
            {"customers": PALETTE[0]},
            title="customers per segment",
        ),
        "<h2>Lifetime value</h2>",
        histogram(
            f["clv_histogram"]["shares"],
            f["clv_histogram"]["edges"],
            PALETTE[2],
            title="share of customers by lifetime value",
            caption="the top 1% are counted in the last bar",
        ),
        _clusters(f["clusters"]),
        "<h2>How well the BG/NBD fits</h2>",
        bar_chart(
            f["fit_check"]["repeat_purchases"],
            {"actual": f["fit_check"]["actual"], "BG/NBD expected": f["fit_check"]["expected"]},
            {"actual": PALETTE[0], "BG/NBD expected": PALETTE[1]},
            title="customers by repeat purchases so far: actual and expected",
        ),
        _backtest(f["backtest"]),
    ]
    sections += [f'<p class="note">{_e(note)}</p>' for note in f["notes"]]
    return html_page(title, sections)


def _clusters(clusters: dict[str, Any]) -> str:
    items = "".join(
        f"<li>cluster {c['cluster']}: {c['customers']:,} customers, "
        f"{_e(', '.join(c['distinguished_by']))}</li>"
        for c in clusters["descriptions"]
    )
    return (
        f"<h2>Clusters</h2><p>k = {clusters['k']}, the number of clusters with the highest "
        f"silhouette score.</p><ul>{items}</ul>"
    )


def _backtest(test: dict[str, Any] | None) -> str:
    if test is None:
        return "<h2>Back-test</h2><p>Not run: the log is too short for two horizons.</p>"
    colours = {name: PALETTE[i] for i, name in enumerate(test["gains"])}
    colours.update({"perfect calibration": PALETTE[6], "random": PALETTE[6]})
    auc = ", ".join(f"{_e(k)} {v:.3f}" for k, v in test["auc"].items())
    brier = ", ".join(f"{_e(k)} {v:.3f}" for k, v in test["brier"].items())
    steps = [i / 10 for i in range(11)]
    calibration = test["calibration"]
    holdout = test["holdout"]["by_frequency"]
    return "".join(
        [
            "<h2>Back-test</h2>",
            f"<p>Churn model trained on the customers as of {_e(test['train_as_of'])}, tested "
            f"on the {test['test_customers']:,} as of {_e(test['test_as_of'])} "
            f"({test['churn_rate']:.1%} bought nothing in the next {test['horizon_days']} "
            f"days). AUC: {auc}. Brier score: {brier}.</p>",
            '<div class="grid">',
            line_chart(
                {
                    "churn model": (
                        [c["predicted"] for c in calibration],
                        [c["observed"] for c in calibration],
                    ),
                    "perfect calibration": ([0, 1], [0, 1]),
                },
                colours,
                title="observed against predicted churn (deciles)",
                x_label="predicted churn risk",
            ),
            line_chart(
                {**{k: (steps, v) for k, v in test["gains"].items()}, "random": (steps, steps)},
                colours,
                title="gains: share of churners among the riskiest",
                x_label="share of customers, riskiest first",
            ),
            line_chart(
                {
                    "BG/NBD expected": (
                        [h["frequency"] for h in holdout],
                        [h["predicted"] for h in holdout],
                    ),
                    "actual": ([h["frequency"] for h in holdout], [h["actual"] for h in holdout]),
                },
                {"BG/NBD expected": PALETTE[1], "actual": PALETTE[0]},
                title=f"purchases in the last {test['horizon_days']} days "
                f"(mean absolute error {test['holdout']['mae']:.3f})",
                x_label="repeat purchases before (7 = 7 or more)",
            ),
            "</div>",
        ]
    )
