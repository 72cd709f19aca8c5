"""`make demo`: the main job on the embedded default (DuckDB), on bundled data."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
from rich.console import Console

from tailor.config import Settings
from tailor.events.importer import import_file, import_table
from tailor.events.mapping import load_mapping
from tailor.workspace import open_workspace

DEMO_SHOP = {"users": 2_000, "items": 400, "events": 60_000, "days": 60, "seed": 7}
DEMO_ADS = {"channels": 4, "periods": 104, "seed": 5}
"""Two years of weekly spend on four simulated ad channels: enough for a media-mix model."""
DEMO_PLAN_WEEKS = 4
DEMO_HORIZON_DAYS = 14
"""Churn horizon of the demo: the simulated shop spans 60 days, and the back-test needs two
horizons of history before its last day."""
DEMO_HOMES = {"n_homes": 5, "weeks": 3, "seed": 11}
"""Three weeks of five simulated heated homes: enough for each home's habits to repeat."""
DEMO_HOME = "home-000"


def run_demo(settings: Settings, out: Path, *, console: Console, smoke: bool = False) -> None:
    """Import the real Online Retail II demo rows and a simulated shop, then report.

    Imports are idempotent, so a second run adds nothing. It ends by serving the demo shop
    over HTTP until Ctrl-C; ``smoke`` calls each served endpoint once instead, then returns.
    """
    from tailor.cli import print_status
    from tailor.datasets.simulate.shop import ShopConfig, simulate_shop

    out.mkdir(parents=True, exist_ok=True)
    demo = files("tailor.datasets.demo")
    with (
        open_workspace(settings, create=True) as ws,
        as_file(demo / "online_retail_demo.csv") as csv_path,
        as_file(demo / "online_retail_events.map.toml") as events_map,
        as_file(demo / "online_retail_items.map.toml") as items_map,
    ):
        console.rule("real data: Online Retail II (UCI, CC BY 4.0), a bundled subset")
        items = import_file(
            ws.store,
            csv_path,
            pseudonymizer=ws.pseudonymizer,
            entity="items",
            mapping=load_mapping(items_map),
        )
        console.print(f"items: {items.rows_read:,} rows → {items.written:,} upserted")
        quarantine = out / "online_retail_rejected.csv"
        events = import_file(
            ws.store,
            csv_path,
            pseudonymizer=ws.pseudonymizer,
            mapping=load_mapping(events_map),
            quarantine=quarantine,
        )
        console.print(
            f"purchases: {events.rows_read:,} rows → {events.written:,} written, "
            f"{events.duplicates:,} already stored, {events.rejected:,} quarantined"
            + (f" in {quarantine} (e.g. {events.first_rejects[0][1]})" if events.rejected else "")
        )
        console.rule("simulated shop with known ground truth")
        dataset = simulate_shop(ShopConfig(**DEMO_SHOP))
        with ws.store.transaction():
            for kind, table in dataset.entities().items():
                import_table(ws.store, table, pseudonymizer=ws.pseudonymizer, entity=kind)
            sim = import_table(
                ws.store, dataset.events, pseudonymizer=ws.pseudonymizer, label="simulated shop"
            )
        console.print(
            f"simulated: {sim.rows_read:,} rows → {sim.written:,} written, "
            f"{sim.duplicates:,} already stored ({sim.rows_per_second:,.0f} rows/s)"
        )
        console.rule("what the store holds")
        print_status(ws)
        everything = ws.store.read_events(purpose=None, columns=["subject_id"]).num_rows
        usable = ws.store.read_events(purpose="personalization", columns=["subject_id"]).num_rows
        console.print(
            f"consent: {usable:,} of {everything:,} event rows may feed personalization "
            "(subjects who granted it and did not revoke it; ad data has no subject)"
        )
        console.print(f"store: {settings.store}  key fingerprint: {ws.pseudonymizer.fingerprint}")
        service = show_recommendations(ws, console)
        service = service.with_candidates()  # as `tailor serve --save-model` saves it
        model_dir = service.save(out / "model")
        customer, item = _example_ids(dataset.events, ws.pseudonymizer, service)
        country = _busiest_country(ws.store.read_events(purpose=None, columns=["country"]))
        audience_dir, scored = show_audience(ws, out, console)
        buyer = _scored_customer(dataset.events, ws.pseudonymizer, scored)
        budget_dir, budget = show_budget(ws, out, console)
        devices_dir, thermostat = show_devices(ws, out, console)
    # The server opens the store itself: DuckDB lets one connection per process write.
    from tailor.demo_serve import serve_demo

    serve_demo(
        settings,
        model_dir,
        user_id=customer,
        item_id=item,
        country=country,
        console=console,
        smoke=smoke,
        audience_dir=audience_dir,
        buyer_id=buyer,
        budget_dir=budget_dir,
        budget=budget,
        devices_dir=devices_dir,
        device_id=thermostat,
        home_id=DEMO_HOME,
    )


