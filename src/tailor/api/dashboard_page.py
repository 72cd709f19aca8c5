"""The dashboard's HTML: one section per part of the lifecycle, charts from
:mod:`tailor.api.charts` (see :mod:`tailor.api.dashboard` for the routes and the data)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from tailor.api.charts import (
    Bar,
    Column,
    Interval,
    bar_chart,
    clock,
    esc,
    fmt_money,
    fmt_number,
    fmt_rate,
    fmt_time,
    html_empty,
    html_page,
    html_section,
    html_table,
    interval_chart,
    line_chart,
    short,
)
from tailor.api.deps import MAX_TENANT_CHARS

MAX_KEY_CHARS = 200
"""The login form's key field (an API key is 64 characters; the form says so)."""
RATES = {"ctr", "click", "add_to_cart", "purchase"}
"""Metrics shown as percentages."""


def _kpi_section(kpis: dict[str, Any]) -> str:
    latest = kpis["latest"]
    if latest is None:
        text = "No KPI snapshots yet: the worker (tailor worker) writes one per KPI window."
        return html_section("kpis", "KPIs over time", html_empty("kpi-empty", text), wide=True)
    ctr = (
        "CTR",
        lambda r: (
            f'<span data-testid="kpi-ctr" data-version="{esc(r.get("model_version"))}">'
            f"{esc(fmt_rate(r.get('ctr')))}</span>"
        ),
    )
    counts: list[Column] = ["model_version", "served", "impressions", "clicks", ctr, "purchases"]
    columns = [*counts, "conversion", "revenue", "revenue_per_session", "coverage"]
    table = html_table("kpi-table", latest["versions"], columns)
    drawn = []
    for metric, title, label, fmt in (
        ("ctr", "CTR per model version", "CTR", fmt_rate),
        ("revenue_per_session", "Revenue per session per model version", "revenue", fmt_money),
    ):
        series: dict[str, list[tuple[float, float]]] = {}
        for snapshot in kpis["snapshots"]:
            at = datetime.fromisoformat(snapshot["at"]).timestamp()
            for row in snapshot["versions"]:
                if row.get(metric) is not None:
                    series.setdefault(str(row.get("model_version")), []).append((at, row[metric]))
        testid = f"chart-kpi-{metric.replace('_', '-')}"
        drawn.append(
            line_chart(
                series,
                title=title,
                x_label="snapshot time (UTC)",
                y_label=label,
                testid=testid,
                y_format=fmt,
                x_format=clock,
            )
            if series
            else html_empty(testid, f"{title}: no figures yet")
        )
    hours = fmt_number(latest.get("window_hours"))
    window = f"Latest snapshot {fmt_time(latest['at'])}, over {hours} h."
    body = f'<p class="note">{esc(window)}</p>{table}<div class="charts">{"".join(drawn)}</div>'
    return html_section("kpis", "KPIs over time", body, wide=True)


def _experiment_charts(experiment: dict[str, Any]) -> str:
    """The arms' means on the primary metric, and each treatment's change against the
    control on every metric (relative, with the 95% interval of the difference)."""
    result, metric, name = experiment["result"], experiment["primary_metric"], experiment["name"]
    fmt = fmt_rate if metric in RATES else fmt_money
    bars = [Bar(arm, means.get(metric)) for arm, means in result["means"].items()]
    drawn = [
        bar_chart(
            bars,
            title=f"{name}: {metric} per arm",
            x_label="arm",
            y_label="CTR" if metric == "ctr" else metric,
            testid="chart-experiment-means",
            value_format=fmt,
        )
    ]
    intervals = []
    for found in result["comparisons"]:
        c = found["comparison"]
        if c["control"] and None not in (c["difference"], c["low"], c["high"]):
            base, label = abs(c["control"]), f"{found['arm']}: {found['metric']}"
            point, low, high = c["difference"] / base, c["low"] / base, c["high"] / base
            intervals.append(Interval(label, point, low, high, found["significant"]))
    if intervals:
        title = f"{name}: change against {result['control']} (95% interval)"
        drawn.append(
            interval_chart(
                intervals,
                title=title,
                x_label="relative difference",
                testid="chart-experiment-lift",
                value_format=lambda v: f"{v:+.0%}",
            )
        )
    return f'<div class="charts" data-experiment="{esc(name)}">{"".join(drawn)}</div>'


