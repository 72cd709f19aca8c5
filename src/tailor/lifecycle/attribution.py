"""From served answers and events to an experiment's verdict, a bandit's rewards and KPIs.

* **Exposure**: a subject is exposed to an arm when an ``impression`` event carries the
  ``recommendation_id`` of an answer that arm served (``served_recommendations``). A subject
  counts in the arm of their first exposure; later exposures in another arm (a canary's
  share grew past them, or an arm was re-weighted) are counted as ``crossovers``.
* **Conversions** are the subject's events within ``window_days`` after that first
  exposure: any click, add-to-cart and purchase (0/1 per subject) and revenue (sum of
  quantity × price over purchase lines, returns negative). **CTR** is the clicks that carry
  one of the experiment's recommendation ids over its impressions: a ratio metric, compared
  by the delta method.
* **CUPED** uses the same metric in the ``window_days`` before exposure as the covariate.

Events are read for the ``analytics`` purpose: a subject who did not consent to it is not
in the results, whatever they were served. The joins run in an in-process DuckDB over the
Arrow tables the store hands back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from tailor.lifecycle.experiments import (
    Comparison,
    beta_binomial,
    compare,
    compare_ratio,
    sample_ratio_mismatch,
)
from tailor.lifecycle.rollouts import Experiment
from tailor.store.base import Store

PURPOSE = "analytics"
BINARY_METRICS = ("click", "add_to_cart", "purchase")
PER_SUBJECT_METRICS = (*BINARY_METRICS, "revenue")
OUTCOME_TYPES = ["click", "add_to_cart", "purchase"]
SIGNIFICANCE = 0.05

_PER_SUBJECT = """
WITH served AS (SELECT recommendation_id, arm FROM served_rows),
exposures AS (
    SELECT i.subject_id, s.arm, i.occurred_at, i.recommendation_id
    FROM impressions i JOIN served s USING (recommendation_id)
    WHERE i.subject_id IS NOT NULL
),
first_exposure AS (
    SELECT subject_id, arg_min(arm, occurred_at) AS arm, min(occurred_at) AS exposed_at,
           count(DISTINCT arm) > 1 AS crossed
    FROM exposures GROUP BY subject_id
),
per_subject AS (
    SELECT f.subject_id, f.arm, f.exposed_at, f.crossed,
        (SELECT count(*) FROM exposures x WHERE x.subject_id = f.subject_id
            AND x.arm = f.arm AND x.occurred_at < f.exposed_at + $window) AS impressions
    FROM first_exposure f
)
SELECT p.subject_id, p.arm, p.crossed, p.impressions,
    count(*) FILTER (WHERE o.event_type = 'click' AND o.recommendation_id IN
        (SELECT recommendation_id FROM served) AND o.occurred_at >= p.exposed_at
        AND o.occurred_at < p.exposed_at + $window) AS rec_clicks,
    {metrics}
FROM per_subject p LEFT JOIN outcomes o ON o.subject_id = p.subject_id
    AND o.occurred_at >= p.exposed_at - $window AND o.occurred_at < p.exposed_at + $window
