"""The worker's jobs (:mod:`tailor.lifecycle.worker`); each returns a line saying what it did.

**retrain-recommend** is champion against challenger on the latest holdout: the events of the
last ``holdout`` (7 days) are held out; the challenger (the configured algorithm) is fitted on
the events before them; the champion (the ``production`` version) is judged on the same
holdout, refitted from its registered configuration on the same events when its own data
reached into the holdout (it would otherwise be judged on what it learned). The challenger is
then refitted on every event, saved, registered with its holdout metrics and pointed at by
``candidate``; it becomes ``production`` only when its ``promotion_metric`` is not worse than
the champion's by more than ``promotion_tolerance`` (relative). Otherwise an alert says why.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from tailor.config import parse_duration
from tailor.evaluate.metrics import ranking_metrics
from tailor.lifecycle import attribution, journal, registry, rollouts
from tailor.lifecycle.alerts import check_kpis, raise_alert
from tailor.lifecycle.worker import JobContext
from tailor.recommend.interactions import INTERACTION_TYPES
from tailor.recommend.service import RecommendationService

HOLDOUT_USERS = 2000
"""Holdout users judged at most (a hash sample): enough for a stable nDCG, cheap to score."""
K = 10


# --- retraining ------------------------------------------------------------------------------


def holdout_metrics(service: RecommendationService, holdout: pa.Table) -> dict[str, float]:
    """nDCG, recall and hit rate at 10 of ``service`` on the items each known user interacted
    with in ``holdout`` (that the service did not already know the user had)."""
    users = holdout["subject_id"].to_numpy(zero_copy_only=False)
    items = holdout["item_id"].to_numpy(zero_copy_only=False)
    wanted: dict[str, set[str]] = {}
    for user, item in zip(users, items, strict=True):
        wanted.setdefault(user, set()).add(item)
    judged = sorted(u for u in wanted if service.user_row(u) >= 0)
    if len(judged) > HOLDOUT_USERS:  # a deterministic sample, the same for every model
        judged = sorted(judged, key=lambda u: hashlib.sha256(u.encode()).digest())
        judged = judged[:HOLDOUT_USERS]
    if not judged:
        raise ValueError("no holdout user is known to the model: nothing to judge it on")
    vocabulary: dict[str, int] = {}
    top = np.full((len(judged), K), -1, np.int64)
    rows, cols = [], []
    for row, user in enumerate(judged):
        recommended = [line.item_id for line in service.recommend(user, k=K)]
        for rank, item in enumerate(recommended[:K]):
            top[row, rank] = vocabulary.setdefault(item, len(vocabulary))
        for item in wanted[user]:
            rows.append(row)
            cols.append(vocabulary.setdefault(item, len(vocabulary)))
    relevant = sp.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(judged), len(vocabulary))
    )
    metrics = ranking_metrics(top, relevant, k=K)
    return {
        "ndcg_at_10": metrics.ndcg,
        "recall_at_10": metrics.recall,
        "hit_rate_at_10": metrics.hit_rate,
        "holdout_users": float(metrics.users),
    }


def _split(events: pa.Table, holdout_s: float) -> tuple[pa.Table, pa.Table, object]:
    times = events["occurred_at"]
    cutoff = pc.max(times).as_py() - timedelta(seconds=holdout_s)
    train = events.filter(pc.less(times, pa.scalar(cutoff, times.type)))
    later = events.filter(pc.greater_equal(times, pa.scalar(cutoff, times.type)))
    later = later.filter(
        pc.and_(
            pc.is_in(later["event_type"], value_set=pa.array(INTERACTION_TYPES)),
            pc.and_(pc.is_valid(later["subject_id"]), pc.is_valid(later["item_id"])),
        )
    )
    return train, later, cutoff


def _champion_metrics(context: JobContext, train, items, holdout, cutoff) -> tuple[str, dict]:
    store = context.store
    try:
        champion = registry.resolve(store, "recommend", "production")
    except ValueError:
        return "", {}
    window_end = champion.data_window.get("to")
    saw_holdout = window_end is None or datetime.fromisoformat(str(window_end)) >= cutoff
    if saw_holdout:
        config = champion.config
        service = RecommendationService.build(
            train, items, model=config.get("model", "itemknn"), params=config.get("params") or None
        )
    else:
        service = RecommendationService.load(champion.artifact)
    return champion.version, holdout_metrics(service, holdout)


def retrain_recommend(context: JobContext) -> str:
    settings, store = context.settings, context.store
    events = store.read_events(purpose="personalization")
    items = store.read_entities("items")
    if not events.num_rows:
        return "no events yet: nothing to train on"
    train, holdout, cutoff = _split(events, parse_duration(settings.holdout))
    model = settings.recommend_model
    challenger = RecommendationService.build(train, items, model=model)
    metrics = holdout_metrics(challenger, holdout)
    champion, champion_metrics = _champion_metrics(context, train, items, holdout, cutoff)
    name = settings.promotion_metric
    if name not in metrics:
        raise ValueError(
            f"promotion_metric {name!r} is not one of {', '.join(metrics)} ([lifecycle] in "
            "tailor.toml)"
        )
    ours, theirs = metrics[name], champion_metrics.get(name)
    floor = None if theirs is None else theirs * (1 - settings.promotion_tolerance)
    promoted = floor is None or ours >= floor
    final = RecommendationService.build(events, items, model=model).with_candidates()
    path = Path(settings.model_dir) / final.version
    final.save(path)
    window = final.info.get("data_window") or [None, None]
    version = registry.register(
        store,
        "recommend",
        path,
        version=final.version,  # what the served answers report: one name for both
        config={"model": model, "params": final.info.get("params") or {}},
        data_window={
            "from": window[0],
            "to": window[1],
            "events": events.num_rows,
            "holdout_from": cutoff.isoformat(),
            "holdout_events": holdout.num_rows,
        },
        metrics=metrics,
    ).version
    if champion:
        versus = f"{name} {ours:.4f} against {champion}'s {theirs:.4f} on the same holdout"
    else:
        versus = f"{name} {ours:.4f}; no production version yet"
    registry.promote(
        store, "recommend", version, alias="candidate", by="worker", reason=f"retrained: {versus}"
    )
    if promoted:
        registry.promote(store, "recommend", version, by="worker", reason=f"retrained: {versus}")
        outcome = f"{version} promoted to production: {versus}"
    else:
        outcome = (
            f"{version} stays candidate: {versus} is worse than the "
            f"{settings.promotion_tolerance:.0%} tolerance allows"
        )
        context.alert("retrain-recommend", outcome, version=version, champion=champion)
    journal.write(
        store,
        "decision",
        {
            "engine": "recommend",
            "version": version,
            "promoted": promoted,
            "reason": outcome,
            "metrics": metrics,
            "champion": champion,
            "champion_metrics": champion_metrics,
        },
    )
    return outcome


def churn_auc(model, store, cutoff, horizon_days: int) -> dict[str, float]:
    """How well the churn risk as of ``cutoff`` ranked who bought again in the
    ``horizon_days`` after it (ROC AUC of 1 − risk against buying again)."""
    from sklearn.metrics import roc_auc_score

    scores = model.score(store, cutoff)
    start = datetime.combine(cutoff + timedelta(days=1), datetime.min.time(), UTC)
    later = store.read_events(
        purpose="analytics",
        event_types=["purchase"],
        start=start,
        end=start + timedelta(days=horizon_days),
        columns=["subject_id"],
    )
    returned = set(later["subject_id"].to_pylist())
    bought = np.array([c in returned for c in scores["customer_id"].to_pylist()])
    if bought.all() or not bought.any():
        raise ValueError("the holdout has buyers only, or none: no AUC to judge the model on")
    risk = scores["churn_risk"].to_numpy(zero_copy_only=False)
    return {"churn_auc": float(roc_auc_score(bought, 1 - risk)), "customers": float(len(bought))}


def retrain_audience(context: JobContext) -> str:
    """Champion against challenger on the churn horizon before the latest purchase: both
    fitted as of its start and judged on who bought again within it (ROC AUC)."""
    from dataclasses import asdict

    from tailor.audience.model import AudienceConfig, AudienceModel
    from tailor.audience.rfm import last_purchase_day
    from tailor.audience.service import store_scores

    store, settings = context.store, context.settings
    latest = last_purchase_day(store)
    if latest is None:
        return "no purchases of customers with analytics consent: nothing to train on"
    config = AudienceConfig()
    cutoff = latest - timedelta(days=config.horizon_days)
    metrics = churn_auc(
        AudienceModel(config).fit(store, cutoff), store, cutoff, config.horizon_days
    )
    try:
        champion = registry.resolve(store, "audience", "production")
        champion_config = AudienceConfig(
            **{k: v for k, v in champion.config.items() if k in AudienceConfig.__dataclass_fields__}
        )
        theirs = churn_auc(
            AudienceModel(champion_config).fit(store, cutoff),
            store,
            cutoff,
            champion_config.horizon_days,
        )["churn_auc"]
    except ValueError as exc:
        if "no alias" not in str(exc):
            raise
        champion, theirs = None, None
    ours = metrics["churn_auc"]
    promoted = theirs is None or ours >= theirs * (1 - settings.promotion_tolerance)
    final = AudienceModel(config).fit(store, latest)
    now = context.now
    path = Path(settings.model_dir) / f"audience-{now:%Y%m%dT%H%M%S%fZ}"
    final.save(path)
    described = final.describe()
    version = registry.register(
        store,
        "audience",
        path,
        config=asdict(config),
        data_window={
            "to": str(latest),
            "customers": described["customers"],
            "holdout_from": str(cutoff),
        },
        metrics={**metrics, "bgnbd_log_likelihood": final.bgnbd_.log_likelihood_},
    ).version
    versus = (
        f"churn AUC {ours:.4f} against {champion.version}'s {theirs:.4f} on the same horizon"
        if champion
        else f"churn AUC {ours:.4f}; no production version yet"
    )
    registry.promote(
        store, "audience", version, alias="candidate", by="worker", reason=f"retrained: {versus}"
    )
    if promoted:
        registry.promote(store, "audience", version, by="worker", reason=f"retrained: {versus}")
        stored = store_scores(store, final.score(store, latest), latest, datetime.now(UTC))
        outcome = f"{version} promoted to production: {versus}; {stored:,} customers re-scored"
    else:
        outcome = f"{version} stays candidate: {versus} is worse than the tolerance allows"
        context.alert("retrain-audience", outcome, version=version)
    journal.write(
        store,
        "decision",
        {
            "engine": "audience",
            "version": version,
            "promoted": promoted,
            "reason": outcome,
            "metrics": metrics,
        },
    )
    return outcome


def rescore_audience(context: JobContext) -> str:
    """Recompute the stored customer scores with the ``production`` audience model as of the
    latest purchase: the scores are a cache of the model's predictions, which age daily."""
    from tailor.audience.model import AudienceModel
    from tailor.audience.rfm import last_purchase_day
    from tailor.audience.service import store_scores

    store = context.store
    try:
        production = registry.resolve(store, "audience", "production")
    except ValueError:
        return "no production audience model yet: nothing to score with"
    latest = last_purchase_day(store)
    if latest is None:
        return "no purchases of customers with analytics consent: nothing to score"
    scores = AudienceModel.load(production.artifact).score(store, latest)
    stored = store_scores(store, scores, latest, datetime.now(UTC))
    return f"{stored:,} customers scored by {production.version} as of {latest}"