def show_budget(ws, out: Path, console: Console) -> tuple[Path, float]:
    """Import simulated ad channels (ad_spend and ad_result events), fit the media-mix model
    by MAP (seconds) calibrated by a simulated geo holdout, show each channel's ROI, the
    holdout against the fitted curve and a plan, and write the budget report with a
    back-test scored against the simulator's true response. Returns the model folder and the
    budget of the plan shown."""
    from tailor.budget import service
    from tailor.cli_budget import lift_table, roi_table
    from tailor.datasets.simulate.ad_channels import CONTROLS, simulate_channels

    console.rule("advertising budget: a media-mix model of simulated ad channels")
    sim = simulate_channels(**DEMO_ADS)
    ads = import_table(
        ws.store, sim.to_events(), pseudonymizer=ws.pseudonymizer, label="simulated ad channels"
    )
    console.print(
        f"ad events: {ads.rows_read:,} rows → {ads.written:,} written, "
        f"{ads.duplicates:,} already stored"
    )
    data = service.load_data(store=ws.store, control_keys=CONTROLS)
    # a geo holdout of the channel with the most spend calibrates its curve, as a shop's
    # experiment would
    biggest = data.channels[int(data.spend.sum(axis=0).argmax())]
    holdout = sim.lift_tests([biggest], change=-1.0)
    fitted = service.fit_model(data, out / "budget", method="map", lift_tests=holdout)
    console.print(roi_table(fitted.model, data))
    console.print(lift_table(fitted.model))
    for problem in fitted.model.problems():
        console.print(f"note: {problem}")
    budget = float(round(service.default_budget(fitted.model, DEMO_PLAN_WEEKS), -3) or 1000.0)
    plan = service.make_plan(fitted.model, budget=budget, horizon=DEMO_PLAN_WEEKS)
    split = ", ".join(
        f"{c} {v:,.0f}" for c, v in zip(plan["channels"], plan["per_period"], strict=True)
    )
    uplift = plan["uplift"]
    console.print(
        f"plan for {budget:,.0f} over {DEMO_PLAN_WEEKS} weeks from {plan['first_period']}: "
        f"{split} per week → {plan['conversions']:,.0f} incremental conversions"
        + ("" if uplift is None else f" ({uplift:+.1%} on the recent split)")
    )
    page, _ = service.write_report(
        fitted.model, data, out / "budget-report.html", plan=plan, truth=sim.truth
    )
    console.print(f"report with charts: {page}")
    return fitted.folder, budget


def show_devices(ws, out: Path, console: Console) -> tuple[Path, str]:
    """Import simulated homes' telemetry and manual adjustments, fit one model per home, show
    what one home learned, and export its decision model to ONNX, checked against the
    server's decisions on that home's motion. Returns the model folder and the thermostat id
    of the home shown."""
    from tailor.datasets.simulate.homes import simulate_homes
    from tailor.devices.edge import export_onnx, max_abs_difference
    from tailor.devices.policy import occupancy_features, slots_for
    from tailor.devices.service import DevicesService, fit_homes, load_settings

    console.rule("connected devices: thermostats that learn their homes (simulated)")
    sim = simulate_homes(**DEMO_HOMES)
    homes = import_table(ws.store, sim.to_events(), pseudonymizer=ws.pseudonymizer, label="homes")
    console.print(
        f"device events: {homes.rows_read:,} rows → {homes.written:,} written, "
        f"{homes.duplicates:,} already stored"
    )
    folder = out / "homes"
    fitted = fit_homes(ws.store, folder)
    skipped = "".join(f"; {h[:12]}… skipped: {why}" for h, why in fitted["skipped"].items())
    console.print(f"fitted {fitted['homes']} homes ({fitted['devices']} devices){skipped}")
    service = DevicesService(folder)
    home = ws.pseudonymizer.pseudonymize("subject", DEMO_HOME)
    insights = service.insights(home, load_settings(ws.store, home))
    habits = insights["habits"]
    console.print(f"{DEMO_HOME} learned {len(habits)} habits from its manual adjustments:")
    for habit in habits[:3]:
        console.print(f"  - {habit['explanation']}", highlight=False)
    model = service.model(home)
    params = model.params_
    onnx_path = export_onnx(params, out / f"{DEMO_HOME}.onnx")
    motion = _motion_grid(sim.readings, sim.truth[DEMO_HOME].motion_id, params.slot_minutes)
    features = occupancy_features(
        motion, timezone=params.timezone, slot_minutes=params.slot_minutes
    )
    gap = max_abs_difference(params, onnx_path, features, slots_for(motion.index, params))
    console.print(
        f"on-device model (ONNX, {onnx_path.stat().st_size / 1024:,.0f} KiB): {onnx_path}; "
        f"on {len(motion):,} slots of the home's motion it decides as the server does "
        f"(largest gap {gap:.0e})"
    )
    return folder, sim.truth[DEMO_HOME].thermostat_id