GROUP BY p.subject_id, p.arm, p.crossed, p.impressions
ORDER BY p.subject_id
"""


def _metric_sql() -> str:
    after = "o.occurred_at >= p.exposed_at"
    before = "o.occurred_at < p.exposed_at"
    parts = []
    for period, condition in (("", after), ("pre_", before)):
        for kind in BINARY_METRICS:
            parts.append(
                f"(count(*) FILTER (WHERE o.event_type = '{kind}' AND {condition}) > 0)::INT "
                f"AS {period}{kind}"
            )
        parts.append(
            "coalesce(sum(o.quantity * o.price) FILTER (WHERE o.event_type = 'purchase' "
            f"AND {condition}), 0) AS {period}revenue"
        )
    return ",\n    ".join(parts)


def per_subject(store: Store, experiment: Experiment) -> pa.Table:
    """One row per exposed subject: arm, impressions, recommendation clicks, each metric
    after exposure and (``pre_*``) before it. A canary counts the answers served since its
    current step began: its split changed at each step, and the sample-ratio check and the
    comparison hold for one split."""
    served = store.read_served(experiment=experiment.name, since=experiment.phase_started_at())
    served = served.select(["recommendation_id", "arm"])
    since = experiment.started_at - timedelta(days=experiment.window_days)
    impressions = store.read_events(
        purpose=PURPOSE,
        event_types=["impression"],
        start=experiment.started_at - timedelta(minutes=5),
        columns=["subject_id", "recommendation_id", "occurred_at"],
    )
    outcomes = store.read_events(
        purpose=PURPOSE,
        event_types=OUTCOME_TYPES,
        start=since,
        columns=[
            "subject_id",
            "event_type",
            "recommendation_id",
            "occurred_at",
            "quantity",
            "price",
        ],
    )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("served_rows", served)
        con.register("impressions", impressions)
        con.register("outcomes", outcomes)
        window = timedelta(days=experiment.window_days)
        sql = _PER_SUBJECT.format(metrics=_metric_sql())
        return con.sql(sql, params={"window": window}).to_arrow_table()
    finally:
        con.close()


@dataclass(frozen=True)
class MetricResult:
    metric: str
    arm: str
    comparison: Comparison
    probability_to_beat: float | None = None
    expected_loss: float | None = None
    significant: bool = False


@dataclass
class ExperimentResult:
    experiment: str
    kind: str
    status: str
    control: str
    users: dict[str, int]
    crossovers: int
    means: dict[str, dict[str, float]]
    """arm → metric → value (rates for 0/1 metrics, revenue per subject, CTR)."""
    comparisons: list[MetricResult]
    srm_p_value: float | None
    srm_alarm: bool
    guardrails: list[dict]
    warnings: list[str] = field(default_factory=list)
    verdict: str = "collecting"

    @property
    def guardrails_hold(self) -> bool:
        return not any(g["broken"] for g in self.guardrails)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["guardrails_hold"] = self.guardrails_hold
        return _finite(out)


def _finite(value):
    """JSON has no NaN: undefined figures (no control rate for a lift) become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def required_users(rate: float, relative_effect: float = 0.1, power: float = 0.8) -> int:
    """Subjects per arm to detect ``relative_effect`` on a conversion ``rate`` (two-sided
    5% test): n = (z_α/2 + z_β)² · 2p(1-p) / (p·effect)²."""
    from scipy import stats

    if not 0 < rate < 1:
        return 0
    z = stats.norm.ppf(1 - SIGNIFICANCE / 2) + stats.norm.ppf(power)
    return math.ceil(z**2 * 2 * rate * (1 - rate) / (rate * relative_effect) ** 2)


def analyze(store: Store, experiment: Experiment) -> ExperimentResult:
    """The experiment's results so far: means per arm, each treatment arm against the
    control on every metric (Welch with CUPED; CTR by the delta method; the Bayesian view of
    the 0/1 metrics), the sample-ratio-mismatch alarm, the guardrails and a verdict."""
    table = per_subject(store, experiment)
    arms = experiment.arm_names
    control = arms[0]
    columns = {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}
    in_arm = {arm: columns["arm"] == arm for arm in arms}
    users = {arm: int(mask.sum()) for arm, mask in in_arm.items()}
    means: dict[str, dict[str, float]] = {}
    for arm, mask in in_arm.items():
        row = {
            m: float(columns[m][mask].mean()) if mask.any() else math.nan
            for m in PER_SUBJECT_METRICS
        }
        shown = columns["impressions"][mask].sum()
        row["ctr"] = float(columns["rec_clicks"][mask].sum() / shown) if shown else math.nan
        means[arm] = row
    result = ExperimentResult(
        experiment.name,
        experiment.kind,
        experiment.status,
        control,
        users,
        int(columns["crossed"].sum()) if len(table) else 0,
        means,
        [],
        None,
        False,
        [],
    )
    if experiment.kind != "bandit" and all(users.values()):
        weights = experiment.weights()
        planned = [w for w in weights if w > 0]
        observed = [users[a] for a, w in zip(arms, weights, strict=True) if w > 0]
        if len(planned) >= 2:
            srm = sample_ratio_mismatch(observed, planned)
            result.srm_p_value, result.srm_alarm = srm.p_value, srm.alarm
    for arm in arms[1:]:
        if users[arm] < 2 or users[control] < 2:
            continue
        result.comparisons += _compare_arm(columns, in_arm[control], in_arm[arm], arm)
    result.guardrails = _guardrails(experiment, result)
    result.warnings = _warnings(experiment, result)
    result.verdict = _verdict(experiment, result)
    return result