def _verdict(e: dict[str, Any]) -> str:
    result = e["result"]
    text = result["verdict"] if result else e["error"] or "not analysed (only the newest are)"
    return f'<span data-testid="experiment-verdict">{esc(text)}</span>'


def _srm(e: dict[str, Any]) -> str:
    result = e["result"] or {}
    p = result.get("srm_p_value")
    alarm = '<span class="bad">alarm</span> ' if result.get("srm_alarm") else ""
    return alarm + (f"p = {p:.3g}" if p is not None else "–")


def _guardrails(e: dict[str, Any]) -> str:
    return "<br>".join(
        f'<span class="{"bad" if g["broken"] else "good"}">{"broken" if g["broken"] else "holds"}'
        f"</span> {esc(g['metric'])} ({esc(g['arm'])}): {esc(g['reason'])}"
        for g in (e["result"] or {}).get("guardrails", [])
    )


def _arms(e: dict[str, Any]) -> str:
    users = (e["result"] or {}).get("users", {})
    return "<br>".join(
        f"{esc(a['name'])} → {esc(a['version'])} ({a['share']:.0f}%"
        + (f", {fmt_number(users[a['name']])} users)" if a["name"] in users else ")")
        for a in e["arms"]
    )


def _experiment_section(experiments: list[dict[str, Any]]) -> str:
    if not experiments:
        text = "No experiments yet (tailor experiments start)."
        return html_section(
            "experiments", "Experiments", html_empty("experiments-empty", text), wide=True
        )
    name = (
        "experiment",
        lambda e: (
            f'<span data-testid="experiment-name">{esc(e["name"])}</span><br>'
            f"{esc(e.get('kind', '?'))}, {esc(e.get('status', 'damaged'))}"
        ),
    )
    warnings = (
        "warnings",
        lambda e: "<br>".join(map(esc, (e["result"] or {}).get("warnings", []))),
    )
    checks = [("verdict", _verdict), ("sample ratio", _srm), ("guardrails", _guardrails)]
    columns: list[Column] = [name, ("arms", _arms), *checks, warnings, "started_at"]
    table = html_table("experiments-table", experiments, columns)
    drawn = "".join(_experiment_charts(e) for e in experiments if e["result"])
    return html_section("experiments", "Experiments", table + drawn, wide=True)


def _drift_section(drift: dict[str, Any] | None) -> str:
    if drift is None:
        return html_section(
            "drift", "Drift per feature", html_empty("drift-empty", "No drift check yet.")
        )
    features = [{"feature": name, **found} for name, found in drift["features"].items()]
    bars = [Bar(f["feature"], f.get("psi"), bool(f.get("drifted"))) for f in features]
    chart = bar_chart(
        bars,
        title="PSI per feature",
        x_label="feature",
        y_label="PSI",
        testid="chart-drift",
        value_format=lambda v: f"{v:.3g}",
        marked_label="drifted",
        references=[(0.1, "0.1 moderate"), (0.25, "0.25 major")],
    )
    drifted = (
        "drifted",
        lambda f: (
            '<span class="bad">drifted</span>' if f.get("drifted") else esc(f.get("note", "no"))
        ),
    )
    columns: list[Column] = ["feature", "psi", "ks_p_value", "js", "wasserstein", drifted]
    table = html_table("drift-table", features, columns)
    note = f"Checked {fmt_time(drift['at'])}; drifted: the KS test at 5% (PSI says how much)."
    return html_section(
        "drift", "Drift per feature", f'<p class="note">{esc(note)}</p>{chart}{table}'
    )