# --- experiments -----------------------------------------------------------------------------


def experiments(context: JobContext) -> str:
    """Step or roll back each running canary, teach each bandit its clicks, raise the
    sample-ratio alarm of A/B tests."""
    said = []
    for experiment in rollouts.load_all(context.store):
        if not experiment.running:
            continue
        if experiment.kind == "bandit":
            wins, losses = attribution.bandit_rewards(context.store, experiment)
            experiment.successes, experiment.failures = wins, losses
            rollouts.save(context.store, experiment)
            said.append(
                f"{experiment.name}: bandit counts {wins} clicked of "
                f"{[w + n for w, n in zip(wins, losses, strict=True)]}"
            )
            continue
        result = attribution.analyze(context.store, experiment)
        if experiment.kind == "canary":
            said.append(step_canary(context, experiment, result))
        elif result.srm_alarm and not any(h["what"] == "srm_alarm" for h in experiment.history):
            experiment.decided("srm_alarm", p_value=result.srm_p_value)
            rollouts.save(context.store, experiment)
            context.alert(
                f"experiment {experiment.name}",
                f"{experiment.name}: sample ratio mismatch (p = {result.srm_p_value:.2g}); "
                "do not read its results",
            )
            said.append(f"{experiment.name}: SRM alarm")
        else:
            said.append(f"{experiment.name}: {result.verdict}")
    return "; ".join(said) or "no running experiment"