def _compare_arm(columns: dict, control: np.ndarray, treatment: np.ndarray, arm: str) -> list:
    out = []
    for metric in PER_SUBJECT_METRICS:
        values, before = columns[metric].astype(float), columns[f"pre_{metric}"].astype(float)
        comparison = compare(
            values[control],
            values[treatment],
            control_before=before[control],
            treatment_before=before[treatment],
        )
        bayes = None
        if metric in BINARY_METRICS:
            bayes = beta_binomial(
                int(values[control].sum()),
                int(control.sum()),
                int(values[treatment].sum()),
                int(treatment.sum()),
            )
        out.append(
            MetricResult(
                metric,
                arm,
                comparison,
                bayes.probability_to_beat if bayes else None,
                bayes.expected_loss if bayes else None,
                comparison.p_value < SIGNIFICANCE,
            )
        )
    shown = columns["impressions"].astype(float)
    if shown[control].sum() > 0 and shown[treatment].sum() > 0:
        clicks = columns["rec_clicks"].astype(float)
        comparison = compare_ratio(
            clicks[control], shown[control], clicks[treatment], shown[treatment]
        )
        out.append(
            MetricResult("ctr", arm, comparison, None, None, comparison.p_value < SIGNIFICANCE)
        )
    return out


def _guardrails(experiment: Experiment, result: ExperimentResult) -> list[dict]:
    """A guardrail breaks when the upper end of the 95% interval of treatment minus control
    lies below ``-max_drop × control``: the treatment is worse, beyond the tolerance, with
    95% confidence."""
    found = {(m.metric, m.arm): m.comparison for m in result.comparisons}
    out = []
    for guardrail in experiment.guardrails:
        for arm in experiment.arm_names[1:]:
            comparison = found.get((guardrail.metric, arm))
            if comparison is None:
                out.append(
                    {
                        "metric": guardrail.metric,
                        "arm": arm,
                        "broken": False,
                        "reason": "not enough data yet",
                    }
                )
                continue
            limit = -guardrail.max_drop * abs(comparison.control)
            broken = comparison.high < limit
            out.append(
                {
                    "metric": guardrail.metric,
                    "arm": arm,
                    "broken": bool(broken),
                    "reason": (
                        f"{arm}'s {guardrail.metric} {comparison.treatment:.4g} against "
                        f"{comparison.control:.4g}: the difference's 95% interval "
                        f"[{comparison.low:.4g}, {comparison.high:.4g}] "
                        + ("lies below" if broken else "reaches")
                        + (f" the allowed drop {limit:.4g}" if limit else " 0 (no drop allowed)")
                    ),
                }
            )
    if result.srm_alarm:
        out.append(
            {
                "metric": "sample_ratio",
                "arm": "*",
                "broken": True,
                "reason": f"sample ratio mismatch (p = {result.srm_p_value:.2g} < 0.001): "
                "the assignment or the logging is broken",
            }
        )
    return out


def _warnings(experiment: Experiment, result: ExperimentResult) -> list[str]:
    warnings = []
    control = result.means.get(result.control, {})
    rate = control.get(
        experiment.primary_metric if experiment.primary_metric != "revenue" else "purchase",
        math.nan,
    )
    needed = required_users(rate) if rate == rate else 0
    for arm, count in result.users.items():
        if count < experiment.min_users:
            warnings.append(f"{arm}: {count} users, fewer than the minimum {experiment.min_users}")
        elif needed and count < needed:
            warnings.append(
                f"{arm}: {count} users; about {needed} per arm are needed to detect a 10% change "
                f"of {experiment.primary_metric} at {rate:.3g} with 80% power"
            )
    if result.crossovers:
        warnings.append(f"{result.crossovers} users were exposed to more than one arm")
    return warnings