def _models_section(models: dict[str, Any], decisions: list[dict[str, Any]]) -> str:
    if not models["versions"]:
        text = "No registered model versions yet (tailor models register)."
        return html_section("models", "Model versions", html_empty("models-empty", text), wide=True)
    version = ("version", lambda m: f'<span data-testid="model-version">{esc(m["version"])}</span>')
    aliases = (
        "aliases",
        lambda m: "".join(f'<span class="badge">{esc(a)}</span>' for a in m["aliases"]),
    )
    columns: list[Column] = ["engine", version, aliases, "created_at", "metrics", "data_window"]
    body = html_table("models-table", models["versions"], columns)
    if models["alias_moves"]:
        moves = models["alias_moves"][::-1]
        columns = ["engine", "alias", "version", "previous", "moved_at", "moved_by", "reason"]
        body += "<h3>Alias moves</h3>" + html_table("alias-moves", moves, columns)
    if decisions:
        columns = ["at", "engine", "version", "promoted", "reason"]
        body += "<h3>Retraining decisions</h3>" + html_table("decisions-table", decisions, columns)
    return html_section("models", "Model versions", body, wide=True)


def _segments_section(segments: dict[str, Any] | None) -> str:
    if segments is None:
        return html_section(
            "segments", "Segments", html_empty("segments-empty", "No audience scores yet.")
        )
    bars = [Bar(s["segment"], s["customers"]) for s in segments["segments"]]
    chart = bar_chart(
        bars,
        title="Customers per segment",
        x_label="segment",
        y_label="customers",
        testid="chart-segments",
        value_format=fmt_number,
    )
    return html_section("segments", "Segments", chart)


def _weekday_clock(x: float) -> str:
    return f"{datetime.fromtimestamp(x, UTC):%a %m-%d %H:%M}"


def _home_link(root: str, home: str) -> str:
    href = f"{root}/dashboard?home={quote(home, safe='')}"
    return (
        f'<a href="{esc(href)}" title="{esc(home)}" data-testid="home-link">'
        f"{esc(short(home, 11))}</a>"
    )


def _home_chart(chart: dict[str, Any], days: int) -> str:
    """A home's week: actual indoor temperature and setpoint against the learned schedule,
    the slots it was expected home shaded; its habits in words below."""
    home, t = chart["home"], chart["t"]
    step = 60 * chart["slot_minutes"]
    series = {
        "indoor temperature": list(zip(t, chart.get("indoor_temp", []), strict=True)),
        "setpoint (actual)": list(zip(t, chart.get("setpoint", []), strict=True)),
        "learned schedule": list(zip(t, chart.get("learned_schedule", []), strict=True)),
    }
    bands: list[tuple[float, float]] = []
    for at, expected in zip(t, chart.get("expected_occupied", []), strict=True):
        if not expected:
            continue
        if bands and bands[-1][1] == at:
            bands[-1] = (bands[-1][0], at + step)
        else:
            bands.append((at, at + step))
    title = f"Home {short(home, 11)}: the last {days} days"
    zone = chart["timezone"]
    zone = "time (UTC)" if zone == "UTC" else f"time (UTC; its habits are in {zone} time)"
    drawn = (
        line_chart(
            {name: points for name, points in series.items() if points},
            title=title,
            x_label=zone,
            y_label="°C",
            testid="chart-home",
            y_format=lambda v: f"{v:g}",
            x_format=_weekday_clock,
            from_zero=False,
            markers=False,
            bands=bands,
            band_label="expected home (learned)",
        )
        if any(v is not None for line in series.values() for _, v in line)
        else html_empty("chart-home-empty", f"{title}: {chart['note'] or 'no readings'}")
    )
    habits = (
        '<ul data-testid="home-habits">'
        + "".join(f"<li>{esc(text)}</li>" for text in chart["habits"])
        + "</ul>"
        if chart["habits"]
        else html_empty("home-habits-empty", "No habit learned yet: the program stands.")
    )
    return (
        f'<div class="home" data-home="{esc(home)}"><div class="charts">{drawn}</div>'
        f"<h3>Habits learned</h3>{habits}</div>"
    )