def step_canary(context: JobContext, experiment, result: attribution.ExperimentResult) -> str:
    store = context.store
    share = experiment.steps[experiment.step]
    if not result.guardrails_hold:
        broken = "; ".join(g["reason"] for g in result.guardrails if g["broken"])
        rollouts.stop(store, experiment.name, status="rolled_back", reason=broken)
        message = (
            f"canary {experiment.name} rolled back at {share:g}%: {broken}. Every user is "
            f"served {experiment.arms[0].version} again"
        )
        context.alert(f"experiment {experiment.name}", message)
        return message
    if min(result.users.values()) < experiment.min_users:
        return f"canary {experiment.name} at {share:g}%: collecting ({result.users})"
    last = experiment.step + 1 >= len(experiment.steps) - 1
    if not last:
        experiment.step += 1
        experiment.decided("step", share=experiment.steps[experiment.step], users=result.users)
        rollouts.save(store, experiment)
        moved = experiment.steps[experiment.step]
        return f"canary {experiment.name}: guardrails hold, {share:g}% → {moved:g}%"
    new = experiment.arms[1].version
    registry.promote(
        store,
        experiment.engine,
        new,
        by="canary",
        reason=f"canary {experiment.name} held its guardrails up to {share:g}%",
    )
    rollouts.stop(store, experiment.name, status="completed", reason=f"{new} promoted")
    return f"canary {experiment.name} completed: {new} promoted to production"