def _motion_grid(readings, device_id: str, slot_minutes: int):
    """A motion sensor's readings on the slot grid: 1 if it saw motion, NaN with no reading."""
    import pandas as pd

    mine = readings[(readings["device_id"] == device_id) & (readings["metric"] == "motion")]
    step = f"{slot_minutes}min"
    seen = mine.groupby(mine["ts"].dt.floor(step))["value"].max()
    index = pd.date_range(seen.index.min(), seen.index.max(), freq=step)
    return (seen > 0).astype(float).where(seen.notna()).reindex(index)


def show_audience(ws, out: Path, console: Console):
    """Fit the audience engine on the purchases of customers with analytics consent, write
    the CRM export and show the segments. Returns the model folder and the scored ids."""
    import pyarrow.csv as pacsv

    from tailor.audience.evaluation import backtest
    from tailor.audience.model import AudienceConfig, AudienceModel
    from tailor.audience.report import audience_figures, write_audience_report
    from tailor.audience.rfm import last_purchase_day
    from tailor.cli_audience import segment_table

    console.rule("customers: segments, churn risk, lifetime value")
    purchases = ws.store  # summarized in the store's own SQL engine
    as_of = last_purchase_day(purchases)
    model = AudienceModel(AudienceConfig(horizon_days=DEMO_HORIZON_DAYS)).fit(purchases, as_of)
    for note in model.notes_:
        console.print(f"note: {note}")
    folder = model.save(out / "audience")
    scores = model.score(purchases, as_of)
    export = out / "audience-scores.csv"
    pacsv.write_csv(scores, export)
    title = f"{scores.num_rows:,} customers as of {as_of}"
    console.print(segment_table(scores, title, f"churn risk ({DEMO_HORIZON_DAYS} days)"))
    console.print(f"per-customer scores for the CRM: {export}")
    try:
        test = backtest(purchases, as_of, model.config.horizon_days)
    except ValueError as exc:
        console.print(f"no back-test: {exc}")
        test = None
    page, _ = write_audience_report(
        audience_figures(scores, model.describe(), test), out / "audience-report.html"
    )
    console.print(f"report with charts: {page}")
    return folder, set(scores["customer_id"].to_pylist())


def _scored_customer(events, pseudonymizer, scored: set[str]) -> str | None:
    """A simulated customer (their own id) whom the audience model scored."""
    import pyarrow.compute as pc

    purchases = events.filter(pc.equal(events["event_type"], "purchase"))
    for raw in pc.unique(purchases["subject_id"]).to_pylist():
        if pseudonymizer.pseudonymize("subject", raw) in scored:
            return str(raw)
    return None


def show_recommendations(ws, console: Console):
    """Fit the recommendation service on what may feed personalization and show two answers:
    a customer with history, and a new visitor (trending in their country)."""
    from rich.table import Table

    from tailor.recommend.service import RecommendationService

    console.rule("recommendations (EASE on consenting customers' events)")
    events = ws.store.read_events(purpose="personalization")
    service = RecommendationService.build(events, ws.store.read_entities("items"))
    counts = np.diff(service.history.indptr)
    regular = str(service.user_ids[int(np.argmax(counts))])
    country = _busiest_country(events)
    for title, answer in (
        (
            f"customer {regular[:12]}… ({counts.max()} items in history)",
            service.recommend(regular, k=5),
        ),
        (
            f"new visitor from {country}",
            service.recommend("new-visitor", k=5, context={"country": country}),
        ),
    ):
        table = Table(title=title, title_justify="left")
        table.add_column("item")
        table.add_column("why")
        for line in answer:
            table.add_row(
                service.catalog.title[service.catalog.codes([line.item_id])[0]] or line.item_id,
                line.reason,
            )
        console.print(table)
    return service


def _example_ids(events, pseudonymizer, service) -> tuple[str, str]:
    """A simulated customer (their own id, as the shop knows it) whom the model knows well,
    and the item most of the shop's views went to."""
    import pyarrow.compute as pc

    interactions = events.filter(pc.equal(events["event_type"], "view"))
    counts = pc.value_counts(interactions["subject_id"])
    order = np.argsort(-counts.field("counts").to_numpy(), kind="stable")
    raw_ids = counts.field("values").to_pylist()
    known = set(service.user_ids.tolist())
    customer = next(
        (raw_ids[i] for i in order if pseudonymizer.pseudonymize("subject", raw_ids[i]) in known),
        raw_ids[order[0]],
    )
    items = pc.value_counts(interactions["item_id"])
    item = items.field("values")[int(np.argmax(items.field("counts").to_numpy()))].as_py()
    return str(customer), str(item)


def _busiest_country(events) -> str:
    import pyarrow.compute as pc

    if "country" not in events.column_names:
        return ""
    counts = pc.value_counts(pc.drop_null(events["country"]))
    if not len(counts):
        return ""
    best = int(np.argmax(counts.field("counts").to_numpy()))
    return str(counts.field("values")[best])