def _homes_section(homes: dict[str, Any] | None, root: str) -> str:
    """The fitted homes, and charts for the first few or the one asked for; absent (None)
    without the devices engine."""
    if homes is None:
        return ""
    note = (
        f'<p class="note" data-testid="homes-note">{esc(homes["note"])}</p>'
        if homes["note"]
        else ""
    )
    if not homes["homes"]:
        text = "No fitted homes (tailor devices fit --model DIR)."
        return html_section("homes", "Homes", note + html_empty("homes-empty", text), wide=True)
    learned = (
        "habits learned",
        lambda h: (
            f'<span class="bad">{esc(h["error"])}</span>'
            if h["error"]
            else esc(fmt_number(h["habits"]))
        ),
    )
    columns: list[Column] = [
        ("home", lambda h: _home_link(root, h["home"])),
        learned,
        ("one-offs ignored", lambda h: esc(fmt_number(h.get("one_offs_ignored")))),
        ("share of time home", lambda h: esc(fmt_rate(h.get("home_share")))),
        ("adjustments", lambda h: esc(fmt_number(h.get("adjustments")))),
        ("personalized", lambda h: esc(fmt_number(h["personalized"]))),
        ("learned until", lambda h: esc(fmt_time(h.get("learned_until")))),
    ]
    table = html_table("homes-table", homes["homes"], columns)
    more = homes["total"] - len(homes["homes"])
    if more > 0:
        table += f'<p class="note">{esc(f"and {more:,} more (pick one with ?home=)")}</p>'
    charts = "".join(_home_chart(chart, homes["days"]) for chart in homes["charts"])
    return html_section("homes", "Homes", note + table + charts, wide=True)


def _ops_section(alerts: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> str:
    body = (
        html_table("alerts-table", alerts, ["at", "severity", "source", "message"])
        if alerts
        else html_empty("alerts-empty", "No alerts.")
    )
    columns: list[Column] = ["name", "last_status", "last_finished", "next_run_at", "runs"]
    columns.append("last_message")
    body += "<h3>Jobs</h3>" + (
        html_table("jobs-table", jobs, columns)
        if jobs
        else html_empty("jobs-empty", "No jobs yet (tailor worker schedules them).")
    )
    return html_section("operations", "Alerts and jobs", body)


def render_page(data: dict[str, Any], root: str = "") -> str:
    """The dashboard's HTML from :func:`dashboard_data`'s result."""
    header = (
        f'<header><h1>tailor</h1><span class="meta">tenant <b data-testid="tenant">'
        f"{esc(data['tenant'])}</b> · {esc(fmt_time(data['generated_at']))} · refreshes every "
        f'minute</span><form method="post" action="{esc(root)}/dashboard/logout">'
        "<button>Log out</button></form></header>"
    )
    sections = [
        _kpi_section(data["kpis"]),
        _experiment_section(data["experiments"]),
        _drift_section(data["drift"]),
        _segments_section(data["segments"]),
        _models_section(data["models"], data["decisions"]),
        _ops_section(data["alerts"], data["jobs"]),
        _homes_section(data.get("homes"), root),
    ]
    return html_page("tailor dashboard", header + f"<main>{''.join(sections)}</main>", refresh=True)


def login_page(root: str, message: str = "", tenant: str = "") -> str:
    shown = f'<p class="bad" data-testid="login-message">{esc(message)}</p>' if message else ""
    return html_page(
        "tailor dashboard: log in",
        f'<form class="login" data-testid="login-form" method="post" '
        f'action="{esc(root)}/dashboard/login"><h2>tailor dashboard</h2>{shown}'
        f'<label>Admin API key<input type="password" name="key" maxlength="{MAX_KEY_CHARS}" '
        'autocomplete="current-password" required autofocus></label>'
        f'<label>Tenant (optional)<input name="tenant" maxlength="{MAX_TENANT_CHARS}" '
        f'value="{esc(tenant)}"></label><button type="submit">Log in</button></form>',
    )