# --- KPIs and drift --------------------------------------------------------------------------


def kpis(context: JobContext) -> str:
    hours = parse_duration(context.settings.kpi_window) / 3600
    rows = attribution.version_kpis(context.store, hours=hours, now=context.now)
    journal.write(context.store, "kpi", {"window_hours": hours, "versions": rows}, at=context.now)
    raised = check_kpis(context.store, context.settings.alerts, rows)
    return f"KPIs of {len(rows)} version(s) over {hours:g} h; {len(raised)} alert(s)"


def drift(context: JobContext) -> str:
    """Event features of the last 7 days against the 28 before (computed in the store) and the
    stored predictions against those of the last check (:func:`prediction_drift`); drift
    schedules a retraining now."""
    from tailor.lifecycle.monitor import drift_report

    report = drift_report(context.store, context.now.date())
    features = {}
    for feature in report:
        check = feature.check
        features[feature.feature] = (
            check.summary()
            if check
            else {"drifted": False, "n": feature.recent_values, "note": "too few values to check"}
        )
    features.update(prediction_drift(context.store))
    journal.write(context.store, "drift", {"features": features}, at=context.now)
    drifted = sorted(name for name, found in features.items() if found["drifted"])
    if not drifted:
        return f"no drift in {len(features)} features"
    context.alert("drift", f"drift in {', '.join(drifted)}: retraining scheduled", features=drifted)
    for engine in context.settings.retrain_every:
        context.store.schedule_job(f"retrain-{engine}", context.now)
    return f"drift in {', '.join(drifted)}: retraining scheduled"


PREDICTIONS = ("churn_risk", "clv", "p_alive")
"""The audience scores whose distribution is watched."""


def prediction_drift(store) -> dict[str, dict]:
    """The stored audience scores' distributions against the reference kept in the store's
    meta: set at the first check, replaced after each drift found (so one shift alerts once,
    and a new model's scores become the next reference)."""
    from tailor.audience.service import SCORE_KIND
    from tailor.lifecycle.drift import Reference
    from tailor.lifecycle.monitor import MIN_VALUES

    payloads = [json.loads(p) for _, p, _ in store.read_scores(SCORE_KIND)]
    out = {}
    for field in PREDICTIONS:
        values = np.array(
            [p[field] for p in payloads if isinstance(p.get(field), int | float)], float
        )
        values = values[np.isfinite(values)]
        name, key = f"prediction:{field}", f"drift.reference.audience.{field}"
        if len(values) < MIN_VALUES:
            continue
        saved = store.get_meta(key)
        if saved is None:
            store.set_meta(key, Reference.fit(values).to_json())
            out[name] = {"drifted": False, "n": len(values), "note": "reference set"}
            continue
        check = Reference.from_json(saved, f"store meta {key}").check(values)
        out[name] = check.summary()
        if check.drifted:
            store.set_meta(key, Reference.fit(values).to_json())
    return out