def _verdict(experiment: Experiment, result: ExperimentResult) -> str:
    if result.srm_alarm:
        return "invalid: sample ratio mismatch"
    if not result.guardrails_hold:
        return "guardrail broken"
    if min(result.users.values()) < experiment.min_users:
        return "collecting"
    primary = [m for m in result.comparisons if m.metric == experiment.primary_metric]
    winners = [m for m in primary if m.significant and m.comparison.difference > 0]
    losers = [m for m in primary if m.significant and m.comparison.difference < 0]
    if winners:
        best = max(winners, key=lambda m: m.comparison.difference)
        return f"{best.arm} wins on {experiment.primary_metric}"
    if losers and len(losers) == len(primary):
        return f"{result.control} wins on {experiment.primary_metric}"
    return "no significant difference yet"


def bandit_rewards(store: Store, experiment: Experiment) -> tuple[list[float], list[float]]:
    """Per arm: answers clicked (successes) and answers shown but not clicked (failures).
    An answer counts once it was shown (an impression carries its id)."""
    served = store.read_served(experiment=experiment.name).select(["recommendation_id", "arm"])
    events = store.read_events(
        purpose=PURPOSE,
        event_types=["impression", "click"],
        start=experiment.started_at - timedelta(minutes=5),
        columns=["event_type", "recommendation_id"],
    )
    con = duckdb.connect()
    try:
        con.register("served_rows", served)
        con.register("events", events)
        rows = con.execute(
            "SELECT s.arm, bool_or(e.event_type = 'click') AS clicked "
            "FROM served_rows s JOIN events e USING (recommendation_id) "
            "GROUP BY s.recommendation_id, s.arm"
        ).fetchall()
    finally:
        con.close()
    arms = experiment.arm_names
    wins, losses = [0.0] * len(arms), [0.0] * len(arms)
    for arm, clicked in rows:
        if arm in arms:
            (wins if clicked else losses)[arms.index(arm)] += 1
    return wins, losses


def version_kpis(store: Store, *, hours: float = 24.0, now: datetime | None = None) -> list[dict]:
    """Per model version over the last ``hours``: answers served, impressions, clicks on
    recommendations, CTR, purchases and revenue carrying a recommendation id, revenue per
    session (of the sessions that saw a recommendation) and catalog coverage (items shown
    over items in the catalog)."""
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=hours)
    served = store.read_served(since=since - timedelta(hours=1))
    events = store.read_events(
        purpose=PURPOSE,
        event_types=["impression", "click", "purchase"],
        start=since,
        end=now,
        columns=["event_type", "recommendation_id", "session_id", "item_id", "quantity", "price"],
    )
    catalog = max(store.count_entities("items"), 1)
    con = duckdb.connect()
    try:
        con.register("served_rows", served)
        con.register("events", events)
        rows = con.execute(
            """
            SELECT s.model_version,
                count(DISTINCT s.recommendation_id) AS served,
                count(*) FILTER (WHERE e.event_type = 'impression') AS impressions,
                count(*) FILTER (WHERE e.event_type = 'click') AS clicks,
                count(*) FILTER (WHERE e.event_type = 'purchase') AS purchases,
                coalesce(sum(e.quantity * e.price) FILTER (WHERE e.event_type = 'purchase'), 0)
                    AS revenue,
                count(DISTINCT e.session_id) FILTER (WHERE e.event_type = 'impression')
                    AS sessions,
                count(DISTINCT e.item_id) FILTER (WHERE e.event_type = 'impression') AS shown
            FROM served_rows s LEFT JOIN events e USING (recommendation_id)
            WHERE s.served_at >= $since
            GROUP BY s.model_version ORDER BY s.model_version
            """,
            {"since": since},
        ).fetchall()
    finally:
        con.close()
    out = []
    for version, n_served, shown, clicks, purchases, revenue, sessions, items in rows:
        out.append(
            {
                "engine": "recommend",
                "model_version": version,
                "served": int(n_served),
                "impressions": int(shown),
                "clicks": int(clicks),
                "ctr": clicks / shown if shown else None,
                "purchases": int(purchases),
                "conversion": purchases / shown if shown else None,
                "revenue": float(revenue),
                "revenue_per_session": float(revenue) / sessions if sessions else None,
                "coverage": items / catalog,
            }
        )
    return out