# --- budget ----------------------------------------------------------------------------------


def replan_budget(context: JobContext) -> str:
    """Re-fit the budget model in ``budget_model`` on the ad events (MAP, warm-started from
    the model there: a week more data moves the mode a little) and save it over the old one
    (atomically: a server planning with it follows), then plan the next ``replan_horizon``
    periods. The plan is written to ``plan.json`` in the model folder and, with the fit's
    figures, to the lifecycle log as a ``decision`` of engine ``budget``."""
    from tailor.budget import service
    from tailor.budget.data import MediaDataError

    settings, store = context.settings, context.store
    folder = Path(settings.budget_model or "")
    try:
        previous = service.load_model(folder)
    except ValueError:
        previous = None  # none yet, or unreadable: fitted from scratch below
    try:
        data = service.load_data(
            store=store,
            target=service.events_target(previous),
            frequency=previous.frequency_ if previous is not None else "W",
            control_keys=previous.control_names_ if previous is not None else (),
        )
        data.check_fittable()
    except MediaDataError as exc:
        return f"no budget re-plan: {exc}"
    fitted = service.fit_model(data, folder, method="map", warm_start=previous is not None)
    model, horizon = fitted.model, settings.replan_horizon
    budget = settings.replan_budget or service.default_budget(model, horizon)
    plan = service.make_plan(model, budget=budget, horizon=horizon)
    (folder / "plan.json").write_text(json.dumps(plan, indent=1))
    problems = model.problems()
    uplift = plan["uplift"]
    outcome = (
        f"budget model re-fitted on {data.periods} periods to {data.dates[-1]} "
        f"({'warm-started, ' if fitted.warm_started else ''}{model.fit_seconds_:.1f} s"
        f"{', ' + '; '.join(problems) if problems else ''}); plan for {horizon} periods from "
        f"{plan['first_period']}: {plan['spend']:,.2f} → {plan['conversions']:,.1f} "
        f"incremental {plan['target']}"
        + ("" if uplift is None else f" ({uplift:+.1%} on the recent split)")
    )
    journal.write(
        store,
        "decision",
        {
            "engine": "budget",
            "version": str(folder),
            "promoted": True,  # the served folder was replaced
            "reason": outcome,
            "metrics": {
                "fit_seconds": model.fit_seconds_,
                "problems": len(problems),
                "conversions": plan["conversions"],
                "uplift": uplift,
            },
            "plan": plan,
        },
    )
    return outcome


# --- devices ---------------------------------------------------------------------------------


def refit_devices(context: JobContext) -> str:
    """Re-learn every home's habits from the telemetry and adjustment events into
    ``devices_model`` (atomically: a server answering from it follows), and journal the
    maintenance alerts the new models raise, each as an ``alert``."""
    from tailor.devices.data import DeviceDataError
    from tailor.devices.service import DevicesService, fit_homes

    settings, store = context.settings, context.store
    folder = Path(settings.devices_model or "")
    try:
        summary = fit_homes(store, folder, timezone=settings.devices_timezone)
    except DeviceDataError as exc:
        return f"no device refit: {exc}"
    service = DevicesService(folder)
    alerts = 0
    for home in service.homes:
        model = service.model(home)
        for alert in (model.maintenance_ or {}).get("alerts", []) if model else []:
            raise_alert(
                store,
                settings.alerts,
                "devices",
                alert.get("message", "maintenance alert"),
                details={"home": home, **alert},
            )
            alerts += 1
    outcome = (
        f"home models re-fitted: {summary['homes']} home(s), {summary['devices']} device(s), "
        f"{len(summary['skipped'])} skipped, {alerts} maintenance alert(s)"
    )
    journal.write(
        store,
        "decision",
        {
            "engine": "devices",
            "version": str(folder),
            "promoted": True,
            "reason": outcome,
            "metrics": {"homes": summary["homes"], "skipped": len(summary["skipped"])},
        },
    )
    return outcome
